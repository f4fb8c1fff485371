"""One link, end to end: every channel kind behind two pure functions.

:func:`transmit` (the channel emulator's half) sends (B, n) unit-energy symbols through
the channel of a :class:`~.spec.ChannelSpec` and returns a :class:`~.base.Transmission`: the
received samples and what the receiver may know of the channel (true gains under perfect
CSI; only received pilots under estimated CSI). :func:`receive` (the receiver's half)
turns a transmission into :class:`~.equalizers.EqualizedSymbols` in the original symbol
order, whatever the channel kind, so the decoders never see the difference. Both hand the
work to the kind's block (:mod:`.base`; the registry in :mod:`.spec`).

Channel uses per image, which set the achieved CBR: n for SISO kinds (TDL: n resource
elements), ``ceil(n / Ns)`` for MIMO, plus the pilots when CSI is estimated.
"""

from __future__ import annotations

import torch

from .base import Transmission
from .equalizers import EqualizedSymbols
from .spec import ChannelSpec, channel_kind

__all__ = ["Transmission", "receive", "transmit"]


def transmit(symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> Transmission:
    """Send (B, n) complex symbols of unit mean energy through the channel of ``spec``."""
    return channel_kind(spec.kind).transmit(symbols, spec, generator)


def receive(transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
    """(B, n) equalized symbols from a transmission: MMSE (SISO, on estimated gains under
    estimated CSI), SVD combining + MMSE or LMMSE detection (MIMO)."""
    return channel_kind(spec.kind).receive(transmission, spec)
