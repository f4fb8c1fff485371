"""One-shot / few-shot out-of-distribution adaptation (paper 003 sec. III-D, eq. 13-14).

The transmitter, which holds the image, learns the latent adapter g_w
(:class:`~shared.models.latent_adapter.LatentAdapter`, ``z_hat = W z + b`` between the rate
decoder f_d and the synthesis g_s) for a user whose images lie outside the codec's training
domain, and publishes it to the receiver as per-user shared knowledge; the codec's networks
stay frozen.

:func:`learn_adapter` solves the paper's direct inversion objective, eq. 13, over the adapter's
parameters instead of one latent:

    min_{W, b}  E_channel [ MSE(x'', g_s(W z + b)) ] + rho * (||W - I||_F^2 + ||b||^2) / C

where z = f_d(received latent) of the adaptation image(s) x'' after the real channel code
(:mod:`shared.codecs.differentiable_link`: allocation, power normalization, AWGN/Rayleigh draws over
an SNR range, MMSE equalization), computed once under ``no_grad``, and rho keeps W near the
identity (the in-domain operating point, the role of eq. 13's prior penalty). The paper's
Algorithm 2 instead trains g_w adversarially against its WGAN discriminator's last layer; this
project's codec has no discriminator, so the adapter is fitted on eq. 13's distortion term.

:class:`~shared.serving.adapters.AdapterCache` is the receiver's bounded per-user store of published adapters.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..channel import ChannelSpec
from ..channel.models import make_generator
from ..codecs.differentiable_link import channel_batch, send_batch
from ..models.deepjscc import symbols_to_latent
from ..models.latent_adapter import LatentAdapter
from ..models.layers import pad_to_multiple
from ..models.rate_adaptive import RateAdaptiveJSCC
from ..quality import psnr
from .options import AdaptationOptions


@dataclass
class AdaptationResult:
    """What :func:`learn_adapter` returns.

    Attributes:
        adapter: the batch-1 :class:`LatentAdapter`, rounded to its float16 wire format.
        psnr_before_db: mean PSNR over the adaptation images' channel draws, identity adapter.
        psnr_after_db: the same draws decoded through the learned adapter.
        seconds: wall-clock time of the channel draws and the optimization.
    """

    adapter: LatentAdapter
    psnr_before_db: float
    psnr_after_db: float
    seconds: float


@dataclass
class ChannelDraw:
    """One image after one simulated channel draw: f_d's output and what g_s needs."""

    image: torch.Tensor  # (1, 3, H', W') padded to the grid
    latent: torch.Tensor  # (1, 2K, h, w) f_d output
    mean_symbols: torch.Tensor  # (1,)
    snr_db: torch.Tensor  # (1,)
    size: tuple[int, int]  # original (H, W)


@torch.no_grad()
def channel_draws(model: RateAdaptiveJSCC, images: list[torch.Tensor], options: AdaptationOptions,
                  rng: random.Random) -> list[ChannelDraw]:
    """``options.draws`` channel draws per (3, H, W) image (kind, SNR and CBR drawn from
    ``options``) through the real channel code, each decoded up to f_d."""
    device = next(model.parameters()).device
    draws = []
    k_max = model.config.max_symbols_per_token
    for image in images:
        padded = pad_to_multiple(image.to(device), model.config.grid_multiple)[None]
        for _ in range(options.draws):
            spec = ChannelSpec(rng.choice(options.kinds), rng.uniform(*options.snr_range_db), seed=rng.getrandbits(62))
            mean_symbols = float(rng.choice(options.cbrs)) * 3 * model.config.downscale ** 2
            sent, symbol_map, mask, _, _ = send_batch(model, padded, spec, mean_symbols)
            equalized = channel_batch(sent, spec, make_generator(spec.seed)).symbols
            received = symbols_to_latent(equalized, k_max, k_max, tuple(sent.shape[-2:])) * mask
            snr = torch.tensor([spec.snr_db], dtype=torch.float32, device=device)
            draws.append(ChannelDraw(padded, model.rate_decode(received, symbol_map, snr),
                               symbol_map.flatten(1).float().mean(dim=1), snr, tuple(image.shape[-2:])))
    return draws


