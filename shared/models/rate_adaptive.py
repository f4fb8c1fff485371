"""Rate-adaptive semantic JSCC with a hyperprior (paper 000 sec. II-A; NTSCC-style).

Stages, with shapes for an image of H x W pixels and a token grid h x w = H/16 x W/16:

1. analysis ``g_a``: image (B, 3, H, W) -> latent y (B, 2K, h, w); each grid cell is a *token*
   of up to K complex values (K = ``max_symbols_per_token``), conditioned on the SNR.
2. hyperprior: ``h_a`` |y| -> z (B, C_z, h/4, w/4), quantized to z_hat under a factorized prior;
   ``h_s`` z_hat -> scales sigma (B, 2K, h, w) of a Gaussian model of y. The token's estimated
   information ``I_i = sum_c H(sigma_ic)`` (bits, :func:`gaussian_entropy_bits`).
3. symbol allocation: token i gets ``k_i = Q(beta * I_i)`` complex symbols, Q rounding down to
   the allowed ``symbol_levels``; beta is chosen per image to meet the requested bandwidth
   (:func:`choose_beta`). The receiver recomputes the same k map from z_hat and beta, so the side
   information is z_hat (entropy coded) and beta: the length map travels inside it.
4. rate-adaptive JSCC encoder ``f_e`` (y, k map, SNR) -> s; token i sends its first k_i
   complex values (``pack_symbols``).
5. receiver: zero-filled received latent -> ``f_d`` (with the k map and SNR) -> synthesis
   ``g_s`` -> image (B, 3, H, W).

``g_a``/``g_s`` are the baseline's networks (:mod:`.deepjscc`) at K = 64, so training starts from
the baseline's weights. The allocation uses the *predicted* information of a token (from
z_hat) rather than the realized ``-log p(y_i | z_hat)`` of the paper: the realized value needs y,
which the receiver does not have, so the paper's length map must be sent separately (about
2 bits per token, 10-20 % of the bandwidth at CBR 1/48 and low SNR); the predicted one costs
nothing beyond z_hat. To make the two ends agree bit for bit, the allocation is computed in
float64 on the CPU (:meth:`RateAdaptiveJSCC.token_information`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .deepjscc import DeepJSCCConfig, DeepJSCCDecoder, DeepJSCCEncoder
from .entropy_models import FactorizedGaussianPrior, gaussian_entropy_bits, gaussian_likelihood, quantize
from .layers import downsample, upsample
from .stored_config import StoredConfig


@dataclass(frozen=True)
class RateAdaptiveConfig(StoredConfig):
    """Architecture of :class:`RateAdaptiveJSCC`.

    Attributes:
        widths: feature widths of the analysis/synthesis stages (as :class:`DeepJSCCConfig`).
        max_symbols_per_token: K, complex symbols of a token at the highest level.
        symbol_levels: allowed per-token symbol counts, ascending, the last equal to K.
        hyper_channels: channels of the hyper-latent z.
        hyper_width: feature width of the hyper networks.
        adapter_width: hidden width of the rate adapters ``f_e``, ``f_d``.
    """

    widths: tuple[int, ...] = field(default=(64, 96, 128, 128))
    max_symbols_per_token: int = 64
    symbol_levels: tuple[int, ...] = field(default=(2, 4, 8, 12, 16, 24, 32, 48, 64))
    hyper_channels: int = 8
    hyper_width: int = 64
    adapter_width: int = 96

    downscale: int = 16  # token size in pixels; fixed by the architecture
    hyper_downscale: int = 4  # hyper-latent cells per token side; fixed by the architecture

    def __post_init__(self):
        levels = self.symbol_levels
        if list(levels) != sorted(set(levels)) or levels[0] < 1 or levels[-1] != self.max_symbols_per_token:
            raise ValueError("symbol_levels must be ascending, positive, and end at max_symbols_per_token")

    FIXED = ("downscale", "hyper_downscale")

    def backbone(self) -> DeepJSCCConfig:
        """The analysis/synthesis networks' config."""
        return DeepJSCCConfig(self.widths, self.max_symbols_per_token, (self.max_symbols_per_token,))

    @property
    def grid_multiple(self) -> int:
        """Image sides are padded to a multiple of this (tokens times hyper-latent cells)."""
        return self.downscale * self.hyper_downscale


