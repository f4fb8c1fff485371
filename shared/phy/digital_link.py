"""The digital link: 5G NR LDPC codes and Gray-labelled QAM through any channel kind, and the
choice of (modulation, code rate) from measured file-level thresholds. Used by the separation
baseline (:mod:`shared.eval.separation`) and the rate-adaptive codec's side channel
(:mod:`.side_channel`).

Channel coding: 5G NR LDPC codes (Sionna's ``LDPC5GEncoder``/``LDPC5GDecoder``, 20 iterations
of flooding belief propagation) and Gray-labelled unit-energy QAM (Sionna's ``Mapper``), sent
through :func:`~shared.channel.link.transmit` / :func:`~shared.channel.link.receive`, so every
channel kind of the emulator (AWGN, Rayleigh, Rician, MIMO, TDL; estimated CSI too) carries it
exactly as it carries DeepJSCC's symbols (:func:`send_bits`). The receiver computes exact
(APP) bit log-likelihood ratios from the equalizer's effective model (:func:`bit_llrs`).

The coded bits (and the padding of the last symbol) are scrambled before mapping and
descrambled as LLR signs at the receiver (:func:`scrambling_sequence`, the 5G NR Gold
sequence), so that runs of equal bits, e.g. a file's zero padding, do not map to one
constellation point; :func:`modulate_bits` / :func:`demodulate_bits` do it for every user of
the link.

Modulation and code rate (:func:`choose_scheme`) are picked from the nominal SNR and the
channel kind, never from the realized channel: the highest spectral efficiency ``m * r`` whose
threshold in the kind's table plus that table's margin is at most ``spec.snr_db``
(:data:`THRESHOLDS_DB`, :data:`SELECTION_MARGIN_DB`, each kind's ``threshold_table``). The thresholds
are file-level, not codeword-level: a file is lost when any one of its codewords fails, so
each threshold is where a whole file of :data:`FILE_CODEWORDS` maximum-length codewords got
through (:func:`measure_file_threshold`), measured over AWGN and over Rayleigh block fading
(64-symbol blocks, perfect CSI: the default of ``semcom eval``). Every fading kind (Rayleigh,
Rician, MIMO, TDL) uses the Rayleigh table: an approximation, conservative for Rician (its
line of sight fades less) and untested for MIMO (SVD precoding, per-stream gains) and TDL
(OFDM over a frequency-selective channel), whose per-codeword diversity differs. Method and
raw numbers: ``docs/separation_thresholds.md``.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..channel import ChannelSpec, channel_kind, make_generator
from ..channel.equalizers import EqualizedSymbols
from ..channel.link import receive, transmit

MODULATIONS = {"qpsk": 2, "16qam": 4, "64qam": 6}
"""Modulation name -> bits per complex symbol (Gray-labelled square QAM, Es = 1)."""

CODE_RATES = (Fraction(1, 3), Fraction(1, 2), Fraction(2, 3), Fraction(3, 4), Fraction(5, 6))

MAX_CODEWORD_BITS = 8448
"""Longest LDPC codeword (coded bits); the symbols of an image are split into equal codewords
no longer than this."""

LDPC_ITERATIONS = 20

HEADER_BITS = 32
"""A file's length in bytes, sent ahead of it so the receiver can strip the padding."""

def _table(rows: dict[str, tuple[float, ...]]) -> dict[tuple[str, Fraction], float]:
    """{modulation: thresholds in the order of CODE_RATES} -> {(modulation, rate): threshold}."""
    return {(modulation, rate): value for modulation, values in rows.items() for rate, value in zip(CODE_RATES, values)}