@torch.no_grad()
def mean_psnr(model: RateAdaptiveJSCC, draws: list[ChannelDraw], adapter: LatentAdapter | None) -> float:
    """Mean PSNR (dB) of the draws decoded through ``adapter`` (``None``: identity) and g_s."""
    values = []
    for draw in draws:
        latent = draw.latent if adapter is None else adapter(draw.latent)
        h, w = draw.size
        decoded = model.synthesize(latent, draw.mean_symbols, draw.snr_db).clamp(0, 1)[..., :h, :w]
        values.append(float(psnr(draw.image[..., :h, :w], decoded)[0]))
    return sum(values) / len(values)


def _crop(draw: ChannelDraw, size: tuple[int, int], rng: random.Random, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random crop of ``size`` (tokens) of the latent and the matching image pixels."""
    h, w = draw.latent.shape[-2:]
    th, tw = size
    top, left = rng.randrange(h - th + 1), rng.randrange(w - tw + 1)
    latent = draw.latent[..., top:top + th, left:left + tw]
    image = draw.image[..., top * scale:(top + th) * scale, left * scale:(left + tw) * scale]
    return latent, image


def learn_adapter(model: RateAdaptiveJSCC, images: list[torch.Tensor], options: AdaptationOptions | None = None,
                  progress: bool = True) -> AdaptationResult:
    """Fit g_w to ``images`` ((3, H, W) in [0, 1], one = one-shot) with the codec frozen (module doc).

    Gradients are taken with ``torch.autograd.grad`` with respect to the adapter only, so the
    codec's parameters are never written: the services' workers may decode with the same model
    meanwhile. ``ValueError`` for no images, bad options or a codec other than the rate-adaptive one.
    """
    options = options or AdaptationOptions()
    options.validate()
    if not isinstance(model, RateAdaptiveJSCC):
        raise ValueError("the latent adapter is served with the rate-adaptive codec only")
    if not images:
        raise ValueError("adaptation needs at least one image")
    started = time.perf_counter()
    rng = random.Random(options.seed)
    draws = channel_draws(model, images, options, rng)
    device = draws[0].latent.device
    channels = 2 * model.config.max_symbols_per_token
    adapter = LatentAdapter.identity(channels).to(device)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=options.learning_rate)
    eye = torch.eye(channels, device=device)
    crop = tuple(min(options.crop_tokens, *(d.latent.shape[axis] for d in draws)) for axis in (-2, -1))
    for _ in tqdm(range(options.steps), desc="adapt", unit="step", disable=not progress, leave=False):
        chosen = [rng.choice(draws) for _ in range(options.crops_per_step)]
        crops = [_crop(d, crop, rng, model.config.downscale) for d in chosen]
        latent, target = torch.cat([c[0] for c in crops]), torch.cat([c[1] for c in crops])
        decoded = model.synthesize(adapter(latent), torch.cat([d.mean_symbols for d in chosen]),
                                   torch.cat([d.snr_db for d in chosen]))
        penalty = ((adapter.weight[0] - eye).pow(2).sum() + adapter.bias.pow(2).sum()) / channels
        loss = torch.nn.functional.mse_loss(decoded, target) + options.penalty * penalty
        grads = torch.autograd.grad(loss, list(adapter.parameters()))
        for parameter, grad in zip(adapter.parameters(), grads):
            parameter.grad = grad
        optimizer.step()
    learned = LatentAdapter.from_bytes(adapter.cpu().to_bytes(), channels).to(device)  # what the receiver gets
    return AdaptationResult(learned, mean_psnr(model, draws, None), mean_psnr(model, draws, learned),
                            time.perf_counter() - started)
