"""Train the fixed-rate, SNR-adaptive DeepJSCC baseline on an image folder.

    python -m training.train_baseline --config training/configs/baseline.json

Each batch is split into groups; every group draws its own channel (AWGN or Rayleigh
block fading with a random coherence length), SNR (uniform in dB) and rate (one of the
served per-token symbol counts), and passes through the very channel and MMSE equalizer
code the services use (:mod:`shared.channel.link`). Loss: MSE. The schedule (warm-up, then cosine) runs over
``steps`` or ``max_minutes``, whichever ends first, so a run on a slow machine still
anneals. Resumable: re-running the command continues from ``run_dir/checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from shared.channel import ChannelSpec, make_generator
from shared.channel.link import receive, transmit
from shared.models import DeepJSCC, DeepJSCCConfig
from shared.models.io import save_deepjscc
from shared.quality import psnr
from shared.symbols import power_normalize
from training.data import RandomCrops, center_crops, list_images


def round_trip(model: DeepJSCC, images: torch.Tensor, spec: ChannelSpec, k: int, generator=None) -> torch.Tensor:
    """Images -> symbols -> channel -> MMSE -> images, differentiably: (B, 3, S, S) -> same."""
    snr = torch.full((images.shape[0],), spec.snr_db, device=images.device)
    grid = (images.shape[-2] // model.config.downscale, images.shape[-1] // model.config.downscale)
    symbols, _ = power_normalize(model.encode(images, snr, k))
    equalized = receive(transmit(symbols, spec, generator), spec)
    return model.decode(equalized.symbols, snr, k, grid)


def learning_rate(cfg: dict, step: int, progress: float) -> float:
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    return cfg["min_lr"] + 0.5 * (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * min(progress, 1.0)))


def draw_spec(cfg: dict, g: torch.Generator) -> tuple[ChannelSpec, int]:
    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    lo, hi = cfg["snr_db_range"]
    snr = lo + (hi - lo) * float(torch.rand((), generator=g))
    spec = ChannelSpec(kind=pick(cfg["channel_kinds"]), snr_db=snr, coherence_symbols=pick(cfg["coherence_symbols"]))
    return spec, pick(cfg["model"]["trained_symbols_per_token"])


@torch.no_grad()
def validate(model: DeepJSCC, images: torch.Tensor, cfg: dict) -> dict:
    """Mean PSNR on fixed crops over AWGN at 1/10/19 dB for each served rate (fixed seeds)."""
    model.eval()
    result = {}
    for k in cfg["model"]["trained_symbols_per_token"]:
        for snr in (1.0, 10.0, 19.0):
            out = round_trip(model, images, ChannelSpec("awgn", snr), k, make_generator(0))
            result[f"psnr_k{k}_snr{snr:g}"] = round(float(psnr(images, out).mean()), 3)
    model.train()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="training/configs/baseline.json", help="JSON training config")
    parser.add_argument("--max-minutes", type=float, help="override the config's wall-clock budget")
    parser.add_argument("--steps", type=int, help="override the config's step budget")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)

    cfg = json.loads(Path(args.config).read_text())
    for key in ("max_minutes", "steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    g = make_generator(cfg["seed"])

    run_dir = Path(cfg["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    train_files = [f for d in cfg["train_dirs"] for f in list_images(d)]
    val_files = list_images(cfg["val_dir"])[: cfg["val_images"]]
    data = RandomCrops(train_files, cfg["crop"], g)
    val_images = center_crops(val_files, cfg["crop"] * 2).to(device)

    model = DeepJSCC(DeepJSCCConfig.from_dict(cfg["model"])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    step, elapsed = 0, 0.0
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        g.set_state(state["generator"])
        print(f"resumed from {checkpoint_path} at step {step} ({elapsed / 60:.1f} min)")

    def save_checkpoint():
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "elapsed": elapsed, "generator": g.get_state(), "config": cfg},
            checkpoint_path,
        )

    budget_s = cfg["max_minutes"] * 60
    log = (run_dir / "log.jsonl").open("a")
    bar = tqdm(total=cfg["steps"], initial=step, desc="training", unit="step")
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]
    start = time.time() - elapsed
    model.train()
    while True:
        elapsed = time.time() - start
        progress = max(step / cfg["steps"], elapsed / budget_s)
        if progress >= 1.0:
            break
        lr = learning_rate(cfg, step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = data.batch(cfg["batch_size"]).to(device)
        loss = 0.0
        for chunk in images.split(group_size):
            spec, k = draw_spec(cfg, g)
            loss = loss + torch.nn.functional.mse_loss(round_trip(model, chunk, spec, k, g), chunk)
        loss = loss / cfg["groups_per_batch"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        if step % cfg["val_every"] == 0:
            record = {"step": step, "minutes": round((time.time() - start) / 60, 2), "lr": lr,
                      "train_mse": round(loss.item(), 6), **validate(model, val_images, cfg)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(json.dumps(record))
            elapsed = time.time() - start
            save_checkpoint()
    bar.close()
    save_checkpoint()
    final = validate(model, val_images, cfg)
    provenance = {"script": "training/train_baseline.py", "config": cfg, "steps": step,
                  "minutes": round(elapsed / 60, 1), "device": device,
                  "torch": torch.__version__, "validation_psnr": final}
    save_deepjscc(model, cfg["output"], provenance)
    print(json.dumps({"saved": cfg["output"], **provenance["validation_psnr"], "steps": step}))


if __name__ == "__main__":
    main()
