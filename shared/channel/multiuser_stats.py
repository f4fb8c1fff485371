"""Channel diagnostics of the multi-user kind ``mu_mimo``: uncoded QPSK / 16-QAM of every user of
a slot, decided after ZF, MMSE and MMSE-SIC detection, per user beside the ZF theory.

Chain per modulation: random bits of each of the K users -> Gray-labelled unit-energy QAM
(Sionna ``Mapper``) -> one slot of :func:`.mu_mimo.multiuser_channel` (each user's n symbols,
``coherence_symbols`` channel uses per H) -> detection with the true H (:mod:`.detection`) ->
the estimate divided by its gain (unbiased; MMSE shrinks the 16-QAM amplitudes) -> hard decisions
(Sionna max-log ``Demapper``: the nearest point). MMSE-SIC cancels each detected user's decided
symbols (the same hard decision, remapped) before detecting the next.

Theory: ZF only (:func:`.mu_mimo.user_ber_theory`, Gamma(Nr - K + 1) post-ZF gain). MMSE's and
SIC's outputs keep non-Gaussian residual interference and error propagation: no closed form here
(``None``); with K = 1 all three are maximum-ratio combining, the ZF theory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .detection import DETECTORS
from .diagnostics import BitErrors, Measured, _sionna_mapping
from .models import make_generator
from .mu_mimo import multiuser_channel, multiuser_receive, user_ber_theory
from .spec import ChannelSpec
from .theory import MODULATIONS

KINDS = ("mu_mimo",)
"""The channel kinds :func:`simulate_multiuser` measures."""


@dataclass
class MultiUserStats:
    """What :func:`simulate_multiuser` reports; ``to_dict()`` is JSON-serializable.

    Attributes:
        kind, snr_db: the channel and its nominal Es/N0 per user (dB, before ``user_gains_db``).
        users, rx_antennas: K and Nr.
        user_gains_db: each user's large-scale gain, dB.
        coherence_symbols: channel uses per H.
        seed: seed of the bits and channel draws.
        symbols: complex symbols per user and modulation.
        ber: detector -> modulation -> one :class:`~.diagnostics.BitErrors` per user (theory: ZF's).
    """

    kind: str
    snr_db: float
    users: int
    rx_antennas: int
    user_gains_db: tuple[float, ...]
    coherence_symbols: int
    seed: int | None
    symbols: int
    ber: dict[str, dict[str, list[BitErrors]]]

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_multiuser(spec: ChannelSpec, symbols: int, modulations: tuple[str, ...] = tuple(MODULATIONS),
                       detectors: tuple[str, ...] = DETECTORS) -> MultiUserStats:
    """Send ``symbols`` random symbols of each modulation from each of the K users of ``spec`` (one
    slot per modulation; bits, noise and H from one generator seeded with ``spec.seed``) and
    count each user's bit errors after each detector (module docstring). ZF is skipped for Nr < K."""
    if spec.kind not in KINDS:
        raise ValueError(f"multi-user diagnostics cover {', '.join(KINDS)}; got {spec.kind!r}")
    spec.validate()
    mapping = _sionna_mapping()
    generator = make_generator(spec.seed)
    zf_served = spec.rx_antennas >= spec.users
    ber: dict[str, dict[str, list[BitErrors]]] = {d: {} for d in detectors if d != "zf" or zf_served}
    for name in modulations:
        width = MODULATIONS[name].bits_per_symbol
        mapper = mapping.Mapper("qam", width, device="cpu")
        demapper = mapping.Demapper("maxlog", "qam", width, hard_out=True, device="cpu")
        bits = torch.randint(0, 2, (spec.users, symbols * width), generator=generator).float()
        output = multiuser_channel(mapper(bits), spec, generator)
        theory = user_ber_theory(name, spec) if zf_served else [None] * spec.users

        def decide(estimates: torch.Tensor) -> torch.Tensor:
            return mapper(demapper(estimates.flatten(), 1.0)).reshape(estimates.shape)

        for detector in ber:
            eq = multiuser_receive(output, detector, decide)
            decided = demapper(eq.symbols / eq.effective_gain, 1.0)
            errors = (decided != bits).sum(-1).tolist()
            ber[detector][name] = [BitErrors(bits.shape[1], e, Measured(e / bits.shape[1],
                                                                        t if detector == "zf" else None))
                                   for e, t in zip(errors, theory)]
    gains = spec.user_gains_db or (0.0,) * spec.users
    return MultiUserStats(spec.kind, spec.snr_db, spec.users, spec.rx_antennas, tuple(gains),
                          min(spec.coherence_symbols, symbols), spec.seed, symbols, ber)
