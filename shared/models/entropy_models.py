"""Entropy models of the hyperprior (Ballé et al. 2018), in the layout of CompressAI.

CompressAI's ``EntropyBottleneck``/``GaussianConditional`` are the reference; its wheel cannot
be imported next to a CPU-only PyTorch (its package import pulls torchvision's CUDA operators
and torch-geometric), so the two densities the codec needs are written here in a few lines,
and the arithmetic coding is done by ``constriction`` (:mod:`shared.phy.entropy_coding`).

Both densities are *discretized* Gaussians: the probability of an integer bin
``[v - 1/2, v + 1/2)``. During training, quantization is replaced by additive uniform noise
(:func:`quantize`), the usual differentiable proxy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCALE_BOUND = 0.11
"""Lower bound of every Gaussian scale (CompressAI's default)."""

LIKELIHOOD_BOUND = 1e-9
"""Lower bound of a bin probability, so that -log2 stays finite."""


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Probability of each value's unit bin under N(means, scales^2); shapes broadcast.

    Computed on the tail-side CDF (as CompressAI) for precision far from the mean.
    """
    scales = scales.clamp_min(SCALE_BOUND)
    centred = (values - means).abs()
    upper = _standard_normal_cdf((0.5 - centred) / scales)
    lower = _standard_normal_cdf((-0.5 - centred) / scales)
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


def gaussian_entropy_bits(scales: torch.Tensor) -> torch.Tensor:
    """Approximate entropy (bits) of a unit-bin discretized N(0, scales^2), elementwise.

    ``0.5 log2(1 + 2 pi e s^2)``: the differential entropy ``log2(s sqrt(2 pi e))`` for large
    scales, 0 for a scale far below one bin. Used to allocate channel symbols to tokens.
    """
    return 0.5 * torch.log2(1.0 + 2.0 * math.pi * math.e * scales.clamp_min(SCALE_BOUND).pow(2))


def quantize(values: torch.Tensor, means: torch.Tensor | float, training: bool) -> torch.Tensor:
    """Rounding to the integer grid offset by ``means``; uniform noise in ``[-1/2, 1/2)`` instead
    when ``training``."""
    if training:
        return values + torch.empty_like(values).uniform_(-0.5, 0.5)
    return torch.round(values - means) + means


class FactorizedGaussianPrior(nn.Module):
    """The hyper-latent's density: independent Gaussians, one learned (mean, scale) per channel.

    A parametric stand-in for CompressAI's non-parametric ``EntropyBottleneck``; the
    hyper-latent is a few hundred values per image, where the difference is a few bits.

    Shapes: ``z`` (B, C, h, w) -> ``z_hat`` and its likelihoods, both (B, C, h, w).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.means = nn.Parameter(torch.zeros(channels))
        self.log_scales = nn.Parameter(torch.zeros(channels))

    def parameters_for(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, scales) broadcast to ``z``'s (B, C, h, w)."""
        means = self.means[None, :, None, None].expand_as(z)
        scales = self.log_scales.exp()[None, :, None, None].expand_as(z)
        return means, scales

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, scales = self.parameters_for(z)
        z_hat = quantize(z, means, self.training)
        return z_hat, gaussian_likelihood(z_hat, scales, means)
