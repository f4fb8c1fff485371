"""Train the generative receiver's latent denoisers for the rate-adaptive codec.

    python -m training.train_denoiser --config training/configs/latent_teacher.json
    python -m training.train_denoiser --config training/configs/latent_consistency.json

The codec (``codec`` in the config, frozen) encodes random crops at a drawn SNR, channel and
target mean symbols per token; its power-normalized symbols x_0 pass through the services'
channel and equalizer code, whose output is mapped to the diffusion state at t_m
(:mod:`shared.diffusion.channel_state`): the per-element noise profile r comes from the real
channel draw.

``stage: teacher`` (paper 003 sec. IV-B): denoising score matching with EDM's weighting on
``x_t = x_0 + r t eps``; for ``channel_fraction`` of the batches t is the channel's own t_m and
x_t the received state itself, otherwise t is log-uniform on [t_1, T] (the ODE visits every
t below t_m).

``stage: consistency`` (paper 003 sec. IV-C, end-to-end consistency distillation): the student
starts from the teacher; on adjacent times t_n < t_(n+1) of an N-step EDM schedule
(``distill_steps``), the teacher takes one Heun step from ``x_(n+1) = x_0 + r t_(n+1) eps``, and
the loss is the image-space MSE between the frozen JSCC decoder's outputs for
``f_theta(x_(n+1))`` and ``f_ema(x_hat_n)`` (``f(x, t_1) = x`` at the boundary): the distillation
is measured after the decoder, not in the latent.

``image_weight`` adds the image-space MSE of the student's decoded estimate against the sent
images (0 is paper 003's pure distillation; the shipped student uses 0.5, so it may beat its
teacher in PSNR).

After training, the teacher is calibrated on held-out crops (its final estimate's error per
symbol on AWGN at 16 times: the decoder's SNR condition is read from it). The student keeps the
teacher's calibration, under which its end-to-end loss was computed (its own measured errors go
to the provenance). Both stages ship the EMA of the weights (for the student, the EMA is also
the consistency target ``f_ema``). The loop: :mod:`training.loop`.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from shared.channel import ChannelSpec, make_generator, noise_variance
from shared.diffusion.channel_state import SIGMA_MAX, diffusion_state, prior_where_unsent
from shared.decoding import DecoderMode, DiffusionDecoders, Refined, decoder_input, decoder_snr_db
from shared.diffusion.sampling import heun_step, karras_times
from shared.models.deepjscc import symbols_to_latent
from shared.models.latent_denoiser import LatentDenoiser, LatentDenoiserConfig
from shared.quality import psnr
from training.loop import TrainingRun
from shared.codecs.differentiable_link import channel_batch, send_batch
from training.train_rate_adaptive import draw_condition


def latent_state(sent: torch.Tensor, mask: torch.Tensor, spec: ChannelSpec, generator=None):
    """Sent channel latents (B, 2K, h, w) and their bool mask through the channel -> (the MMSE
    equalized latent the JSCC decoder gets, and the diffusion state in the latent layout: x_t at
    t_m, per-element sigma, t_m (B,)). Unsent elements: 0 and :data:`SIGMA_MAX`."""
    k_max = sent.shape[1] // 2
    grid = tuple(sent.shape[-2:])
    equalized = channel_batch(sent, spec, generator)
    state = diffusion_state(equalized, noise_variance(spec.snr_db))
    received = symbols_to_latent(equalized.symbols, k_max, k_max, grid) * mask
    values = symbols_to_latent(state.values, k_max, k_max, grid) * mask
    sigma = symbols_to_latent(torch.complex(state.sigma, state.sigma), k_max, k_max, grid)
    return received, values, prior_where_unsent(sigma, mask), state.t.to(sent.device)


def draw_batch(codec, images: torch.Tensor, cfg: dict, g: torch.Generator):
    """A training batch of crops (B, 3, S, S) through the frozen codec and the channel, in groups
    of one channel each: (x_0, x_t at t_m, sigma at t_m, t_m, sent mask, k map, SNR (B,))."""
    parts = []
    for chunk in images.split(cfg["batch_size"] // cfg["groups_per_batch"]):
        spec, mean_symbols = draw_condition(cfg, g)
        with torch.no_grad():
            sent, symbol_map, mask, _, _ = send_batch(codec, chunk, spec, mean_symbols)
        _, values, sigma, t = latent_state(sent, mask, spec, g)
        parts.append((sent, values, sigma, t, mask, symbol_map, torch.full_like(t, spec.snr_db)))
    return [torch.cat(items) for items in zip(*parts)]


def edm_loss(model: LatentDenoiser, x0, values, sigma, t_m, mask, cfg: dict, g: torch.Generator) -> torch.Tensor:
    """EDM-weighted denoising loss over sent elements; a ``channel_fraction`` of the images keep
    the channel's own state, the others get ``x_0 + r t eps`` at a log-uniform t."""
    b = x0.shape[0]
    c = model.config
    profile = sigma / t_m.view(-1, 1, 1, 1)
    u = torch.rand(b, generator=g).to(x0.device)
    t = (math.log(c.t_min) + u * (math.log(c.t_max) - math.log(c.t_min))).exp()
    own = torch.rand(b, generator=g).to(x0.device) < cfg["channel_fraction"]
    t = torch.where(own, t_m, t)
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    sigma_t = (profile * t.view(-1, 1, 1, 1)).clamp_max(SIGMA_MAX)
    x_t = torch.where(own.view(-1, 1, 1, 1), values, x0 + sigma_t * noise) * mask
    weight = (sigma_t.pow(2) + c.sigma_data**2) / (sigma_t * c.sigma_data).pow(2)
    error = (model(x_t, sigma_t, t) - x0).pow(2) * weight * mask
    return error.sum() / mask.sum()