class RateAdapter(nn.Module):
    """Per-token rate and SNR conditioning of a latent, residual (identity at initialization).

    Shapes: latent (B, 2K, h, w), symbol_fraction (B, h, w) = k_i / K, snr_db (B,)
    -> (B, 2K, h, w).
    """

    def __init__(self, channels: int, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels + 2, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, channels, 3, padding=1)
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, latent: torch.Tensor, symbol_fraction: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        b, _, h, w = latent.shape
        snr_map = (snr_db.to(latent.dtype) / 20.0)[:, None, None, None].expand(b, 1, h, w)
        return latent + self.body(torch.cat([latent, symbol_fraction[:, None].to(latent.dtype), snr_map], dim=1))


def hyper_analysis(latent_channels: int, width: int, hyper_channels: int) -> nn.Module:
    """|y| (B, 2K, h, w) -> z (B, C_z, h/4, w/4)."""
    return nn.Sequential(
        nn.Conv2d(latent_channels, width, 3, padding=1), nn.GELU(),
        downsample(width, width), nn.GELU(),
        downsample(width, hyper_channels),
    )


def hyper_synthesis(hyper_channels: int, width: int, latent_channels: int) -> nn.Module:
    """z_hat (B, C_z, h/4, w/4) -> positive scales (B, 2K, h, w)."""
    return nn.Sequential(
        upsample(hyper_channels, width), nn.GELU(),
        upsample(width, width), nn.GELU(),
        nn.Conv2d(width, latent_channels, 3, padding=1), nn.Softplus(),
    )


def symbol_mask(symbol_map: torch.Tensor, max_symbols: int) -> torch.Tensor:
    """(B, h, w) integer k map -> (B, 2K, h, w) bool: the real latent channels that are sent."""
    channel_symbol = torch.arange(2 * max_symbols, device=symbol_map.device) // 2
    return channel_symbol[None, :, None, None] < symbol_map[:, None]


