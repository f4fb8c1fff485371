"""How the latent adapter's settings trade the gain on its adaptation images against held-out
images of the same domain (paper 003 sec. III-D; :func:`shared.adaptation.learning.learn_adapter`).

For each setting ``N,STEPS,LR,PENALTY,CROPS`` an adapter is learned on the first N images of
--adapt and scored (mean PSNR over simulated channel draws, identity vs adapter) on the
adaptation draws and on one draw per --held image (fixed seed, shared by all settings):

    python -m benchmarks.adapter_sweep --adapt runs/ood/adapt --held runs/ood/eval \\
        1,200,5e-3,1e-3,4 1,600,5e-3,1e-3,4 1,200,5e-3,1.0,4 3,200,1e-3,1e-3,4
"""

from __future__ import annotations

import argparse
import random

import torch

from shared.adaptation.learning import channel_draws, learn_adapter, mean_psnr
from shared.adaptation.options import AdaptationOptions
from shared.phy.symbols import parse_cbr
from shared.config import RATE_ADAPTIVE_WEIGHTS
from shared.imageio import load_image_file
from shared.models.io import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="N,STEPS,LR,PENALTY,CROPS per adapter")
    parser.add_argument("--adapt", required=True, help="folder of adaptation images (first N used)")
    parser.add_argument("--held", required=True, help="folder of held-out images of the same domain")
    parser.add_argument("--cbr", default="1/48", help="CBR of the draws (default 1/48)")
    parser.add_argument("--weights", default=str(RATE_ADAPTIVE_WEIGHTS), help="rate-adaptive codec weights")
    args = parser.parse_args(argv)
    from training.data import list_images

    torch.set_num_threads(1)
    model = load_model(args.weights, "cpu")
    cbrs = (parse_cbr(args.cbr),)
    adapt = [load_image_file(path) for path in list_images(args.adapt)]
    held = channel_draws(model, [load_image_file(path) for path in list_images(args.held)],
                         AdaptationOptions(draws=1, cbrs=cbrs, seed=123), random.Random(123))
    identity = mean_psnr(model, held, None)
    print("| images | steps | lr | penalty | crops | adaptation draws PSNR (dB) | held-out PSNR (dB) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        n, steps, lr, penalty, crops = setting.split(",")
        options = AdaptationOptions(steps=int(steps), learning_rate=float(lr), penalty=float(penalty),
                                    crops_per_step=int(crops), cbrs=cbrs)
        result = learn_adapter(model, adapt[: int(n)], options, progress=False)
        print(f"| {n} | {steps} | {lr} | {penalty} | {crops} | {result.psnr_before_db:.2f} -> "
              f"{result.psnr_after_db:.2f} | {identity:.2f} -> {mean_psnr(model, held, result.adapter):.2f} | "
              f"{result.seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
