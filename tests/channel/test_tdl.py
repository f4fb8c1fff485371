"""3GPP TDL channels over OFDM (shared/channel/tdl.py): statistics, determinism, receiver fit."""

from __future__ import annotations

import math

import pytest
import torch

from shared.channel import mmse_equalize, per_symbol_gains
from shared.channel.tdl import TDLConfig, apply_tdl_ofdm

GRID = TDLConfig().grid_symbols  # 72 subcarriers x 14 OFDM symbols = 1008


def qpsk(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    """(batch, n) complex64 QPSK symbols of unit energy."""
    bits = torch.randint(0, 2, (batch, n, 2), generator=torch.Generator().manual_seed(seed)).float()
    return torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)


def grid_gains(config: TDLConfig, batch: int, seed: int, num_grids: int = 1) -> torch.Tensor:
    """(batch, OFDM symbols, subcarriers) frequency responses of ``num_grids`` slots."""
    n = num_grids * config.grid_symbols
    out = apply_tdl_ofdm(torch.ones(batch, n, dtype=torch.complex64), config, 20.0, seed)
    return out.block_gains.reshape(batch, -1, config.fft_size)


def subcarrier_correlation(h: torch.Tensor, shift: int) -> float:
    """|E[H_k conj(H_{k+shift})]| / E|H|^2 within OFDM symbols of (..., subcarriers) ``h``."""
    cross = (h[..., :-shift] * h[..., shift:].conj()).mean()
    return (cross.abs() / h.abs().square().mean()).item()


@pytest.mark.parametrize("model", ["A", "D"])  # a NLoS and a LoS (Rician first tap) profile
def test_average_power_is_one(model):
    # 20000 independent links x 72 subcarriers (one OFDM symbol each: the channel barely
    # changes over a slot); the std of the mean is ~1 %.
    h = grid_gains(TDLConfig(model=model, symbols_per_slot=1), 20000, seed=1)
    assert abs(h.abs().square().mean().item() - 1.0) < 0.05


def test_realized_snr_and_noise_variance():
    x = qpsk(64, GRID)
    out = apply_tdl_ofdm(x, TDLConfig(), 10.0, seed=2)
    assert out.noise_variance == pytest.approx(0.1)
    noise = out.received - out.block_gains * x
    realized_db = -10 * math.log10(noise.abs().square().mean().item())
    assert abs(realized_db - 10.0) < 0.2


def test_layout_order_padding_and_receiver_fit():
    n = GRID + 5  # two grids, the second one almost all padding
    x = qpsk(3, n)
    out = apply_tdl_ofdm(x, TDLConfig(model="C"), 150.0, seed=3)
    assert out.num_grids == 2 and out.coherence_symbols == 1
    assert out.received.shape == out.block_gains.shape == (3, n)
    assert out.received.dtype == out.block_gains.dtype == torch.complex64
    assert torch.equal(per_symbol_gains(out), out.block_gains)
    # Noise-free: each received symbol is its own resource element's gain times itself.
    torch.testing.assert_close(out.received / out.block_gains, x, rtol=0, atol=1e-4)
    # Differentiable in the symbols, as the AWGN/fading channels are.
    xg = x.clone().requires_grad_(True)
    apply_tdl_ofdm(xg, TDLConfig(), 10.0, seed=3).received.abs().square().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad.abs()).all()


def pdp_correlation(config: TDLConfig, shift: int) -> float:
    """Theoretical |sum_m p_m exp(-j 2 pi shift df tau_m)| of Sionna's power delay profile."""
    from sionna.phy.channel.tr38901 import TDL

    tdl = TDL(config.model, config.delay_spread_ns * 1e-9, config.carrier_frequency)
    phase = -2 * math.pi * shift * config.subcarrier_spacing * tdl.delays.double()
    return (tdl.mean_powers.double() * torch.exp(1j * phase)).sum().abs().item()


