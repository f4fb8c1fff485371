"""MIMO channel, SVD precoding and open-loop detection (shared/channel/mimo.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.channel import ChannelSpec, apply_channel, complex_normal, make_generator, mmse_equalize, noise_variance
from shared.channel.equalizers import per_symbol_gains
from shared.channel.mimo import (
    FeedbackCost,
    MimoSpec,
    feedback_cost,
    mimo_channel,
    mimo_layout,
    mimo_receive,
)


def gaussian(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """(batch, n) CN(0, 1) symbols: unit mean energy, all distinct."""
    return complex_normal((batch, n), 1.0, make_generator(seed))


def energy(x: torch.Tensor) -> torch.Tensor:
    return x.real**2 + x.imag**2


def stream_view(t: torch.Tensor, streams: int) -> torch.Tensor:
    """(B, n) stream-ordered symbols, n a multiple of Ns -> (B, channel_uses, Ns)."""
    return t.reshape(t.shape[0], -1, streams)


# --- layout and cost accounting ------------------------------------------------------


@pytest.mark.parametrize(
    "spec, streams, uses, coherence, blocks",
    [
        (MimoSpec(n_tx=4, n_rx=2, scheme="svd", coherence_uses=16), 2, 501, 16, 32),
        (MimoSpec(n_tx=2, n_rx=4, scheme="svd", coherence_uses=16), 2, 501, 16, 32),
        (MimoSpec(n_tx=4, n_rx=2, scheme="open_loop", coherence_uses=16), 4, 251, 16, 16),
        (MimoSpec(n_tx=3, n_rx=3, scheme="open_loop", coherence_uses=10_000), 3, 334, 334, 1),
    ],
)
def test_layout_counts_channel_uses_and_blocks(spec, streams, uses, coherence, blocks):
    n = 1001  # not a multiple of any Ns: the last channel use is zero-padded
    layout = mimo_layout(spec, n)
    assert (layout.n_streams, layout.channel_uses, layout.coherence_uses, layout.n_blocks) == (
        streams,
        uses,
        coherence,
        blocks,
    )
    out = mimo_channel(gaussian(n, batch=2), spec, make_generator(0))
    assert out.received.shape == (2, uses, spec.n_rx)
    assert out.channel_uses == uses == math.ceil(n / streams)
    assert out.state.channel.shape == (2, blocks, spec.n_rx, spec.n_tx)
    assert out.state.coherence_uses == coherence


def test_feedback_cost_of_svd_and_open_loop():
    spec = MimoSpec(n_tx=4, n_rx=2, scheme="svd", coherence_uses=16)
    cost = feedback_cost(spec, 1000)  # 500 uses -> 32 blocks; V is 4 x 2
    assert cost == FeedbackCost(n_blocks=32, complex_per_block=8, bits_per_real=32)
    assert cost.bits_per_block == 8 * 2 * 32
    assert cost.total_bits == 32 * 512
    assert feedback_cost(spec, 1000, bits_per_real=4).total_bits == 32 * 8 * 2 * 4
    open_loop = feedback_cost(MimoSpec(n_tx=4, n_rx=2, scheme="open_loop"), 1000)
    assert open_loop.total_bits == 0


@pytest.mark.parametrize("scheme", ["svd", "open_loop"])
def test_receive_antenna_energy_follows_convention(scheme):
    """Unit-energy data symbols: each receive antenna sees Nt + N0 per channel use."""
    spec = MimoSpec(n_tx=3, n_rx=2, snr_db=5.0, scheme=scheme, coherence_uses=1)
    out = mimo_channel(gaussian(120_000, seed=1), spec, make_generator(2))
    assert energy(out.received).mean().item() == pytest.approx(3 + noise_variance(5.0), rel=0.02)


# --- SVD precoding ------------------------------------------------------------------


@pytest.mark.parametrize("n_tx, n_rx", [(2, 2), (4, 2), (2, 3)])
def test_svd_state_matches_numpy_svd(n_tx, n_rx):
    spec = MimoSpec(n_tx=n_tx, n_rx=n_rx, scheme="svd", coherence_uses=4)
    state = mimo_channel(gaussian(400, batch=3), spec, make_generator(3)).state
    h = state.channel.numpy()
    np.testing.assert_allclose(state.singular_values.numpy(), np.linalg.svd(h, compute_uv=False), rtol=1e-5, atol=1e-6)
    # U^H H H^H U = Σ^2: the combiner diagonalizes the channel
    u = state.combiner
    gram = u.mH @ state.channel @ state.channel.mH @ u
    torch.testing.assert_close(gram, torch.diag_embed(state.singular_values**2).to(gram.dtype), rtol=1e-4, atol=1e-5)


def test_svd_subchannel_snr_is_sigma_squared_over_n0():
    """Measured on the combined symbols r = U^H y = Σ s + n': gain σ_i and noise N0 per stream."""
    snr_db, streams = 10.0, 2
    spec = MimoSpec(n_tx=4, n_rx=2, snr_db=snr_db, scheme="svd", coherence_uses=100_000)  # one H per row
    x = gaussian(2 * 50_000, seed=4, batch=3)
    out = mimo_channel(x, spec, make_generator(5))
    r = out.received @ out.state.combiner[:, 0].conj()  # (B, uses, Ns)
    s = stream_view(x, streams)
    sigma = out.state.singular_values[:, 0]  # (B, Ns)
    n0 = noise_variance(snr_db)
    measured_gain = (r * s.conj()).sum(1) / energy(s).sum(1)
    torch.testing.assert_close(measured_gain.real, sigma, rtol=0.0, atol=0.01)
    assert measured_gain.imag.abs().max().item() < 0.01
    noise_power = energy(r - sigma[:, None, :] * s).mean(1)
    torch.testing.assert_close(noise_power, torch.full_like(noise_power, n0), rtol=0.03, atol=0.0)
    measured_snr = energy(sigma[:, None, :] * s).mean(1) / noise_power
    torch.testing.assert_close(measured_snr, sigma**2 / n0, rtol=0.04, atol=0.0)
    # the ZF-equalized stream reports the same figures: unit gain, noise N0 / σ_i^2
    zf = mimo_receive(out, "zf")
    expected = (n0 / sigma**2)[:, None, :].expand_as(s)
    torch.testing.assert_close(stream_view(zf.effective_noise_variance, streams), expected)
    zf_noise = energy(stream_view(zf.symbols - x, streams)).mean(1)
    torch.testing.assert_close(zf_noise, expected[:, 0], rtol=0.03, atol=0.0)


