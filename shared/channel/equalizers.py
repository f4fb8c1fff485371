"""Receiver equalizers: callables on (received, per-symbol gains, N0).

For ``y = h x + n`` with ``E|x|^2 = 1`` and ``n ~ CN(0, N0)``, the scalar MMSE estimate is

    x_hat = conj(h) y / (|h|^2 + N0),

whose effective model is ``x_hat = g x + w`` with real gain ``g = |h|^2 / (|h|^2 + N0)``
and noise variance ``|h|^2 N0 / (|h|^2 + N0)^2``. These per-symbol figures are returned
beside the symbols so that later stages (e.g. a diffusion decoder) know the noise level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import ChannelOutput, expand_blocks


@dataclass
class EqualizedSymbols:
    """Output of an equalizer.

    Attributes:
        symbols: (B, n) complex64 estimates of the transmitted symbols.
        effective_gain: (B, n) float32 real gain g of ``symbols = g x + w``.
        effective_noise_variance: (B, n) float32 variance of w (complex, per symbol).
    """

    symbols: torch.Tensor
    effective_gain: torch.Tensor
    effective_noise_variance: torch.Tensor


def per_symbol_gains(channel: ChannelOutput) -> torch.Tensor:
    """(B, n) complex gains of every symbol (ones for AWGN)."""
    y = channel.received
    if channel.block_gains is None:
        return torch.ones_like(y)
    return expand_blocks(channel.block_gains, channel.coherence_symbols, y.shape[1])


def mmse_equalize(received: torch.Tensor, gains: torch.Tensor, noise_variance: float | torch.Tensor) -> EqualizedSymbols:
    """Scalar MMSE equalization of (B, n) ``received`` with (B, n) complex ``gains``.

    ``noise_variance`` is N0: a float, or a (B, 1) tensor of one N0 per row.
    """
    power = gains.real**2 + gains.imag**2
    denom = power + noise_variance
    symbols = gains.conj() * received / denom
    return EqualizedSymbols(symbols, power / denom, power * noise_variance / denom**2)


def zf_equalize(received: torch.Tensor, gains: torch.Tensor, noise_variance: float) -> EqualizedSymbols:
    """Zero-forcing ``x_hat = y / h``: unit gain, noise variance ``N0 / |h|^2``."""
    power = gains.real**2 + gains.imag**2
    return EqualizedSymbols(received / gains, torch.ones_like(power), noise_variance / power)


EQUALIZERS = {"mmse": mmse_equalize, "zf": zf_equalize}
