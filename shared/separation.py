"""The classical separation baseline: an image codec at a byte budget, then a digital link.

Source coding: Pillow's JPEG or AVIF encoder at the best quality setting whose file fits
the byte budget (:func:`encode_image_to_budget`).

Channel coding: 5G NR LDPC codes (Sionna's ``LDPC5GEncoder``/``LDPC5GDecoder``, 20 iterations
of flooding belief propagation) and Gray-labelled unit-energy QAM (Sionna's ``Mapper``), sent
through :func:`~shared.channel.link.transmit` / :func:`~shared.channel.link.receive`, so every
channel kind of the emulator (AWGN, Rayleigh, Rician, MIMO, TDL; estimated CSI too) carries it
exactly as it carries DeepJSCC's symbols (:func:`send_bits`). The receiver computes exact
(APP) bit log-likelihood ratios from the equalizer's effective model (:func:`bit_llrs`).

Budget (:func:`separation_baseline`): an image of H x W pixels at CBR ``c`` gets
``N = floor(c * 3 * H * W)`` complex symbols, the count DeepJSCC sends at that CBR. With
``m`` bits per symbol and code rate ``r`` those carry ``m * N`` coded bits, split into
``C = ceil(m * N / MAX_CODEWORD_BITS)`` equal codewords of ``n <= m * N / C`` coded bits and
``k = floor(n * r)`` information bits each; the file's byte budget is
``floor((C * k - HEADER_BITS) / 8)``. A codeword in error corrupts the file: the receiver then
shows a constant mid-grey (0.5) image, as a real receiver whose CRC failed would discard the
file (no attempt is made to decode a corrupt file). Block errors are counted against the sent
bits (a genie CRC). This all-or-nothing behaviour is the cliff effect of separation.

Modulation and code rate (:func:`choose_scheme`) are picked from the nominal SNR alone, never
from the realized channel: the highest spectral efficiency ``m * r`` whose AWGN threshold
(:data:`AWGN_THRESHOLDS_DB`) plus :data:`SELECTION_MARGIN_DB` is at most ``spec.snr_db``.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .channel import ChannelSpec, make_generator
from .channel.equalizers import EqualizedSymbols
from .channel.link import receive, transmit
from .codec import parse_cbr
from .imageio import load_image_file
from .quality import ms_ssim, psnr

CODECS = {"jpeg": ("JPEG", (1, 100), {"optimize": True}), "avif": ("AVIF", (0, 100), {})}
"""Codec name -> (Pillow format, (lowest, highest) quality setting, other encoder options)."""

MODULATIONS = {"qpsk": 2, "16qam": 4, "64qam": 6}
"""Modulation name -> bits per complex symbol (Gray-labelled square QAM, Es = 1)."""

CODE_RATES = (Fraction(1, 3), Fraction(1, 2), Fraction(2, 3), Fraction(3, 4), Fraction(5, 6))

MAX_CODEWORD_BITS = 8448
"""Longest LDPC codeword (coded bits); the symbols of an image are split into equal codewords
no longer than this."""

LDPC_ITERATIONS = 20

HEADER_BITS = 32
"""The file's length in bytes, sent ahead of it so the receiver can strip the padding."""

AWGN_THRESHOLDS_DB = {
    (modulation, rate): threshold
    for modulation, thresholds in {
        "qpsk": (-0.75, 1.25, 3.25, 4.50, 5.50),
        "16qam": (4.00, 6.75, 9.25, 10.50, 11.75),
        "64qam": (7.75, 11.00, 14.25, 15.75, 17.25),
    }.items()
    for rate, threshold in zip(CODE_RATES, thresholds)
}
"""(modulation, code rate) -> Es/N0 (dB) at which this link's block error rate over AWGN falls
below 1e-2 with ``MAX_CODEWORD_BITS``-bit codewords. Measured with :func:`block_error_rate`:
from the Shannon limit ``10 log10(2^(m r) - 1)`` (rounded down to 0.25 dB) upwards in 0.25 dB
steps, the first SNR at which at most 1 of 100 codewords (seeds 0-4, 20 each) failed. The gap
to the Shannon limit is 1.3-2.2 dB for QPSK and 16-QAM, 2.3-3.0 dB for 64-QAM; one 0.25 dB step
below each threshold 2-50 % of the codewords failed. (16-QAM 1/3 and 64-QAM 1/3, 1/2 are never
chosen: QPSK 2/3, 16-QAM 1/2, 3/4 reach the same spectral efficiency at a lower SNR.)"""

SELECTION_MARGIN_DB = 0.5
"""Added to each threshold: an image spans many codewords, so a block error rate of 1e-2 would
still lose many files. 0.5 dB is two steps of the measurement above, past the steep waterfall."""

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


def _sionna():
    """Sionna's mapping module and LDPC classes, imported on first use; the import reseeds
    torch's global generators, so their states are restored around it."""
    with torch.random.fork_rng():
        import sionna.phy.mapping as mapping
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    return mapping, LDPC5GEncoder, LDPC5GDecoder


@lru_cache(maxsize=64)
def _ldpc(k: int, n: int):
    """(encoder, hard-output decoder of the k information bits) of the 5G NR code (k, n)."""
    _, encoder_class, decoder_class = _sionna()
    encoder = encoder_class(k, n, device="cpu")
    return encoder, decoder_class(encoder, num_iter=LDPC_ITERATIONS, device="cpu")


