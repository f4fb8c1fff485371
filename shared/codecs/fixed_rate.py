"""The fixed-rate DeepJSCC codec (``deepjscc-baseline``): every token gets the same k symbols.

Pure stage functions, image -> symbols (transmitter) and symbols -> image (receiver), and the
:class:`FixedRateCodec` that serves them. Any network with DeepJSCC's interface (``config.
downscale``, ``symbols_per_token``, ``trained_symbols_per_token``, ``encode``, ``decode``)
serves here: the baseline and the VAE up-sampler of :mod:`shared.models.vae_upsampler`. CBR
convention: :mod:`shared.phy.symbols`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..channel import ChannelSpec
from ..channel.link import Transmission, receive
from ..models import DeepJSCC
from ..models.layers import pad_to_multiple
from ..models.vae_upsampler import VAEUpsamplerJSCC
from ..phy.symbols import achieved_cbr, power_normalize
from .base import Codec, DecodedImage, EncodedFrame, FrameHeader, StageTimer, register_codec


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


@register_codec("deepjscc-baseline", DeepJSCC, VAEUpsamplerJSCC)
class FixedRateCodec(Codec):
    """The fixed-rate codec: its frame lists the (equal) token lengths; only the ``jscc`` decoder
    mode and the CBRs of the model's trained rates are served; no latent adapters."""

    def cbrs(self) -> tuple[Fraction, ...]:
        config = self.model.config
        return tuple(config.cbr_of(k) for k in sorted(config.trained_symbols_per_token))

    def describe(self) -> str:
        return "the fixed-rate baseline"

    def encode(self, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> EncodedFrame:
        encoded = encode_image(self.model, image, spec.snr_db, cbr)
        tokens = encoded.grid[0] * encoded.grid[1]
        return EncodedFrame(encoded.symbols, encoded.power_scale, encoded.grid, encoded.image_size,
                            (encoded.symbols_per_token,) * tokens)

    def check_frame(self, header: FrameHeader) -> Hashable:
        """The batch key is the symbols per token k."""
        super().check_frame(header)
        tokens = header.grid[0] * header.grid[1]
        if len(header.token_lengths) != tokens or header.side_symbols:
            raise ValueError(f"frame has {len(header.token_lengths)} token lengths for a {header.grid[0]}x"
                             f"{header.grid[1]} grid; the fixed-rate model this receiver serves needs one per token")
        k = header.token_lengths[0]
        if any(length != k for length in header.token_lengths) or k not in self.model.config.trained_symbols_per_token:
            raise ValueError(f"token lengths {sorted(set(header.token_lengths))} are not served by the fixed-rate model")
        if header.num_symbols != tokens * k:
            raise ValueError(f"frame holds {header.num_symbols} symbols, its tokens need {tokens * k}")
        return k

    def decode_batch(self, transmissions: list[Transmission], specs: list[ChannelSpec], headers: list[FrameHeader],
                     mode, decoders, adapters: list | None = None, timer: StageTimer | None = None,
                     ) -> list[DecodedImage]:
        k = headers[0].token_lengths[0]
        images = equalize_and_decode_batch(self.model, transmissions, specs, k, headers[0].grid,
                                           [h.image_size for h in headers], stage_timer=timer)
        return [DecodedImage(image) for image in images]

    def forward(self, images: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> torch.Tensor:
        config = self.model.config
        k = config.symbols_per_token(cbr)
        padded = pad_to_multiple(images.to(self.device), config.downscale)
        grid = (padded.shape[-2] // config.downscale, padded.shape[-1] // config.downscale)
        snr = torch.full((images.shape[0],), float(spec.snr_db), device=self.device)
        symbols, _ = power_normalize(self.model.encode(padded, snr, k))
        decoded = self.model.decode(symbols, snr, k, grid)
        return decoded[..., : images.shape[-2], : images.shape[-1]].to(images.device)
