"""``mu_mimo``: K single-antenna users share the channel uses of a slot; a receiver with Nr
antennas separates them (the multi-user uplink of paper 002's MU-GSC: K = 3, Nr = 3).

Slots: the (B, n) symbol rows handed to :meth:`MultiUserMIMO.transmit` are grouped K at a time,
rows ``i K .. i K + K - 1`` (users 0 .. K-1) superposed in slot ``i`` (B must be a multiple of K);
user k sends its symbol ``t`` in channel use ``t`` of the slot, so every user spends n channel
uses, as over SISO. :meth:`MultiUserMIMO.transmit_slot` zero-pads shorter frames to the slot's
length; the padding carries no energy and is not counted in that user's channel uses
(:func:`user_transmissions`).

Channel, per slot and coherence block of ``coherence_symbols`` channel uses (the last block may
be shorter): ``y_t = sum_k sqrt(a_k) h_k s_{k,t} + n_t`` with ``h_k`` (Nr,) i.i.d. CN(0, 1)
independent across users, blocks and slots, ``a_k = 10 ** (user_gains_db[k] / 10)`` the user's
large-scale gain, and ``n_t ~ CN(0, N0 I)``. SNR convention of :mod:`.models` per user: every
user's symbols have unit mean energy (its transmitter normalizes them as over any channel),
``N0 = 10 ** (-snr_db / 10)``, so user k's mean Es/N0 per receive antenna is
``snr_db + user_gains_db[k]`` dB, and each antenna sees mean energy ``sum_k a_k + N0``.
Draw order (what a seed reproduces): the (S, n, Nr) noise, then the (S, n_blocks, Nr, K) H.

Receiver (perfect CSI): per block the ZF or MMSE detection of :mod:`.detection`, giving each user
its symbols with per-symbol gain and noise-plus-interference variance
(:class:`~.equalizers.EqualizedSymbols`), so that every decoder mode starts from its own noise
level. K = 1 is maximum-ratio combining (SIMO).

BER theory of ZF with i.i.d. Rayleigh: user k's post-ZF SNR is ``a_k (Es/N0) / [(H^H H)^-1]_kk``
with ``1 / [(H^H H)^-1]_kk ~ Gamma(Nr - K + 1, 1)`` (:func:`.theory.ber_gamma`).

Services: the channel emulator superposes the frames of up to K users arriving within a window
(:meth:`MultiUserMIMO.transmit_slot`); every user's frame then carries the whole slot (its samples,
``channel_matrices`` of Nr x K, ``tx_antennas`` = K) and its column ``slot_user``, and the receiver
separates the slot when it equalizes that frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .base import ChannelKind, ChannelOption, Transmission, register_channel_kind
from .detection import detect
from .equalizers import EqualizedSymbols
from .flat import COHERENCE
from .mimo import ANTENNAS
from .models import complex_normal, noise_variance
from .spec import ChannelSpec
from .theory import ber_gamma
from ..phy.symbols import pack_complex, unpack_complex

MULTIUSER_DETECTORS = ("zf", "mmse")
"""The receivers :meth:`MultiUserMIMO.receive` serves (analog symbols: no SIC, :mod:`.detection`)."""


@dataclass
class MultiUserOutput:
    """Received slots and the channel state the receiver knows (perfect CSI).

    Attributes:
        received: (S, n, Nr) complex64 received signal of S slots of n channel uses.
        channel: (S, n_blocks, Nr, K) complex64 ``sqrt(a_k) h_k`` of every coherence block
            (large-scale gains included).
        coherence_uses: channel uses per block (the last block may be shorter).
        noise_variance: N0 per receive antenna and channel use.
        user: the one user (column of ``channel``) a per-user view is for (S = 1), or ``None``:
            every user of every slot.
        n_symbols: symbols the receiver returns per user (a per-user view: that user's own, the
            zero-padding of the slot left out).
    """

    received: torch.Tensor
    channel: torch.Tensor
    coherence_uses: int
    noise_variance: float
    user: int | None
    n_symbols: int

    @property
    def users(self) -> int:
        """Users K per slot."""
        return self.channel.shape[-1]


def user_gains(spec: ChannelSpec) -> torch.Tensor:
    """(K,) float32 linear large-scale power gains ``a_k`` of a ``mu_mimo`` spec."""
    gains_db = spec.user_gains_db or (0.0,) * spec.users
    return torch.tensor([10.0 ** (g / 10.0) for g in gains_db], dtype=torch.float32)


def multiuser_channel(symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> MultiUserOutput:
    """Superpose (B, n) complex symbol rows of unit mean energy, K per slot (module docstring);
    differentiable in ``symbols``."""
    batch, n = symbols.shape
    k, n_rx = spec.users, spec.rx_antennas
    if batch % k:
        raise ValueError(f"mu_mimo groups {k} users per slot: the batch of {batch} rows is not a multiple of {k}")
    slots = batch // k
    coherence = min(spec.coherence_symbols, n)
    blocks = -(-n // coherence)
    n0 = noise_variance(spec.snr_db)
    noise = complex_normal((slots, n, n_rx), n0, generator, symbols.device)
    h = complex_normal((slots, blocks, n_rx, k), 1.0, generator, symbols.device)
    h = h * user_gains(spec).to(symbols.device).sqrt()
    s = F.pad(symbols.reshape(slots, k, n).transpose(1, 2), (0, 0, 0, blocks * coherence - n))
    y = s.reshape(slots, blocks, coherence, k) @ h.transpose(-1, -2)
    return MultiUserOutput(y.reshape(slots, blocks * coherence, n_rx)[:, :n] + noise, h, coherence, n0, None, n)


def multiuser_receive(output: MultiUserOutput, detector: str,
                      decide: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EqualizedSymbols:
    """Separate the users of every slot with ``detector`` (:data:`.detection.DETECTORS`; ``decide``
    for ``mmse_sic``, :func:`.detection.detect`): (S K, n) rows in the order of
    :func:`multiuser_channel`'s input, or the (1, n_symbols) row of a per-user view."""
    slots, uses, n_rx = output.received.shape
    blocks, coherence, k = output.channel.shape[1], output.coherence_uses, output.users
    y = F.pad(output.received, (0, 0, 0, blocks * coherence - uses)).reshape(slots, blocks, coherence, n_rx)
    symbols, gain, variance = detect(y, output.channel, output.noise_variance, detector, decide)
    per_symbol = [t.reshape(slots, blocks * coherence, k)[:, :uses].transpose(1, 2)
                  for t in (symbols, gain[:, :, None, :].expand(symbols.shape),
                            variance[:, :, None, :].expand(symbols.shape))]
    if output.user is not None:
        return EqualizedSymbols(*(t[:, output.user, : output.n_symbols] for t in per_symbol))
    return EqualizedSymbols(*(t.reshape(slots * k, uses) for t in per_symbol))


