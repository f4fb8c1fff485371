"""Symbol stages: power normalization, packing for the wire, and the CBR of a symbol count.

CBR convention: complex channel uses divided by the number of real source values
``3 * H * W`` of the *original* image (padding to a model's grid is paid by the sender).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch


def power_normalize(symbols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each row of (B, n) complex ``symbols`` to mean energy 1.

    Returns the normalized symbols and the (B,) scale applied (``normalized = scale * symbols``).
    """
    energy = symbols.real.pow(2) + symbols.imag.pow(2)
    scale = torch.rsqrt(energy.mean(dim=1).clamp_min(1e-12))
    return symbols * scale[:, None], scale


def pack_complex(symbols: torch.Tensor) -> bytes:
    """(n,) complex64 -> little-endian interleaved float32 (re, im) bytes."""
    return symbols.detach().to("cpu", torch.complex64).numpy().astype("<c8").tobytes()


def unpack_complex(data: bytes, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_complex`; ``ValueError`` if ``data`` does not hold ``count`` symbols."""
    if len(data) != 8 * count:
        raise ValueError(f"symbol payload holds {len(data)} bytes, expected {8 * count} for {count} complex symbols")
    return torch.from_numpy(np.frombuffer(data, dtype="<c8").astype(np.complex64))


def achieved_cbr(n_symbols: int, image_size: tuple[int, int]) -> float:
    """Complex channel uses per real source value."""
    height, width = image_size
    return n_symbols / (3 * height * width)


def parse_cbr(text: str | float) -> Fraction:
    """'1/24', '0.0416', 0.0416 -> Fraction; ``ValueError`` for non-positive or non-finite."""
    try:
        value = Fraction(str(text).strip()).limit_denominator(10_000)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"CBR {text!r} is not a number or fraction like 1/24") from exc
    if not 0 < value <= 1:
        raise ValueError(f"CBR must be in (0, 1], got {text}")
    return value
