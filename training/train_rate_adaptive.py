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
Resumable from ``run_dir/checkpoint.pt``; warm-up then cosine over ``steps`` or
``max_minutes``, whichever ends first.
"""

from __future__ import annotations

import json
import math

import torch
from tqdm import tqdm

from shared.channel import ChannelSpec, make_generator
from shared.channel.equalizers import EqualizedSymbols
from shared.channel.link import receive, transmit
from shared.models.deepjscc import latent_to_symbols, symbols_to_latent
from shared.models.entropy_models import gaussian_entropy_bits
from shared.models.io import load_model, save_model
from shared.models.rate_adaptive import RateAdaptiveConfig, RateAdaptiveJSCC, allocate_symbols, symbol_mask
from shared.quality import psnr
from training.loop import TrainingRun, parse_config


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
    cfg, device = parse_config(__doc__, "training/configs/rate_adaptive.json", argv)
    run = TrainingRun(cfg, device)
    g = run.generator
    data, val_images = run.datasets()

    model = RateAdaptiveJSCC(RateAdaptiveConfig.from_dict(cfg["model"]))
    if cfg.get("init_from") and not run.has_checkpoint:
        init_from_baseline(model, cfg["init_from"])
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    run.resume(model, optimizer)
    bar = tqdm(total=cfg["steps"], initial=run.step, desc="training", unit="step")
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]
    pixels = cfg["crop"] ** 2
    groups = cfg["groups_per_batch"]
    model.train()
    while run.progress() < 1.0:
        lr = run.set_learning_rate(optimizer)
        images = data.batch(cfg["batch_size"]).to(device)
        distortion, rate = 0.0, 0.0
        for chunk in images.split(group_size):
            spec, mean_symbols = draw_condition(cfg, g)
            out, y_bits, z_bits, _ = round_trip(model, chunk, spec, mean_symbols, g)
            distortion = distortion + torch.nn.functional.mse_loss(out, chunk)
            rate = rate + (y_bits + hyper_rate_weight(cfg, run.step) * z_bits).mean() / pixels
        loss = (distortion + cfg["rate_weight"] * rate) / groups
        run.optimize(model, optimizer, loss, bar)
        bar.set_postfix(mse=f"{distortion.item() / groups:.4f}", lr=f"{lr:.2e}")
        if run.step % cfg["val_every"] == 0:
            record = {"step": run.step, "minutes": run.minutes, "lr": lr,
                      "train_mse": round(distortion.item() / groups, 6), "train_bpp": round(rate.item() / groups, 4),
                      **validate(model, val_images)}
            run.checkpoint(record, model, optimizer)
    bar.close()
    run.save(model, optimizer)
    final = validate(model, val_images)
    save_model(model, cfg["output"], run.provenance("training/train_rate_adaptive.py", validation=final),
               getattr(torch, cfg.get("weights_dtype", "float32")))
    print(json.dumps({"saved": cfg["output"], **final, "steps": run.step}))


if __name__ == "__main__":
    main()