@pytest.mark.parametrize("equalizer", ["mmse", "zf"])
@pytest.mark.parametrize("n_tx, n_rx", [(2, 2), (4, 2), (2, 4)])
def test_noise_free_svd_round_trip_in_original_order(n_tx, n_rx, equalizer):
    spec = MimoSpec(n_tx=n_tx, n_rx=n_rx, snr_db=200.0, scheme="svd", coherence_uses=5)  # N0 = 1e-20
    x = gaussian(333, seed=6, batch=2)  # odd length: zero-padded tail use, short last block
    out = mimo_receive(mimo_channel(x, spec, make_generator(7)), equalizer)
    assert out.symbols.shape == out.effective_gain.shape == out.effective_noise_variance.shape == (2, 333)
    torch.testing.assert_close(out.symbols, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.effective_gain, torch.ones_like(out.effective_gain))


def test_svd_mmse_figures_match_empirical_error():
    spec = MimoSpec(n_tx=2, n_rx=2, snr_db=3.0, scheme="svd", coherence_uses=4)
    x = gaussian(200_000, seed=8)
    out = mimo_receive(mimo_channel(x, spec, make_generator(9)), "mmse")
    residual = out.symbols - out.effective_gain * x  # w of x_hat = g x + w
    assert energy(residual).mean().item() == pytest.approx(out.effective_noise_variance.mean().item(), rel=0.02)


def test_mimo_channel_is_differentiable_in_symbols():
    x = gaussian(64).requires_grad_(True)
    out = mimo_channel(x, MimoSpec(n_tx=2, n_rx=2, scheme="svd", coherence_uses=4), make_generator(0))
    energy(mimo_receive(out).symbols).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --- open loop: LMMSE / ZF ----------------------------------------------------------


def test_open_loop_lmmse_mse_per_stream_matches_theory():
    """E|x_hat_i - x_i|^2 = N0 [(H^H H + N0 I)^-1]_ii, averaged over the sampled H."""
    n_tx, n_rx, coherence, snr_db = 4, 4, 16, 5.0
    spec = MimoSpec(n_tx=n_tx, n_rx=n_rx, snr_db=snr_db, scheme="open_loop", coherence_uses=coherence)
    n = n_tx * coherence * 4000
    x = gaussian(n, seed=10)
    channel = mimo_channel(x, spec, make_generator(11))
    out = mimo_receive(channel, "mmse")
    n0 = noise_variance(snr_db)
    h = channel.state.channel.to(torch.complex128)
    eye = torch.eye(n_tx, dtype=h.dtype)
    theory_blocks = n0 * torch.diagonal(torch.linalg.inv(h.mH @ h + n0 * eye), dim1=-2, dim2=-1).real
    theory = theory_blocks.mean((0, 1))  # (Nt,): every block has the same number of uses
    empirical = energy(stream_view(out.symbols - x, n_tx)).mean((0, 1)).double()
    torch.testing.assert_close(empirical, theory, rtol=0.03, atol=0.0)
    # the reported gain and noise-plus-interference give exactly the same per-symbol MSE
    per_symbol = (1 - out.effective_gain) ** 2 + out.effective_noise_variance
    torch.testing.assert_close(stream_view(per_symbol, n_tx).mean((0, 1)).double(), theory, rtol=1e-4, atol=0.0)


