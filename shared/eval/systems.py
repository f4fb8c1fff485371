"""Systems under evaluation, each one callable on (image, channel, CBR) through the same channel code.

A system sends one image at a target CBR through :func:`shared.channel.link.transmit` /
:func:`~shared.channel.link.receive` (or, for the capacity bound, through no channel at
all) and returns what the user would get back. All outputs are quantized to 8 bits, as
the services' PNG results are.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import torch

from ..channel import ChannelSpec, make_generator
from ..channel.link import transmit
from ..codecs import Codec, FrameHeader, FrameLost
from ..decoding import JSCC, DecoderMode, DiffusionDecoders
from ..models.latent_adapter import LatentAdapter
from .perturbation import Perturbation, perturbation_seed
from ..quality import psnr
from ..phy.symbols import achieved_cbr


@dataclass
class SystemOutput:
    """What one system returned for one image.

    Attributes:
        image: (3, H, W) reconstruction in [0, 1], 8-bit quantized.
        achieved_cbr: channel uses actually spent / (3 H W).
        info: system-specific figures (e.g. chosen modulation, bytes, decoding failure).
    """

    image: torch.Tensor
    achieved_cbr: float
    info: dict = field(default_factory=dict)


System = Callable[[torch.Tensor, ChannelSpec, Fraction], SystemOutput]


def quantize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the nearest 8-bit level, as a PNG round trip gives."""
    return image.clamp(0, 1).mul(255).round().div(255)


def channel_seed(seed: int, image_name: str, snr_db: float, kind: str) -> int:
    """A stable 63-bit seed for one (image, SNR, channel) draw, shared by all systems."""
    digest = hashlib.sha256(repr((seed, image_name, float(snr_db), kind)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def codec_system(codec: Codec, mode: DecoderMode = JSCC, decoders: DiffusionDecoders | None = None,
                 adapter: LatentAdapter | None = None) -> System:
    """A codec of :mod:`shared.codecs` as the services run it: encode, channel, the receiver's
    batch decoder in ``mode`` (diffusion modes through ``decoders``; with ``adapter``, through
    that latent adapter); a lost frame loses the image (mid-grey, ``failed`` = 1). ``info``
    gives the codec's own figures, the network evaluations and the receiver's equalize-to-image
    time (``rx_ms``, this machine). A fixed-rate codec's system has ``cbrs`` (:func:`serves`)."""
    from .separation import GREY

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        encoded = codec.encode(image, spec, cbr)
        transmission = transmit(encoded.symbols[None], spec, make_generator(spec.seed))
        header = FrameHeader.of(encoded)
        started = time.perf_counter()
        (outcome,) = codec.decode_batch([transmission], [spec], [header], mode, decoders,
                                        None if adapter is None else [adapter])
        rx_ms = 1000 * (time.perf_counter() - started)
        lost = isinstance(outcome, FrameLost)
        info = {**encoded.info, "failed": int(lost), "nfe": 0 if lost else outcome.nfe, "rx_ms": round(rx_ms, 1)}
        decoded = torch.full_like(image, GREY) if lost else outcome.image
        return SystemOutput(quantize(decoded), achieved_cbr(transmission.channel_uses, encoded.image_size), info)

    if codec.cbrs() is not None:
        run.cbrs = codec.cbrs()
    return run


def serves(system: System, cbr: Fraction) -> bool:
    """Whether ``system`` serves ``cbr``: a fixed-rate system (one with ``cbrs``) only its own,
    every other system any CBR."""
    return cbr in getattr(system, "cbrs", (cbr,))


AttackForward = Callable[[torch.Tensor, ChannelSpec, Fraction], torch.Tensor]
"""The white-box attacker's differentiable model of a system, e.g. :meth:`Codec.forward`."""


def perturbed_system(system: System, perturbation: Perturbation, attack_forward: AttackForward | None = None) -> System:
    """``system`` fed a perturbed copy of its input (8-bit quantized, as an uploaded PNG would
    be); the caller scores the output against the clean original. pgd attacks
    ``attack_forward`` (white box; required for pgd). The perturbation is drawn from
    :func:`~shared.eval.perturbation.perturbation_seed` of the measurement's channel seed, so it is
    the same on a resumed run. ``info`` adds the perturbed input's PSNR (``input_psnr``, dB)."""

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        forward = None if attack_forward is None else (lambda images: attack_forward(images, spec, cbr))
        generator = make_generator(perturbation_seed(spec.seed or 0, perturbation))
        perturbed = quantize(perturbation.apply(image[None], forward, generator)[0])
        output = system(perturbed, spec, cbr)
        output.info["input_psnr"] = round(float(psnr(image[None], perturbed[None])[0]), 3)
        return output

    if hasattr(system, "cbrs"):
        run.cbrs = system.cbrs  # serves what the unperturbed system serves
    return run


def separation_system(codec: str) -> System:
    """Classical separation: ``codec`` (jpeg/avif) at the byte budget of the best 5G LDPC + QAM
    scheme for the nominal SNR, sent through the same channel; a lost codeword loses the file."""
    from .separation import separation_baseline

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        result = separation_baseline(image, spec, cbr, codec, make_generator(spec.seed))
        info = {k: result[k] for k in ("modulation", "code_rate", "quality", "bytes", "block_errors", "failed")}
        uses = result["channel_uses"]
        return SystemOutput(quantize(result["image"]), uses / (3 * image.shape[1] * image.shape[2]), info)

    return run


def capacity_system(codec: str) -> System:
    """The separation bound: ``codec`` at the AWGN capacity budget, N log2(1 + SNR) bits, error free."""
    from .separation import capacity_bound, channel_symbols

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        result = capacity_bound(image, spec.snr_db, cbr, codec)
        info = {k: result[k] for k in ("budget_bytes", "bytes", "quality")}
        return SystemOutput(quantize(result["image"]), channel_symbols(image, cbr) / (3 * image.shape[1] * image.shape[2]),
                            info)

    return run
