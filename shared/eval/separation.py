"""The classical separation baseline: an image codec at a byte budget, then a digital link.

Source coding: Pillow's JPEG or AVIF encoder at the best quality setting whose file fits
the byte budget (:func:`encode_image_to_budget`).

Channel coding: the digital link of :mod:`shared.phy.digital_link` (5G NR LDPC + QAM through
the emulator's channel code).

Budget (:func:`separation_baseline`): an image of H x W pixels at CBR ``c`` gets
``N = floor(c * 3 * H * W)`` complex symbols, the count DeepJSCC sends at that CBR. With
``m`` bits per symbol and code rate ``r`` those carry ``m * N`` coded bits, split into
``C = ceil(m * N / MAX_CODEWORD_BITS)`` equal codewords of ``n <= m * N / C`` coded bits and
``k = floor(n * r)`` information bits each; the file's byte budget is
``floor((C * k - HEADER_BITS) / 8)``. A codeword in error corrupts the file: the receiver then
shows a constant mid-grey (0.5) image, as a real receiver whose CRC failed would discard the
file (no attempt is made to decode a corrupt file). Block errors are counted against the sent
bits (a genie CRC). This all-or-nothing behaviour is the cliff effect of separation.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import torch
from PIL import Image

from ..channel import ChannelSpec
from ..imageio import load_image_file
from ..phy.digital_link import HEADER_BITS, bits_to_bytes, bytes_to_bits, choose_scheme, codeword_layout, send_bits
from ..phy.symbols import parse_cbr
from ..quality import ms_ssim, psnr

CODECS = {"jpeg": ("JPEG", (1, 100), {"optimize": True}), "avif": ("AVIF", (0, 100), {})}
"""Codec name -> (Pillow format, (lowest, highest) quality setting, other encoder options)."""

GREY = 0.5
"""The pixel value shown when the file is lost."""


def compress_image(image: torch.Tensor, codec: str, quality: int) -> bytes:
    """(3, H, W) in [0, 1] -> the bytes of a JPEG or AVIF file at ``quality``."""
    fmt, _, options = CODECS[codec]
    array = image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=quality, **options)
    return buffer.getvalue()


def encode_image_to_budget(image: torch.Tensor, codec: str, max_bytes: int) -> tuple[bytes, int] | None:
    """(3, H, W) in [0, 1] -> (file bytes, quality) of the highest quality whose file has at most
    ``max_bytes`` bytes, by bisection over the codec's quality range (file sizes grow with the
    quality setting); ``None`` when even the lowest quality does not fit."""
    low, high = CODECS[codec][1]
    best = None
    while low <= high:
        quality = (low + high) // 2
        data = compress_image(image, codec, quality)
        if len(data) <= max_bytes:
            best, low = (data, quality), quality + 1
        else:
            high = quality - 1
    return best


def channel_symbols(image: torch.Tensor, cbr: Fraction | float | str) -> int:
    """Complex symbols ``floor(cbr * 3 * H * W)`` for a (3, H, W) image (CBR as :func:`~shared.phy.symbols.parse_cbr` reads it)."""
    return math.floor(parse_cbr(cbr) * 3 * image.shape[-2] * image.shape[-1])


def _scores(image: torch.Tensor, decoded: torch.Tensor) -> dict:
    """PSNR (dB) and MS-SSIM of ``decoded`` against ``image``, both (3, H, W)."""
    return {"psnr": float(psnr(image[None], decoded[None])[0]), "ms_ssim": float(ms_ssim(image[None], decoded[None])[0])}


def _decode_or_grey(data: bytes | None, image: torch.Tensor) -> torch.Tensor:
    """The decoded file, or the mid-grey image when there is none."""
    return torch.full_like(image, GREY) if data is None else load_image_file(io.BytesIO(data))


def separation_baseline(
    image: torch.Tensor,
    spec: ChannelSpec,
    cbr: Fraction | float | str,
    codec: str = "avif",
    generator: torch.Generator | None = None,
) -> dict:
    """One image through codec + LDPC + QAM over the channel of ``spec`` at ``cbr``.

    Returns a dict: ``image`` (3, H, W) as received (mid-grey when the file was lost),
    ``psnr`` (dB), ``ms_ssim``, ``modulation``, ``code_rate`` (e.g. "2/3"), ``quality`` (the codec
    setting, ``None`` when no file fits), ``bytes`` (file bytes sent), ``codewords``,
    ``block_errors``, ``channel_uses`` (0 when nothing was sent) and ``failed`` (file lost or
    not sent).
    """
    symbols = channel_symbols(image, cbr)
    modulation, rate = choose_scheme(spec.snr_db, spec.kind)
    codewords, k = codeword_layout(symbols, modulation, rate)
    fitted = encode_image_to_budget(image, codec, (codewords * k - HEADER_BITS) // 8)
    data, quality = fitted or (None, None)
    delivered, block_errors, channel_uses = None, 0, 0
    if data is not None:
        decoded, block_errors, channel_uses = send_bits(bytes_to_bits(data, codewords, k), modulation, rate, spec, generator)
        delivered = None if block_errors else bits_to_bytes(decoded)
    received = _decode_or_grey(delivered, image)
    return {"image": received, **_scores(image, received), "modulation": modulation, "code_rate": str(rate),
            "quality": quality, "bytes": 0 if data is None else len(data), "codewords": codewords,
            "block_errors": block_errors, "channel_uses": channel_uses, "failed": delivered is None}


def capacity_bound(image: torch.Tensor, snr_db: float, cbr: Fraction | float | str, codec: str = "avif") -> dict:
    """The separation bound: the codec at the AWGN capacity budget, delivered without errors.

    ``N = floor(cbr * 3 * H * W)`` complex symbols carry ``N * log2(1 + SNR)`` bits at Es/N0 =
    ``snr_db``; the file gets ``floor(N * log2(1 + SNR) / 8)`` bytes. Returns ``image`` (mid-grey
    if no file fits), ``psnr``, ``ms_ssim``, ``budget_bytes``, ``bytes`` and ``quality``.
    """
    symbols = channel_symbols(image, cbr)
    budget = math.floor(symbols * math.log2(1.0 + 10.0 ** (snr_db / 10.0)) / 8)
    fitted = encode_image_to_budget(image, codec, budget)
    data, quality = fitted or (None, None)
    received = _decode_or_grey(data, image)
    return {"image": received, **_scores(image, received), "budget_bytes": budget,
            "bytes": 0 if data is None else len(data), "quality": quality}
