"""Train the rate-adaptive JSCC codec with its hyperprior on an image folder.

    python -m training.train_rate_adaptive --config training/configs/rate_adaptive.json

Starts from the fixed-rate baseline's weights (``init_from``; the latent grows from 32 to 64
complex values per token, new channels start silent in the decoder), then trains every module
together; the hyperprior learns from its rate term only (its input is detached), the
JSCC networks from the distortion only. Each batch is split into groups; every group draws
its own channel (AWGN or Rayleigh block fading with a random coherence length), SNR (uniform
in dB) and target mean symbols per token (log-uniform in ``mean_symbols_range``); each image
gets the beta that meets its target (the allocation of :mod:`shared.models.rate_adaptive`),
and its symbols pass through the channel and MMSE code the services use.

Loss (paper 000 eq. 10 with eta = 0: distortion-oriented): ``MSE + rate_weight * (bits(y) +
hyper_rate_weight * bits(z)) / pixels``; ``hyper_rate_weight`` >> 1 because z is sent over the
digital side channel (about 1.5 channel uses per bit) while y is not sent as bits at all: its
bits only rank the tokens. It may be a schedule ``[[from_step, weight], ...]``.
Starts from ``init_from`` (the baseline) or ``--init-weights`` (e.g. the shipped codec, to
continue its training). The loop (EMA, bf16, resume, ``torchrun``): :mod:`training.loop`.
"""

from __future__ import annotations

import math

import torch

from shared.channel import ChannelSpec, make_generator
from shared.codecs.differentiable_link import round_trip
from shared.models.io import load_model
from shared.models.rate_adaptive import RateAdaptiveConfig, RateAdaptiveJSCC
from shared.quality import psnr
from training.loop import TrainingRun


def init_from_baseline(model: RateAdaptiveJSCC, path: str) -> None:
    """Copy the baseline's encoder/decoder into ``model``'s analysis/synthesis; where the latent
    is wider, the baseline fills the first channels (new encoder outputs keep their random
    init, new decoder inputs start at zero)."""
    baseline = load_model(path).state_dict()
    target = model.state_dict()
    for name, tensor in baseline.items():
        mapped = name.replace("encoder.", "analysis.", 1).replace("decoder.", "synthesis.", 1)
        destination = target[mapped]
        if destination.shape != tensor.shape:
            if name == "decoder.stem.weight":
                destination[:, tensor.shape[1]:].zero_()
            destination = destination[tuple(slice(0, s) for s in tensor.shape)]
        destination.copy_(tensor)
    model.load_state_dict(target)


def hyper_rate_weight(cfg: dict, step: int) -> float:
    """The config's ``hyper_rate_weight``: a number, or ``[[from_step, weight], ...]``."""
    schedule = cfg["hyper_rate_weight"]
    if isinstance(schedule, (int, float)):
        return float(schedule)
    return float([weight for start, weight in schedule if start <= step][-1])


def draw_condition(cfg: dict, g: torch.Generator) -> tuple[ChannelSpec, float]:
    def uniform(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    kind = pick(cfg["channel_kinds"])
    k_factor = uniform(*cfg["k_factor_range"]) if kind == "rician" else 0.0
    spec = ChannelSpec(kind=kind, snr_db=uniform(*cfg["snr_db_range"]), k_factor=k_factor,
                       coherence_symbols=pick(cfg["coherence_symbols"]))
    lo, hi = cfg["mean_symbols_range"]
    return spec, math.exp(uniform(math.log(lo), math.log(hi)))


@torch.no_grad()
def validate(model: RateAdaptiveJSCC, images: torch.Tensor) -> dict:
    """Mean PSNR on fixed crops over AWGN at 1/10/19 dB for 16 and 32 mean symbols per token
    (the JSCC part of CBR 1/48 and 1/24, side information excluded), and z's bits per token."""
    model.eval()
    result = {}
    for k in (16, 32):
        for snr in (1.0, 10.0, 19.0):
            out, _, z_bits, _ = round_trip(model, images, ChannelSpec("awgn", snr), k, make_generator(0))
            result[f"psnr_k{k}_snr{snr:g}"] = round(float(psnr(images, out).mean()), 3)
    tokens = images.shape[-1] * images.shape[-2] / model.config.downscale**2
    result["z_bits_per_token"] = round(float(z_bits.mean()) / tokens, 3)
    model.train()
    return result


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "training/configs/rate_adaptive.json", argv)
    cfg, g = run.cfg, run.generator
    model = RateAdaptiveJSCC(RateAdaptiveConfig.from_dict(cfg["model"]))
    if cfg.get("init_from") and not cfg.get("init_weights") and not run.has_checkpoint:
        init_from_baseline(model, cfg["init_from"])
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]
    groups, pixels = cfg["groups_per_batch"], cfg["crop"] ** 2

    def loss_fn(model: RateAdaptiveJSCC, images: torch.Tensor):
        distortion, rate = 0.0, 0.0
        for chunk in images.split(group_size):
            spec, mean_symbols = draw_condition(cfg, g)
            out, y_bits, z_bits, _ = round_trip(model, chunk, spec, mean_symbols, g)
            distortion = distortion + torch.nn.functional.mse_loss(out.float(), chunk)
            rate = rate + (y_bits.float() + hyper_rate_weight(cfg, run.step) * z_bits.float()).mean() / pixels
        terms = {"train_mse": distortion.detach() / groups, "train_bpp": rate.detach() / groups}
        return (distortion + cfg["rate_weight"] * rate) / groups, terms

    model = run.fit(model, loss_fn, lambda ema: validate(ema, run.val_images))
    final = validate(model, run.val_images) if run.is_main else {}
    run.export(model, "training/train_rate_adaptive.py", validation=final)
    run.close()


if __name__ == "__main__":
    main()
