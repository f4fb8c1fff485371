"""Train the down-sampler F_d and the SNR-conditioned VAE up-sampler F_u on the frozen baseline.

    python -m training.train_vae_upsampler --config training/configs/vae_upsampler_x2.json

The fixed-rate baseline (``base_weights``) stays frozen (paper 001's guidance trains the
supplementary modules only); its latent ``y`` at ``k0`` symbols per token (power-normalized) is
compressed by F_d to ``k0 / r``, sent through the very channel and MMSE code the services use
(each group of a batch draws its channel, AWGN or Rayleigh block fading, and SNR uniform in dB),
and F_u gives (mu_y, log sigma_y^2) of ``y_hat``. The loss lives in latent space (eq. 37):

    lambda * KL(N(mu_y, sigma_y^2) || N(0, 1)) + MSE(y_hat, s_hat)
        + gamma * KL(N(y, sigma^2) || N(mu_y, sigma_y^2))

with ``y_hat = mu_y + sigma_y * eps`` (reparameterization), ``s_hat = y + n`` the uncompressed
received latent at the same SNR (``sigma^2 = N0 / 2`` per real dimension), each term a mean over
latent elements. ``variational: false`` in the model config is the ablation without the VAE
(``y_hat = mu_y``, MSE only; lambda and gamma must be 0). The decoder runs only in validation
(image PSNR on validation crops over AWGN). The loop (EMA, resume, budget): :mod:`training.loop`.
"""

from __future__ import annotations

import math

import torch

from shared.channel import ChannelSpec, make_generator
from shared.channel.link import receive, transmit
from shared.channel.models import noise_variance
from shared.models.deepjscc import latent_to_symbols, symbols_to_latent
from shared.models.vae_upsampler import (VAEUpsamplerConfig, VAEUpsamplerJSCC, kl_channel_to_posterior,
                                         kl_to_standard_normal, reparameterize)
from shared.quality import psnr
from shared.phy.symbols import power_normalize
from training.loop import TrainingRun
from training.train_baseline import draw_spec
from training.train_baseline import round_trip as baseline_round_trip


def compressed_round_trip(model: VAEUpsamplerJSCC, y: torch.Tensor, spec: ChannelSpec, generator=None):
    """``y`` (B, 2 k0, h, w) -> F_d -> power normalization -> channel + MMSE -> F_u:
    (mu_y, log sigma_y^2), each (B, 2 k0, h, w), differentiably."""
    k = model.config.sent_symbols_per_token
    snr = torch.full((y.shape[0],), spec.snr_db, device=y.device)
    symbols, _ = power_normalize(latent_to_symbols(model.downsampler(y), k))
    equalized = receive(transmit(symbols, spec, generator), spec).symbols
    return model.posterior(symbols_to_latent(equalized, k, k, tuple(y.shape[-2:])), snr)


def hybrid_loss(y: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor | None, snr_db: float,
                kl_weight: float, guidance_weight: float, generator=None) -> dict[str, torch.Tensor]:
    """Eq. 37 for one channel draw: the terms ``kl`` (eq. 35), ``mse`` (eq. 36) and ``guidance``
    (L_g, eq. 32), each a mean over elements, and ``loss`` = mse + lambda kl + gamma guidance.

    ``y`` is the uncompressed latent (mean energy 1 per complex symbol); ``s_hat = y + n`` with
    n ~ N(0, N0 / 2) per real dimension. Without a variance (deterministic up-sampler) only the
    MSE of ``mu_y`` remains."""
    variance = noise_variance(snr_db) / 2
    s_hat = y + math.sqrt(variance) * torch.randn(y.shape, generator=generator, device=y.device)
    terms = {"mse": torch.nn.functional.mse_loss(reparameterize(mean, log_variance, generator), s_hat)}
    if log_variance is None:
        if kl_weight or guidance_weight:
            raise ValueError("a deterministic up-sampler has no variance: kl_weight and guidance_weight must be 0")
        terms["loss"] = terms["mse"]
        return terms
    terms["kl"] = kl_to_standard_normal(mean, log_variance).mean()
    terms["guidance"] = kl_channel_to_posterior(y, variance, mean, log_variance).mean()
    terms["loss"] = terms["mse"] + kl_weight * terms["kl"] + guidance_weight * terms["guidance"]
    return terms


