"""Frequency-selective 3GPP TR 38.901 TDL channels over OFDM, generated with Sionna PHY.

The (B, n) complex symbols of an image are laid onto ``num_grids`` consecutive OFDM
resource grids (slots) of ``fft_size`` subcarriers x ``symbols_per_slot`` OFDM symbols,
frequency first (symbol ``i`` goes to OFDM symbol ``i // fft_size``, subcarrier
``i % fft_size``), the tail of the last grid zero-padded. Each batch row is one link whose
channel evolves continuously over its slots (Doppler from ``speed``); rows are independent.
Sionna's :class:`~sionna.phy.channel.tr38901.TDL` draws the taps and
:func:`~sionna.phy.channel.cir_to_ofdm_channel` turns them into the frequency response
``H[l, k]`` of every resource element. The cyclic prefix is taken longer than the largest
tap delay, so there is no inter-symbol interference and each resource element sees the
flat channel ``y = H[l, k] x + n`` with ``n ~ CN(0, N0)`` (the SNR convention of
:mod:`.models`, applied by :class:`~sionna.phy.channel.ApplyOFDMChannel`).

Normalization: Sionna normalizes the power delay profile to total power 1 (LoS power
included for TDL-D/E) and every sum-of-sinusoids tap to unit mean power, so
``E|H|^2 = 1`` per resource element already; no further scaling is applied (a
per-grid normalization would remove the slow fading of narrow grids).
"""

from __future__ import annotations

import functools
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .base import ChannelKind, ChannelOption, Transmission, register_channel_kind
from .models import ChannelOutput, noise_variance
from .spec import ChannelSpec
from .theory import ber_rayleigh, ber_rician

TDL_MODELS = ("A", "B", "C", "D", "E")

# Sionna draws from one global generator per device (sionna.phy.config.torch_rng); a seeded
# call reseeds it and restores its state afterwards, under this lock.
_SIONNA_RNG_LOCK = threading.Lock()


@dataclass(frozen=True)
class TDLConfig:
    """A 3GPP TDL channel and the OFDM numerology it is sampled on.

    Attributes:
        model: TDL profile, one of :data:`TDL_MODELS` (D and E have a line-of-sight tap).
        delay_spread_ns: RMS delay spread, ns (scales the profile's normalized delays).
        speed: UE speed, m/s; the maximum Doppler shift is ``speed * carrier_frequency / c``.
        carrier_frequency: Hz.
        subcarrier_spacing: Hz.
        fft_size: subcarriers per OFDM symbol, all carrying data (72 = 6 resource blocks).
        symbols_per_slot: OFDM symbols per resource grid.
    """

    model: str = "A"
    delay_spread_ns: float = 300.0
    speed: float = 3.0
    carrier_frequency: float = 3.5e9
    subcarrier_spacing: float = 30e3
    fft_size: int = 72
    symbols_per_slot: int = 14

    def validate(self) -> None:
        """Raise ``ValueError`` with a message a user can act on."""
        if self.model not in TDL_MODELS:
            raise ValueError(f"unknown TDL profile {self.model!r}; choose one of {', '.join(TDL_MODELS)}")
        positive = ("delay_spread_ns", "carrier_frequency", "subcarrier_spacing", "fft_size", "symbols_per_slot")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TDL {name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.speed) and self.speed >= 0):
            raise ValueError(f"TDL speed must be a finite number of m/s >= 0, got {self.speed}")

    @property
    def grid_symbols(self) -> int:
        """Resource elements (complex symbols) per resource grid."""
        return self.fft_size * self.symbols_per_slot


@dataclass
class TDLChannelOutput(ChannelOutput):
    """:class:`ChannelOutput` with per-symbol gains (``coherence_symbols`` = 1).

    Attributes:
        num_grids: OFDM resource grids (slots) the n symbols occupied.
    """

    num_grids: int


def _sionna():
    """Import Sionna PHY lazily (a few seconds); the import reseeds torch's global
    generators, so their states are restored around it."""
    with torch.random.fork_rng():
        import sionna.phy.channel as channel
        import sionna.phy.channel.tr38901 as tr38901
        import sionna.phy.ofdm as ofdm
        from sionna.phy import config
    return config, channel, tr38901, ofdm


@contextmanager
def _seeded(generator: torch.Generator, seed: int | None):
    """Run Sionna's ``generator`` from ``seed`` (as is when ``None``), restoring its state after."""
    if seed is None:
        yield
        return
    with _SIONNA_RNG_LOCK:
        state = generator.get_state()
        generator.manual_seed(int(seed))
        try:
            yield
        finally:
            generator.set_state(state)


