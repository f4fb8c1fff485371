"""The protected digital side channel: a few bytes of side information as LDPC-coded QAM.

The rate-adaptive codec's side information (its hyper-latent and beta) must reach the receiver
intact, so it travels as bits: a frame of ``length (16 bits) | payload | CRC-32``, zero padded,
5G NR LDPC coded and QAM mapped (the link of :mod:`shared.eval.separation`), appended to the frame's
analog JSCC symbols and sent through the same channel. Its symbols count in the achieved CBR.

The modulation and code rate (:func:`side_channel_scheme`) are those the separation baseline
would pick for the request's channel kind at its nominal SNR less a short-codeword margin
(file-level thresholds with a margin, :func:`~shared.eval.separation.choose_scheme`), or QPSK at
rate 1/5 below them, known to both ends from the channel spec. The
receiver knows the side channel's symbol count (the frame layout), derives the codeword layout
from it, decodes, and checks the CRC: when that fails :func:`recover_side_information` returns
``None`` and the image is reported lost (DATA_LOSS), never guessed.
"""

from __future__ import annotations

import math
import zlib
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from ..channel import ChannelSpec
from ..channel.equalizers import EqualizedSymbols
from .digital_link import MODULATIONS, choose_scheme, codeword_layout, demodulate_bits, modulate_bits

Scheme = tuple[str, Fraction]
"""(modulation, LDPC code rate)."""

SHORT_CODEWORD_MARGIN_DB = 3.0
"""Extra margin of the side channel over the separation tables: those were measured with
8448-bit codewords, the side information is one codeword of ~1000 bits, whose waterfall sits
higher (QPSK 3/4 chosen at AWGN 5 dB, exactly its long-codeword threshold plus margin, lost
2 of 96 Kodak side-information frames; BENCHMARKS.md section 11)."""

LOW_SNR_SCHEME: Scheme = ("qpsk", Fraction(1, 5))
"""Below the most robust pair of the separation tables (QPSK 1/3 + margin), the side channel
drops to 5G LDPC base graph 2's lowest rate: 20 of 20 150-byte payloads delivered over
Rayleigh block fading at 0 dB (QPSK 1/3: 9 of 20; BENCHMARKS.md)."""

LENGTH_BYTES = 2
CRC_BYTES = 4


def _framed_bits(payload_bytes: int) -> int:
    return 8 * (LENGTH_BYTES + payload_bytes + CRC_BYTES)


def side_channel_scheme(spec: ChannelSpec) -> Scheme:
    """The side channel's (modulation, code rate) for a request over ``spec`` (module doc): the
    separation baseline's choice at ``snr_db - SHORT_CODEWORD_MARGIN_DB``, or
    :data:`LOW_SNR_SCHEME` where no pair of the tables is feasible there."""
    return choose_scheme(spec.snr_db - SHORT_CODEWORD_MARGIN_DB, spec.kind, fallback=LOW_SNR_SCHEME)


def side_channel_symbols(payload_bytes: int, scheme: Scheme) -> int:
    """Complex symbols the side channel spends on a payload of ``payload_bytes`` bytes."""
    if payload_bytes >= 2 ** (8 * LENGTH_BYTES):
        raise ValueError(f"side information of {payload_bytes} bytes is over the side channel's limit")
    needed = _framed_bits(payload_bytes)
    symbols = math.ceil(needed / (MODULATIONS[scheme[0]] * scheme[1]))
    while math.prod(codeword_layout(symbols, *scheme)) < needed:
        symbols += 1
    return symbols


def protect_side_information(payload: bytes, scheme: Scheme) -> torch.Tensor:
    """Payload bytes -> (n,) complex64 unit-energy side-channel symbols (module doc)."""
    symbols = side_channel_symbols(len(payload), scheme)
    codewords, k = codeword_layout(symbols, *scheme)
    framed = len(payload).to_bytes(LENGTH_BYTES, "big") + payload + zlib.crc32(payload).to_bytes(CRC_BYTES, "big")
    bits = torch.from_numpy(np.unpackbits(np.frombuffer(framed, dtype=np.uint8))).float()
    bits = F.pad(bits, (0, codewords * k - bits.numel())).reshape(codewords, k)
    return modulate_bits(bits, *scheme, symbols).to(torch.complex64)


def recover_side_information(equalized: EqualizedSymbols, scheme: Scheme) -> bytes | None:
    """(1, n) equalized side-channel symbols -> the payload, or ``None`` if the CRC fails."""
    codewords, k = codeword_layout(equalized.symbols.shape[1], *scheme)
    bits = demodulate_bits(equalized, *scheme, codewords, k)
    raw = np.packbits(bits.flatten().to(torch.uint8).numpy()).tobytes()
    length = int.from_bytes(raw[:LENGTH_BYTES], "big")
    end = LENGTH_BYTES + length
    if end + CRC_BYTES > len(raw):
        return None
    payload = raw[LENGTH_BYTES:end]
    return payload if zlib.crc32(payload).to_bytes(CRC_BYTES, "big") == raw[end : end + CRC_BYTES] else None