def decode(codec, refined: Refined, symbol_map: torch.Tensor) -> torch.Tensor:
    """The frozen JSCC decoder on a refined batch (differentiable in the estimate)."""
    latent, snr = decoder_input(refined)
    return codec.reconstruct(latent, symbol_map, snr)


def consistency_loss(student, target, teacher, codec, x0, sigma, t_m, mask, symbol_map, snr, images, times, g,
                     image_weight: float = 0.0):
    """End-to-end consistency distillation loss on one batch (module doc), plus ``image_weight``
    times the image-space MSE of the student's decoded estimate against the sent images."""
    b = x0.shape[0]
    n = torch.randint(0, times.numel() - 1, (b,), generator=g)
    t_lo, t_hi = times[n].float().to(x0.device), times[n + 1].float().to(x0.device)
    profile = sigma / t_m.view(-1, 1, 1, 1)
    x_hi = (x0 + profile * t_hi.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=g).to(x0.device)) * mask
    decoder_snr = decoder_snr_db(teacher, sigma, mask, snr)  # the teacher's error model, as at inference
    with torch.no_grad():
        x_lo = heun_step(teacher, x_hi, profile, t_hi, t_lo)  # one teacher step along the ODE
        anchor = target(x_lo, (profile * t_lo.view(-1, 1, 1, 1)).clamp_max(SIGMA_MAX), t_lo) * mask
        target_image = decode(codec, Refined(anchor, decoder_snr, []), symbol_map)
    estimate = student(x_hi, (profile * t_hi.view(-1, 1, 1, 1)).clamp_max(SIGMA_MAX), t_hi) * mask
    image = decode(codec, Refined(estimate, decoder_snr, []), symbol_map)
    mse = torch.nn.functional.mse_loss
    return mse(image, target_image) + image_weight * mse(image, images)


@torch.no_grad()
def calibrate(model: LatentDenoiser, mode: DecoderMode, x0: torch.Tensor, mask: torch.Tensor) -> None:
    """Fill ``model.calibration``: error per complex symbol of ``mode``'s final estimate against
    x_0 on AWGN (r = 1) at each calibration time."""
    model.eval()
    model.calibration.fill_(1.0)  # a placeholder so that refine() runs; replaced point by point
    decoders = DiffusionDecoders(teacher=model) if mode.name == "teacher" else DiffusionDecoders(student=model)
    errors = []
    g = make_generator(0)
    for t in tqdm(model.calibration_times.tolist(), desc=f"calibrating {mode}", unit="t", leave=False):
        t_vec = torch.full((x0.shape[0],), t, device=x0.device)
        sigma = prior_where_unsent(torch.full_like(x0, t), mask)
        x_t = (x0 + t * torch.randn(x0.shape, generator=g).to(x0.device)) * mask
        estimate = decoders.refine(mode, x_t, sigma, mask, t_vec, t_vec * 0 + 20.0, g).estimate
        errors.append(float(2 * ((estimate - x0).pow(2) * mask).sum() / mask.sum()))
    model.calibration.copy_(torch.tensor(errors))


