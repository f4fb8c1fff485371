"""Pilot-based estimation of SISO block-fading gains.

Every coherence block of a :class:`~.models.ChannelOutput` (one gain ``h`` per
``coherence_symbols`` data symbols; AWGN is one block with ``h = 1``) is preceded by
``Np`` pilots ``p_k`` of unit modulus known to both ends, received as
``y_k = h p_k + n_k`` with ``n_k ~ CN(0, N0)`` (the SNR convention of :mod:`.models`:
pilots have the data symbols' energy Es = 1). Pilots are extra channel uses: a block
lasts ``coherence_symbols + Np`` channel uses.

Estimators, for the Rician prior ``h ~ CN(m, v)`` with ``m = sqrt(K/(K+1))`` and
``v = 1/(K+1)`` (paper 003 eq. 16; K = 0 is Rayleigh, K = inf is AWGN):

* LS: ``h_ls = mean_k(y_k / p_k) = h + e``, ``e ~ CN(0, N0/Np)``; MSE ``N0/Np``.
* LMMSE: ``h_lmmse = m + v / (v + N0/Np) * (h_ls - m)``; MSE ``v (N0/Np) / (v + N0/Np)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .models import ChannelOutput, complex_normal

ESTIMATORS = ("ls", "lmmse")


def pilot_sequence(n_pilots: int, device=None) -> torch.Tensor:
    """(Np,) complex64 known pilots: the unit-modulus chirp ``exp(-j pi k^2 / Np)``."""
    k = torch.arange(n_pilots, dtype=torch.float64, device=device)
    return torch.polar(torch.ones_like(k), -math.pi * k**2 / n_pilots).to(torch.complex64)


def send_pilots(channel: ChannelOutput, n_pilots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, n_blocks, Np) complex64 received pilots ``h_b p_k + n`` of every block of ``channel``."""
    batch = channel.received.shape[0]
    gains = channel.block_gains
    if gains is None:
        gains = torch.ones((batch, 1), dtype=torch.complex64, device=channel.received.device)
    noise = complex_normal((*gains.shape, n_pilots), channel.noise_variance, generator, gains.device)
    return gains[..., None] * pilot_sequence(n_pilots, gains.device) + noise


def ls_estimate(received_pilots: torch.Tensor) -> torch.Tensor:
    """(B, n_blocks) least-squares gains ``mean_k(y_k / p_k)`` from (B, n_blocks, Np) pilots."""
    pilots = pilot_sequence(received_pilots.shape[-1], received_pilots.device)
    return (received_pilots / pilots).mean(-1)


def rician_prior(k_factor: float) -> tuple[float, float]:
    """Mean ``m`` and scattered variance ``v`` of a unit-power Rician gain of K ``k_factor``."""
    if math.isinf(k_factor):
        return 1.0, 0.0
    return math.sqrt(k_factor / (k_factor + 1.0)), 1.0 / (k_factor + 1.0)


def lmmse_estimate(received_pilots: torch.Tensor, noise_variance: float, k_factor: float = 0.0) -> torch.Tensor:
    """(B, n_blocks) LMMSE gains from (B, n_blocks, Np) pilots under the Rician prior of ``k_factor``."""
    mean, var = rician_prior(k_factor)
    error = noise_variance / received_pilots.shape[-1]
    return mean + var / (var + error) * (ls_estimate(received_pilots) - mean)


def estimate_channel(
    channel: ChannelOutput,
    n_pilots: int,
    generator: torch.Generator | None = None,
    method: str = "lmmse",
    k_factor: float = 0.0,
) -> ChannelOutput:
    """``channel`` with its block gains replaced by their pilot estimates (method in :data:`ESTIMATORS`).

    The result feeds :func:`.equalizers.per_symbol_gains` and the equalizers unchanged;
    their noise figures then assume the estimate is the true gain.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"unknown estimator {method!r}; choose one of {', '.join(ESTIMATORS)}")
    pilots = send_pilots(channel, n_pilots, generator)
    if method == "ls":
        estimate = ls_estimate(pilots)
    else:
        estimate = lmmse_estimate(pilots, channel.noise_variance, k_factor)
    return dataclasses.replace(channel, block_gains=estimate)


@dataclass(frozen=True)
class PilotOverhead:
    """Pilot cost of one image.

    Attributes:
        pilots_per_block: Np.
        n_blocks: coherence blocks per image.
        pilot_symbols: ``Np * n_blocks`` pilot channel uses per image.
        fraction: share of the image's channel uses spent on pilots, ``P / (n + P)``.
        cbr_factor: ``(n + P) / n``, the factor by which pilots raise the channel
            bandwidth ratio (channel uses per source dimension) of the image.
    """

    pilots_per_block: int
    n_blocks: int
    pilot_symbols: int
    fraction: float
    cbr_factor: float


def pilot_overhead(n_symbols: int, coherence_symbols: int, n_pilots: int) -> PilotOverhead:
    """Pilot overhead for ``n_symbols`` data symbols in blocks of ``coherence_symbols`` data symbols."""
    blocks = -(-n_symbols // min(coherence_symbols, n_symbols))
    pilots = n_pilots * blocks
    return PilotOverhead(n_pilots, blocks, pilots, pilots / (n_symbols + pilots), (n_symbols + pilots) / n_symbols)


def ls_mse(noise_variance: float, n_pilots: int) -> float:
    """Theoretical LS mean squared error ``E|h_ls - h|^2 = N0 / Np``."""
    return noise_variance / n_pilots


def lmmse_mse(noise_variance: float, n_pilots: int, k_factor: float = 0.0) -> float:
    """Theoretical LMMSE mean squared error ``v (N0/Np) / (v + N0/Np)``."""
    _, var = rician_prior(k_factor)
    error = noise_variance / n_pilots
    return var * error / (var + error)
