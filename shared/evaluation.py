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

from .channel import ChannelSpec, make_generator
from .channel.link import transmit
from .adaptive_codec import SideInformationLost, decode_adaptive_batch, encode_adaptive
from .codec import achieved_cbr, encode_image, equalize_and_decode
from .diffusion.modes import JSCC, DecoderMode, DiffusionDecoders
from .models import DeepJSCC, RateAdaptiveJSCC


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


def deepjscc_system(model: DeepJSCC) -> System:
    """The fixed-rate DeepJSCC baseline: encode, channel, equalize, decode."""

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        encoded = encode_image(model, image, spec.snr_db, cbr)
        transmission = transmit(encoded.symbols[None], spec, make_generator(spec.seed))
        decoded = equalize_and_decode(model, transmission, spec, encoded.symbols_per_token, encoded.grid,
                                      encoded.image_size)
        return SystemOutput(quantize(decoded), achieved_cbr(transmission.channel_uses, encoded.image_size))

    return run


def rate_adaptive_system(model: RateAdaptiveJSCC, mode: DecoderMode = JSCC, decoders: DiffusionDecoders | None = None) -> System:
    """The rate-adaptive codec: hyperprior allocation, JSCC symbols and the protected side
    channel in one frame, decoded in ``mode`` (diffusion modes through ``decoders``); a lost side
    channel loses the image (mid-grey, ``failed`` = 1). ``info`` gives the network evaluations
    and the receiver's equalize-to-image time (``rx_ms``, this machine)."""
    from .separation import GREY

    def run(image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> SystemOutput:
        encoded = encode_adaptive(model, image, spec, cbr)
        transmission = transmit(encoded.symbols[None], spec, make_generator(spec.seed))
        started = time.perf_counter()
        (outcome,) = decode_adaptive_batch(model, [transmission], [spec], [encoded.jscc_symbols], encoded.grid,
                                           [encoded.image_size], mode=mode, decoders=decoders)
        rx_ms = 1000 * (time.perf_counter() - started)
        lost = isinstance(outcome, SideInformationLost)
        info = {"side_symbols": encoded.side_symbols, "side_bytes": len(encoded.side_information),
                "mean_symbols_per_token": round(float(encoded.symbol_map.float().mean()), 3), "failed": int(lost),
                "nfe": 0 if lost else outcome.nfe, "rx_ms": round(rx_ms, 1)}
        decoded = torch.full_like(image, GREY) if lost else outcome.image
        return SystemOutput(quantize(decoded), achieved_cbr(transmission.channel_uses, encoded.image_size), info)

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
