"""The rate-adaptive codec's batch chain, differentiable where it can be: images -> allocation ->
power-normalized channel latent -> the channel and equalizer the services use -> images.

Used by training (:mod:`training.train_rate_adaptive` and the scripts built on it) and by
anything that needs gradients through the link (adversarial perturbations, adaptation). The
services' per-image stages are in :mod:`shared.codecs.rate_adaptive`; :func:`noiseless_round_trip` is
the white-box attacker's model of the codec (:meth:`~shared.codecs.rate_adaptive.RateAdaptiveCodec.forward`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from ..channel import ChannelSpec
from ..channel.equalizers import EqualizedSymbols
from ..channel.link import receive, transmit
from ..models.deepjscc import latent_to_symbols, symbols_to_latent
from ..models.entropy_models import gaussian_entropy_bits
from ..models.layers import pad_to_multiple
from ..models.rate_adaptive import RateAdaptiveJSCC, allocate_symbols, symbol_mask


def batch_beta(information: torch.Tensor, mean_symbols: torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    """Per image (B, h, w) bits and (B,) target mean symbols per token -> (B,) beta meeting each
    target from below (vectorized bisection on log beta)."""
    low = torch.full_like(mean_symbols, math.log(1e-6))
    high = torch.full_like(mean_symbols, math.log(1e6))
    for _ in range(40):
        mid = (low + high) / 2
        spent = allocate_symbols(information, mid.exp(), levels).flatten(1).float().mean(dim=1)
        fits = spent <= mean_symbols
        low, high = torch.where(fits, mid, low), torch.where(fits, high, mid)
    return low.exp()


def send_batch(model: RateAdaptiveJSCC, images: torch.Tensor, spec: ChannelSpec, mean_symbols: float):
    """Images -> the power-normalized channel latent, as the transmitter sends it.

    Returns (sent (B, 2K, h, w), unsent slots zero and every image at mean symbol energy 1;
    k map (B, h, w); bool mask of sent elements (B, 2K, h, w); bits of y (B,); bits of z (B,)).
    """
    b = images.shape[0]
    snr = torch.full((b,), spec.snr_db, device=images.device)
    target = torch.full((b,), float(mean_symbols), device=images.device)
    latent = model.analyse(images, snr, target)
    z_hat, z_likelihoods, scales = model.hyperprior(latent.detach())
    y_bits = -torch.log2(model.latent_likelihoods(latent.detach(), scales)).flatten(1).sum(dim=1)
    z_bits = -torch.log2(z_likelihoods).flatten(1).sum(dim=1)
    information = gaussian_entropy_bits(scales.detach()).sum(dim=1)
    symbol_map = allocate_symbols(information, batch_beta(information, target, model.config.symbol_levels),
                                  model.config.symbol_levels)
    sent = model.rate_encode(latent, symbol_map, snr)
    mask = symbol_mask(symbol_map, model.config.max_symbols_per_token)
    power = sent.pow(2).flatten(1).sum(dim=1) / (mask.flatten(1).sum(dim=1) / 2)
    sent = sent * torch.rsqrt(power.clamp_min(1e-12))[:, None, None, None]
    return sent, symbol_map, mask, y_bits, z_bits


def channel_batch(sent: torch.Tensor, spec: ChannelSpec, generator=None) -> EqualizedSymbols:
    """(B, 2K, h, w) channel latents through ``spec``'s channel and equalizer: (B, h*w*K)
    equalized symbols, token-major over all K slots (unsent slots travel as zeros)."""
    k_max = sent.shape[1] // 2
    symbols = latent_to_symbols(sent, k_max)
    return receive(transmit(symbols, spec, generator), spec)


def round_trip(model: RateAdaptiveJSCC, images: torch.Tensor, spec: ChannelSpec, mean_symbols: float, generator=None):
    """Images -> allocation -> channel -> images, differentiably where it can be.

    Returns (reconstruction (B, 3, S, S), bits of y (B,), bits of z (B,), k map (B, h, w)).
    The unsent symbol slots travel as zeros and are masked out again after equalization, so
    the batch keeps one tensor shape.
    """
    sent, symbol_map, mask, y_bits, z_bits = send_batch(model, images, spec, mean_symbols)
    k_max = model.config.max_symbols_per_token
    equalized = channel_batch(sent, spec, generator).symbols
    received = symbols_to_latent(equalized, k_max, k_max, tuple(sent.shape[-2:]))
    snr = torch.full((images.shape[0],), spec.snr_db, device=images.device)
    return model.reconstruct(received * mask, symbol_map, snr), y_bits, z_bits, symbol_map


def noiseless_round_trip(model: RateAdaptiveJSCC, images: torch.Tensor, snr_db: float,
                         mean_symbols: float) -> torch.Tensor:
    """The rate-adaptive codec's differentiable chain without the channel: (B, 3, H, W) ->
    allocation at ``mean_symbols`` complex symbols per token -> f_e -> (received = sent) ->
    f_d, g_s -> (B, 3, H, W). Encoder and decoder are conditioned on ``snr_db`` (dB) as for a
    request at that SNR. Sides are padded as the services pad them (edge replicated) and the
    output is cropped back. This is the attacker's model of the system: channel noise would
    only add variance to the gradient."""
    height, width = images.shape[-2:]
    padded = pad_to_multiple(images, model.config.grid_multiple)
    sent, symbol_map, mask, _, _ = send_batch(model, padded, ChannelSpec("awgn", snr_db), mean_symbols)
    snr = torch.full((images.shape[0],), float(snr_db), device=images.device)
    return model.reconstruct(sent * mask, symbol_map, snr)[..., :height, :width]


def request_mean_symbols(model: RateAdaptiveJSCC, image_size: tuple[int, int], cbr: Fraction) -> float:
    """Mean complex symbols per token of a request at ``cbr`` for an H x W image: the CBR's
    symbol budget ``cbr * 3 H W`` over the padded token grid (the side channel's few symbols
    are not subtracted, so the attacker's model sends about 1-3 % more than the system)."""
    multiple, token = model.config.grid_multiple, model.config.downscale
    tokens = math.prod(-(-side // multiple) * multiple // token for side in image_size)
    return float(cbr) * 3 * image_size[0] * image_size[1] / tokens
