"""Multi-stream detection: ZF, MMSE, MMSE-SIC (shared/channel/detection.py)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.channel import complex_normal, make_generator
from shared.channel.detection import detect, linear_detect


def channel_and_symbols(n_rx: int, k: int, seed: int = 0, blocks: int = 8, uses: int = 16):
    """(2, blocks, Nr, K) CN(0, 1) H and (2, blocks, uses, K) QPSK symbols."""
    generator = make_generator(seed)
    h = complex_normal((2, blocks, n_rx, k), 1.0, generator)
    bits = torch.randint(0, 2, (2, blocks, uses, k, 2), generator=generator).float()
    return h, torch.view_as_complex((2 * bits - 1) / math.sqrt(2))


def qpsk_decision(z: torch.Tensor) -> torch.Tensor:
    return torch.complex(z.real.sign(), z.imag.sign()) / math.sqrt(2)


def received(h: torch.Tensor, s: torch.Tensor, n0: float, seed: int = 1) -> torch.Tensor:
    y = s @ h.transpose(-1, -2)
    return y + complex_normal(y.shape, n0, make_generator(seed)) if n0 else y


@pytest.mark.parametrize("n_rx, k", [(3, 3), (4, 2), (2, 1)])
def test_zf_inverts_a_noiseless_channel_exactly(n_rx, k):
    h, s = channel_and_symbols(n_rx, k)
    symbols, gain, variance = detect(received(h, s, 0.0), h, 1e-3, "zf")
    torch.testing.assert_close(symbols, s, rtol=0.0, atol=2e-4)
    torch.testing.assert_close(gain, torch.ones_like(gain), rtol=0.0, atol=1e-4)  # float32
    # noise N0 [(H^H H)^-1]_kk
    expected = 1e-3 * torch.diagonal(torch.linalg.inv(h.mH @ h), dim1=-2, dim2=-1).real
    torch.testing.assert_close(variance, expected, rtol=1e-3, atol=0.0)


def test_mmse_tends_to_zf_at_high_snr():
    h, s = channel_and_symbols(3, 3, seed=2)
    y = received(h, s, 1e-8)
    zf, mmse = detect(y, h, 1e-8, "zf"), detect(y, h, 1e-8, "mmse")
    for a, b in zip(zf, mmse):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_mmse_reports_its_gain_and_noise_plus_interference():
    """Measured on many uses of fixed channels: x_hat = g s + w with the reported g and var(w)."""
    n0 = 0.1
    h, s = channel_and_symbols(3, 3, seed=3, blocks=2, uses=40_000)
    symbols, gain, variance = linear_detect(received(h, s, n0), h, n0, n0)
    measured_gain = (symbols * s.conj()).mean(2).real  # E|s|^2 = 1
    torch.testing.assert_close(measured_gain, gain, rtol=0.0, atol=0.01)
    residual = symbols - gain[:, :, None, :] * s
    measured_variance = (residual.real**2 + residual.imag**2).mean(2)
    torch.testing.assert_close(measured_variance, variance, rtol=0.03, atol=0.0)
    assert (gain < 1).all()  # MMSE shrinks; SINR g^2 / var = g / (1 - g)
    torch.testing.assert_close(gain**2 / variance, gain / (1 - gain), rtol=1e-3, atol=0.0)


def test_sic_with_correct_decisions_recovers_every_user_and_reports_cancelled_interference():
    h, s = channel_and_symbols(3, 3, seed=4)
    n0 = 1e-4
    symbols, gain, variance = detect(received(h, s, n0), h, n0, "mmse_sic", qpsk_decision)
    assert torch.equal(qpsk_decision(symbols), s)
    # the last user detected sees no interference: its SINR is maximum-ratio combining's |h_k|^2 / N0
    sinr = gain**2 / variance
    mrc = (h.real**2 + h.imag**2).sum(-2) / n0
    assert ((sinr / mrc - 1).abs() < 1e-3).any(-1).all()
    _, mmse_gain, mmse_variance = detect(received(h, s, n0), h, n0, "mmse")
    assert (sinr >= mmse_gain**2 / mmse_variance * (1 - 1e-4)).all()  # cancellation never lowers a SINR


def test_detect_refuses_sic_without_decisions_and_unknown_detectors():
    h, s = channel_and_symbols(2, 2)
    with pytest.raises(ValueError, match="hard decision"):
        detect(received(h, s, 0.1), h, 0.1, "mmse_sic")
    with pytest.raises(ValueError, match="unknown detector"):
        detect(received(h, s, 0.1), h, 0.1, "ml")
    with pytest.raises(ValueError, match="zero-forcing needs at least as many receive antennas"):
        detect(received(h, s, 0.1)[..., :1], h[..., :1, :], 0.1, "zf")
