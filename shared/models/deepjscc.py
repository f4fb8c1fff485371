"""Fixed-rate, SNR-adaptive DeepJSCC: the reference baseline codec.

The encoder maps an image to a latent grid at 1/16 resolution; every grid cell is a
*token* carrying up to ``max_symbols_per_token`` complex channel symbols (two real latent
channels each). A request at channel bandwidth ratio

    CBR = complex channel uses / (3 * H * W)

sends the first ``k = CBR * 3 * 16 * 16`` complex symbols of each token (k = 32 at
CBR 1/24, 16 at 1/48); the decoder zero-fills the rest. Both networks are modulated by
the condition ``(snr_db / 20, k / max_symbols_per_token)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn

from .layers import ChannelConditioning, ResidualBlock, downsample, upsample
from .stored_config import StoredConfig


@dataclass(frozen=True)
class DeepJSCCConfig(StoredConfig):
    """Architecture of :class:`DeepJSCC`.

    Attributes:
        widths: feature widths of the four resolution stages, finest first (1/2, 1/4,
            1/8, 1/16 of the image size).
        max_symbols_per_token: complex symbols per token at the highest rate.
        trained_symbols_per_token: the per-token symbol counts used in training: the rates
            the model serves.
    """

    widths: tuple[int, ...] = field(default=(64, 96, 128, 128))
    max_symbols_per_token: int = 32
    trained_symbols_per_token: tuple[int, ...] = field(default=(16, 32))

    downscale: int = 16  # four stride-2 stages; fixed by the architecture

    FIXED = ("downscale",)

    def symbols_per_token(self, cbr: Fraction | float) -> int:
        """Per-token symbol count for a CBR; ``ValueError`` unless the model serves it."""
        k = float(cbr) * 3 * self.downscale**2
        k_int = round(k)
        if abs(k - k_int) > 1e-6 or k_int not in self.trained_symbols_per_token:
            served = ", ".join(str(self.cbr_of(s)) for s in sorted(self.trained_symbols_per_token))
            raise ValueError(f"CBR {cbr} is not served by this model; choose one of {served}")
        return k_int

    def cbr_of(self, symbols_per_token: int) -> Fraction:
        return Fraction(symbols_per_token, 3 * self.downscale**2)


def channel_condition(snr_db: torch.Tensor, symbols_per_token: int, max_symbols: int) -> torch.Tensor:
    """(B,) SNR in dB -> (B, 2) condition vector of the networks."""
    rate = torch.full_like(snr_db, symbols_per_token / max_symbols)
    return torch.stack([snr_db / 20.0, rate], dim=1)


class DeepJSCCEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, 2K, H/16, W/16) real latent (K = max symbols per token)."""

    def __init__(self, config: DeepJSCCConfig):
        super().__init__()
        w = config.widths
        self.stages = nn.ModuleList([downsample(c_in, c_out) for c_in, c_out in zip((3, *w[:-1]), w)])
        self.refine = nn.ModuleList([nn.Identity(), nn.Identity(), ResidualBlock(w[2]), ResidualBlock(w[3])])
        self.conditioning = nn.ModuleList([ChannelConditioning(c) for c in w])
        self.head = nn.Conv2d(w[-1], 2 * config.max_symbols_per_token, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        for stage, refine, cond in zip(self.stages, self.refine, self.conditioning):
            x = cond(refine(self.act(stage(x))), condition)
        return self.head(x)


class DeepJSCCDecoder(nn.Module):
    """(B, 2K, H/16, W/16) received latent -> (B, 3, H, W) image in [0, 1]."""

    def __init__(self, config: DeepJSCCConfig):
        super().__init__()
        w = tuple(reversed(config.widths))  # coarsest first
        self.stem = nn.Conv2d(2 * config.max_symbols_per_token, w[0], 3, padding=1)
        self.refine = nn.ModuleList([ResidualBlock(w[0]), ResidualBlock(w[1]), nn.Identity(), nn.Identity()])
        self.conditioning = nn.ModuleList([ChannelConditioning(c) for c in w])
        self.stages = nn.ModuleList([upsample(c_in, c_out) for c_in, c_out in zip(w, (*w[1:], 3))])
        self.act = nn.GELU()

    def forward(self, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(latent))
        last = len(self.stages) - 1
        for i, (refine, cond, stage) in enumerate(zip(self.refine, self.conditioning, self.stages)):
            x = stage(cond(refine(x), condition))
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x)


def latent_to_symbols(latent: torch.Tensor, symbols_per_token: int) -> torch.Tensor:
    """(B, 2K, h, w) real -> (B, h*w*k) complex64, token-major, first k symbols of each token."""
    b, _, h, w = latent.shape
    k = symbols_per_token
    pairs = latent[:, : 2 * k].reshape(b, k, 2, h, w).permute(0, 3, 4, 1, 2).contiguous()
    return torch.view_as_complex(pairs.float()).reshape(b, h * w * k)


def symbols_to_latent(symbols: torch.Tensor, symbols_per_token: int, max_symbols: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`latent_to_symbols`: (B, h*w*k) complex -> (B, 2K, h, w), zero-filled."""
    h, w = grid
    b = symbols.shape[0]
    k = symbols_per_token
    pairs = torch.view_as_real(symbols.reshape(b, h, w, k)).permute(0, 3, 4, 1, 2).reshape(b, 2 * k, h, w)
    if k == max_symbols:
        return pairs
    return torch.cat([pairs, pairs.new_zeros(b, 2 * (max_symbols - k), h, w)], dim=1)


class DeepJSCC(nn.Module):
    """Encoder and decoder of the baseline, with the symbol mapping between them."""

    def __init__(self, config: DeepJSCCConfig | None = None):
        super().__init__()
        self.config = config or DeepJSCCConfig()
        self.encoder = DeepJSCCEncoder(self.config)
        self.decoder = DeepJSCCDecoder(self.config)

    def runtime_networks(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """The sub-networks a serving runtime replaces (:mod:`shared.models.runtime`), each with
        example inputs (a 64 x 64 image and its latent)."""
        latent = torch.zeros(1, 2 * self.config.max_symbols_per_token, 64 // self.config.downscale,
                             64 // self.config.downscale)
        condition = torch.zeros(1, 2)
        return {"encoder": (torch.zeros(1, 3, 64, 64), condition), "decoder": (latent, condition)}

    def encode(self, image: torch.Tensor, snr_db: torch.Tensor, symbols_per_token: int) -> torch.Tensor:
        """(B, 3, H, W) with H, W multiples of 16 -> (B, H*W/256 * k) complex symbols (unnormalized)."""
        condition = channel_condition(snr_db, symbols_per_token, self.config.max_symbols_per_token)
        return latent_to_symbols(self.encoder(image, condition), symbols_per_token)

    def decode(self, symbols: torch.Tensor, snr_db: torch.Tensor, symbols_per_token: int, grid: tuple[int, int]) -> torch.Tensor:
        """(B, h*w*k) complex equalized symbols -> (B, 3, 16h, 16w) image in [0, 1]."""
        latent = symbols_to_latent(symbols, symbols_per_token, self.config.max_symbols_per_token, grid)
        condition = channel_condition(snr_db, symbols_per_token, self.config.max_symbols_per_token)
        return self.decoder(latent, condition)