THRESHOLDS_DB = {
    "awgn": _table({
        "qpsk": (-0.75, 1.50, 3.50, 4.50, 5.50),
        "16qam": (4.00, 6.75, 9.25, 10.50, 11.75),
        "64qam": (7.75, 11.00, 14.25, 16.00, 17.50),
    }),
    "rayleigh": _table({
        "qpsk": (1.75, 5.00, 8.75, 10.50, 13.00),
        "16qam": (7.75, 10.75, 14.75, 19.25, 20.00),
        "64qam": (12.00, 16.25, 20.25, 22.75, 25.25),
    }),
}
"""Channel family -> {(modulation, code rate): file-level threshold, Es/N0 in dB}: the lowest SNR
on a 0.25 dB grid at which 2 files of :data:`FILE_CODEWORDS` (= 35) random
``MAX_CODEWORD_BITS``-bit codewords, sent back to back as :func:`send_bits` sends a file, were
both delivered (0 of 70 codewords in error), while some codeword failed 0.25 dB lower
(:func:`measure_file_threshold`, coarse-then-fine; ``docs/separation_thresholds.md`` has the
commands and every batch). ``awgn``: AWGN. ``rayleigh``: Rayleigh block fading, 64-symbol
blocks, perfect CSI (``ChannelSpec("rayleigh", snr)``, the default of ``semcom eval``); a
codeword spans 22 (64-QAM) to 66 (QPSK) independent blocks. Measured 2026-11-25 on a 2-core
CPU. The AWGN values of 16-QAM 1/3 and 64-QAM 1/3, 1/2 are the earlier per-codeword ones (at
most 1 of 100 codewords failed), not remeasured: those pairs are never chosen over AWGN
(QPSK 2/3, 16-QAM 1/2, 3/4 reach their efficiency at a lower SNR); the other AWGN values rose by
0 to 0.25 dB from the per-codeword ones.

0 failures in 70 codewords only bounds the codeword error rate below ~4 % (95 %); the margins
of :data:`SELECTION_MARGIN_DB` carry the file-level guarantee. Over AWGN the waterfall is steep
(pooled over all pairs, 0.25 dB below the thresholds 29 of 411 codewords failed, 0.5 dB below
32 of 64). Over Rayleigh it is shallow: 1-5 % of the codewords failed up to 1 dB (QPSK 3/4 and
16-QAM 5/6: 1.25 dB) below a threshold (pooled, -1 dB: 12/223, -0.5 dB: 16/422, -0.25 dB:
14/573), so a single Rayleigh threshold is uncertain by about +-0.5 dB."""

AWGN_THRESHOLDS_DB = THRESHOLDS_DB["awgn"]
RAYLEIGH_THRESHOLDS_DB = THRESHOLDS_DB["rayleigh"]

SELECTION_MARGIN_DB = {"awgn": 0.5, "rayleigh": 1.5}
"""Channel family -> dB added to each threshold of :data:`THRESHOLDS_DB` before a pair is
chosen, to take a file of ~35 codewords from "delivered in the measurement" to a loss rate of
about 1 % or less. AWGN 0.5 dB: two steps of the steep waterfall above the threshold; checked
with 3 fresh files (105 codewords) at threshold + 0.5 dB for 16-QAM 1/2, 3/4, 64-QAM 2/3, 5/6:
none lost. Rayleigh 1.5 dB: past the widest low-error tail seen below a threshold (1.25 dB);
checked with fresh files at threshold + 1.0 dB (QPSK 1/3, 1/2, 16-QAM 1/3: 3 files each) and
+ 1.5 dB (16-QAM 1/2, 2/3, 64-QAM 1/2: 2 files each): none lost. These checks (0 of 525
codewords) bound the codeword error rate there below ~0.6 % (95 %), not the 3e-4 a 1 % loss of
35-codeword files needs: the Rayleigh margin is a judgement, not a measurement."""

FILE_CODEWORDS = 35
"""Codewords of the measured file: a Kodak image (768 x 512) at CBR 1/24 is 49152 symbols, 35
64-QAM codewords of ``MAX_CODEWORD_BITS`` (18 at CBR 1/48; QPSK 12 and 6)."""

SCRAMBLING_C_INIT = 0x5E9C0
"""``c_init`` of the scrambling sequence (:func:`scrambling_sequence`), fixed and known to both
ends (5G NR derives it from the RNTI and cell id; any 31-bit value serves)."""

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