def pack_symbols(latent: torch.Tensor, symbol_map: torch.Tensor) -> torch.Tensor:
    """One image: (2K, h, w) real latent, (h, w) k map -> (sum k,) complex64, token-major
    (row-major tokens, each token's first k_i symbols)."""
    two_k, h, w = latent.shape
    pairs = torch.view_as_complex(latent.float().reshape(two_k // 2, 2, h, w).permute(2, 3, 0, 1).contiguous())
    keep = torch.arange(two_k // 2, device=latent.device)[None, None] < symbol_map[..., None]
    return pairs[keep]


def unpack_symbols(symbols: torch.Tensor, symbol_map: torch.Tensor, max_symbols: int) -> torch.Tensor:
    """Inverse of :func:`pack_symbols`: (n,) complex, (h, w) k map -> (2K, h, w), zero-filled."""
    h, w = symbol_map.shape
    if symbols.numel() != int(symbol_map.sum()):
        raise ValueError(f"{symbols.numel()} symbols do not fill a length map of {int(symbol_map.sum())}")
    keep = torch.arange(max_symbols, device=symbol_map.device)[None, None] < symbol_map[..., None]
    pairs = torch.zeros(h, w, max_symbols, dtype=torch.complex64, device=symbols.device)
    pairs[keep] = symbols.to(torch.complex64)
    return torch.view_as_real(pairs).permute(2, 3, 0, 1).reshape(2 * max_symbols, h, w)


def allocate_symbols(information: torch.Tensor, beta: float | torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    """Per-token bits (..., h, w) and beta -> k map (..., h, w) int64: the largest allowed level
    not above ``beta * bits`` (the smallest level when none is). ``beta`` is a scalar or (B,)."""
    level_values = torch.tensor(levels, dtype=information.dtype, device=information.device)
    beta = torch.as_tensor(beta, dtype=information.dtype, device=information.device)
    if beta.dim() == 1:
        beta = beta.view(-1, *([1] * (information.dim() - 1)))
    index = torch.searchsorted(level_values, (beta * information).contiguous(), right=True) - 1
    return torch.tensor(levels, device=information.device)[index.clamp(0, len(levels) - 1)]


def choose_beta(information: torch.Tensor, symbol_budget: int, levels: tuple[int, ...], iterations: int = 60) -> float:
    """The largest float32 beta whose allocation (:func:`allocate_symbols`) of one image's
    (h, w) per-token bits spends at most ``symbol_budget`` symbols (bisection on log beta).

    ``ValueError`` when even the smallest level everywhere exceeds the budget.
    """
    floor = levels[0] * information.numel()
    if floor > symbol_budget:
        raise ValueError(f"bandwidth of {symbol_budget} symbols is below the minimum of {floor} for this image size")

    def spent(beta: torch.Tensor) -> int:
        return int(allocate_symbols(information, beta, levels).sum())

    # bisection on float32 values of beta (what the wire carries), in log space
    low, high = torch.tensor(1e-6, dtype=torch.float32), torch.tensor(1e6, dtype=torch.float32)
    if spent(high) <= symbol_budget:
        return float(high)
    for _ in range(iterations):
        mid = (low * high).sqrt()
        if mid == low or mid == high:
            break
        low, high = (mid, high) if spent(mid) <= symbol_budget else (low, mid)
    return float(low)


HYPERPRIOR_LATENT_RMS = 4.0
"""RMS, in quantization bins, of the latent the hyperprior models (:func:`normalize_latent`)."""


def normalize_latent(latent: torch.Tensor) -> torch.Tensor:
    """y (B, 2K, h, w) scaled per image to RMS :data:`HYPERPRIOR_LATENT_RMS`.

    The channel sees y after power normalization, so only its relative values carry meaning;
    the entropy model measures those, and cannot be lowered by shrinking y.
    """
    rms = latent.pow(2).mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12).sqrt()
    return HYPERPRIOR_LATENT_RMS * latent / rms


class RateAdaptiveJSCC(nn.Module):
    """The networks of the rate-adaptive codec (module doc); pure tensor functions, no I/O."""

    FLOAT16_MODULES = ("analysis", "hyper_analysis", "hyper_synthesis")
    """Stored as float16 even in an int8 weights file (:mod:`shared.models.io`): they decide the
    symbol allocation through the rounded hyper-latent z, so int8 rounding moves tokens between
    levels and changes the transmission itself (measured on Kodak: +-0.1 dB per image at 1 dB)."""

    def __init__(self, config: RateAdaptiveConfig | None = None):
        super().__init__()
        self.config = config or RateAdaptiveConfig()
        backbone = self.config.backbone()
        latent_channels = 2 * self.config.max_symbols_per_token
        self.analysis = DeepJSCCEncoder(backbone)
        self.synthesis = DeepJSCCDecoder(backbone)
        self.hyper_analysis = hyper_analysis(latent_channels, self.config.hyper_width, self.config.hyper_channels)
        self.hyper_synthesis = hyper_synthesis(self.config.hyper_channels, self.config.hyper_width, latent_channels)
        self.hyper_prior = FactorizedGaussianPrior(self.config.hyper_channels)
        self.rate_encoder = RateAdapter(latent_channels, self.config.adapter_width)
        self.rate_decoder = RateAdapter(latent_channels, self.config.adapter_width)

    def runtime_networks(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """The sub-networks a serving runtime replaces (:mod:`shared.models.runtime`): nearly all of
        the encode and decode time; each with example inputs (a 64 x 64 image and its latent)."""
        side = 64 // self.config.downscale
        latent, condition = torch.zeros(1, 2 * self.config.max_symbols_per_token, side, side), torch.zeros(1, 2)
        return {"analysis": (torch.zeros(1, 3, 64, 64), condition), "synthesis": (latent, condition)}

    def _condition(self, snr_db: torch.Tensor, mean_symbols: torch.Tensor) -> torch.Tensor:
        return torch.stack([snr_db / 20.0, mean_symbols / self.config.max_symbols_per_token], dim=1)

    def analyse(self, image: torch.Tensor, snr_db: torch.Tensor, mean_symbols: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], (B,) SNR dB, (B,) target mean symbols per token -> y (B, 2K, h, w)."""
        return self.analysis(image, self._condition(snr_db, mean_symbols))

    def hyperprior(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """y (B, 2K, h, w) -> (z_hat (B, C_z, h/4, w/4), its likelihoods, scales (B, 2K, h, w) of
        the normalized y, :func:`normalize_latent`)."""
        z_hat, z_likelihoods = self.hyper_prior(self.hyper_analysis(normalize_latent(latent).abs()))
        return z_hat, z_likelihoods, self.hyper_synthesis(z_hat)

    def latent_likelihoods(self, latent: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Likelihoods of the (noise-)quantized normalized y under the hyperprior's zero-mean
        Gaussians: the training signal of the hyperprior."""
        return gaussian_likelihood(quantize(normalize_latent(latent), 0.0, self.training), scales)

    @torch.no_grad()
    def token_information(self, z_hat: torch.Tensor) -> torch.Tensor:
        """z_hat (B, C_z, h/4, w/4) -> per-token bits (B, h, w), float64, computed on the CPU in
        float64 so that transmitter and receiver allocate identically. Runs a float64 copy of
        ``h_s`` (the model itself is never modified, so concurrent workers may call this)."""
        reference = copy.deepcopy(self.hyper_synthesis).to("cpu", torch.float64)
        scales = reference(z_hat.detach().to("cpu", torch.float64))
        return gaussian_entropy_bits(scales).sum(dim=1)

    def rate_encode(self, latent: torch.Tensor, symbol_map: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """f_e: y, k map (B, h, w), SNR -> channel latent s (B, 2K, h, w), unsent values zeroed."""
        fraction = symbol_map.to(latent.dtype) / self.config.max_symbols_per_token
        sent = self.rate_encoder(latent, fraction, snr_db)
        return sent * symbol_mask(symbol_map, self.config.max_symbols_per_token)

    def rate_decode(self, received: torch.Tensor, symbol_map: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """f_d: zero-filled received latent (B, 2K, h, w), k map (B, h, w), SNR (B,) dB -> the
        latent g_s reads (B, 2K, h, w), unsent values zeroed."""
        fraction = symbol_map.to(received.dtype) / self.config.max_symbols_per_token
        return self.rate_decoder(received, fraction, snr_db) * symbol_mask(symbol_map, self.config.max_symbols_per_token)

    def synthesize(self, latent: torch.Tensor, mean_symbols: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """g_s: latent (B, 2K, h, w), (B,) mean symbols per token of the whole image, SNR (B,) dB
        -> (B, 3, H, W)."""
        return self.synthesis(latent, self._condition(snr_db, mean_symbols))

    def reconstruct(self, received: torch.Tensor, symbol_map: torch.Tensor, snr_db: torch.Tensor,
                    adapter: nn.Module | None = None) -> torch.Tensor:
        """f_d, the optional latent adapter g_w (:class:`~.latent_adapter.LatentAdapter`, per image;
        ``None`` = identity), then g_s: zero-filled received latent (B, 2K, h, w), k map, SNR ->
        (B, 3, H, W)."""
        latent = self.rate_decode(received, symbol_map, snr_db)
        if adapter is not None:
            latent = adapter(latent)
        return self.synthesize(latent, symbol_map.flatten(1).to(received.dtype).mean(dim=1), snr_db)
