"""Fine-tune the rate-adaptive codec's transmitter into a robust encoder (paper 003 sec. III-C,
Algorithm 1, eq. 12).

    python -m training.train_robust --config training/configs/robust_encoder.json

Starts from the served codec (``init_from``). Only the transmitter side learns: the analysis
``g_a`` and the rate encoder ``f_e`` (the paper's encoder phi'); the hyperprior (so the
allocation rule), the rate decoder ``f_d`` and the synthesis ``g_s`` (the generator psi) stay
frozen, so the robust transmitter works with the receivers already deployed.

Per batch, each group draws its channel, SNR and mean symbols per token as
:mod:`training.train_rate_adaptive` does; then

1. the semantic error delta of eq. 7: ``pgd_steps`` PGD steps at ``pgd_level`` (L2 budget
   ``pgd_level * sqrt(H W)``, :func:`shared.eval.perturbation.pgd_semantic_error`) against the
   *current* encoder, through the noiseless chain at the drawn SNR and mean symbols;
2. eq. 12: ``MSE(x, G(E'(x))) + beta * MSE(G(E'(x)), G(E'(x + delta)))``, clean and perturbed
   images through the real channel and equalizer (:func:`shared.codecs.differentiable_link.round_trip`);
   ``beta`` = ``sensitivity_weight``, the coupling parameter of eq. 10-11 (eq. 12 is beta = 1,
   which cost this codec 4 dB on clean images; the shipped weights use 0.1).

Validation (fixed val crops, AWGN 10 dB, 16 mean symbols per token = the JSCC part of CBR
1/48): PSNR on clean input and under PGD at ``pgd_level``, both scored against the clean crop.
The loop (EMA, resume, budget): :mod:`training.loop`.
"""

from __future__ import annotations

import torch
from torch.nn.functional import mse_loss

from shared.channel import ChannelSpec, make_generator
from shared.codecs.differentiable_link import round_trip
from shared.models.rate_adaptive import RateAdaptiveJSCC
from shared.codecs.differentiable_link import noiseless_round_trip
from shared.eval.perturbation import pgd_semantic_error
from shared.quality import psnr
from training.loop import TrainingRun
from training.train_rate_adaptive import draw_condition

VALIDATION_SNR_DB, VALIDATION_MEAN_SYMBOLS = 10.0, 16


def transmitter_parameters(model: RateAdaptiveJSCC) -> list[torch.nn.Parameter]:
    """Freeze everything but g_a and f_e; return their parameters."""
    model.requires_grad_(False)
    trainable = [*model.analysis.parameters(), *model.rate_encoder.parameters()]
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


def robust_loss(model: RateAdaptiveJSCC, images: torch.Tensor, spec: ChannelSpec, mean_symbols: float,
                level: float, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 12 on one group (B, 3, S, S): (reconstruction MSE, clean-vs-perturbed MSE), after a PGD
    search for delta against the current encoder."""
    delta = pgd_semantic_error(lambda x: noiseless_round_trip(model, x, spec.snr_db, mean_symbols),
                               images, level, steps, generator)
    out, _, _, _ = round_trip(model, torch.cat([images, images + delta]), spec, mean_symbols, generator)
    clean, perturbed = out.chunk(2)
    return mse_loss(clean, images), mse_loss(perturbed, clean)


def validate(model: RateAdaptiveJSCC, images: torch.Tensor, level: float, steps: int) -> dict:
    """Mean PSNR of the fixed crops over AWGN 10 dB at 16 mean symbols per token, clean and under
    PGD at ``level`` (same seed every time), both against the clean crops."""
    model.eval()
    spec = ChannelSpec("awgn", VALIDATION_SNR_DB)
    delta = pgd_semantic_error(lambda x: noiseless_round_trip(model, x, spec.snr_db, VALIDATION_MEAN_SYMBOLS),
                               images, level, steps, make_generator(0))
    with torch.no_grad():
        clean, _, _, _ = round_trip(model, images, spec, VALIDATION_MEAN_SYMBOLS, make_generator(0))
        attacked, _, _, _ = round_trip(model, images + delta, spec, VALIDATION_MEAN_SYMBOLS, make_generator(0))
    model.train()
    return {"psnr_clean": round(float(psnr(images, clean).mean()), 3),
            f"psnr_pgd{level:g}": round(float(psnr(images, attacked).mean()), 3)}


def main(argv=None) -> None:
    run = TrainingRun.from_command_line(__doc__, "training/configs/robust_encoder.json", argv)
    cfg, g = run.cfg, run.generator
    model = run.frozen(cfg["init_from"])
    if not isinstance(model, RateAdaptiveJSCC):
        raise ValueError(f"init_from must hold a rate-adaptive codec, not {type(model).__name__}")
    transmitter_parameters(model)
    level, steps = cfg["pgd_level"], cfg["pgd_steps"]
    before = validate(model, run.val_images, level, steps) if run.is_main and not run.has_checkpoint else {}
    group_size = cfg["batch_size"] // cfg["groups_per_batch"]
    groups = cfg["groups_per_batch"]

    def loss_fn(model: RateAdaptiveJSCC, images: torch.Tensor):
        distortion, sensitivity = 0.0, 0.0
        for chunk in images.split(group_size):
            spec, mean_symbols = draw_condition(cfg, g)
            reconstruction, change = robust_loss(model, chunk, spec, mean_symbols, level, steps, g)
            distortion, sensitivity = distortion + reconstruction, sensitivity + change
        terms = {"train_mse": distortion.detach() / groups, "train_change_mse": sensitivity.detach() / groups}
        return (distortion + cfg["sensitivity_weight"] * sensitivity) / groups, terms

    model = run.fit(model, loss_fn, lambda ema: validate(ema, run.val_images, level, steps))
    final = validate(model, run.val_images, level, steps) if run.is_main else {}
    run.export(model, "training/train_robust.py", base=cfg["init_from"], validation=final, validation_before=before)
    run.close()


if __name__ == "__main__":
    main()
