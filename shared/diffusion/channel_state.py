"""The channel as a forward diffusion step (paper 003 eq. 17-25; paper 001 eq. 14-17, 28-29).

An equalizer returns ``x_hat = g x + w`` per complex symbol (:class:`EqualizedSymbols`: real
gain g, noise variance v of w). Dividing by g gives an unbiased observation

    x_hat / g = x + w / g,    per real part  x_R + sigma * eps,   sigma^2 = v / (2 g^2),

which is the state of a variance-exploding (VE) diffusion started from the transmitted
symbols x (the diffusion's x_0). Its noise is per element, ``sigma_i = r_i * t``, with one
scalar time t shared by the image and a profile r_i set by the channel (paper 003's H_n):

- AWGN: ``sigma_i^2 = N0 / 2`` for every symbol, so r_i = 1 and t_m = sqrt(N0 / 2);
- fading with MMSE equalization: ``sigma_i^2 = N0 / (2 |h_i|^2)``, r_i = 1 / |h_i|;
- MIMO after SVD combining: ``sigma_i^2 = N0 / (2 s_i^2)`` per sub-channel (s_i the singular
  value; paper 001 eq. 28-29), r_i = 1 / s_i; open-loop LMMSE: its per-stream post-detection
  figures.

The receiver's time is ``t_m = sqrt(N0 / 2)`` (paper 003's ``argmin |t_m^2 - sigma^2|`` on a
continuous schedule), so no noise is added at any SNR: the reverse process starts exactly where
the channel left off. Because ``sigma_i = r_i t`` for every t, the probability-flow ODE keeps its
scalar form ``dx/dt = (x - D(x; r t)) / t`` elementwise (:mod:`.sampling`).

Units: symbols are power-normalized (E|x|^2 = 1), so every real part has variance 1/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..channel.equalizers import EqualizedSymbols

SIGMA_DATA = math.sqrt(0.5)
"""Standard deviation of a real part of a unit-energy complex symbol."""

SIGMA_MAX = 80.0
"""Noise level (per real part) given to unsent latent slots and to symbols in a fade so deep that
they carry nothing: the denoiser fills them from the prior and the neighbours."""


@dataclass
class DiffusionState:
    """Equalized symbols as a VE diffusion state.

    Attributes:
        values: (B, n) complex64 unbiased observations ``x + noise`` (x_t).
        sigma: (B, n) float32 noise std per real part of each symbol (``profile * t``).
        t: (B,) float32 diffusion time of each image (``sqrt(N0 / 2)``).
    """

    values: torch.Tensor
    sigma: torch.Tensor
    t: torch.Tensor

    @property
    def profile(self) -> torch.Tensor:
        """(B, n) r_i = sigma_i / t (1 everywhere on AWGN)."""
        return self.sigma / self.t[:, None]


def prior_where_unsent(sigma: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
    """Per-element noise levels with :data:`SIGMA_MAX` wherever ``sent`` (bool, same shape) is
    false: slots the frame did not carry are pure prior to the denoiser."""
    return torch.where(sent, sigma, torch.full_like(sigma, SIGMA_MAX))


def channel_time(noise_variance: float | torch.Tensor) -> torch.Tensor:
    """N0 (complex noise variance per symbol, scalar or (B,)) -> t_m = sqrt(N0 / 2)."""
    return torch.as_tensor(noise_variance, dtype=torch.float32).mul(0.5).sqrt()


def diffusion_state(equalized: EqualizedSymbols, noise_variance: float | torch.Tensor) -> DiffusionState:
    """Map an equalizer's output (B, n) to the diffusion state at t_m (module doc).

    Symbols whose gain is zero (or whose sigma would pass :data:`SIGMA_MAX`) get value 0 and
    sigma :data:`SIGMA_MAX`.
    """
    gain = equalized.effective_gain.float()
    usable = gain > 0
    safe_gain = torch.where(usable, gain, torch.ones_like(gain))
    sigma = torch.sqrt(equalized.effective_noise_variance.float() / 2) / safe_gain
    keep = usable & (sigma < SIGMA_MAX)
    values = torch.where(keep, equalized.symbols / safe_gain, torch.zeros_like(equalized.symbols))
    sigma = torch.where(keep, sigma, torch.full_like(sigma, SIGMA_MAX))
    t = channel_time(noise_variance).expand(gain.shape[0]).clone()
    return DiffusionState(values.to(torch.complex64), sigma, t)


def effective_snr_db(symbol_error: torch.Tensor) -> torch.Tensor:
    """Per image (B,) mean squared error per complex symbol of an unbiased estimate of unit-
    energy symbols -> the AWGN SNR (dB) that leaves the same error, ``-10 log10(error)``."""
    return -10.0 * torch.log10(symbol_error.clamp(1e-6, 1e6))


def as_mmse_observation(estimate: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """An unbiased estimate ``x + e`` (B, ...) with error at ``snr_db`` (B,) -> the form the JSCC
    decoder was trained on, the MMSE output of an AWGN channel at that SNR:
    ``g (x + e)`` with ``g = 1 / (1 + N0)``."""
    n0 = torch.pow(10.0, -snr_db.float() / 10)
    return estimate / (1 + n0).view(-1, *([1] * (estimate.dim() - 1))).to(estimate.dtype)
