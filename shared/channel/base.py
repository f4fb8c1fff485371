"""The common base of the channel blocks (like Sionna PHY's ``ChannelModel``), and what passes
between the emulator's half and the receiver's half of a link.

A channel kind is one block, a :class:`ChannelKind` subclass in its own file, registered with
``@register_channel_kind`` where it is defined. It validates its parameters (fields of
:class:`~.spec.ChannelSpec`), sends symbols (:meth:`ChannelKind.transmit`, the emulator), turns
what was received back into equalized symbols (:meth:`ChannelKind.receive`, the receiver),
converts its channel state to and from the wire's ``ChannelState`` fields, gives the BER theory
``semcom channel-stats`` prints beside its measurement, and names the separation threshold table
its digital links use. The emulator, the receiver, the CLI's choices and options, the
diagnostics and the separation baseline read the registry (:mod:`.spec`), never a kind's name.

The defaults here serve a single-stream (SISO) kind with perfect CSI: a subclass then only
writes :meth:`~ChannelKind.transmit` (see :mod:`.awgn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..registry import registrar
from ..phy.symbols import pack_complex, unpack_complex
from .equalizers import EqualizedSymbols, mmse_equalize, per_symbol_gains
from .models import ChannelOutput
from .spec import KINDS, ChannelSpec


@dataclass
class Transmission:
    """The channel emulator's output for (B, n) symbols.

    Attributes:
        siso: SISO received symbols and channel state (``None`` for MIMO). Under
            estimated CSI its ``block_gains`` are ``None`` on the receiver's side: only
            ``received_pilots`` tell the channel.
        mimo: MIMO received signal and channel state (:class:`~.mimo.MimoChannelOutput`;
            ``None`` for SISO kinds).
        received_pilots: (B, n_blocks, Np) complex64 received pilots, or ``None`` (perfect CSI).
        channel_uses: channel uses spent per image (data, pilots).
        feedback_bits: bits fed back to the transmitter per image (MIMO SVD precoding).
    """

    siso: ChannelOutput | None
    mimo: Any
    received_pilots: torch.Tensor | None
    channel_uses: int
    feedback_bits: int = 0


@dataclass(frozen=True)
class ChannelOption:
    """A user-facing parameter of a channel kind: the CLI flag and the :class:`~.spec.ChannelSpec`
    field(s) it sets, with its help and choices. A flag of several fields takes one value per
    field or fewer, which set the last fields (``--antennas NT NR`` or ``--antennas NR``); a
    ``many`` flag takes one value or more, the tuple of its one field."""

    flag: str
    fields: tuple[str, ...]
    kind: type
    help: str
    choices: tuple | None = None
    metavar: str | tuple[str, ...] | None = None
    many: bool = False


class ChannelKind:
    """One channel kind (subclasses: one per file). Shapes: symbols (B, n) complex64 of mean
    energy 1; :class:`~.equalizers.EqualizedSymbols` (B, n) in the original symbol order."""

    name: ClassVar[str] = ""
    options: ClassVar[tuple[ChannelOption, ...]] = ()
    """The parameters it reads besides ``snr_db``, ``seed`` and ``csi``."""
    estimated_csi: ClassVar[bool] = False
    """Whether it serves pilot-estimated CSI (``csi`` ``ls``/``lmmse``)."""
    threshold_table: ClassVar[str] = "rayleigh"
    """The table of the separation thresholds (:data:`shared.eval.separation.THRESHOLDS_DB`) its coded
    QAM links choose their scheme from. Only AWGN and Rayleigh (64-symbol blocks, perfect CSI)
    were measured; every other fading kind, and other coherence lengths or estimated CSI, use the
    Rayleigh table as an approximation (conservative for Rician, which fades less; not measured
    for MIMO, TDL, fast fading or pilot CSI)."""
    block_fading: ClassVar[bool] = True
    """Whether ``coherence_symbols`` is one of its parameters (validated >= 1)."""
    shares_slots: ClassVar[bool] = False
    """Whether frames of different users share its channel uses: the channel emulator then groups
    them into slots of ``spec.users`` and sends each slot with :meth:`transmit_slot`."""

    def validate(self, spec: ChannelSpec) -> None:
        """``ValueError`` for a bad parameter of this kind."""
        if self.block_fading and spec.coherence_symbols < 1:
            raise ValueError(f"coherence_symbols must be >= 1, got {spec.coherence_symbols}")

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None) -> Transmission:
        """Send (B, n) complex symbols of unit mean energy; differentiable in ``symbols``."""
        raise NotImplementedError

    def transmit_slot(self, frames: list[torch.Tensor], spec: ChannelSpec,
                      generator: torch.Generator | None) -> list[Transmission]:
        """Send the (n_k,) complex symbols of the users of one slot (a :attr:`shares_slots` kind):
        one :class:`Transmission` per user, each decoded on its own by :meth:`receive`."""
        raise NotImplementedError(f"channel kind {self.name!r} sends every frame alone")

    def receive(self, transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
        """MMSE equalization with the gains the transmission carries (SISO, perfect CSI)."""
        channel = transmission.siso
        return mmse_equalize(channel.received, per_symbol_gains(channel), channel.noise_variance)

    def to_wire(self, transmission: Transmission) -> tuple[torch.Tensor, dict]:
        """One image's transmission -> its received samples (flat complex64) and the wire's
        ``ChannelState`` fields (names of the proto message, values of its types)."""
        siso = transmission.siso
        state = {"channel_uses": transmission.channel_uses, "feedback_bits": transmission.feedback_bits,
                 "noise_variance": siso.noise_variance, "coherence_symbols": siso.coherence_symbols}
        if siso.block_gains is not None:
            state |= {"block_gains": pack_complex(siso.block_gains[0]), "num_blocks": siso.block_gains.shape[1]}
        if transmission.received_pilots is not None:
            blocks, per_block = transmission.received_pilots.shape[1:]
            state |= {"num_blocks": blocks, "pilots_per_block": per_block,
                      "received_pilots": pack_complex(transmission.received_pilots[0].flatten())}
        return siso.received[0], state

    def from_wire(self, samples: bytes, n_symbols: int, state, spec: ChannelSpec) -> Transmission:
        """Inverse of :meth:`to_wire` (``state`` a ``ChannelState`` message; ``ValueError`` on
        inconsistent sizes)."""
        if n_symbols < 1:
            raise ValueError("a frame holds at least one symbol")
        received = unpack_complex(samples, n_symbols)[None]
        coherence = min(state.coherence_symbols or n_symbols, n_symbols)  # one block covers the frame at most
        if (state.block_gains or state.received_pilots) and state.num_blocks != -(-n_symbols // coherence):
            raise ValueError(f"the channel state has {state.num_blocks} blocks; {n_symbols} symbols in blocks of "
                             f"{coherence} need {-(-n_symbols // coherence)}")
        gains = unpack_complex(state.block_gains, state.num_blocks)[None] if state.block_gains else None
        pilots = None
        if state.received_pilots:
            count = state.num_blocks * state.pilots_per_block
            pilots = unpack_complex(state.received_pilots, count).reshape(1, state.num_blocks, state.pilots_per_block)
        siso = ChannelOutput(received, gains, coherence, state.noise_variance)
        return Transmission(siso, None, pilots, state.channel_uses)

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float | None:
        """Uncoded BER of ``modulation`` with the diagnostics' receiver (:mod:`.theory`);
        ``None``: no theory."""
        return None

    def describe(self, spec: ChannelSpec, detector: str = "zf") -> str:
        """A short description of the channel (and of the diagnostics' ``detector`` where it has a
        choice), for titles and tables."""
        return self.name


def register_channel_kind(name: str):
    """Class decorator: register a :class:`ChannelKind` subclass (one instance) as kind ``name``."""
    return registrar(KINDS, name, "channel kind", lambda cls: cls())


def channel_options() -> dict[str, ChannelOption]:
    """Every registered kind's options, once each, by flag (the CLI builds its channel flags from these)."""
    options: dict[str, ChannelOption] = {}
    for block in KINDS.values():
        for option in block.options:
            options.setdefault(option.flag, option)
    return options