_scrambling_cache = np.zeros(0, dtype=np.uint8)


def scrambling_sequence(length: int) -> torch.Tensor:
    """The first ``length`` bits (float32 0/1) of the scrambling sequence: the length-31 Gold
    sequence of 3GPP TS 38.211 sec. 5.2.1 (``c(n)``, ``N_c = 1600``) with the fixed
    ``c_init =`` :data:`SCRAMBLING_C_INIT`, the generator 5G NR scrambles PDSCH codewords with
    (equal to ``sionna.phy.nr.utils.generate_prng_seq(length, SCRAMBLING_C_INIT)``; computed
    here 28 bits at a time, since each recursion looks 28 or more bits back, and cached).

    Every user of :func:`modulate_bits` gets it: without it a run of equal coded bits (a file's
    zero padding, zero runs in its header, the systematic part of a constant block) maps to
    one constellation point, for 16- and 64-QAM the innermost one at a fifth / a twenty-first of the
    mean energy, and those codewords fail far above the thresholds (the all-zero 16-QAM 2/3
    codewords of ``tests/eval/test_separation.py`` at 10 dB over AWGN). On random data it changes
    nothing in distribution, so the measured thresholds hold for any file."""
    global _scrambling_cache
    if _scrambling_cache.size < length:
        total = max(length, 2 * _scrambling_cache.size, 1 << 16)
        x1 = np.zeros(total + 1600 + 31, dtype=np.uint8)
        x2 = np.zeros_like(x1)
        x1[0] = 1
        x2[:31] = [(SCRAMBLING_C_INIT >> i) & 1 for i in range(31)]
        for start in range(0, x1.size - 31, 28):
            n = np.arange(start, min(start + 28, x1.size - 31))
            x1[n + 31] = x1[n + 3] ^ x1[n]
            x2[n + 31] = x2[n + 3] ^ x2[n + 2] ^ x2[n + 1] ^ x2[n]
        _scrambling_cache = (x1[1600 : 1600 + total] ^ x2[1600 : 1600 + total]).astype(np.uint8)
    return torch.from_numpy(_scrambling_cache[:length].astype(np.float32))


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


