"""Channel models (shared/channel/models.py) and equalizers (shared/channel/equalizers.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.channel import (
    ChannelSpec,
    apply_channel,
    complex_normal,
    make_generator,
    mmse_equalize,
    noise_variance,
    per_symbol_gains,
    zf_equalize,
)

N_LARGE = 1_000_000


def qpsk(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """(batch, n) unit-energy QPSK symbols (|x|^2 = 1 exactly)."""
    gen = make_generator(seed)
    bits = torch.randint(0, 2, (batch, n, 2), generator=gen).float()
    return torch.view_as_complex((2 * bits - 1) / math.sqrt(2))


def db(x: float) -> float:
    return 10.0 * math.log10(x)


def energy(x: torch.Tensor) -> torch.Tensor:
    return x.real**2 + x.imag**2


# --- noise and SNR convention -------------------------------------------------------


def test_noise_variance_convention():
    assert noise_variance(0.0) == pytest.approx(1.0)
    assert noise_variance(10.0) == pytest.approx(0.1)
    assert noise_variance(-3.0) == pytest.approx(10 ** 0.3)


def test_complex_normal_variance_split_equally():
    z = complex_normal((N_LARGE,), 0.5, make_generator(1))
    assert z.dtype == torch.complex64
    assert z.real.var().item() == pytest.approx(0.25, rel=0.01)
    assert z.imag.var().item() == pytest.approx(0.25, rel=0.01)
    assert abs(torch.mean(z.real * z.imag).item()) < 2e-3  # uncorrelated parts


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_awgn_realized_snr_and_noise_split(snr_db):
    x = qpsk(N_LARGE, seed=2)
    out = apply_channel(x, ChannelSpec(kind="awgn", snr_db=snr_db), make_generator(3))
    noise = out.received - x
    realized = db(energy(x).mean().item() / energy(noise).mean().item())
    assert abs(realized - snr_db) < 0.1
    n0 = noise_variance(snr_db)
    assert out.noise_variance == pytest.approx(n0)
    assert out.block_gains is None
    assert noise.real.var().item() == pytest.approx(n0 / 2, rel=0.01)
    assert noise.imag.var().item() == pytest.approx(n0 / 2, rel=0.01)


def test_same_seed_same_channel_different_seed_different_channel():
    x = qpsk(1000)
    spec = ChannelSpec(kind="rayleigh", snr_db=5.0, coherence_symbols=8)
    a = apply_channel(x, spec, make_generator(7))
    b = apply_channel(x, spec, make_generator(7))
    c = apply_channel(x, spec, make_generator(8))
    assert torch.equal(a.received, b.received) and torch.equal(a.block_gains, b.block_gains)
    assert not torch.equal(a.received, c.received)


# --- fading -------------------------------------------------------------------------


def test_rayleigh_power_gain_is_exponential_with_mean_one():
    x = qpsk(N_LARGE, seed=4)
    out = apply_channel(x, ChannelSpec(kind="rayleigh", snr_db=10.0, coherence_symbols=1), make_generator(5))
    assert out.block_gains.shape == (1, N_LARGE)  # coherence 1: one gain per symbol
    power = energy(out.block_gains).flatten()
    assert power.mean().item() == pytest.approx(1.0, abs=0.01)
    for threshold in (0.1, 1.0, 3.0):  # exponential CDF 1 - exp(-t)
        assert (power < threshold).float().mean().item() == pytest.approx(1 - math.exp(-threshold), abs=0.003)
    assert abs(out.block_gains.mean().item()) < 5e-3  # zero-mean: no line of sight


def test_block_fading_gains_constant_within_coherence_block():
    n, coherence = 1000, 64
    x = qpsk(n, seed=6, batch=2)
    spec = ChannelSpec(kind="rayleigh", snr_db=300.0, coherence_symbols=coherence)  # N0 = 1e-30
    out = apply_channel(x, spec, make_generator(7))
    n_blocks = math.ceil(n / coherence)
    assert out.block_gains.shape == (2, n_blocks)
    assert out.coherence_symbols == coherence
    gains = per_symbol_gains(out)
    assert gains.shape == (2, n)
    for block in range(n_blocks):
        chunk = gains[:, block * coherence : (block + 1) * coherence]
        assert torch.equal(chunk, out.block_gains[:, block : block + 1].expand_as(chunk))
    assert (out.block_gains[:, 1:] != out.block_gains[:, :-1]).all()  # consecutive blocks differ
    torch.testing.assert_close(out.received, gains * x)  # noise-free: y = h x


def test_coherence_longer_than_frame_gives_one_block():
    out = apply_channel(qpsk(100), ChannelSpec(kind="rayleigh", coherence_symbols=10_000), make_generator(0))
    assert out.block_gains.shape == (1, 1)
    assert out.coherence_symbols == 100


@pytest.mark.parametrize("k_factor", [1.0, 3.0, 10.0])
def test_rician_k_factor_recovered_by_moments(k_factor):
    out = apply_channel(
        qpsk(200_000, seed=8), ChannelSpec(kind="rician", k_factor=k_factor, coherence_symbols=1), make_generator(9)
    )
    h = out.block_gains.flatten()
    mean = h.mean()
    los_power = energy(mean).item()  # K / (K + 1)
    scattered_power = energy(h - mean).mean().item()  # 1 / (K + 1)
    assert los_power + scattered_power == pytest.approx(1.0, abs=0.01)
    assert los_power / scattered_power == pytest.approx(k_factor, rel=0.05)
    assert abs(mean.imag.item()) < 0.01  # line of sight along the real axis


def test_rician_infinite_k_is_awgn_gain():
    out = apply_channel(qpsk(500), ChannelSpec(kind="rician", k_factor=math.inf), make_generator(0))
    assert torch.equal(out.block_gains, torch.ones_like(out.block_gains))


@pytest.mark.parametrize(
    "spec",
    [
        ChannelSpec(kind="rayleigh", snr_db=10.0, coherence_symbols=16),
        ChannelSpec(kind="rician", snr_db=10.0, k_factor=3.0, coherence_symbols=16),
        ChannelSpec(kind="rician", snr_db=0.0, k_factor=0.0, coherence_symbols=1),
    ],
    ids=["rayleigh", "rician-k3", "rician-k0"],
)
def test_average_received_snr_equals_spec_for_fading(spec):
    x = qpsk(N_LARGE, seed=10)
    out = apply_channel(x, spec, make_generator(11))
    signal = per_symbol_gains(out) * x
    noise = out.received - signal
    realized = db(energy(signal).mean().item() / energy(noise).mean().item())
    assert abs(realized - spec.snr_db) < 0.1


def test_apply_channel_is_differentiable_in_symbols():
    x = qpsk(64).requires_grad_(True)
    out = apply_channel(x, ChannelSpec(kind="rayleigh", coherence_symbols=4), make_generator(0))
    energy(out.received).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        (ChannelSpec(kind="bogus"), "unknown channel kind 'bogus'"),
        (ChannelSpec(snr_db=math.nan), "snr_db must be a finite"),
        (ChannelSpec(snr_db=math.inf), "snr_db must be a finite"),
        (ChannelSpec(kind="rayleigh", snr_db=-math.inf), "snr_db must be a finite"),
        (ChannelSpec(kind="rician", k_factor=-1.0), "K factor must be >= 0"),
        (ChannelSpec(kind="rician", k_factor=math.nan), "K factor must be >= 0"),
        (ChannelSpec(kind="rayleigh", coherence_symbols=0), "coherence_symbols must be >= 1"),
        (ChannelSpec(kind="rician", coherence_symbols=-5), "coherence_symbols must be >= 1"),
        (ChannelSpec(kind="awgn", csi="ls", pilots=5_000_000), "pilots per block must be 1 to 1024"),
        (ChannelSpec(kind="rayleigh", csi="lmmse", pilots=65, coherence_symbols=64), "more than the block's 64"),
    ],
)
def test_validate_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        spec.validate()


def test_validate_error_lists_channel_kinds():
    with pytest.raises(ValueError, match="awgn, rayleigh, rician"):
        ChannelSpec(kind="AWGN ").validate()


@pytest.mark.parametrize(
    "spec",
    [
        ChannelSpec(),
        ChannelSpec(kind="rayleigh", snr_db=-5.0, coherence_symbols=1),
        ChannelSpec(kind="rician", k_factor=math.inf),
        ChannelSpec(kind="awgn", coherence_symbols=0),  # coherence is unused by AWGN
        ChannelSpec(kind="awgn", csi="ls", pilots=1024, coherence_symbols=1),  # one block
    ],
)
def test_validate_accepts_good_specs(spec):
    spec.validate()


# --- equalizers ---------------------------------------------------------------------


def test_mmse_matches_closed_form():
    gen = make_generator(12)
    h = complex_normal((3, 50), 1.0, gen)
    y = complex_normal((3, 50), 1.0, gen)
    n0 = 0.2
    out = mmse_equalize(y, h, n0)
    power = h.abs() ** 2
    torch.testing.assert_close(out.symbols, h.conj() * y / (power + n0))
    torch.testing.assert_close(out.effective_gain, power / (power + n0))
    torch.testing.assert_close(out.effective_noise_variance, power * n0 / (power + n0) ** 2)
    assert out.effective_gain.dtype == torch.float32
    assert out.effective_noise_variance.dtype == torch.float32


def expected_mmse_error_rayleigh(n0: float) -> float:
    """E[N0 / (G + N0)] for G ~ Exp(1), by numerical integration."""
    g = np.linspace(0.0, 40.0, 400_001)
    return float(np.trapezoid(n0 / (g + n0) * np.exp(-g), g))


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_mmse_error_matches_theory_and_beats_zf_over_rayleigh(snr_db):
    x = qpsk(400_000, seed=13)
    out = apply_channel(x, ChannelSpec(kind="rayleigh", snr_db=snr_db, coherence_symbols=1), make_generator(14))
    h, n0 = per_symbol_gains(out), out.noise_variance
    mmse = mmse_equalize(out.received, h, n0)
    mse_mmse = energy(mmse.symbols - x).mean().item()

    assert mse_mmse == pytest.approx((n0 / (energy(h) + n0)).mean().item(), rel=0.01)  # given the realized h
    assert mse_mmse == pytest.approx(expected_mmse_error_rayleigh(n0), rel=0.02)  # averaged over Rayleigh

    # the reported effective model x_hat = g x + w holds empirically
    residual = mmse.symbols - mmse.effective_gain * x
    assert energy(residual).mean().item() == pytest.approx(mmse.effective_noise_variance.mean().item(), rel=0.01)

    zf = zf_equalize(out.received, h, n0)
    mse_zf = energy(zf.symbols - x).mean().item()
    assert mse_mmse < mse_zf


def test_zf_inverts_noise_free_channel_exactly():
    x = qpsk(1000, seed=15, batch=2)
    h = complex_normal((2, 1000), 1.0, make_generator(16))
    out = zf_equalize(h * x, h, 0.0)
    torch.testing.assert_close(out.symbols, x, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.effective_gain, torch.ones(2, 1000))
    assert torch.equal(out.effective_noise_variance, torch.zeros(2, 1000))


def test_zf_noise_variance_is_n0_over_gain():
    h = torch.tensor([[2.0 + 0j, 0.5j, 1.0 - 1.0j]])
    out = zf_equalize(torch.ones_like(h), h, 0.1)
    torch.testing.assert_close(out.effective_noise_variance, torch.tensor([[0.025, 0.4, 0.05]]))


def test_mmse_on_awgn_is_scaled_received():
    x = qpsk(10)
    out = apply_channel(x, ChannelSpec(kind="awgn", snr_db=3.0), make_generator(0))
    gains = per_symbol_gains(out)
    assert torch.equal(gains, torch.ones_like(out.received))
    eq = mmse_equalize(out.received, gains, out.noise_variance)
    torch.testing.assert_close(eq.symbols, out.received / (1 + out.noise_variance))