def test_frequency_selectivity_grows_with_delay_spread():
    short_config, long_config = TDLConfig(delay_spread_ns=30.0), TDLConfig(delay_spread_ns=300.0)
    short = grid_gains(short_config, 2000, seed=4)
    long = grid_gains(long_config, 2000, seed=4)
    # The correlation across subcarriers follows the profile's frequency correlation
    # (TDL-A at 300 ns: 0.84 at 12 subcarriers = 360 kHz, 0.68 at 36 = 1.08 MHz).
    for config, h in ((short_config, short), (long_config, long)):
        for shift in (1, 12, 36):
            assert subcarrier_correlation(h, shift) == pytest.approx(pdp_correlation(config, shift), abs=0.05)
    assert subcarrier_correlation(long, 1) > 0.95 > 0.8 > subcarrier_correlation(long, 36)
    assert subcarrier_correlation(short, 36) > 0.95  # 30 ns: nearly flat over 2.16 MHz
    # Gains vary across the subcarriers of one OFDM symbol, far more for the long spread.
    spread_long = long.abs().std(dim=-1).mean().item()
    spread_short = short.abs().std(dim=-1).mean().item()
    assert spread_long > 0.2 and spread_long > 3 * spread_short


def test_time_variation_grows_with_speed():
    def drift(speed: float) -> tuple[float, float]:
        """E|H(l=13) - H(l=0)|^2 within slot 0, and E|H(l=14) - H(l=13)|^2 across slots 0-1."""
        h = grid_gains(TDLConfig(speed=speed), 500, seed=5, num_grids=2)
        within = (h[:, 13] - h[:, 0]).abs().square().mean().item()
        across = (h[:, 14] - h[:, 13]).abs().square().mean().item()
        return within, across

    static, _ = drift(0.0)
    pedestrian, boundary = drift(3.0)  # 35 Hz Doppler at 3.5 GHz: ~0.005 theory over 13 symbols
    vehicular, _ = drift(100.0)  # 1.17 kHz Doppler: decorrelates within a slot
    assert static < 1e-10
    assert static < pedestrian < 0.02 < 1.0 < vehicular
    assert boundary < pedestrian  # the channel runs on continuously from one slot to the next


def test_same_seed_same_output_and_global_rng_untouched():
    x = qpsk(4, 2 * GRID)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = apply_tdl_ofdm(x, TDLConfig(model="E"), 5.0, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # torch's global generator is left alone
    b = apply_tdl_ofdm(x, TDLConfig(model="E"), 5.0, seed=7)
    c = apply_tdl_ofdm(x, TDLConfig(model="E"), 5.0, seed=8)
    assert torch.equal(a.received, b.received) and torch.equal(a.block_gains, b.block_gains)
    assert not torch.allclose(a.block_gains, c.block_gains)
    assert not torch.allclose(a.received, c.received)
    fresh = [apply_tdl_ofdm(x, TDLConfig(model="E"), 5.0, seed=None).block_gains for _ in range(2)]
    assert not torch.allclose(*fresh)


@pytest.mark.parametrize("model", ["B", "E"])
def test_mmse_mse_matches_theory(model):
    x = qpsk(64, GRID, seed=9)
    out = apply_tdl_ofdm(x, TDLConfig(model=model), 5.0, seed=10)
    eq = mmse_equalize(out.received, per_symbol_gains(out), out.noise_variance)
    mse = (eq.symbols - x).abs().square().mean().item()
    power = out.block_gains.abs().square()
    theory = (out.noise_variance / (power + out.noise_variance)).mean().item()
    assert mse == pytest.approx(theory, rel=0.03)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TDLConfig(model="F"), "unknown TDL profile 'F'; choose one of A, B, C, D, E"),
        (TDLConfig(delay_spread_ns=0.0), "delay_spread_ns must be a finite number > 0"),
        (TDLConfig(speed=-1.0), "speed must be a finite number of m/s >= 0"),
    ],
)
def test_invalid_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        apply_tdl_ofdm(qpsk(1, 8), config, 10.0, seed=0)
