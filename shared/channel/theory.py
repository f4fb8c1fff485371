"""Closed-form and numerically integrated uncoded BER of Gray QAM over the channel kinds, and the
fading-power pdfs behind them (the formulas are derived in :mod:`.diagnostics`' docstring).
Each channel block's :meth:`~.base.ChannelKind.ber_theory` picks the one of its kind."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import integrate, special



@dataclass(frozen=True)
class Modulation:
    """A Gray-labelled square QAM with exact AWGN bit-error rate ``sum_i w_i Q(a_i sqrt(Es/N0))``.

    Attributes:
        bits_per_symbol: bits per complex symbol.
        ber_terms: the ``(w_i, a_i)`` pairs.
    """

    bits_per_symbol: int
    ber_terms: tuple[tuple[float, float], ...]


MODULATIONS = {
    "qpsk": Modulation(2, ((1.0, 1.0),)),
    "16qam": Modulation(4, ((0.75, 1 / math.sqrt(5)), (0.5, 3 / math.sqrt(5)), (-0.25, 5 / math.sqrt(5)))),
}


def q_function(x: float) -> float:
    """Gaussian tail ``Q(x) = P(N(0, 1) > x)``."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ber_awgn(modulation: str, snr_db: float) -> float:
    """Exact uncoded BER of Gray ``modulation`` over AWGN at Es/N0 = ``snr_db``."""
    g = 10.0 ** (snr_db / 10.0)
    return sum(w * q_function(a * math.sqrt(g)) for w, a in MODULATIONS[modulation].ber_terms)


def _faded_q(c: float, shape: int = 1) -> float:
    """``E[Q(sqrt(2 c x))]`` for ``x ~ Gamma(shape, 1)`` (``shape`` 1: Exp(1)), in closed form."""
    mu = math.sqrt(c / (1.0 + c))
    return ((1.0 - mu) / 2.0) ** shape * sum(math.comb(shape - 1 + k, k) * ((1.0 + mu) / 2.0) ** k
                                             for k in range(shape))


def ber_rayleigh(modulation: str, snr_db: float) -> float:
    """Closed-form uncoded BER over Rayleigh fading (E|h|^2 = 1, perfect CSI) at average Es/N0 = ``snr_db``."""
    return ber_gamma(modulation, snr_db, 1)


def ber_gamma(modulation: str, snr_db: float, shape: int) -> float:
    """Closed-form uncoded BER at Es/N0 = ``snr_db`` times a Gamma(``shape``, 1) gain (mean ``shape``):
    ``shape``-branch maximum-ratio combining, or one stream of Nt x Nr ZF detection with
    ``shape = Nr - Nt + 1``; ``shape`` 1 is Rayleigh."""
    g = 10.0 ** (snr_db / 10.0)
    return sum(w * _faded_q(a * a * g / 2.0, shape) for w, a in MODULATIONS[modulation].ber_terms)


def rician_power_pdf(x: float, k_factor: float) -> float:
    """pdf of ``|h|^2`` for Rician fading with K = ``k_factor`` and E|h|^2 = 1 (K = 0: Exp(1))."""
    z = 2.0 * math.sqrt(k_factor * (k_factor + 1.0) * x)
    return (k_factor + 1.0) * math.exp(z - k_factor - (k_factor + 1.0) * x) * special.i0e(z)


def wishart_eigenvalue_pdf(x: float, n_tx: int, n_rx: int) -> float:
    """pdf of one unordered eigenvalue of ``H^H H`` (its nonzero ones), H an ``n_rx x n_tx`` matrix of
    i.i.d. CN(0, 1) entries (Telatar 1999): with ``m = min``, ``n = max`` of the antenna counts,
    ``(1/m) sum_{k<m} k! / (k+n-m)! [L_k^(n-m)(x)]^2 x^(n-m) e^-x``. Mean ``n``, variance ``m n``."""
    m, n = min(n_tx, n_rx), max(n_tx, n_rx)
    if x <= 0.0:
        return 1.0 if x == 0.0 and n == m else 0.0  # f(0) = 1 when m = n, as L_k^(0)(0) = 1
    a = n - m
    laguerre = sum(math.exp(math.lgamma(k + 1) - math.lgamma(k + a + 1)) * special.eval_genlaguerre(k, a, x) ** 2
                   for k in range(m))
    return laguerre * math.exp(a * math.log(x) - x) / m


def _expectation(f, pdf, split: float, upper: float = math.inf) -> float:
    """``E[f(x); x < upper]`` under ``pdf``, by adaptive quadrature split at ``split`` (about the mean)."""
    integrand = lambda x: f(x) * pdf(x)  # noqa: E731
    pieces = [(0.0, min(split, upper))] + ([(split, upper)] if upper > split else [])
    return sum(integrate.quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-9, limit=200)[0] for lo, hi in pieces)


def rician_expectation(f, k_factor: float, upper: float = math.inf) -> float:
    """``E[f(|h|^2); |h|^2 < upper]`` under Rician K, by adaptive quadrature split at the mean 1."""
    return _expectation(f, lambda x: rician_power_pdf(x, k_factor), 1.0, upper)


def wishart_expectation(f, n_tx: int, n_rx: int, upper: float = math.inf) -> float:
    """``E[f(λ); λ < upper]`` over the unordered Wishart eigenvalue, split at its mean ``max(n_tx, n_rx)``."""
    return _expectation(f, lambda x: wishart_eigenvalue_pdf(x, n_tx, n_rx), float(max(n_tx, n_rx)), upper)


def _averaged_ber(modulation: str, snr_db: float, expectation) -> float:
    g = 10.0 ** (snr_db / 10.0)
    terms = MODULATIONS[modulation].ber_terms
    return expectation(lambda x: sum(w * q_function(a * math.sqrt(g * x)) for w, a in terms))


def ber_rician(modulation: str, snr_db: float, k_factor: float) -> float:
    """Uncoded BER over Rician K fading (perfect CSI) at average Es/N0 = ``snr_db``, by integrating
    the AWGN BER at Es/N0 * |h|^2 over the pdf of |h|^2; K = inf is AWGN."""
    if math.isinf(k_factor):
        return ber_awgn(modulation, snr_db)
    return _averaged_ber(modulation, snr_db, lambda f: rician_expectation(f, k_factor))


def ber_wishart(modulation: str, snr_db: float, n_tx: int, n_rx: int) -> float:
    """Uncoded BER of MIMO SVD precoding over i.i.d. Rayleigh ``n_tx x n_rx`` with ZF per sub-channel,
    averaged over the streams: the AWGN BER at Es/N0 * λ integrated over the unordered Wishart
    eigenvalue pdf (:func:`wishart_eigenvalue_pdf`)."""
    return _averaged_ber(modulation, snr_db, lambda f: wishart_expectation(f, n_tx, n_rx))
