"""Train the conditional diffusion image decoder (paper 000 sec. II-B) for the rate-adaptive codec.

    python -m training.train_generative --config training/configs/generative_decoder.json

Stage "modules first" of paper 000's multi-stage strategy (sec. III-C) for g_d: the codec
(``codec``, frozen) sends random crops through the services' channel code at a drawn channel,
SNR and target mean symbols per token; its JSCC reconstruction is the condition. Each image draws
a setting (distortion, eta = 0.1; perception, eta = 0.5) and a step n of the N-step forward
process; the X-prediction is scored with eq. 10's image terms,
``(1 - eta) MSE + eta d_p``, with d_p = 1 - MS-SSIM (weight-free; LPIPS needs VGG weights that
cannot be fetched here). The joint fine-tuning of every module is not done (the codec stays
frozen). Resumable (``run_dir``); exported with float16 weights.
"""

from __future__ import annotations

import json

import torch
from tqdm import tqdm

from shared.channel import ChannelSpec, make_generator
from shared.models.generative_decoder import SETTING_ETA, SETTINGS, GenerativeDecoder, GenerativeDecoderConfig
from shared.models.io import save_model
from shared.quality import ms_ssim, psnr
from training.loop import TrainingRun, parse_config
from shared.codecs.differentiable_link import round_trip
from training.train_rate_adaptive import draw_condition


def jscc_batch(codec, data, cfg: dict, g: torch.Generator, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(originals, JSCC reconstructions) (B, 3, S, S), in groups of one drawn channel each."""
    images = data.batch(cfg["batch_size"]).to(device)
    decoded = []
    with torch.no_grad():
        for chunk in images.split(cfg["batch_size"] // cfg["groups_per_batch"]):
            spec, mean_symbols = draw_condition(cfg, g)
            decoded.append(round_trip(codec, chunk, spec, mean_symbols, g)[0])
    return images, torch.cat(decoded).clamp(0, 1)


def loss(model: GenerativeDecoder, scheduler, images: torch.Tensor, condition: torch.Tensor,
         g: torch.Generator) -> torch.Tensor:
    """Eq. 10's image terms on a random step and setting per image."""
    b = images.shape[0]
    x0 = images * 2 - 1
    steps = torch.randint(0, model.config.train_steps, (b,), generator=g)
    setting = torch.randint(0, len(SETTINGS), (b,), generator=g)
    noisy = scheduler.add_noise(x0, torch.randn(x0.shape, generator=g).to(x0.device), steps)
    estimate = (model(noisy, condition * 2 - 1, (steps + 1).float() / model.config.train_steps,
                      setting.to(x0.device)) + 1) / 2
    eta = torch.tensor([SETTING_ETA[name] for name in SETTINGS], device=x0.device)[setting.to(x0.device)]
    mse = (estimate - images).pow(2).flatten(1).mean(1)
    return ((1 - eta) * mse + eta * (1 - ms_ssim(images, estimate))).mean()


@torch.no_grad()
def validate(codec, model: GenerativeDecoder, images: torch.Tensor) -> dict:
    """PSNR / MS-SSIM on fixed crops over AWGN at 1 and 10 dB, 16 symbols per token: the JSCC
    reconstruction and both settings of the decoder (default steps)."""
    model.eval()
    result = {}
    for snr in (1.0, 10.0):
        jscc = round_trip(codec, images, ChannelSpec("awgn", snr), 16, make_generator(0))[0].clamp(0, 1)
        outputs = {"jscc": jscc, **{name: model.sample(jscc, name, generator=make_generator(0)) for name in SETTINGS}}
        for name, out in outputs.items():
            result[f"awgn{snr:g}_{name}"] = [round(float(psnr(images, out).mean()), 3),
                                             round(float(ms_ssim(images, out).mean()), 4)]
    model.train()
    return result


def main(argv=None) -> None:
    cfg, device = parse_config(__doc__, "training/configs/generative_decoder.json", argv)
    run = TrainingRun(cfg, device)
    g = run.generator
    data, val_images = run.datasets()
    codec = run.frozen(cfg["codec"])
    model = GenerativeDecoder(GenerativeDecoderConfig.from_dict(cfg["model"])).to(device)
    scheduler = model.scheduler()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    run.resume(model, optimizer)
    bar = tqdm(total=cfg["steps"], initial=run.step, desc="training generative decoder", unit="step")
    model.train()
    while run.progress() < 1.0:
        lr = run.set_learning_rate(optimizer)
        images, condition = jscc_batch(codec, data, cfg, g, device)
        value = loss(model, scheduler, images, condition, g)
        run.optimize(model, optimizer, value, bar)
        bar.set_postfix(loss=f"{value.item():.4f}", lr=f"{lr:.2e}")
        if run.step % cfg["log_every"] == 0:
            record = {"step": run.step, "minutes": run.minutes, "lr": lr, "loss": round(value.item(), 6)}
            run.checkpoint(record, model, optimizer)
    bar.close()
    run.save(model, optimizer)
    final = validate(codec, model, val_images)
    save_model(model.eval(), cfg["output"],
               run.provenance("training/train_generative.py", codec=cfg["codec"], validation=final),
               getattr(torch, cfg.get("weights_dtype", "float32")))
    print(json.dumps({"saved": cfg["output"], "steps": run.step, **final}))


if __name__ == "__main__":
    main()
