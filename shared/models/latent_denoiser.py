"""Latent denoisers of the generative receiver: the diffusion teacher and its consistency student.

Both wrap one diffusers ``UNet2DModel`` over the received latent grid of the rate-adaptive
codec (2K real channels of an h x w token grid; one complex symbol = two channels) in the
preconditioning of EDM (Karras et al. 2022) with a noise level *per element*, since fading
gives each symbol its own (:mod:`shared.diffusion.channel_state`):

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F([c_in(sigma) x, log(sigma) / 4], t)

- ``edm`` (teacher): c_skip = s_d^2 / (sigma^2 + s_d^2), c_out = sigma s_d / sqrt(sigma^2 + s_d^2);
- ``consistency`` (student, Song et al. 2023): c_skip = s_d^2 / ((sigma - sigma_min)^2 + s_d^2),
  c_out = (sigma - sigma_min) s_d / sqrt(sigma^2 + s_d^2) with sigma_min = r t_1, so that
  f(x, t_1) = x exactly (the boundary condition);

with s_d = sigma_data. The network's time input is log t scaled to [0, 1000] over [t_1, T].

Shapes: x, sigma (B, 2K, h, w) with h, w even; t (B,) -> (B, 2K, h, w).

``calibration`` (a buffer, filled after training on held-out crops) is the mean squared error
per complex symbol of this model's final estimate against the sent symbols, on AWGN, at the
times of ``calibration_times``: the receiver reads the decoder's SNR condition from it
(:func:`shared.diffusion.channel_state.effective_snr_db`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..diffusion.channel_state import SIGMA_DATA
from .stored_config import StoredConfig

PARAMETERIZATIONS = ("edm", "consistency")
CALIBRATION_POINTS = 16


@dataclass(frozen=True)
class LatentDenoiserConfig(StoredConfig):
    """Architecture and diffusion schedule of :class:`LatentDenoiser`.

    Attributes:
        latent_channels: 2K, real channels of the codec's latent grid.
        widths: UNet stage widths (diffusers ``block_out_channels``), finest first.
        layers_per_block: residual blocks per UNet stage.
        parameterization: ``edm`` (teacher) or ``consistency`` (student).
        sigma_data: std of a real part of the (unit-energy) symbols.
        t_min, t_max, rho, steps: the EDM schedule (paper 003 sec. V-A: 0.002, 2, 7, 100).
    """

    latent_channels: int = 128
    widths: tuple[int, ...] = field(default=(96, 160))
    layers_per_block: int = 1
    parameterization: str = "edm"
    sigma_data: float = SIGMA_DATA
    t_min: float = 0.002
    t_max: float = 2.0
    rho: float = 7.0
    steps: int = 100

    def __post_init__(self):
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")



class LatentDenoiser(nn.Module):
    """EDM-preconditioned UNet denoiser of the received latent (module doc)."""

    def __init__(self, config: LatentDenoiserConfig | None = None):
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config or LatentDenoiserConfig()
        c = self.config.latent_channels
        blocks = len(self.config.widths)
        self.unet = UNet2DModel(
            sample_size=None, in_channels=2 * c, out_channels=c, block_out_channels=self.config.widths,
            down_block_types=("DownBlock2D",) * blocks, up_block_types=("UpBlock2D",) * blocks,
            layers_per_block=self.config.layers_per_block, norm_num_groups=32,
        )
        times = torch.logspace(math.log10(self.config.t_min), math.log10(self.config.t_max), CALIBRATION_POINTS)
        self.register_buffer("calibration_times", times)
        self.register_buffer("calibration", torch.full((CALIBRATION_POINTS,), float("nan")))

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.calibration).all())

    def time_input(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) t -> the UNet's timestep, log t mapped from [t_1, T] to [0, 1000]."""
        lo, hi = math.log(self.config.t_min), math.log(self.config.t_max)
        return 1000.0 * (t.float().clamp_min(1e-6).log() - lo) / (hi - lo)

    def coefficients(self, sigma: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per element (c_skip, c_out, c_in) for noise levels ``sigma`` at times ``t`` (B,)."""
        sd = self.config.sigma_data
        c_in = torch.rsqrt(sigma.pow(2) + sd**2)
        if self.config.parameterization == "edm":
            return sd**2 * c_in.pow(2), sigma * sd * c_in, c_in
        sigma_min = sigma * (self.config.t_min / t.clamp_min(self.config.t_min)).view(-1, 1, 1, 1)
        excess = sigma - sigma_min
        return sd**2 / (excess.pow(2) + sd**2), excess * sd * c_in, c_in

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t, per-element noise std (B, 2K, h, w), times (B,) -> estimate of x_0 (B, 2K, h, w)."""
        c_skip, c_out, c_in = self.coefficients(sigma, t)
        net_in = torch.cat([c_in * x, sigma.clamp_min(1e-6).log() / 4], dim=1)
        out = self.unet(net_in.to(x.dtype), self.time_input(t).to(x.device)).sample
        return c_skip * x + c_out * out

    def symbol_error(self, sigma: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
        """Calibrated error per complex symbol of the final estimate, averaged over the sent
        elements of each image: per-element noise (B, 2K, h, w), bool mask of sent elements ->
        (B,). Interpolated in log t from ``calibration`` (the AWGN error at t = sigma)."""
        if not self.calibrated:
            raise RuntimeError("this denoiser has no calibration; export it with the training script")
        log_t = self.calibration_times.log()
        position = ((sigma.clamp(self.config.t_min, self.config.t_max).log() - log_t[0])
                    / (log_t[-1] - log_t[0]) * (CALIBRATION_POINTS - 1))
        low = position.floor().long().clamp(0, CALIBRATION_POINTS - 2)
        weight = position - low
        error = self.calibration[low] * (1 - weight) + self.calibration[low + 1] * weight
        beyond = sigma > self.config.t_max  # deeper than the schedule: the estimate is the prior
        error = torch.where(beyond, torch.full_like(error, 1.0), error)
        sent = sent.float()
        return (error * sent).flatten(1).sum(1) / sent.flatten(1).sum(1).clamp_min(1)
