"""Extra compression of the fixed-rate baseline by a down-sampler and an SNR-conditioned VAE
up-sampler (paper 001 sec. IV-A..C, eq. 30-37).

The frozen DeepJSCC baseline (:mod:`shared.models.deepjscc`, "existing parameters without
training") encodes an image at its base rate, ``k0`` complex symbols per token (32: CBR 1/24),
into the power-normalized latent ``y``. The down-sampling module F_d maps ``y`` to ``k0 / r``
symbols per token (extra compression factor ``r``: CBR 1/48 at r = 2, 1/96 at r = 4), which the
channel carries. At the receiver the up-sampler F_u(z_hat, SNR) (eq. 30) gives the mean
``mu_y`` and log-variance ``log sigma_y^2`` of ``y_hat``, the variance branch conditioned on the
SNR, and the frozen baseline decoder decodes ``y_hat`` at the channel's SNR and rate ``k0``.

Training draws ``y_hat = mu_y + sigma_y * eps`` (reparameterization); inference decodes the
posterior mean ``mu_y`` (:meth:`VAEUpsamplerJSCC.decode`). The model exposes the baseline's
interface (``config.symbols_per_token(cbr)``, ``config.cbr_of``, ``config.downscale``,
``config.trained_symbols_per_token``, ``encode``, ``decode``), so :mod:`shared.codecs.fixed_rate` and the
fixed-rate paths of the evaluation harness and the services serve it as they serve the baseline,
at the one CBR of its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import torch
from torch import nn

from ..phy.symbols import power_normalize
from .deepjscc import DeepJSCC, DeepJSCCConfig, channel_condition, latent_to_symbols, symbols_to_latent
from .layers import ChannelConditioning, ResidualBlock
from .stored_config import StoredConfig


@dataclass(frozen=True)
class VAEUpsamplerConfig(StoredConfig):
    """Architecture of :class:`VAEUpsamplerJSCC`.

    Attributes:
        base: the frozen baseline's architecture.
        base_symbols_per_token: ``k0``, the baseline rate whose latent is compressed (one of the
            baseline's served rates).
        compression: the extra compression factor ``r``; the channel carries ``k0 / r`` complex
            symbols per token.
        width: feature width of the residual blocks of F_d and F_u.
        variational: F_u predicts a variance too (the VAE); False: a deterministic up-sampler
            (the ablation without the VAE).
    """

    base: DeepJSCCConfig = field(default_factory=DeepJSCCConfig)
    base_symbols_per_token: int = 32
    compression: int = 2
    width: int = 128
    variational: bool = True

    downscale: int = 16  # the baseline's token size; fixed by its architecture

    def __post_init__(self):
        if self.base_symbols_per_token not in self.base.trained_symbols_per_token:
            raise ValueError(f"base rate k0 = {self.base_symbols_per_token} is not served by the baseline "
                             f"(it serves {self.base.trained_symbols_per_token})")
        if self.compression < 1 or self.base_symbols_per_token % self.compression:
            raise ValueError(f"compression factor {self.compression} does not divide "
                             f"k0 = {self.base_symbols_per_token}")

    @property
    def sent_symbols_per_token(self) -> int:
        """``k0 / r``: complex channel symbols per token."""
        return self.base_symbols_per_token // self.compression

    @property
    def trained_symbols_per_token(self) -> tuple[int, ...]:
        """The one rate this configuration serves."""
        return (self.sent_symbols_per_token,)

    def symbols_per_token(self, cbr: Fraction | float) -> int:
        """Per-token symbol count for a CBR; ``ValueError`` unless it is this configuration's."""
        return replace(self.base, trained_symbols_per_token=self.trained_symbols_per_token).symbols_per_token(cbr)

    def cbr_of(self, symbols_per_token: int) -> Fraction:
        return Fraction(symbols_per_token, 3 * self.downscale**2)

    FIXED = ("downscale",)

    @classmethod
    def from_dict(cls, data: dict) -> "VAEUpsamplerConfig":
        if "base" in data:
            data = {**data, "base": DeepJSCCConfig.from_dict(data["base"])}
        return super().from_dict(data)


class Downsampler(nn.Module):
    """F_d: (B, 2 k0, h, w) power-normalized base latent -> (B, 2 k0 / r, h, w) channel latent
    (unnormalized: the transmitter normalizes its power). Two residual blocks between 1x1
    projections, a linear skip from the input."""

    def __init__(self, in_channels: int, out_channels: int, width: int):
        super().__init__()
        self.project_in = nn.Conv2d(in_channels, width, 1)
        self.blocks = nn.Sequential(ResidualBlock(width), ResidualBlock(width))
        self.project_out = nn.Conv2d(width, out_channels, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.skip(latent) + self.project_out(self.blocks(self.project_in(latent)))


class VariationalUpsampler(nn.Module):
    """F_u (eq. 30): (B, 2 k0 / r, h, w) equalized channel latent and (B, 2) channel condition
    (SNR in dB / 20, 1 / r) -> mean ``mu_y`` and log-variance ``log sigma_y^2`` of ``y_hat``, each
    (B, 2 k0, h, w). Two shared residual blocks; the variance branch alone is modulated by the
    condition. ``variational=False``: the mean alone (log-variance None)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, variational: bool = True,
                 initial_log_variance: float = -4.0):
        super().__init__()
        self.project_in = nn.Conv2d(in_channels, width, 1)
        self.blocks = nn.Sequential(ResidualBlock(width), ResidualBlock(width))
        self.mean = nn.Conv2d(width, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)
        self.variance_conditioning = ChannelConditioning(width) if variational else None
        self.log_variance = nn.Conv2d(width, out_channels, 3, padding=1) if variational else None
        if variational:
            nn.init.zeros_(self.log_variance.weight)
            nn.init.constant_(self.log_variance.bias, initial_log_variance)

    def forward(self, received: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.blocks(self.project_in(received))
        mean = self.skip(received) + self.mean(features)
        if self.log_variance is None:
            return mean, None
        return mean, self.log_variance(self.variance_conditioning(features, condition))


def reparameterize(mean: torch.Tensor, log_variance: torch.Tensor | None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``y_hat = mu + sigma * eps``, eps ~ N(0, 1) per element; the mean when there is no variance."""
    if log_variance is None:
        return mean
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_variance) * eps


def kl_to_standard_normal(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """Eq. 35, per element: KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - log sigma^2 - 1) / 2."""
    return 0.5 * (mean.pow(2) + log_variance.exp() - log_variance - 1)


def kl_channel_to_posterior(
    target: torch.Tensor, noise_variance: float, mean: torch.Tensor, log_variance: torch.Tensor
) -> torch.Tensor:
    """Eq. 32 (L_g), per element: KL(N(y, sigma^2) || N(mu_y, sigma_y^2)) = log(sigma_y / sigma)
    + (sigma^2 + (mu_y - y)^2) / (2 sigma_y^2) - 1/2, with ``noise_variance`` = sigma^2, the
    channel's noise variance per real dimension. Eq. 37 drops the constant -1/2; it is kept here
    so the term is the divergence itself (zero at a perfect match), which changes no gradient."""
    log_noise = torch.log(torch.as_tensor(noise_variance, dtype=mean.dtype, device=mean.device))
    return (0.5 * (log_variance - log_noise)
            + (noise_variance + (mean - target).pow(2)) * torch.exp(-log_variance) / 2 - 0.5)


class VAEUpsamplerJSCC(nn.Module):
    """The frozen baseline with F_d before the channel and F_u after it.

    Attributes:
        base: the DeepJSCC baseline (frozen in training; only ``downsampler`` and ``upsampler``
            learn).
        downsampler: F_d.
        upsampler: F_u.
    """

    def __init__(self, config: VAEUpsamplerConfig | None = None):
        super().__init__()
        self.config = config or VAEUpsamplerConfig()
        c = self.config
        self.base = DeepJSCC(c.base)
        self.downsampler = Downsampler(2 * c.base_symbols_per_token, 2 * c.sent_symbols_per_token, c.width)
        self.upsampler = VariationalUpsampler(2 * c.sent_symbols_per_token, 2 * c.base_symbols_per_token, c.width,
                                              c.variational)

    def _check_rate(self, symbols_per_token: int) -> None:
        if symbols_per_token != self.config.sent_symbols_per_token:
            raise ValueError(f"this model sends {self.config.sent_symbols_per_token} symbols per token, "
                             f"not {symbols_per_token}")

    def base_latent(self, image: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], (B,) SNR dB -> ``y``: (B, 2 k0, H/16, W/16), the baseline's
        latent at ``k0`` at mean energy 1 per complex symbol (what it would send uncompressed)."""
        k0 = self.config.base_symbols_per_token
        grid = (image.shape[-2] // self.config.downscale, image.shape[-1] // self.config.downscale)
        symbols, _ = power_normalize(self.base.encode(image, snr_db, k0))
        return symbols_to_latent(symbols, k0, k0, grid)

    def upsampler_condition(self, snr_db: torch.Tensor) -> torch.Tensor:
        """(B,) SNR dB -> (B, 2) condition of F_u: (SNR / 20, 1 / r)."""
        return channel_condition(snr_db, self.config.sent_symbols_per_token, self.config.base_symbols_per_token)

    def posterior(self, received: torch.Tensor, snr_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_u: (B, 2 k0 / r, h, w) equalized channel latent -> (mu_y, log sigma_y^2), (B, 2 k0, h, w)."""
        return self.upsampler(received, self.upsampler_condition(snr_db))

    def decode_latent(self, y_hat: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """The frozen baseline decoder at rate ``k0``: (B, 2 k0, h, w) -> (B, 3, 16h, 16w) in [0, 1]."""
        k0 = self.config.base_symbols_per_token
        return self.base.decode(latent_to_symbols(y_hat, k0), snr_db, k0, tuple(y_hat.shape[-2:]))

    def encode(self, image: torch.Tensor, snr_db: torch.Tensor, symbols_per_token: int) -> torch.Tensor:
        """(B, 3, H, W) with H, W multiples of 16 -> (B, H*W/256 * k0/r) complex symbols (unnormalized)."""
        self._check_rate(symbols_per_token)
        return latent_to_symbols(self.downsampler(self.base_latent(image, snr_db)), symbols_per_token)

    def decode(self, symbols: torch.Tensor, snr_db: torch.Tensor, symbols_per_token: int, grid: tuple[int, int],
               sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, h*w*k0/r) equalized symbols -> (B, 3, 16h, 16w) image in [0, 1], decoding ``mu_y``
        (``sample=True``: a draw ``mu_y + sigma_y * eps`` instead)."""
        self._check_rate(symbols_per_token)
        received = symbols_to_latent(symbols, symbols_per_token, symbols_per_token, grid)
        mean, log_variance = self.posterior(received, snr_db)
        return self.decode_latent(reparameterize(mean, log_variance, generator) if sample else mean, snr_db)
