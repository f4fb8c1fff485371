"""Flat (single-tap) channel math shared by the channel blocks: noise, fading gains, the SISO
output type and the seeded generator. (Each kind is a block in its own file; :mod:`.base`.)

SNR convention, used everywhere in semcom: the transmitter normalizes every image's
complex symbols to mean energy Es = 1, and ``snr_db`` is Es/N0 per complex symbol, so the
complex noise ``n ~ CN(0, N0)`` has ``N0 = 10 ** (-snr_db / 10)`` (variance N0/2 on each
of the real and imaginary parts). Fading gains have E|h|^2 = 1, so the average received
SNR equals ``snr_db`` for every fading kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class ChannelOutput:
    """Received symbols and the channel state a receiver with perfect CSI knows.

    Attributes:
        received: (B, n) complex64 received symbols ``y = h * x + n``.
        block_gains: (B, n_blocks) complex64 fading gain of each coherence block, or
            ``None`` for AWGN (h = 1).
        coherence_symbols: block length in symbols (the last block may be shorter).
        noise_variance: N0, complex noise variance per symbol (Es = 1).
    """

    received: torch.Tensor
    block_gains: torch.Tensor | None
    coherence_symbols: int
    noise_variance: float


def noise_variance(snr_db: float) -> float:
    """N0 for Es = 1 at ``snr_db`` (Es/N0 in dB)."""
    return 10.0 ** (-snr_db / 10.0)


def complex_normal(shape, variance: float, generator: torch.Generator | None, device=None) -> torch.Tensor:
    """Samples of CN(0, variance): complex64 of ``shape``."""
    std = math.sqrt(variance / 2.0)
    parts = torch.randn((*shape, 2), generator=generator, device=device) * std
    return torch.view_as_complex(parts)


def expand_blocks(block_gains: torch.Tensor, coherence_symbols: int, n: int) -> torch.Tensor:
    """(B, n_blocks) -> (B, n) per-symbol gains, each block repeated ``coherence_symbols`` times."""
    return block_gains.repeat_interleave(coherence_symbols, dim=1)[:, :n]


def make_generator(seed: int | None, device="cpu") -> torch.Generator:
    """A torch generator seeded with ``seed``, or from OS entropy when ``None``."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen
