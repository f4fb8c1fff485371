"""Image decoding with validation, and PNG encoding.

Every failure is a ``ValueError`` whose message says what was wrong with the input.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")
"""Pillow's modes of 16-bit grayscale PNGs (``I``: 32-bit integers holding 0..65535)."""


def decode_image(data: bytes, max_pixels: int, min_side: int = 16, max_pixels_per_byte: float = math.inf) -> torch.Tensor:
    """PNG/JPEG/WebP bytes -> (3, H, W) float32 RGB in [0, 1].

    Raises ``ValueError`` for empty or undecodable bytes, unsupported formats, images of
    more than ``max_pixels`` pixels or of more than ``max_pixels_per_byte`` pixels per byte of
    ``data`` (both checked from the header, before decoding: no decompression bombs, and the
    decoding cost is bounded by the input's size) and images with a side under ``min_side``.
    16-bit grayscale is scaled to [0, 1] over its full range (65535 is white), not clipped at 255.
    """
    if not data:
        raise ValueError("image bytes are empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ValueError(f"unsupported image format {image.format}; send PNG, JPEG or WebP")
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}")
            if width * height > max_pixels_per_byte * len(data):
                raise ValueError(f"image is {width}x{height} pixels in {len(data)} bytes, over the limit of "
                                 f"{max_pixels_per_byte:g} pixels per byte of input")
            if min(width, height) < min_side:
                raise ValueError(f"image is {width}x{height}; both sides must be at least {min_side} pixels")
            if image.mode in SIXTEEN_BIT_MODES:
                gray = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0)
                return gray.clamp_(0, 1)[None].expand(3, -1, -1).contiguous()
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"cannot decode image: {exc}") from exc
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def encode_png(image: torch.Tensor) -> bytes:
    """(3, H, W) in [0, 1] -> PNG bytes (8-bit RGB)."""
    array = image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def load_image_file(source) -> torch.Tensor:
    """An image file (path or binary file object) -> (3, H, W) float32 in [0, 1]; no limits: trusted input only."""
    with Image.open(source) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def save_figure(figure, path, dpi: int) -> None:
    """Write a matplotlib ``figure`` to ``path`` as a 256-colour PNG: a plot has few colours, and
    the palette file is about a third of matplotlib's RGBA PNG (what keeps ``docs/`` small)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, "PNG", optimize=True)
