"""Train the semantic fine-tuning module (paper 002 sec. III-D, Alg. 1) for the rate-adaptive codec.

    python -m training.train_finetune --config training/configs/semantic_finetune.json

Training pairs (S_hat, I): random crops I sent by the shipped codec (``codec``, frozen) through
the services' channel code at a drawn channel and SNR (:func:`training.train_generative.jscc_batch`);
S_hat is its JSCC decode. One resumable run, two stages (the first ``pretrain_fraction`` of the
budget, steps or minutes, then the rest; a cosine learning rate over each):

1. pre-training: N1 on Concat(S_hat, I) and N2, ``L_pre = L1(I, N2(S_hat, Z))`` (eq. 9);
2. DM training: Z_0 = the frozen stage-1 N1 on the concat; Z_T drawn from q(Z_T | Z_0) (eq. 10);
   the deployed N1 on S_hat gives D; eps_theta runs the full reverse process (T steps, eq. 12)
   to Z_hat; N2 (from stage 1) restores ``I_hat = N2(S_hat, Z_hat)``;
   ``L = L1(I, I_hat) + L1(Z_hat, Z_0)`` (L_pre + L_diff), all three networks jointly.

Exported: the deployed :class:`~shared.models.semantic_finetune.SemanticFineTuner` (float16), from
the EMA of the weights; the loop: :mod:`training.loop`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.channel import ChannelSpec, make_generator
from shared.codecs.differentiable_link import round_trip
from shared.models.semantic_finetune import PriorExtractor, SemanticFineTuner, SemanticFineTunerConfig
from shared.quality import psnr
from training.loop import TrainingRun, learning_rate
from training.train_generative import jscc_batch

STAGES = ("pretrain", "diffusion")


class FineTuneTraining(nn.Module):
    """What the run trains: the stage-1 N1 on Concat(S_hat, I) (``teacher_extractor``, 6 input
    channels) and the deployed :class:`SemanticFineTuner` (``tuner``)."""

    def __init__(self, config: SemanticFineTunerConfig):
        super().__init__()
        self.teacher_extractor = PriorExtractor(config, in_channels=6)
        self.tuner = SemanticFineTuner(config)

    def teacher_prior(self, decoded: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Alg. 1 line 3: Z = N1(Concat(S_hat, I)), (B, 3, S, S) each -> (B, 4C')."""
        return self.teacher_extractor(torch.cat([decoded, images], dim=1))


def stage_at(cfg: dict, progress: float) -> tuple[str, float]:
    """The stage at run ``progress`` (0..1) and the fraction of that stage spent."""
    split = cfg["pretrain_fraction"]
    return ("pretrain", progress / split) if progress < split else ("diffusion", (progress - split) / (1 - split))


def loss(model: FineTuneTraining, stage: str, images: torch.Tensor, decoded: torch.Tensor,
         g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Stage 1: L_pre (eq. 9); stage 2: L_pre + L_diff (module doc). Returns the loss and its terms."""
    if stage == "pretrain":
        restored = model.tuner.restoration(decoded, model.teacher_prior(decoded, images))
        value = F.l1_loss(restored, images)
        return value, {"l_pre": value.detach()}
    with torch.no_grad():
        target = model.teacher_prior(decoded, images)
    noise = torch.randn(target.shape, generator=g).to(target.device)
    restored, prior = model.tuner(decoded, model.tuner.diffuse(target, noise))
    l_pre, l_diff = F.l1_loss(restored, images), F.l1_loss(prior, target)
    return l_pre + l_diff, {"l_pre": l_pre.detach(), "l_diff": l_diff.detach()}


@torch.no_grad()
def validate(codec, model: FineTuneTraining, images: torch.Tensor, mean_symbols: int = 16) -> dict:
    """PSNR on fixed crops at AWGN 1 / 10 dB and Rayleigh 5 dB, ``mean_symbols`` per token: the
    JSCC decode, the deployed module (Alg. 2, Z_T seeded) and stage 1 with the transmitted image
    (the prior it imitates, an upper bound)."""
    model.eval()
    result = {}
    for kind, snr in (("awgn", 1.0), ("awgn", 10.0), ("rayleigh", 5.0)):
        spec = ChannelSpec(kind, snr, coherence_symbols=64)
        decoded = round_trip(codec, images, spec, mean_symbols, make_generator(0))[0].clamp(0, 1)
        outputs = {"jscc": decoded, "finetune": model.tuner.refine(decoded, make_generator(0)),
                   "stage1": model.tuner.restoration(decoded, model.teacher_prior(decoded, images)).clamp(0, 1)}
        for name, out in outputs.items():
            result[f"{kind}{snr:g}_{name}"] = round(float(psnr(images, out).mean()), 3)
    model.train()
    return result


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "training/configs/semantic_finetune.json", argv)
    cfg, g = run.cfg, run.generator
    codec = run.frozen(cfg["codec"])

    def schedule(step: int, progress: float) -> float:
        stage, stage_progress = stage_at(cfg, progress)
        return learning_rate(cfg if stage == "pretrain" else {**cfg, "warmup_steps": 0}, step, stage_progress)

    def loss_fn(model: FineTuneTraining, images: torch.Tensor):
        stage = stage_at(cfg, run.budget_spent)[0]
        value, terms = loss(model, stage, images, jscc_batch(codec, images, cfg, g), g)
        return value, {"stage": stage, **terms}

    model = run.fit(FineTuneTraining(SemanticFineTunerConfig.from_dict(cfg["model"])), loss_fn, lambda ema: {},
                    schedule)
    final = validate(codec, model, run.val_images) if run.is_main else {}
    run.export(model.tuner.eval(), "training/train_finetune.py", codec=cfg["codec"], validation=final)
    run.close()


if __name__ == "__main__":
    main()
