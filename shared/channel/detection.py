"""Linear and successive-interference-cancelling detection of K streams received on Nr antennas.

One model serves the open-loop MIMO streams of :mod:`.mimo` (K = Nt transmit antennas) and the
single-antenna users of :mod:`.mu_mimo` (K users): per coherence block

    y_t = H s_t + n_t,    H (Nr x K),  E|s_k|^2 = 1 (or 0 in a zero-padded tail),  n_t ~ CN(0, N0 I).

Shapes: ``y`` (B, n_blocks, C, Nr) complex, C channel uses per block; ``h`` (B, n_blocks, Nr, K)
complex. Every detector returns (B, n_blocks, C, K) estimates ``x_hat_k = g_k s_k + w_k`` and the
(B, n_blocks, K) real gains ``g_k`` and noise-plus-interference variances ``var(w_k)`` (complex,
per symbol), the form of :class:`~.equalizers.EqualizedSymbols`.

* ZF, ``W = (H^H H)^-1 H^H`` (needs Nr >= K): ``g_k = 1``, no interference, noise
  ``N0 [(H^H H)^-1]_kk``.
* MMSE (LMMSE), ``W = (H^H H + N0 I)^-1 H^H``: ``g_k = (W H)_kk`` and variance
  ``sum_{j != k} |(W H)_kj|^2 + N0 ||W_k||^2``; post-detection SINR ``g_k^2 / var_k``, which
  for MMSE equals ``g_k / (1 - g_k)``. ``N0 -> 0`` gives ZF.
* MMSE-SIC (:func:`sic_detect`): per block, the MMSE filter of the users not yet detected, the
  one of highest post-detection SINR detected, decided (``decide``: a hard decision onto the
  constellation) and its decided symbols times its column of H subtracted from ``y``; K rounds.
  The reported gains and variances assume correct decisions (interference of the cancelled
  users removed). With analog symbols there is no decision to cancel (a linear one gives a
  linear receiver, no better than MMSE), so SIC serves digital (uncoded) links.
"""

from __future__ import annotations

from typing import Callable

import torch

DETECTORS = ("zf", "mmse", "mmse_sic")
"""The detectors of this module; ``zf`` and ``mmse`` are linear (:func:`linear_detect`)."""


def linear_detect(y: torch.Tensor, h: torch.Tensor, regularization: float, n0: float):
    """``W = (H^H H + regularization I)^-1 H^H`` applied to (B, n_blocks, C, Nr) ``y``:
    ``regularization`` 0 is ZF (``ValueError`` for Nr < K), N0 is MMSE.

    Returns (B, n_blocks, C, K) estimates and (B, n_blocks, K) gains ``(W H)_kk`` and
    noise-plus-interference variances at noise N0 (module docstring).
    """
    n_streams = h.shape[-1]
    if regularization == 0.0 and h.shape[-2] < n_streams:
        raise ValueError(f"zero-forcing needs at least as many receive antennas as streams, got "
                         f"{h.shape[-2]} for {n_streams}")
    hh = h.conj().transpose(-1, -2)
    eye = torch.eye(n_streams, dtype=h.dtype, device=h.device)
    w = torch.linalg.solve(hh @ h + regularization * eye, hh)  # (B, n_blocks, K, Nr)
    g = w @ h
    power = g.real**2 + g.imag**2
    gain_power = torch.diagonal(power, dim1=-2, dim2=-1)
    interference = power.sum(-1) - gain_power
    noise = n0 * (w.real**2 + w.imag**2).sum(-1)
    return y @ w.transpose(-1, -2), torch.diagonal(g, dim1=-2, dim2=-1).real, interference + noise


def sic_detect(y: torch.Tensor, h: torch.Tensor, n0: float, decide: Callable[[torch.Tensor], torch.Tensor]):
    """MMSE-SIC ordered by post-detection SINR (module docstring); ``decide`` maps unbiased
    estimates (any shape) to the nearest constellation points. Same returns as :func:`linear_detect`."""
    batch, blocks, uses, _ = y.shape
    n_streams = h.shape[-1]
    remaining = torch.ones(batch, blocks, n_streams, dtype=torch.bool, device=y.device)
    symbols = torch.zeros(*y.shape[:-1], n_streams, dtype=y.dtype, device=y.device)
    gains = torch.zeros(batch, blocks, n_streams, device=y.device)
    variances = torch.zeros_like(gains)
    for _ in range(n_streams):
        active = h * remaining[:, :, None, :]  # detected users' columns zeroed: they are cancelled
        estimate, gain, variance = linear_detect(y, active, n0, n0)
        sinr = torch.where(remaining, gain**2 / variance.clamp_min(torch.finfo(variance.dtype).tiny), -1.0)
        pick = sinr.argmax(-1, keepdim=True)  # (B, n_blocks, 1)
        chosen = estimate.gather(-1, pick[:, :, None, :].expand(batch, blocks, uses, 1))  # (B, n_blocks, C, 1)
        chosen_gain, chosen_variance = gain.gather(-1, pick), variance.gather(-1, pick)
        symbols.scatter_(-1, pick[:, :, None, :].expand(batch, blocks, uses, 1), chosen)
        gains.scatter_(-1, pick, chosen_gain)
        variances.scatter_(-1, pick, chosen_variance)
        decided = decide(chosen / chosen_gain[:, :, None, :].to(chosen.dtype))
        column = h.gather(-1, pick[:, :, None, :].expand(batch, blocks, h.shape[-2], 1))  # (B, n_blocks, Nr, 1)
        y = y - decided @ column.transpose(-1, -2)
        remaining.scatter_(-1, pick, False)
    return symbols, gains, variances


def detect(y: torch.Tensor, h: torch.Tensor, n0: float, detector: str,
           decide: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """One of :data:`DETECTORS` on (B, n_blocks, C, Nr) ``y``; ``decide`` is required by (and only
    used by) ``mmse_sic``. Same returns as :func:`linear_detect`."""
    if detector == "mmse_sic":
        if decide is None:
            raise ValueError("MMSE-SIC cancels decided symbols: it needs a hard decision (digital symbols)")
        return sic_detect(y, h, n0, decide)
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    return linear_detect(y, h, 0.0 if detector == "zf" else n0, n0)
