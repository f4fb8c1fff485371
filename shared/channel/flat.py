"""The common base of the flat (single-tap) SISO kinds ``awgn``, ``rayleigh`` and ``rician``:
``y = h x + n`` with one gain ``h`` per coherence block, perfect or pilot-estimated CSI.

Draw order (what a seed reproduces): the (B, n) noise first, then the (B, n_blocks) gains; the
pilots (estimated CSI, :mod:`.estimation`) after both.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import ChannelKind, ChannelOption, Transmission
from .equalizers import EqualizedSymbols, mmse_equalize, per_symbol_gains
from .estimation import lmmse_estimate, ls_estimate, send_pilots
from .models import ChannelOutput, complex_normal, expand_blocks, noise_variance
from .spec import CSI_MODES, ChannelSpec, channel_kind

COHERENCE = ChannelOption("--coherence", ("coherence_symbols",), int,
                          "block-fading length in symbols, MIMO: channel uses; 1 is fast fading", metavar="N")
CSI = ChannelOption("--csi", ("csi",), str, "receiver's channel knowledge for flat SISO kinds: perfect, or ls/lmmse "
                    "estimates from pilots (paid in channel uses)", choices=CSI_MODES)
PILOTS = ChannelOption("--pilots", ("pilots",), int, "pilots per coherence block (estimated CSI)", metavar="N")


def rician_gains(k_factor: float, batch: int, n_blocks: int, generator, device=None) -> torch.Tensor:
    """(batch, n_blocks) complex64 gains with E|h|^2 = 1 (paper 003 eq. 16):
    ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) * CN(0, 1)``; K = 0 is Rayleigh, K = inf is h = 1 (no draw)."""
    if math.isinf(k_factor):
        return torch.ones((batch, n_blocks), dtype=torch.complex64, device=device)
    los = math.sqrt(k_factor / (k_factor + 1.0))
    scattered = complex_normal((batch, n_blocks), 1.0 / (k_factor + 1.0), generator, device)
    return scattered + los


class FlatChannelKind(ChannelKind):
    """A flat SISO kind: block fading with Rician K :meth:`k_factor` (the LMMSE estimator's prior too)."""

    options = (COHERENCE, CSI, PILOTS)
    estimated_csi = True

    def k_factor(self, spec: ChannelSpec) -> float:
        """The Rician K of its gains (linear; inf: no fading)."""
        raise NotImplementedError

    def apply(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> ChannelOutput:
        """(B, n) complex symbols of unit mean energy -> :class:`~.models.ChannelOutput` with the
        (B, n_blocks) gains; differentiable in ``symbols``."""
        batch, n = symbols.shape
        n0 = noise_variance(spec.snr_db)
        noise = complex_normal((batch, n), n0, generator, symbols.device)
        coherence = min(spec.coherence_symbols, n)
        n_blocks = -(-n // coherence)
        gains = rician_gains(self.k_factor(spec), batch, n_blocks, generator, symbols.device)
        received = expand_blocks(gains, coherence, n) * symbols + noise
        return ChannelOutput(received, gains, coherence, n0)

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None) -> Transmission:
        """Perfect CSI: the gains travel with the samples; estimated: only the received pilots
        (``spec.pilots`` per block, paid in channel uses)."""
        n = symbols.shape[1]
        output = self.apply(symbols, spec, generator)
        if spec.csi == "perfect":
            return Transmission(output, None, None, n)
        pilots = send_pilots(output, spec.pilots, generator)
        hidden = dataclasses.replace(output, block_gains=None)
        return Transmission(hidden, None, pilots, n + pilots.shape[1] * pilots.shape[2])

    def receive(self, transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
        """MMSE on the true gains, or on their LS / LMMSE estimates from the received pilots."""
        channel = transmission.siso
        if transmission.received_pilots is not None:
            pilots = transmission.received_pilots
            gains = (ls_estimate(pilots) if spec.csi == "ls"
                     else lmmse_estimate(pilots, channel.noise_variance, self.k_factor(spec)))
            channel = dataclasses.replace(channel, block_gains=gains)
        return mmse_equalize(channel.received, per_symbol_gains(channel), channel.noise_variance)


def apply_channel(symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> ChannelOutput:
    """Pass (B, n) complex symbols of unit mean energy through the flat channel of ``spec``
    (:meth:`FlatChannelKind.apply`); differentiable in ``symbols`` (used in training as in the emulator)."""
    block = channel_kind(spec.kind)
    if not isinstance(block, FlatChannelKind):
        raise ValueError(f"apply_channel serves flat SISO kinds; use link.transmit for {spec.kind!r}")
    return block.apply(symbols, spec, generator)
