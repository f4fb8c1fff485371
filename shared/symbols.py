"""Transmitter-side symbol stages: power normalization and packing for the wire."""

from __future__ import annotations

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