@torch.no_grad()
def validate(model: VAEUpsamplerJSCC, images: torch.Tensor, snrs=(1.0, 10.0, 19.0)) -> dict:
    """Over AWGN (fixed seeds) at each SNR: mean image PSNR on the validation crops decoding
    mu_y (``psnr_snr*``) and, for the VAE, a sample of y_hat (``psnr_sample_snr*``); the latent
    MSE of mu_y against ``y`` and the mean sigma_y (``sigma_y_snr*``)."""
    model.eval()
    result = {}
    for snr in snrs:
        snr_t = torch.full((images.shape[0],), snr, device=images.device)
        y = model.base_latent(images, snr_t)
        mean, log_variance = compressed_round_trip(model, y, ChannelSpec("awgn", snr), make_generator(0))
        result[f"psnr_snr{snr:g}"] = round(float(psnr(images, model.decode_latent(mean, snr_t)).mean()), 3)
        result[f"latent_mse_snr{snr:g}"] = round(float((mean - y).pow(2).mean()), 5)
        if log_variance is not None:
            sample = reparameterize(mean, log_variance, make_generator(1))
            result[f"psnr_sample_snr{snr:g}"] = round(float(psnr(images, model.decode_latent(sample, snr_t)).mean()), 3)
            result[f"sigma_y_snr{snr:g}"] = round(float(torch.exp(0.5 * log_variance).mean()), 4)
    model.train()
    return result


@torch.no_grad()
def baseline_reference(model: VAEUpsamplerJSCC, images: torch.Tensor, snrs=(1.0, 10.0, 19.0)) -> dict:
    """The frozen baseline's own validation PSNR at ``k0`` and, where it serves it, at ``k0 / r``."""
    c = model.config
    result = {}
    for k in (c.base_symbols_per_token, c.sent_symbols_per_token):
        if k in c.base.trained_symbols_per_token:
            for snr in snrs:
                out = baseline_round_trip(model.base, images, ChannelSpec("awgn", snr), k, make_generator(0))
                result[f"baseline_psnr_k{k}_snr{snr:g}"] = round(float(psnr(images, out).mean()), 3)
    return result


def build_model(cfg: dict, run: TrainingRun) -> VAEUpsamplerJSCC:
    """F_d and F_u of ``cfg["model"]`` on the frozen baseline of ``cfg["base_weights"]``."""
    base = run.frozen(cfg["base_weights"])
    model = VAEUpsamplerJSCC(VAEUpsamplerConfig.from_dict({**cfg["model"], "base": base.config.to_dict()}))
    model.base.load_state_dict(base.state_dict())
    model.base.requires_grad_(False)
    return model.to(run.device)


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "training/configs/vae_upsampler_x2.json", argv)
    cfg, g = run.cfg, run.generator
    model = build_model(cfg, run)
    reference = baseline_reference(model, run.val_images) if run.is_main else {}
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]
    groups = cfg["groups_per_batch"]
    channel_cfg = {**cfg, "model": {"trained_symbols_per_token": list(model.config.trained_symbols_per_token)}}

    def loss_fn(model: VAEUpsamplerJSCC, images: torch.Tensor):
        totals: dict[str, torch.Tensor] = {}
        loss = 0.0
        for chunk in images.split(group_size):
            spec, _ = draw_spec(channel_cfg, g)  # the channel; the rate is fixed
            with torch.no_grad():
                y = model.base_latent(chunk, torch.full((chunk.shape[0],), spec.snr_db, device=chunk.device)).float()
            mean, log_variance = compressed_round_trip(model, y, spec, g)
            terms = hybrid_loss(y, mean.float(), None if log_variance is None else log_variance.float(), spec.snr_db,
                                cfg["kl_weight"], cfg["guidance_weight"], g)
            loss = loss + terms["loss"] / groups
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach() / groups
        return loss, {f"train_{k}": v for k, v in totals.items()}

    model = run.fit(model, loss_fn, lambda ema: validate(ema, run.val_images))
    final = validate(model, run.val_images) if run.is_main else {}
    run.export(model, "training/train_vae_upsampler.py", base=cfg["base_weights"], base_prefix="base.",
               validation=final, baseline_validation=reference)
    run.close()


if __name__ == "__main__":
    main()
