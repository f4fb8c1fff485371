"""Arithmetic (range) coding of integer tensors under discretized Gaussian models.

The coder is ``constriction``'s range coder (Bamler lab; Rust, exact integer arithmetic, so
encoder and decoder agree on every platform given the same model parameters). Used for the
hyper-latent of the rate-adaptive codec (:mod:`shared.codecs.rate_adaptive`).
"""

from __future__ import annotations

import numpy as np
import torch

MAX_ABS_VALUE = 127
"""Symbols are coded on the range [-MAX_ABS_VALUE, MAX_ABS_VALUE]; callers clamp to it."""


def _model():
    import constriction

    return constriction.stream.model.QuantizedGaussian(-MAX_ABS_VALUE, MAX_ABS_VALUE)


def encode_gaussian(values: torch.Tensor, scales: torch.Tensor) -> bytes:
    """Integer ``values`` (any shape) under zero-mean discretized Gaussians of ``scales`` (same
    shape) -> range-coded bytes (a whole number of 32-bit words, little-endian)."""
    import constriction

    symbols = values.detach().cpu().flatten().numpy().astype(np.int32)
    if symbols.size and np.abs(symbols).max() > MAX_ABS_VALUE:
        raise ValueError(f"values outside [-{MAX_ABS_VALUE}, {MAX_ABS_VALUE}] cannot be coded")
    stds = scales.detach().cpu().flatten().numpy().astype(np.float64)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, _model(), np.zeros_like(stds), stds)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_gaussian(data: bytes, scales: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_gaussian`: int64 values with the shape of ``scales``.

    ``ValueError`` when ``data`` is not a whole number of 32-bit words.
    """
    import constriction

    if len(data) % 4:
        raise ValueError(f"range-coded data of {len(data)} bytes is not a whole number of 32-bit words")
    stds = scales.detach().cpu().flatten().numpy().astype(np.float64)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    symbols = decoder.decode(_model(), np.zeros_like(stds), stds)
    return torch.from_numpy(np.asarray(symbols, dtype=np.int64)).reshape(scales.shape)