def test_open_loop_figures_match_empirical_residual():
    spec = MimoSpec(n_tx=2, n_rx=3, snr_db=0.0, scheme="open_loop", coherence_uses=8)
    x = gaussian(200_000, seed=12)
    out = mimo_receive(mimo_channel(x, spec, make_generator(13)), "mmse")
    assert ((out.effective_gain > 0) & (out.effective_gain < 1)).all()
    residual = out.symbols - out.effective_gain * x
    assert energy(residual).mean().item() == pytest.approx(out.effective_noise_variance.mean().item(), rel=0.02)


@pytest.mark.parametrize("n_tx, n_rx", [(2, 2), (3, 4)])
def test_noise_free_open_loop_round_trip_in_original_order(n_tx, n_rx):
    spec = MimoSpec(n_tx=n_tx, n_rx=n_rx, snr_db=200.0, scheme="open_loop", coherence_uses=3)
    x = gaussian(101, seed=14, batch=2)
    out = mimo_receive(mimo_channel(x, spec, make_generator(15)), "zf")
    torch.testing.assert_close(out.symbols, x, rtol=0, atol=1e-4)
    torch.testing.assert_close(out.effective_gain, torch.ones_like(out.effective_gain))


def test_zero_forcing_rejects_fewer_receive_than_transmit_antennas():
    out = mimo_channel(gaussian(40), MimoSpec(n_tx=3, n_rx=2, scheme="open_loop"), make_generator(0))
    with pytest.raises(ValueError, match="zero-forcing needs at least as many receive antennas"):
        mimo_receive(out, "zf")


# --- 1 x 1 reduces to SISO ----------------------------------------------------------


def test_one_by_one_open_loop_is_siso_rayleigh_with_mmse():
    x = gaussian(1000, seed=16, batch=2)
    mimo = mimo_channel(
        x, MimoSpec(n_tx=1, n_rx=1, snr_db=7.0, scheme="open_loop", coherence_uses=64), make_generator(17)
    )
    siso = apply_channel(x, ChannelSpec(kind="rayleigh", snr_db=7.0, coherence_symbols=64), make_generator(17))
    torch.testing.assert_close(mimo.received[..., 0], siso.received)  # same draws, same channel
    torch.testing.assert_close(mimo.state.channel[..., 0, 0], siso.block_gains)
    ours = mimo_receive(mimo, "mmse")
    reference = mmse_equalize(siso.received, per_symbol_gains(siso), siso.noise_variance)
    for field in ("symbols", "effective_gain", "effective_noise_variance"):
        torch.testing.assert_close(getattr(ours, field), getattr(reference, field), rtol=1e-5, atol=1e-6)


def test_one_by_one_svd_has_siso_mmse_figures():
    """SVD of a scalar h: σ = |h|, so gain and noise match SISO MMSE (the noise phase differs)."""
    x = gaussian(500, seed=18)
    out = mimo_channel(x, MimoSpec(n_tx=1, n_rx=1, snr_db=4.0, scheme="svd", coherence_uses=10), make_generator(19))
    ours = mimo_receive(out, "mmse")
    gains = out.state.channel[..., 0, 0].repeat_interleave(10, dim=1)
    reference = mmse_equalize(out.received[..., 0], gains, noise_variance(4.0))
    torch.testing.assert_close(ours.effective_gain, reference.effective_gain)
    torch.testing.assert_close(ours.effective_noise_variance, reference.effective_noise_variance)
    torch.testing.assert_close(energy(ours.symbols), energy(reference.symbols), rtol=1e-4, atol=1e-6)


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        (MimoSpec(scheme="alamouti"), "unknown MIMO scheme 'alamouti'"),
        (MimoSpec(n_tx=0), "antenna counts must be 1 to 64"),
        (MimoSpec(n_rx=65), "antenna counts must be 1 to 64"),
        (MimoSpec(snr_db=math.inf), "snr_db must be a finite"),
        (MimoSpec(coherence_uses=0), "coherence_uses must be >= 1"),
    ],
)
def test_validate_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        spec.validate()


def test_unknown_equalizer_is_rejected():
    out = mimo_channel(gaussian(8), MimoSpec(), make_generator(0))
    with pytest.raises(ValueError, match="unknown equalizer"):
        mimo_receive(out, "ml")