@torch.no_grad()
def validate(codec, decoders: DiffusionDecoders, mode: DecoderMode, images: torch.Tensor) -> dict:
    """PSNR on fixed crops over AWGN and Rayleigh at 1 and 10 dB, 16 symbols per token: the
    JSCC decoder alone and after ``mode``'s refinement (BSDS500 validation crops)."""
    result = {}
    for kind in ("awgn", "rayleigh"):
        for snr in (1.0, 10.0):
            spec = ChannelSpec(kind, snr, coherence_symbols=16)
            sent, symbol_map, mask, _, _ = send_batch(codec, images, spec, 16)
            received, values, sigma, t = latent_state(sent, mask, spec, make_generator(0))
            snr_vec = torch.full_like(t, snr)
            plain = codec.reconstruct(received, symbol_map, snr_vec)
            refined = decode(codec, decoders.refine(mode, values, sigma, mask, t, snr_vec, make_generator(0)), symbol_map)
            result[f"{kind}{snr:g}_jscc"] = round(float(psnr(images, plain).mean()), 3)
            result[f"{kind}{snr:g}_{mode.name}"] = round(float(psnr(images, refined).mean()), 3)
    return result


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "training/configs/latent_teacher.json", argv)
    cfg, g, device = run.cfg, run.generator, run.device
    codec = run.frozen(cfg["codec"])
    stage = cfg["stage"]
    teacher = None
    if stage == "teacher":
        model = LatentDenoiser(LatentDenoiserConfig.from_dict({**cfg["model"], "parameterization": "edm"}))
        mode = DecoderMode("teacher", cfg.get("calibration_steps"))
    else:
        teacher = run.frozen(cfg["teacher"])
        model = LatentDenoiser(LatentDenoiserConfig.from_dict({**teacher.config.to_dict(),
                                                               "parameterization": "consistency"}))
        model.load_state_dict(teacher.state_dict())
        mode = DecoderMode("consistency")
    times = karras_times(cfg.get("distill_steps", 2), model.config.t_min, model.config.t_max, model.config.rho)

    def loss_fn(model: LatentDenoiser, images: torch.Tensor):
        x0, values, sigma, t_m, mask, symbol_map, snr = draw_batch(codec, images, cfg, g)
        if stage == "teacher":
            return edm_loss(model, x0, values, sigma, t_m, mask, cfg, g), {}
        # the consistency target network is the run's EMA of the student
        return consistency_loss(model, run.ema.module, teacher, codec, x0, sigma, t_m, mask, symbol_map, snr, images,
                                times, g, cfg.get("image_weight", 0.0)), {}

    final = run.fit(model, loss_fn, lambda ema: {})
    if run.is_main:
        calibration_images = run.val_images[: cfg["calibration_images"]]
        sent, _, mask, _, _ = send_batch(codec, calibration_images, ChannelSpec("awgn", 10.0), 24)
        calibrate(final, mode, sent, mask)
        report = {"calibration": [round(e, 5) for e in final.calibration.tolist()]}
        if teacher is not None:  # the student keeps the error model its decoder condition was distilled under
            final.calibration.copy_(teacher.calibration)
        decoders = DiffusionDecoders(teacher=final) if stage == "teacher" else DiffusionDecoders(student=final)
        report = {**report, **validate(codec, decoders, DecoderMode(mode.name, 25 if stage == "teacher" else None),
                                       run.val_images)}
        run.export(final, "training/train_denoiser.py", codec=cfg["codec"], **report)
    run.close()


if __name__ == "__main__":
    main()
