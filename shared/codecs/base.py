"""The interface every codec serves through, and the registry that finds a codec by name.

A codec turns an image into one frame of channel symbols (transmitter) and a batch of
received frames back into images (receiver). The services never look at a codec's class:
they call the methods of :class:`Codec`, and the receiver picks the codec a frame names
(``SymbolFrame.model`` is :attr:`Codec.name`). A new codec is one file: a subclass of
:class:`Codec` decorated with ``@register_codec("name", ModelClass)`` where it is defined
(like CompressAI's ``@register_model``); :func:`codec_for` then wraps any ``ModelClass``
network (e.g. loaded from its weights file) in it.

Shapes: an image is (3, H, W) float32 in [0, 1]; a frame's symbols are (n,) complex64 of mean
energy 1; the token grid (h, w) is the image's padded size over the codec's ``downscale``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

import torch
from torch import nn

from ..channel import ChannelSpec
from ..channel.link import Transmission
from ..registry import registrar
from ..phy.symbols import achieved_cbr

StageTimer = Callable[[str], AbstractContextManager]
"""``timer(stage)`` wraps one named stage (``equalize``, ``decode``, ...) to time it."""


class FrameLost(Exception):
    """A received frame that cannot be decoded at all (e.g. its side information was lost on the
    channel); the receiver answers it DATA_LOSS and decodes the rest of its batch."""


@dataclass
class EncodedFrame:
    """What :meth:`Codec.encode` sends for one image.

    Attributes:
        symbols: (n,) complex64, mean energy 1.
        power_scale: the factor the encoder output was multiplied by to reach energy 1.
        grid: (h, w) token grid.
        image_size: (H, W) of the original image in pixels.
        token_lengths: symbols per token when the receiver needs them listed (fixed rate);
            empty when the frame carries its own layout.
        side_symbols: how many of ``symbols`` belong to a digital side channel.
        info: codec-specific figures for evaluation (e.g. side-channel bytes).
    """

    symbols: torch.Tensor
    power_scale: float
    grid: tuple[int, int]
    image_size: tuple[int, int]
    token_lengths: tuple[int, ...] = ()
    side_symbols: int = 0
    info: dict = field(default_factory=dict)

    @property
    def cbr(self) -> float:
        return achieved_cbr(self.symbols.numel(), self.image_size)


@dataclass(frozen=True)
class FrameHeader:
    """What the receiver reads of a frame besides its samples (the wire's frame fields).

    Attributes:
        num_symbols: n, complex symbols sent.
        grid: (h, w) token grid.
        image_size: (H, W) of the original image.
        token_lengths: as :attr:`EncodedFrame.token_lengths`.
        side_symbols: as :attr:`EncodedFrame.side_symbols`.
        power_scale: as :attr:`EncodedFrame.power_scale` (the learned codecs do not need it).
    """

    num_symbols: int
    grid: tuple[int, int]
    image_size: tuple[int, int]
    token_lengths: tuple[int, ...] = ()
    side_symbols: int = 0
    power_scale: float = 1.0

    @classmethod
    def of(cls, encoded: EncodedFrame) -> "FrameHeader":
        """The header the receiver reads for a frame the transmitter encoded."""
        return cls(encoded.symbols.numel(), encoded.grid, encoded.image_size, encoded.token_lengths,
                   encoded.side_symbols, encoded.power_scale)


@dataclass
class DecodedImage:
    """A receiver outcome: (3, H, W) image in [0, 1], the side-information bytes it was decoded
    with and the network evaluations its decoding spent."""

    image: torch.Tensor
    side_information_bytes: int = 0
    nfe: int = 1


class Codec:
    """A semantic codec around its network ``model`` (an ``nn.Module`` of :attr:`model_classes`).

    Subclasses set :attr:`name` and :attr:`model_classes` through :func:`register_codec` and
    implement :meth:`encode`, :meth:`check_frame`, :meth:`decode_batch` and :meth:`forward`;
    they override :meth:`cbrs`, :attr:`decoder_stages`, :attr:`latent_channels` and
    :meth:`adapter_channels` when they serve more than the defaults.
    """

    name: ClassVar[str] = ""
    model_classes: ClassVar[tuple[type[nn.Module], ...]] = (nn.Module,)
    decoder_stages: ClassVar[tuple[str, ...]] = ()
    """The stages of :mod:`shared.decoding` whose decoder modes this codec serves besides
    ``jscc`` (``latent``: before its decoder, needs :attr:`latent_channels`; ``image``: after it)."""

    def __init__(self, model: nn.Module):
        if not isinstance(model, self.model_classes):
            names = " or ".join(cls.__name__ for cls in self.model_classes)
            raise TypeError(f"codec {self.name!r} wraps a {names}, got {type(model).__name__}")
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- what it serves -----------------------------------------------------------------
    def cbrs(self) -> tuple[Fraction, ...] | None:
        """The CBRs it serves, or ``None`` for any CBR its encoder can fit."""
        return None

    def serves_cbr(self, cbr: Fraction) -> bool:
        served = self.cbrs()
        return served is None or cbr in served

    @property
    def latent_channels(self) -> int | None:
        """Real channels of the received latent a latent-stage decoder mode denoises (``None``: none)."""
        return None

    @property
    def adapter_channels(self) -> int | None:
        """Channels of the per-user latent adapter it applies (``None``: it takes no adapters)."""
        return None

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this many pixels (the token grid covers the padded image)."""
        return self.model.config.downscale

    def describe(self) -> str:
        """A short name of what it is, for error messages."""
        return self.name

    # -- transmitter ----------------------------------------------------------------------
    def encode(self, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> EncodedFrame:
        """(3, H, W) in [0, 1] -> the frame for a channel of ``spec`` at no more than ``cbr``;
        ``ValueError`` for a CBR it does not serve or cannot fit."""
        raise NotImplementedError

    # -- receiver -------------------------------------------------------------------------
    def check_frame(self, header: FrameHeader) -> Hashable:
        """``ValueError`` unless ``header`` is a frame of this codec; returns the batch key: frames
        with equal keys (and equal grids and modes) decode in one pass."""
        multiple, scale = self.pad_multiple, self.model.config.downscale
        grid = tuple(-(-side // multiple) * (multiple // scale) for side in header.image_size)
        if min(header.image_size) < 1 or tuple(header.grid) != grid:
            raise ValueError(f"image size {header.image_size[0]}x{header.image_size[1]} does not fit the "
                             f"{header.grid[0]}x{header.grid[1]} token grid (this codec's grid for it: {grid[0]}x{grid[1]})")
        return 0

    def decode_batch(self, transmissions: list[Transmission], specs: list[ChannelSpec], headers: list[FrameHeader],
                     mode, decoders, adapters: list | None = None, timer: StageTimer | None = None,
                     ) -> list[DecodedImage | FrameLost]:
        """Equalize and decode frames sharing a grid, a batch key and ``mode`` (a parsed decoder
        mode served by ``decoders``, :mod:`shared.decoding`): per frame a :class:`DecodedImage` of
        (3, H_i, W_i) or the :class:`FrameLost` that stopped it. ``adapters``: each frame's latent
        adapter (``None``: identity). ``timer(stage)`` wraps its stages."""
        raise NotImplementedError

    # -- training, attacks, adaptation ----------------------------------------------------
    def forward(self, images: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W) reconstructions through the codec's encoder and decoder at
        the request's rate over a noiseless link at ``spec.snr_db``, differentiably (the white-box
        attacker's model of the codec)."""
        raise NotImplementedError


CODECS: dict[str, type[Codec]] = {}
"""Codec name -> class, filled by :func:`register_codec`."""


def register_codec(name: str, *model_classes: type[nn.Module]):
    """Class decorator: register a :class:`Codec` subclass as ``name``, wrapping networks of
    ``model_classes``."""

    def register(cls: type[Codec]) -> type[Codec]:
        cls.model_classes = model_classes
        return registrar(CODECS, name, "codec")(cls)

    return register


def codec_for(model: nn.Module) -> Codec:
    """The registered codec wrapping networks of ``model``'s class (the most recently registered)."""
    for cls in reversed(list(CODECS.values())):
        if type(model) in cls.model_classes:
            return cls(model)
    raise TypeError(f"no codec serves a {type(model).__name__}; registered: {', '.join(CODECS)}")


def codec_names() -> tuple[str, ...]:
    return tuple(CODECS)
