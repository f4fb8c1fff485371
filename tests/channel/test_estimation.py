"""Pilot-based SISO channel estimation (shared/channel/estimation.py)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.channel import ChannelSpec, apply_channel, make_generator, noise_variance
from shared.channel.estimation import (
    PilotOverhead,
    estimate_channel,
    lmmse_mse,
    ls_mse,
    pilot_overhead,
    pilot_sequence,
    send_pilots,
)

N_BLOCKS = 100_000  # MSE over this many blocks: relative standard error ~0.3 %


def energy(x: torch.Tensor) -> torch.Tensor:
    return x.real**2 + x.imag**2


def fading(snr_db: float, k_factor: float = 0.0, n_blocks: int = N_BLOCKS, seed: int = 0):
    """A one-symbol-per-block fading ChannelOutput (the data symbols are irrelevant here)."""
    spec = ChannelSpec(kind="rician", snr_db=snr_db, k_factor=k_factor, coherence_symbols=1)
    return apply_channel(torch.zeros((1, n_blocks), dtype=torch.complex64), spec, make_generator(seed))


def estimation_mse(channel, n_pilots: int, method: str, k_factor: float = 0.0, seed: int = 1) -> float:
    estimate = estimate_channel(channel, n_pilots, make_generator(seed), method, k_factor)
    return energy(estimate.block_gains - channel.block_gains).mean().item()


def test_pilots_are_unit_modulus_and_known():
    p = pilot_sequence(8)
    assert p.dtype == torch.complex64 and p.shape == (8,)
    torch.testing.assert_close(energy(p), torch.ones(8))
    assert torch.equal(p, pilot_sequence(8))


def test_received_pilots_follow_block_gains():
    channel = apply_channel(
        torch.zeros((2, 100), dtype=torch.complex64),
        ChannelSpec(kind="rayleigh", snr_db=200.0, coherence_symbols=16),
        make_generator(0),
    )
    y = send_pilots(channel, 4, make_generator(1))
    assert y.shape == (2, 7, 4)
    torch.testing.assert_close(y, channel.block_gains[..., None] * pilot_sequence(4))


@pytest.mark.parametrize("n_pilots", [1, 4, 16])
@pytest.mark.parametrize("snr_db", [-5.0, 5.0, 15.0])
def test_ls_and_lmmse_mse_match_theory_rayleigh(snr_db, n_pilots):
    channel = fading(snr_db)
    n0 = noise_variance(snr_db)
    assert estimation_mse(channel, n_pilots, "ls") == pytest.approx(ls_mse(n0, n_pilots), rel=0.02)
    assert estimation_mse(channel, n_pilots, "lmmse") == pytest.approx(lmmse_mse(n0, n_pilots), rel=0.02)


@pytest.mark.parametrize("k_factor", [1.0, 5.0])
def test_lmmse_mse_matches_theory_rician(k_factor):
    snr_db, n_pilots = 0.0, 2
    channel = fading(snr_db, k_factor)
    expected = lmmse_mse(noise_variance(snr_db), n_pilots, k_factor)
    assert expected < lmmse_mse(noise_variance(snr_db), n_pilots)  # the line of sight helps
    assert estimation_mse(channel, n_pilots, "lmmse", k_factor) == pytest.approx(expected, rel=0.02)


def test_theory_formulas():
    assert ls_mse(0.5, 4) == pytest.approx(0.125)
    assert lmmse_mse(0.5, 4) == pytest.approx(0.125 / 1.125)
    assert lmmse_mse(0.5, 4, k_factor=3.0) == pytest.approx(0.25 * 0.125 / 0.375)
    assert lmmse_mse(0.5, 4, k_factor=math.inf) == 0.0


@pytest.mark.parametrize("snr_db", [-10.0, -5.0, 0.0])
def test_lmmse_beats_ls_at_low_snr(snr_db):
    channel = fading(snr_db, n_blocks=20_000)
    ls, lmmse = (estimation_mse(channel, 2, method) for method in ("ls", "lmmse"))
    assert lmmse < 0.8 * ls


def test_lmmse_approaches_ls_at_high_snr():
    channel = fading(30.0, n_blocks=20_000)
    ls, lmmse = (estimation_mse(channel, 4, method) for method in ("ls", "lmmse"))
    assert lmmse == pytest.approx(ls, rel=0.01)


def test_estimate_keeps_channel_structure_and_awgn_prior_is_exact():
    awgn = apply_channel(torch.zeros((3, 50), dtype=torch.complex64), ChannelSpec(snr_db=0.0), make_generator(0))
    estimate = estimate_channel(awgn, 4, make_generator(1), "lmmse", k_factor=math.inf)
    assert estimate.block_gains.shape == (3, 1)
    torch.testing.assert_close(estimate.block_gains, torch.ones((3, 1), dtype=torch.complex64))
    assert torch.equal(estimate.received, awgn.received) and estimate.coherence_symbols == awgn.coherence_symbols
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate_channel(awgn, 4, make_generator(1), "ml")


@pytest.mark.parametrize(
    "n, coherence, n_pilots, expected",
    [
        (1000, 64, 4, PilotOverhead(4, 16, 64, 64 / 1064, 1064 / 1000)),
        (1000, 5000, 2, PilotOverhead(2, 1, 2, 2 / 1002, 1002 / 1000)),
        (768, 1, 1, PilotOverhead(1, 768, 768, 0.5, 2.0)),
    ],
)
def test_pilot_overhead(n, coherence, n_pilots, expected):
    assert pilot_overhead(n, coherence, n_pilots) == expected