def modulate_bits(
    bits: torch.Tensor, modulation: str, code_rate: Fraction, symbols: int | None = None, *, scramble: bool = True
) -> torch.Tensor:
    """(C, k) float32 0/1 information bits -> (n,) complex64 unit-energy QAM symbols of their
    5G LDPC codewords (``floor(k / r)`` coded bits each), sent back to back; zero bits pad the
    last symbol, or up to ``symbols`` symbols when given. The coded and padding bits are
    scrambled (added mod 2 to :func:`scrambling_sequence`) before mapping unless ``scramble``
    is false (only for showing what scrambling prevents; the receiver must agree)."""
    mapping, _, _ = _sionna()
    k = bits.shape[1]
    encoder, _ = _ldpc(k, math.floor(k / code_rate))
    coded = encoder(bits).flatten()
    m = MODULATIONS[modulation]
    length = m * (symbols if symbols is not None else -(-coded.numel() // m))
    if length < coded.numel():
        raise ValueError(f"{coded.numel()} coded bits do not fit {symbols} {modulation} symbols")
    padded = F.pad(coded, (0, length - coded.numel()))
    if scramble:
        padded = torch.remainder(padded + scrambling_sequence(length), 2)
    return mapping.Mapper("qam", m, device="cpu")(padded)


def demodulate_bits(
    equalized: EqualizedSymbols, modulation: str, code_rate: Fraction, codewords: int, k: int, *, scramble: bool = True
) -> torch.Tensor:
    """Inverse of :func:`modulate_bits` at the receiver: (1, n) equalized symbols -> (C, k) hard
    decisions of the LDPC decoder (descrambling by flipping the LLR signs where the scrambling
    sequence is 1)."""
    _, decoder = _ldpc(k, math.floor(k / code_rate))
    coded = codewords * math.floor(k / code_rate)
    llrs = bit_llrs(equalized, modulation)[0, :coded]
    if scramble:  # a scrambled 1 flips the bit, so the sign of its LLR
        llrs = llrs * (1.0 - 2.0 * scrambling_sequence(coded))
    return decoder(llrs.reshape(codewords, -1))


def send_bits(
    bits: torch.Tensor,
    modulation: str,
    code_rate: Fraction,
    spec: ChannelSpec,
    generator: torch.Generator | None = None,
    *,
    scramble: bool = True,
) -> tuple[torch.Tensor, int, int]:
    """Send information bits over the LDPC + QAM link through the channel of ``spec``.

    Args:
        bits: (C, k) float32 0/1 information bits, one row per codeword (12 <= k <= 8448).
        modulation: a key of :data:`MODULATIONS`.
        code_rate: LDPC rate r; each codeword has ``floor(k / r)`` coded bits.
        spec, generator: the channel and its random draws (as :func:`~shared.channel.link.transmit`).
        scramble: scramble the coded bits (the default; :func:`modulate_bits`).

    Returns:
        (C, k) decoded bits, the number of codewords decoded with any bit wrong, and the
        channel uses spent. The C codewords are sent back to back as one row of
        ``ceil(C * n / m)`` symbols (:func:`modulate_bits`).
    """
    transmission = transmit(modulate_bits(bits, modulation, code_rate, scramble=scramble)[None], spec, generator)
    decoded = demodulate_bits(receive(transmission, spec), modulation, code_rate, *bits.shape, scramble=scramble)
    return decoded, int((decoded != bits).any(dim=1).sum()), transmission.channel_uses


def codeword_layout(symbols: int, modulation: str, code_rate: Fraction) -> tuple[int, int]:
    """(C codewords, k information bits each) that fill ``symbols`` complex symbols (module doc)."""
    coded = symbols * MODULATIONS[modulation]
    codewords = -(-coded // MAX_CODEWORD_BITS)
    return codewords, math.floor(coded // codewords * code_rate)


def block_error_rate(
    modulation: str, code_rate: Fraction, snr_db: float, codewords: int, seed: int = 0, kind: str = "awgn"
) -> float:
    """Fraction of ``codewords`` random ``MAX_CODEWORD_BITS``-bit codewords decoded in error over
    ``ChannelSpec(kind, snr_db)`` (fading kinds: the default 64-symbol blocks, perfect CSI), all
    sent back to back as one row, as :func:`send_bits` sends a file's codewords."""
    return file_errors(modulation, code_rate, ChannelSpec(kind, snr_db), codewords, seed) / codewords


def file_errors(modulation: str, code_rate: Fraction, spec: ChannelSpec, codewords: int = FILE_CODEWORDS,
                seed: int = 0) -> int:
    """Codewords in error among one "file" of ``codewords`` random ``MAX_CODEWORD_BITS``-bit
    codewords sent back to back over ``spec``; bits and channel drawn from ``make_generator(seed)``.
    The file is lost when this is not 0."""
    generator = make_generator(seed)
    k = math.floor(MAX_CODEWORD_BITS * code_rate)
    bits = torch.randint(0, 2, (codewords, k), generator=generator).float()
    return send_bits(bits, modulation, code_rate, spec, generator)[1]


def measurement_seed(kind: str, modulation: str, code_rate: Fraction, snr_db: float, index: int) -> int:
    """The seed of file ``index`` at one (channel family, scheme, SNR) of the threshold
    measurement (:func:`measure_file_threshold`): stable across runs and machines."""
    key = f"{kind}|{modulation}|{code_rate}|{snr_db:.2f}|{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:6], "big")


def measure_file_threshold(
    modulation: str,
    code_rate: Fraction,
    kind: str = "awgn",
    start_db: float = 0.0,
    files: int = 3,
    file_codewords: int = FILE_CODEWORDS,
    probe_codewords: int = 12,
    coarse_db: float = 0.5,
    fine_db: float = 0.25,
    log=None,
) -> tuple[float, list[tuple[float, int, int]]]:
    """The file-level threshold of (modulation, code rate) over ``kind`` (how :data:`THRESHOLDS_DB`
    was measured): the lowest SNR on the ``fine_db`` grid at which ``files`` files of
    ``file_codewords`` codewords (:func:`file_errors`, file ``j`` seeded with
    :func:`measurement_seed`) are all delivered, i.e. no codeword of ``files * file_codewords``
    fails, while one ``fine_db`` step lower some codeword failed.

    Coarse-then-fine, to keep it cheap: a probe of ``probe_codewords`` codewords steps the SNR
    by ``coarse_db`` from ``start_db`` (down while it passes, up while it fails) to the lowest
    passing point, the half step below is probed, and the ``files`` files are sent at the
    lowest passing point; any failure there moves the candidate up one ``fine_db`` step and the
    files are sent again (the first failing codeword ends a point). Returns (threshold,
    [(snr, codewords in error, codewords sent), ...] of every batch sent).
    """
    history = []

    def errors(snr: float, index: int, codewords: int) -> int:
        count = file_errors(modulation, code_rate, ChannelSpec(kind, snr), codewords,
                            measurement_seed(kind, modulation, code_rate, snr, index))
        history.append((snr, count, codewords))
        if log is not None:
            log(f"{kind} {modulation} {code_rate} {snr:+.2f} dB: {count}/{codewords}")
        return count

    def probe(snr: float) -> bool:
        return errors(snr, -1, probe_codewords) == 0

    snr = round(start_db / fine_db) * fine_db
    if probe(snr):
        while probe(snr - coarse_db):
            snr -= coarse_db
    else:
        snr += coarse_db
        while not probe(snr):
            snr += coarse_db
    for step in range(1, round(coarse_db / fine_db)):  # the fine points below the coarse pass
        if probe(snr - coarse_db + step * fine_db):
            snr = snr - coarse_db + step * fine_db
            break
    while any(errors(snr, j, file_codewords) for j in range(files)):
        snr += fine_db
    return snr, history


def choose_scheme(
    snr_db: float, kind: str = "awgn", fallback: tuple[str, Fraction] = ("qpsk", CODE_RATES[0])
) -> tuple[str, Fraction]:
    """The (modulation, code rate) of the highest spectral efficiency whose threshold in the
    table of ``kind`` (its block's :attr:`~shared.channel.ChannelKind.threshold_table`, :data:`THRESHOLDS_DB`) plus that table's
    :data:`SELECTION_MARGIN_DB` is met at ``snr_db`` (ties: the lower threshold); ``fallback``
    when none is (default QPSK at the lowest rate, the most robust pair of the tables: the file
    is then sent, likely lost)."""
    table = channel_kind(kind).threshold_table
    thresholds, margin = THRESHOLDS_DB[table], SELECTION_MARGIN_DB[table]
    feasible = [pair for pair, threshold in thresholds.items() if threshold + margin <= snr_db]
    return max(feasible, key=lambda p: (MODULATIONS[p[0]] * p[1], -thresholds[p]), default=fallback)


def bytes_to_bits(data: bytes, codewords: int, k: int) -> torch.Tensor:
    """A file -> (C, k) float32 bits: its length (``HEADER_BITS``), its bytes, zero padding."""
    payload = len(data).to_bytes(HEADER_BITS // 8, "big") + data
    bits = torch.from_numpy(np.unpackbits(np.frombuffer(payload, dtype=np.uint8))).float()
    return F.pad(bits, (0, codewords * k - bits.numel())).reshape(codewords, k)


def bits_to_bytes(bits: torch.Tensor) -> bytes:
    """Inverse of :func:`bytes_to_bits`."""
    raw = np.packbits(bits.flatten().to(torch.uint8).numpy()).tobytes()
    header = HEADER_BITS // 8
    return raw[header : header + int.from_bytes(raw[:header], "big")]