def bit_llrs(equalized: EqualizedSymbols, modulation: str) -> torch.Tensor:
    """(B, n) equalized symbols -> (B, n * m) bit LLRs ``log P(b = 1 | y) / P(b = 0 | y)`` (the sign
    convention of Sionna's demapper and LDPC decoder).

    The equalizer's output is ``y = g x + w`` with real gain ``g`` and ``var(w) = v`` per symbol,
    so ``y / g = x + w / g`` is ``x`` in complex Gaussian noise of variance ``v / g^2``: the exact
    APP demapper runs on that. (A zero gain is clamped to a tiny one: its LLRs are then ~0.)
    """
    mapping, _, _ = _sionna()
    gain = equalized.effective_gain.clamp_min(1e-12)
    demapper = mapping.Demapper("app", "qam", MODULATIONS[modulation], device="cpu")
    return demapper(equalized.symbols / gain, equalized.effective_noise_variance / gain**2)


def send_bits(
    bits: torch.Tensor,
    modulation: str,
    code_rate: Fraction,
    spec: ChannelSpec,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int, int]:
    """Send information bits over the LDPC + QAM link through the channel of ``spec``.

    Args:
        bits: (C, k) float32 0/1 information bits, one row per codeword (12 <= k <= 8448).
        modulation: a key of :data:`MODULATIONS`.
        code_rate: LDPC rate r; each codeword has ``floor(k / r)`` coded bits.
        spec, generator: the channel and its random draws (as :func:`~shared.channel.link.transmit`).

    Returns:
        (C, k) decoded bits, the number of codewords decoded with any bit wrong, and the
        channel uses spent. The C codewords are sent back to back as one row of
        ``ceil(C * n / m)`` symbols (zero bits pad the last symbol).
    """
    mapping, _, _ = _sionna()
    codewords, k = bits.shape
    encoder, decoder = _ldpc(k, math.floor(k / code_rate))
    coded = encoder(bits).flatten()
    m = MODULATIONS[modulation]
    symbols = mapping.Mapper("qam", m, device="cpu")(F.pad(coded, (0, -coded.numel() % m)))
    transmission = transmit(symbols[None], spec, generator)
    llrs = bit_llrs(receive(transmission, spec), modulation)[0, : coded.numel()]
    decoded = decoder(llrs.reshape(codewords, -1))
    return decoded, int((decoded != bits).any(dim=1).sum()), transmission.channel_uses


def codeword_layout(symbols: int, modulation: str, code_rate: Fraction) -> tuple[int, int]:
    """(C codewords, k information bits each) that fill ``symbols`` complex symbols (module doc)."""
    coded = symbols * MODULATIONS[modulation]
    codewords = -(-coded // MAX_CODEWORD_BITS)
    return codewords, math.floor(coded // codewords * code_rate)


def block_error_rate(modulation: str, code_rate: Fraction, snr_db: float, codewords: int, seed: int = 0) -> float:
    """Fraction of ``codewords`` random ``MAX_CODEWORD_BITS``-bit codewords decoded in error over
    AWGN at ``snr_db`` (how :data:`AWGN_THRESHOLDS_DB` was measured)."""
    generator = make_generator(seed)
    k = math.floor(MAX_CODEWORD_BITS * code_rate)
    bits = torch.randint(0, 2, (codewords, k), generator=generator).float()
    _, errors, _ = send_bits(bits, modulation, code_rate, ChannelSpec("awgn", snr_db), generator)
    return errors / codewords


def choose_scheme(snr_db: float) -> tuple[str, Fraction]:
    """The (modulation, code rate) of the highest spectral efficiency whose AWGN threshold plus
    :data:`SELECTION_MARGIN_DB` is met at ``snr_db`` (ties: the lower threshold); QPSK at the
    lowest rate when none is."""
    feasible = [pair for pair, threshold in AWGN_THRESHOLDS_DB.items() if threshold + SELECTION_MARGIN_DB <= snr_db]
    return max(feasible, key=lambda p: (MODULATIONS[p[0]] * p[1], -AWGN_THRESHOLDS_DB[p]),
               default=("qpsk", CODE_RATES[0]))


def _bytes_to_bits(data: bytes, codewords: int, k: int) -> torch.Tensor:
    """A file -> (C, k) float32 bits: its length (``HEADER_BITS``), its bytes, zero padding."""
    payload = len(data).to_bytes(HEADER_BITS // 8, "big") + data
    bits = torch.from_numpy(np.unpackbits(np.frombuffer(payload, dtype=np.uint8))).float()
    return F.pad(bits, (0, codewords * k - bits.numel())).reshape(codewords, k)


def _bits_to_bytes(bits: torch.Tensor) -> bytes:
    """Inverse of :func:`_bytes_to_bits`."""
    raw = np.packbits(bits.flatten().to(torch.uint8).numpy()).tobytes()
    header = HEADER_BITS // 8
    return raw[header : header + int.from_bytes(raw[:header], "big")]


def channel_symbols(image: torch.Tensor, cbr: Fraction | float | str) -> int:
    """Complex symbols ``floor(cbr * 3 * H * W)`` for a (3, H, W) image (CBR as :func:`~shared.codec.parse_cbr` reads it)."""
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
    modulation, rate = choose_scheme(spec.snr_db)
    codewords, k = codeword_layout(symbols, modulation, rate)
    fitted = encode_image_to_budget(image, codec, (codewords * k - HEADER_BITS) // 8)
    data, quality = fitted or (None, None)
    delivered, block_errors, channel_uses = None, 0, 0
    if data is not None:
        decoded, block_errors, channel_uses = send_bits(_bytes_to_bits(data, codewords, k), modulation, rate, spec, generator)
        delivered = None if block_errors else _bits_to_bytes(decoded)
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
