"""What a user asks the channel for (:class:`ChannelSpec`) and the registry of channel kinds.

This module imports no channel block: each block registers itself here (:mod:`.base`), so the
spec, the blocks and the services depend on it and never the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CSI_MODES = ("perfect", "ls", "lmmse")
MAX_PILOTS = 1024
"""Pilots per coherence block at most (a request's pilots are allocated per block before any is sent)."""


@dataclass(frozen=True)
class ChannelSpec:
    """What a user asks the channel emulator for.

    Attributes:
        kind: a registered channel kind (:func:`channel_kinds`).
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
        users: ``mu_mimo`` users K per slot (single antenna each; ``rx_antennas`` is Nr): the
            batch rows ``i K .. i K + K - 1`` share slot ``i``; in the services, a request's
            frame shares a slot with those of up to K - 1 other users; see :mod:`.mu_mimo`.
        user_gains_db: ``mu_mimo`` large-scale gain of each user of a slot, dB (one per user, or
            empty: 0 dB for all); user k's mean Es/N0 is ``snr_db + user_gains_db[k]``.
        multiuser_detector: ``mu_mimo`` receiver, ``zf`` or ``mmse`` (:mod:`.detection`).
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
    users: int = 1
    user_gains_db: tuple[float, ...] = ()
    multiuser_detector: str = "mmse"

    def validate(self) -> None:
        """Raise ``ValueError`` (``NotImplementedError`` for an option the kind does not serve)
        with a message a user can act on; the kind's own checks are its block's."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown channel kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not math.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be a finite number of dB, got {self.snr_db}")
        if self.csi not in CSI_MODES:
            raise ValueError(f"unknown CSI mode {self.csi!r}; choose one of {', '.join(CSI_MODES)}")
        block = KINDS[self.kind]
        if self.csi != "perfect":
            if not block.estimated_csi:
                raise NotImplementedError(f"pilot-estimated CSI is served for flat SISO channels; {self.kind} uses perfect CSI")
            if not 1 <= self.pilots <= MAX_PILOTS:
                raise ValueError(f"pilots per block must be 1 to {MAX_PILOTS}, got {self.pilots}")
            if block.block_fading and self.pilots > self.coherence_symbols:
                raise ValueError(f"{self.pilots} pilots per block are more than the block's {self.coherence_symbols} "
                                 "data symbols (coherence_symbols)")
        block.validate(self)


KINDS: dict = {}
"""Channel kind name -> its block (a :class:`~.base.ChannelKind`), filled by
:func:`~.base.register_channel_kind` when the kind's module is imported (:mod:`shared.channel`
imports the shipped ones)."""


def channel_kinds() -> tuple[str, ...]:
    """The registered channel kinds, in registration order."""
    return tuple(KINDS)


def channel_kind(name: str):
    """The block of channel kind ``name`` (``ValueError`` for an unknown one)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown channel kind {name!r}; choose one of {', '.join(KINDS)}") from None
