"""Train the fixed-rate, SNR-adaptive DeepJSCC baseline on an image folder.

    python -m training.train_baseline --config training/configs/baseline.json

Each batch is split into groups; every group draws its own channel (AWGN or Rayleigh
block fading with a random coherence length), SNR (uniform in dB) and rate (one of the
served per-token symbol counts), and passes through the very channel and MMSE equalizer
code the services use (:mod:`shared.channel.link`). Loss: MSE. The schedule (warm-up, then cosine) runs over
``steps`` or ``max_minutes``, whichever ends first, so a run on a slow machine still
anneals. Resumable: re-running the command continues from ``run_dir/checkpoint.pt``. The loop,
its options (``--help``) and ``torchrun`` use: :mod:`training.loop`.
"""

from __future__ import annotations

import torch

from shared.channel import ChannelSpec, make_generator
from shared.channel.link import receive, transmit
from shared.models import DeepJSCC, DeepJSCCConfig
from shared.quality import psnr
from shared.phy.symbols import power_normalize
from training.loop import TrainingRun


def round_trip(model: DeepJSCC, images: torch.Tensor, spec: ChannelSpec, k: int, generator=None) -> torch.Tensor:
    """Images -> symbols -> channel -> MMSE -> images, differentiably: (B, 3, S, S) -> same."""
    snr = torch.full((images.shape[0],), spec.snr_db, device=images.device)
    grid = (images.shape[-2] // model.config.downscale, images.shape[-1] // model.config.downscale)
    symbols, _ = power_normalize(model.encode(images, snr, k))
    equalized = receive(transmit(symbols, spec, generator), spec)
    return model.decode(equalized.symbols, snr, k, grid)


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
    run = TrainingRun.from_command_line(__doc__, "training/configs/baseline.json", argv)
    cfg, g = run.cfg, run.generator
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]

    def loss_fn(model: DeepJSCC, images: torch.Tensor):
        loss = 0.0
        for chunk in images.split(group_size):
            spec, k = draw_spec(cfg, g)
            loss = loss + torch.nn.functional.mse_loss(round_trip(model, chunk, spec, k, g).float(), chunk)
        return loss / cfg["groups_per_batch"], {}

    model = run.fit(DeepJSCC(DeepJSCCConfig.from_dict(cfg["model"])), loss_fn,
                    lambda ema: validate(ema, run.val_images, cfg))
    final = validate(model, run.val_images, cfg) if run.is_main else {}
    run.export(model, "training/train_baseline.py", validation_psnr=final)
    run.close()


if __name__ == "__main__":
    main()
