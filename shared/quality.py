"""Image quality metrics: PSNR and MS-SSIM on images in [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

# Standard MS-SSIM scale weights (Wang et al. 2003), finest scale first.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) PSNR in dB (peak 1)."""
    mse = (reference - estimate).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def ms_ssim(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) MS-SSIM.

    Uses the standard five scales when the smaller side exceeds 160 pixels, and as many
    scales as fit otherwise (renormalized weights), so small crops get a figure too.
    """
    side = min(reference.shape[-2:])
    levels = max(1, min(len(_MS_SSIM_WEIGHTS), int(math.floor(math.log2(max(side - 1, 1) / (_WINDOW - 1)))) + 1))
    if side <= _WINDOW:
        raise ValueError(f"MS-SSIM needs images larger than {_WINDOW} pixels, got {side}")
    if levels == len(_MS_SSIM_WEIGHTS):
        return _ms_ssim(reference.float(), estimate.float(), data_range=1.0, size_average=False)
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:levels])
    # pytorch_msssim.ms_ssim insists on sides over 160 px whatever the weights, so the
    # reduced-scale case runs its multi-scale loop here.
    return _ms_ssim_fewer_scales(reference.float(), estimate.float(), weights / weights.sum())


def _ms_ssim_fewer_scales(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MS-SSIM over ``len(weights)`` scales, as pytorch_msssim computes it: (B,) values."""
    window = _fspecial_gauss_1d(_WINDOW, 1.5).repeat(x.shape[1], 1, 1, 1)
    factors = []
    for level in range(len(weights)):
        ssim_per_channel, cs = _ssim(x, y, data_range=1.0, win=window, size_average=False)
        if level < len(weights) - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(factors)  # (levels, B, C)
    return torch.prod(stacked ** weights.to(stacked).view(-1, 1, 1), dim=0).mean(dim=1)