def user_transmissions(transmission: Transmission, n_symbols: list[int]) -> list[Transmission]:
    """One :class:`~.base.Transmission` per input row of a ``mu_mimo`` transmission (user k of slot
    i at ``i K + k``), for decoding each user's frame on its own: its slot, its index in it and its
    own ``n_symbols`` (its frame before zero-padding, also its channel uses)."""
    output = transmission.mimo
    views = []
    for row, n in enumerate(n_symbols):
        slot, user = divmod(row, output.users)
        view = dataclasses.replace(output, received=output.received[slot : slot + 1],
                                   channel=output.channel[slot : slot + 1], user=user, n_symbols=n)
        views.append(Transmission(None, view, None, n))
    return views


@register_channel_kind("mu_mimo")
class MultiUserMIMO(ChannelKind):
    """``mu_mimo``: K single-antenna users per slot, Nr receive antennas, i.i.d. Rayleigh block
    fading per user, ZF or MMSE detection (module docstring). Inputs: (B, n) complex64 symbols,
    B a multiple of K. Outputs: (S, n, Nr) received per slot and (S, n_blocks, Nr, K) H; the
    receiver's (B, n) separated symbols, one row per user."""

    shares_slots = True
    options = (ChannelOption("--users", ("users",), int, "users K sharing a slot (single antenna each)", metavar="K"),
               ANTENNAS,
               ChannelOption("--user-gains", ("user_gains_db",), float,
                             "large-scale gain of each user of a slot, dB (default 0 dB each)", metavar="DB",
                             many=True),
               ChannelOption("--multiuser-detector", ("multiuser_detector",), str,
                             "multi-user detection: zf (needs NR >= K) or mmse", choices=MULTIUSER_DETECTORS),
               COHERENCE)

    def validate(self, spec: ChannelSpec) -> None:
        super().validate(spec)
        if spec.users < 1 or spec.rx_antennas < 1:
            raise ValueError(f"users and receive antennas must be >= 1, got {spec.users} and {spec.rx_antennas}")
        if spec.multiuser_detector not in MULTIUSER_DETECTORS:
            raise ValueError(f"unknown multi-user detector {spec.multiuser_detector!r}; "
                             f"choose one of {', '.join(MULTIUSER_DETECTORS)}")
        if spec.multiuser_detector == "zf" and spec.rx_antennas < spec.users:
            raise ValueError(f"zero-forcing needs at least as many receive antennas as users, "
                             f"got {spec.rx_antennas} for {spec.users}")
        if spec.user_gains_db and len(spec.user_gains_db) != spec.users:
            raise ValueError(f"give one large-scale gain per user: {len(spec.user_gains_db)} for {spec.users} users")
        if not all(math.isfinite(g) for g in spec.user_gains_db):
            raise ValueError(f"user gains must be finite numbers of dB, got {spec.user_gains_db}")

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None) -> Transmission:
        """K rows per slot superposed; each user spends n channel uses."""
        output = multiuser_channel(symbols, spec, generator)
        return Transmission(None, output, None, symbols.shape[1])

    def receive(self, transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
        """The spec's ``multiuser_detector`` on every slot."""
        return multiuser_receive(transmission.mimo, spec.multiuser_detector)

    def transmit_slot(self, frames: list[torch.Tensor], spec: ChannelSpec,
                      generator: torch.Generator | None) -> list[Transmission]:
        """The users' (n_k,) frames zero-padded to the longest and superposed (``spec.users`` of
        them); each user's view counts its own n_k channel uses (:func:`user_transmissions`)."""
        lengths = [frame.numel() for frame in frames]
        stacked = torch.stack([F.pad(frame, (0, max(lengths) - n)) for frame, n in zip(frames, lengths)])
        return user_transmissions(self.transmit(stacked, spec, generator), lengths)

    def to_wire(self, transmission: Transmission) -> tuple[torch.Tensor, dict]:
        """One user's view of one slot: the whole slot's samples and H, and the user's column."""
        output = transmission.mimo
        if output.received.shape[0] != 1 or (output.user is None and output.users != 1):
            raise ValueError("the wire carries one user's view of one mu_mimo slot (user_transmissions)")
        state = {"channel_uses": transmission.channel_uses, "noise_variance": output.noise_variance,
                 "coherence_symbols": output.coherence_uses, "num_blocks": output.channel.shape[1],
                 "rx_antennas": output.channel.shape[-2], "tx_antennas": output.users, "slot_user": output.user or 0,
                 "channel_matrices": pack_complex(output.channel[0].flatten())}
        return output.received[0].flatten(), state

    def from_wire(self, samples: bytes, n_symbols: int, state, spec: ChannelSpec) -> Transmission:
        blocks, n_rx, users = state.num_blocks, state.rx_antennas, state.tx_antennas or 1
        uses = len(samples) // (8 * n_rx) if n_rx else 0
        if state.slot_user >= users or uses < n_symbols:
            raise ValueError(f"mu_mimo state of user {state.slot_user} of {users}, {uses} channel uses, does not "
                             f"fit a frame of {n_symbols} symbols")
        h = unpack_complex(state.channel_matrices, blocks * n_rx * users).reshape(1, blocks, n_rx, users)
        received = unpack_complex(samples, uses * n_rx).reshape(1, uses, n_rx)
        output = MultiUserOutput(received, h, state.coherence_symbols, state.noise_variance, state.slot_user, n_symbols)
        return Transmission(None, output, None, state.channel_uses)

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float | None:
        """ZF detection's BER averaged over the users (Gamma(Nr - K + 1), module docstring); ``None``
        for Nr < K."""
        return sum(user_ber_theory(modulation, spec)) / spec.users if spec.rx_antennas >= spec.users else None

    def describe(self, spec: ChannelSpec, detector: str = "zf") -> str:
        return f"mu_mimo {spec.users} users x {spec.rx_antennas} antennas ({detector.upper()} detection)"


def user_ber_theory(modulation: str, spec: ChannelSpec) -> list[float]:
    """Uncoded BER of ``modulation`` of each user after ZF detection (Nr >= K): the Gamma(Nr - K + 1)
    closed form at the user's mean Es/N0 ``snr_db + user_gains_db[k]``."""
    gains_db = spec.user_gains_db or (0.0,) * spec.users
    return [ber_gamma(modulation, spec.snr_db + g, spec.rx_antennas - spec.users + 1) for g in gains_db]