def apply_tdl_ofdm(symbols: torch.Tensor, config: TDLConfig, snr_db: float, seed: int | None) -> TDLChannelOutput:
    """Pass (B, n) complex symbols of unit mean energy through a TDL channel over OFDM.

    Args:
        symbols: (B, n) complex64, E|x|^2 = 1.
        config: the TDL profile and OFDM numerology.
        snr_db: Es/N0 per complex symbol, dB (average over the fading, as E|H|^2 = 1).
        seed: seed of the channel and noise draws; ``None`` draws fresh randomness.

    Returns:
        received (B, n) complex64 in the order of ``symbols``; ``block_gains`` the (B, n)
        complex64 frequency response of each symbol's resource element (perfect CSI) with
        ``coherence_symbols`` = 1; ``noise_variance`` N0; ``num_grids``.
        Differentiable in ``symbols``.
    """
    config.validate()
    sionna_config, channel, tr38901, ofdm = _sionna()
    batch, n = symbols.shape
    dev = symbols.device
    device = str(dev) if dev.type == "cpu" or dev.index is not None else f"{dev.type}:{torch.cuda.current_device()}"
    num_grids = max(1, -(-n // config.grid_symbols))

    tdl = tr38901.TDL(
        config.model,
        delay_spread=config.delay_spread_ns * 1e-9,
        carrier_frequency=config.carrier_frequency,
        min_speed=config.speed,
        precision="single",
        device=device,
    )
    bandwidth = config.fft_size * config.subcarrier_spacing
    grid = ofdm.ResourceGrid(
        num_ofdm_symbols=config.symbols_per_slot * num_grids,  # the slots back to back
        fft_size=config.fft_size,
        subcarrier_spacing=config.subcarrier_spacing,
        cyclic_prefix_length=math.ceil(float(tdl.delays.max()) * bandwidth),  # samples >= largest delay
        precision="single",
        device=device,
    )
    n0 = noise_variance(snr_db)
    # x: (B, num_tx=1, num_tx_ant=1, OFDM symbols, subcarriers), zero-padded tail
    x = torch.nn.functional.pad(symbols, (0, num_grids * config.grid_symbols - n))
    x = x.reshape(batch, 1, 1, grid.num_ofdm_symbols, config.fft_size)
    with _seeded(sionna_config.torch_rng(device), seed):
        # h_freq: (B, num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, OFDM symbols, subcarriers)
        h_freq = channel.GenerateOFDMChannel(tdl, grid, precision="single", device=device)(batch)
        y = channel.ApplyOFDMChannel(precision="single", device=device)(x, h_freq, n0)
    received = y.reshape(batch, -1)[:, :n]
    gains = h_freq.reshape(batch, -1)[:, :n]
    return TDLChannelOutput(received, gains, 1, n0, num_grids)


@functools.lru_cache(maxsize=None)
def tdl_k_factor(model: str) -> float:
    """Rician K of the per-resource-element gain of 3GPP TDL ``model`` (:mod:`.diagnostics` docstring): the
    line-of-sight power over all scattered power, from the profile Sionna loads (the one
    :func:`apply_tdl_ofdm` simulates); 0 for the NLOS profiles A, B, C. Imports Sionna on first use."""
    with torch.random.fork_rng():  # importing Sionna reseeds torch's global generators
        import sionna.phy.channel.tr38901 as tr38901
    config = TDLConfig(model)
    config.validate()
    tdl = tr38901.TDL(model, delay_spread=config.delay_spread_ns * 1e-9,
                      carrier_frequency=config.carrier_frequency, device="cpu")
    if not tdl.los:
        return 0.0
    los = float(tdl.mean_power_los)
    return los / (float(tdl.mean_powers.double().sum()) - los)


@register_channel_kind("tdl")
class TDL(ChannelKind):
    """``tdl``: 3GPP TDL-A..E over OFDM (module docstring). Inputs: (B, n) complex64 symbols.
    Outputs: (B, n) received and (B, n) per-resource-element gains (perfect CSI); the receiver
    equalizes per resource element (MMSE)."""

    options = (ChannelOption("--tdl-model", ("tdl_model",), str, "3GPP TDL profile", choices=TDL_MODELS),
               ChannelOption("--delay-spread", ("delay_spread_ns",), float, "TDL RMS delay spread in ns",
                             metavar="NS"),
               ChannelOption("--speed", ("speed_mps",), float, "TDL terminal speed in m/s",
                             metavar="MPS"))

    def validate(self, spec: ChannelSpec) -> None:
        super().validate(spec)
        TDLConfig(spec.tdl_model, spec.delay_spread_ns, spec.speed_mps).validate()

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None) -> Transmission:
        """Sionna draws the channel from ``spec.seed`` (not ``generator``)."""
        config = TDLConfig(spec.tdl_model, spec.delay_spread_ns, spec.speed_mps)
        return Transmission(apply_tdl_ofdm(symbols, config, spec.snr_db, spec.seed), None, None, symbols.shape[1])

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float:
        """Rayleigh for the NLOS profiles, Rician with the profile's K for D and E."""
        k = tdl_k_factor(spec.tdl_model)
        return ber_rayleigh(modulation, spec.snr_db) if k == 0.0 else ber_rician(modulation, spec.snr_db, k)

    def describe(self, spec: ChannelSpec, detector: str = "zf") -> str:
        return f"tdl TDL-{spec.tdl_model}, delay spread {spec.delay_spread_ns:g} ns, {spec.speed_mps:g} m/s"
