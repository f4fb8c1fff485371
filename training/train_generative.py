"""Train the conditional diffusion image decoder (paper 000 sec. II-B) for the rate-adaptive codec.

    python -m training.train_generative --config training/configs/generative_decoder.json

Stage "modules first" of paper 000's multi-stage strategy (sec. III-C) for g_d: the codec
(``codec``, frozen) sends random crops through the services' channel code at a drawn channel,
SNR and target mean symbols per token; its JSCC reconstruction is the condition. Each image draws
a setting (distortion, eta = 0.1; perception, eta = 0.5) and a step n of the N-step forward
process; the X-prediction is scored with eq. 10's image terms,
``(1 - eta) MSE + eta d_p``, with d_p = 1 - MS-SSIM (weight-free; LPIPS needs VGG weights that
cannot be fetched here). The joint fine-tuning of every module is not done (the codec stays
frozen). The EMA of the weights ships (float16); the loop: :mod:`training.loop`.
"""

from __future__ import annotations

import torch

from shared.channel import ChannelSpec, make_generator
from shared.models.generative_decoder import SETTING_ETA, SETTINGS, GenerativeDecoder, GenerativeDecoderConfig
from shared.quality import ms_ssim, psnr
from training.loop import TrainingRun
from shared.codecs.differentiable_link import round_trip
from training.train_rate_adaptive import draw_condition


def jscc_batch(codec, images: torch.Tensor, cfg: dict, g: torch.Generator) -> torch.Tensor:
    """The frozen codec's JSCC reconstructions (B, 3, S, S) of crops (B, 3, S, S), in groups of
    one drawn channel each."""
    decoded = []
    with torch.no_grad():
        for chunk in images.split(cfg["batch_size"] // cfg["groups_per_batch"]):
            spec, mean_symbols = draw_condition(cfg, g)
            decoded.append(round_trip(codec, chunk, spec, mean_symbols, g)[0])
    return torch.cat(decoded).clamp(0, 1)


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
    run = TrainingRun.from_command_line(__doc__, "training/configs/generative_decoder.json", argv)
    cfg, g = run.cfg, run.generator
    codec = run.frozen(cfg["codec"])
    model = GenerativeDecoder(GenerativeDecoderConfig.from_dict(cfg["model"]))
    scheduler = model.scheduler()

    def loss_fn(model: GenerativeDecoder, images: torch.Tensor):
        return loss(model, scheduler, images, jscc_batch(codec, images, cfg, g), g), {}

    model = run.fit(model, loss_fn, lambda ema: {})
    final = validate(codec, model, run.val_images) if run.is_main else {}
    run.export(model, "training/train_generative.py", codec=cfg["codec"], validation=final)
    run.close()


if __name__ == "__main__":
    main()
