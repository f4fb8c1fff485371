"""One link, end to end: every channel kind behind two pure functions.

:func:`transmit` (the channel emulator's half) sends (B, n) unit-energy symbols through
the channel of a :class:`~.models.ChannelSpec` and returns a :class:`Transmission`: the
received samples and what the receiver may know of the channel (true gains under perfect
CSI; only received pilots under estimated CSI). :func:`receive` (the receiver's half)
turns a transmission into :class:`~.equalizers.EqualizedSymbols` in the original symbol
order, whatever the channel kind, so the decoders never see the difference.

Channel uses per image, which set the achieved CBR: n for SISO kinds (TDL: n resource
elements), ``ceil(n / Ns)`` for MIMO, plus the pilots when CSI is estimated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .equalizers import EqualizedSymbols, mmse_equalize, per_symbol_gains
from .estimation import ls_estimate, lmmse_estimate, send_pilots
from .mimo import MimoChannelOutput, MimoSpec, feedback_cost, mimo_channel, mimo_receive
from .models import ChannelOutput, ChannelSpec, apply_channel
from .tdl import TDLConfig, apply_tdl_ofdm


@dataclass
class Transmission:
    """The channel emulator's output for (B, n) symbols.

    Attributes:
        siso: SISO received symbols and channel state (``None`` for MIMO). Under
            estimated CSI its ``block_gains`` are ``None`` on the receiver's side: only
            ``received_pilots`` tell the channel.
        mimo: MIMO received signal and channel state (``None`` for SISO kinds).
        received_pilots: (B, n_blocks, Np) complex64 received pilots, or ``None`` (perfect CSI).
        channel_uses: channel uses spent per image (data, pilots).
        feedback_bits: bits fed back to the transmitter per image (MIMO SVD precoding).
    """

    siso: ChannelOutput | None
    mimo: MimoChannelOutput | None
    received_pilots: torch.Tensor | None
    channel_uses: int
    feedback_bits: int = 0


def mimo_spec(spec: ChannelSpec) -> MimoSpec:
    return MimoSpec(spec.tx_antennas, spec.rx_antennas, spec.snr_db, spec.mimo_scheme, spec.coherence_symbols, spec.seed)


def transmit(symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None = None) -> Transmission:
    """Send (B, n) complex symbols of unit mean energy through the channel of ``spec``."""
    n = symbols.shape[1]
    if spec.kind == "mimo":
        mspec = mimo_spec(spec)
        output = mimo_channel(symbols, mspec, generator)
        return Transmission(None, output, None, output.channel_uses, feedback_cost(mspec, n).total_bits)
    if spec.kind == "tdl":
        config = TDLConfig(spec.tdl_model, spec.delay_spread_ns, spec.speed_mps)
        return Transmission(apply_tdl_ofdm(symbols, config, spec.snr_db, spec.seed), None, None, n)
    output = apply_channel(symbols, spec, generator)
    if spec.csi == "perfect":
        return Transmission(output, None, None, n)
    pilots = send_pilots(output, spec.pilots, generator)
    hidden = dataclasses.replace(output, block_gains=None)
    return Transmission(hidden, None, pilots, n + pilots.shape[1] * pilots.shape[2])


def receive(transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
    """(B, n) equalized symbols from a transmission: MMSE (SISO, on estimated gains under
    estimated CSI), SVD combining + MMSE or LMMSE detection (MIMO)."""
    if transmission.mimo is not None:
        return mimo_receive(transmission.mimo, "mmse")
    channel = transmission.siso
    if transmission.received_pilots is not None:
        pilots = transmission.received_pilots
        gains = ls_estimate(pilots) if spec.csi == "ls" else lmmse_estimate(pilots, channel.noise_variance, _prior_k(spec))
        channel = dataclasses.replace(channel, block_gains=gains)
    return mmse_equalize(channel.received, per_symbol_gains(channel), channel.noise_variance)


def _prior_k(spec: ChannelSpec) -> float:
    """The Rician K the LMMSE estimator assumes: the channel's own (AWGN: K = inf)."""
    return {"awgn": float("inf"), "rician": spec.k_factor}.get(spec.kind, 0.0)
