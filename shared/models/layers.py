"""Small composable layers of the JSCC networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelConditioning(nn.Module):
    """Feature-wise affine modulation by the channel condition (SNR and rate).

    The attention-feature (AF) idea of SNR-adaptive DeepJSCC, in FiLM form:
    ``x * (1 + scale(c)) + shift(c)``.

    Shapes: x (B, C, H, W); condition (B, D) -> (B, C, H, W).
    """

    def __init__(self, channels: int, condition_dim: int = 2, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(condition_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mlp(condition)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def downsample(in_channels: int, out_channels: int) -> nn.Module:
    """Strided 5x5 convolution: (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""
    return nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2)


def upsample(in_channels: int, out_channels: int) -> nn.Module:
    """Sub-pixel convolution: (B, Cin, H, W) -> (B, Cout, 2H, 2W)."""
    return nn.Sequential(nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1), nn.PixelShuffle(2))


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """(..., H, W) -> (..., H', W') with H', W' the next multiples of ``multiple`` (edge replicated)."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    squeeze = image.dim() == 3
    padded = F.pad(image[None] if squeeze else image, (0, pad_w, 0, pad_h), mode="replicate")
    return padded[0] if squeeze else padded
