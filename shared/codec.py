"""The codec's pure stage functions: image -> symbols (transmitter), symbols -> image (receiver).

CBR convention: complex channel uses divided by the number of real source values
``3 * H * W`` of the *original* image (padding to the model's grid is paid by the sender).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from .channel import ChannelSpec
from .channel.link import Transmission, receive
from .models import DeepJSCC
from .symbols import power_normalize


@dataclass
class EncodedImage:
    """One image as channel symbols.

    Attributes:
        symbols: (n,) complex64, mean energy 1.
        power_scale: the factor the encoder output was multiplied by to reach energy 1.
        symbols_per_token: complex symbols in each token (k).
        grid: (h, w) token grid; ``n = h * w * k``.
        image_size: (H, W) of the original image in pixels.
    """

    symbols: torch.Tensor
    power_scale: float
    symbols_per_token: int
    grid: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def cbr(self) -> float:
        return achieved_cbr(self.symbols.numel(), self.image_size)


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


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """(..., H, W) -> (..., H', W') with H', W' the next multiples of ``multiple`` (edge replicated)."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    squeeze = image.dim() == 3
    padded = F.pad(image[None] if squeeze else image, (0, pad_w, 0, pad_h), mode="replicate")
    return padded[0] if squeeze else padded


@torch.inference_mode()
def encode_image(model: DeepJSCC, image: torch.Tensor, snr_db: float, cbr: Fraction) -> EncodedImage:
    """(3, H, W) in [0, 1] -> power-normalized symbols at ``cbr`` for a channel at ``snr_db``."""
    k = model.config.symbols_per_token(cbr)
    device = next(model.parameters()).device
    size = tuple(image.shape[-2:])
    padded = pad_to_multiple(image.to(device), model.config.downscale)[None]
    grid = (padded.shape[-2] // model.config.downscale, padded.shape[-1] // model.config.downscale)
    raw = model.encode(padded, torch.tensor([snr_db], dtype=torch.float32, device=device), k)
    symbols, scale = power_normalize(raw)
    return EncodedImage(symbols[0].cpu(), float(scale[0]), k, grid, size)


@torch.inference_mode()
def decode_symbols(
    model: DeepJSCC,
    symbols: torch.Tensor,
    snr_db: torch.Tensor,
    symbols_per_token: int,
    grid: tuple[int, int],
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(B, n) equalized symbols, (B,) SNR dB -> (B, 3, H, W) images in [0, 1].

    Cropped to ``image_size`` when given, else the full (16h, 16w) grid.
    """
    device = next(model.parameters()).device
    images = model.decode(symbols.to(device), snr_db.to(device, torch.float32), symbols_per_token, grid)
    if image_size is not None:
        images = images[..., : image_size[0], : image_size[1]]
    return images.float().cpu()


def equalize_and_decode_batch(
    model: DeepJSCC,
    transmissions: list[Transmission],
    specs: list[ChannelSpec],
    symbols_per_token: int,
    grid: tuple[int, int],
    image_sizes: list[tuple[int, int]],
    stage_timer: Callable[[str], AbstractContextManager] | None = None,
) -> list[torch.Tensor]:
    """The receiver's stages for a batch of images sharing a token grid and rate.

    Each transmission (of one image) is equalized with its own channel state
    (:func:`~shared.channel.link.receive`), then one batched decoder pass runs. Returns
    (3, H_i, W_i) images in [0, 1]. ``stage_timer(name)``, if given, wraps the
    ``equalize`` and ``decode`` stages.
    """
    timer = stage_timer or (lambda _stage: nullcontext())
    with timer("equalize"):
        symbols = torch.cat([receive(t, spec).symbols for t, spec in zip(transmissions, specs)])
    with timer("decode"):
        snr = torch.tensor([spec.snr_db for spec in specs], dtype=torch.float32)
        images = decode_symbols(model, symbols, snr, symbols_per_token, grid)
    return [image[:, :h, :w] for image, (h, w) in zip(images, image_sizes)]


def equalize_and_decode(
    model: DeepJSCC,
    transmission: Transmission,
    spec: ChannelSpec,
    symbols_per_token: int,
    grid: tuple[int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """One image through :func:`equalize_and_decode_batch` -> (3, H, W)."""
    return equalize_and_decode_batch(model, [transmission], [spec], symbols_per_token, grid, [image_size])[0]
