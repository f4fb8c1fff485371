"""Channel models: each a pure function of (symbols, spec, generator).

SNR convention, used everywhere in semcom: the transmitter normalizes every image's
complex symbols to mean energy Es = 1, and ``snr_db`` is Es/N0 per complex symbol, so the
complex noise ``n ~ CN(0, N0)`` has ``N0 = 10 ** (-snr_db / 10)`` (variance N0/2 on each
of the real and imaginary parts). Fading gains have E|h|^2 = 1, so the average received
SNR equals ``snr_db`` for every fading kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CHANNEL_KINDS = ("awgn", "rayleigh", "rician", "mimo", "tdl")
CSI_MODES = ("perfect", "ls", "lmmse")


@dataclass(frozen=True)
class ChannelSpec:
    """What a user asks the channel emulator for.

    Attributes:
        kind: one of :data:`CHANNEL_KINDS`.
        snr_db: Es/N0 per complex symbol, dB.
        k_factor: Rician K (linear power ratio of line-of-sight to scattered); 0 is
            Rayleigh, ``inf`` is AWGN. Used by ``rician`` only.
        coherence_symbols: block-fading length in complex symbols (MIMO: channel uses):
            one gain per block; 1 is fast (per-symbol) fading. Used by fading kinds only.
        seed: seed of the channel's random draws; ``None`` draws fresh randomness.
        tx_antennas, rx_antennas: MIMO Nt and Nr (``mimo`` only).
        mimo_scheme: ``svd`` (precoding with CSI at the transmitter) or ``open_loop``
            (no precoding, LMMSE receiver); see :mod:`.mimo`.
        csi: what the receiver knows of a SISO channel: ``perfect`` gains, or estimates
            from ``pilots`` unit-energy pilots per coherence block (``ls`` or ``lmmse``; the
            pilots are paid in channel uses); see :mod:`.estimation`.
        tdl_model, delay_spread_ns, speed_mps: 3GPP TDL profile ('A'..'E'), RMS delay
            spread (ns) and terminal speed (m/s) of the frequency-selective ``tdl`` kind,
            simulated over OFDM with Sionna PHY; see :mod:`.tdl`.
    """

    kind: str = "awgn"
    snr_db: float = 10.0
    k_factor: float = 0.0
    coherence_symbols: int = 64
    seed: int | None = None
    tx_antennas: int = 2
    rx_antennas: int = 2
    mimo_scheme: str = "svd"
    csi: str = "perfect"
    pilots: int = 4
    tdl_model: str = "A"
    delay_spread_ns: float = 300.0
    speed_mps: float = 3.0

    def validate(self) -> None:
        """Raise ``ValueError`` with a message a user can act on."""
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"unknown channel kind {self.kind!r}; choose one of {', '.join(CHANNEL_KINDS)}")
        if not math.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be a finite number of dB, got {self.snr_db}")
        if self.kind == "rician" and (math.isnan(self.k_factor) or self.k_factor < 0):
            raise ValueError(f"Rician K factor must be >= 0 (linear), got {self.k_factor}")
        if self.kind != "awgn" and self.coherence_symbols < 1:
            raise ValueError(f"coherence_symbols must be >= 1, got {self.coherence_symbols}")
        if self.csi not in CSI_MODES:
            raise ValueError(f"unknown CSI mode {self.csi!r}; choose one of {', '.join(CSI_MODES)}")
        if self.csi != "perfect":
            if self.kind in ("mimo", "tdl"):
                raise NotImplementedError(f"pilot-estimated CSI is served for flat SISO channels; {self.kind} uses perfect CSI")
            if self.pilots < 1:
                raise ValueError(f"pilots per block must be >= 1, got {self.pilots}")
        if self.kind == "mimo":
            from .mimo import MimoSpec

            MimoSpec(self.tx_antennas, self.rx_antennas, self.snr_db, self.mimo_scheme, self.coherence_symbols).validate()
        if self.kind == "tdl":
            from .tdl import TDLConfig

            TDLConfig(self.tdl_model, self.delay_spread_ns, self.speed_mps).validate()


@dataclass
class ChannelOutput:
    """Received symbols and the channel state a receiver with perfect CSI knows.

    Attributes:
        received: (B, n) complex64 received symbols ``y = h * x + n``.
        block_gains: (B, n_blocks) complex64 fading gain of each coherence block, or
            ``None`` for AWGN (h = 1).
        coherence_symbols: block length in symbols (the last block may be shorter).
        noise_variance: N0, complex noise variance per symbol (Es = 1).
    """

    received: torch.Tensor
    block_gains: torch.Tensor | None
    coherence_symbols: int
    noise_variance: float


def noise_variance(snr_db: float) -> float:
    """N0 for Es = 1 at ``snr_db`` (Es/N0 in dB)."""
    return 10.0 ** (-snr_db / 10.0)


def complex_normal(shape, variance: float, generator: torch.Generator | None, device=None) -> torch.Tensor:
    """Samples of CN(0, variance): complex64 of ``shape``."""
    std = math.sqrt(variance / 2.0)
    parts = torch.randn((*shape, 2), generator=generator, device=device) * std
    return torch.view_as_complex(parts)


def fading_gains(spec: ChannelSpec, batch: int, n_blocks: int, generator, device=None) -> torch.Tensor:
    """(batch, n_blocks) complex64 gains with E|h|^2 = 1 for a fading ``spec``.

    Rician (paper 003 eq. 16): ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) * CN(0, 1)``;
    Rayleigh is K = 0.
    """
    k = spec.k_factor if spec.kind == "rician" else 0.0
    if math.isinf(k):
        return torch.ones((batch, n_blocks), dtype=torch.complex64, device=device)
    los = math.sqrt(k / (k + 1.0))
    scattered = complex_normal((batch, n_blocks), 1.0 / (k + 1.0), generator, device)
    return scattered + los


def expand_blocks(block_gains: torch.Tensor, coherence_symbols: int, n: int) -> torch.Tensor:
    """(B, n_blocks) -> (B, n) per-symbol gains, each block repeated ``coherence_symbols`` times."""
    return block_gains.repeat_interleave(coherence_symbols, dim=1)[:, :n]


def apply_channel(symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> ChannelOutput:
    """Pass (B, n) complex symbols of unit mean energy through the channel of ``spec``.

    Differentiable in ``symbols`` (used in training as in the emulator).
    """
    if spec.kind not in ("awgn", "rayleigh", "rician"):
        raise ValueError(f"apply_channel serves SISO kinds; use link.transmit for {spec.kind!r}")
    batch, n = symbols.shape
    n0 = noise_variance(spec.snr_db)
    noise = complex_normal((batch, n), n0, generator, symbols.device)
    if spec.kind == "awgn":
        return ChannelOutput(symbols + noise, None, n, n0)
    coherence = min(spec.coherence_symbols, n)
    n_blocks = -(-n // coherence)
    gains = fading_gains(spec, batch, n_blocks, generator, symbols.device)
    received = expand_blocks(gains, coherence, n) * symbols + noise
    return ChannelOutput(received, gains, coherence, n0)


def make_generator(seed: int | None, device="cpu") -> torch.Generator:
    """A torch generator seeded with ``seed``, or from OS entropy when ``None``."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen
