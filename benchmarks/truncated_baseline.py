"""The naive reference of the VAE up-sampler: the fixed-rate baseline sending only the first
``k`` symbols of each token at a rate it was NOT trained for (its decoder zero-fills the
rest, as at its served rates), through the same seeded channel draws as `semcom eval`. Rows in
results.csv format, labelled ``deepjscc-truncated``.

    python -m benchmarks.truncated_baseline --cbr 1/96 --limit 12 --out runs/eval_vae/truncated
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from semcom_cli.evaluate import DEFAULT_DATA, FIELDS
from shared.channel import ChannelSpec
from shared.phy.symbols import parse_cbr
from shared.config import BASELINE_WEIGHTS
from shared.codecs import codec_for
from shared.eval.systems import channel_seed, codec_system
from shared.imageio import load_image_file
from shared.models.io import load_model
from shared.quality import ms_ssim, psnr
from training.data import list_images


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    parser.add_argument("--cbr", default="1/96", help="target CBR (default 1/96: 8 symbols per token)")
    parser.add_argument("--channel", nargs="+", default=["awgn", "rayleigh"], help="channel kinds")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0], help="SNRs (dB)")
    parser.add_argument("--coherence", type=int, default=64, help="block-fading length, as semcom eval")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the channel draws, as semcom eval")
    parser.add_argument("--weights", default=str(BASELINE_WEIGHTS), help="fixed-rate baseline weights")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results.csv)")
    args = parser.parse_args(argv)
    cbr = parse_cbr(args.cbr)
    model = load_model(args.weights)
    k = round(float(cbr) * 3 * model.config.downscale**2)
    model.config = dataclasses.replace(model.config, trained_symbols_per_token=(k,))  # the untrained rate
    system = codec_system(codec_for(model))
    files = list_images(args.data)[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    settings = [(f, kind, snr) for f in files for kind in args.channel for snr in args.snr]
    with (args.out / "results.csv").open("w", newline="") as out, torch.inference_mode():
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for file, kind, snr in tqdm(settings, desc="truncated baseline", unit="run"):
            image = load_image_file(file)
            seed = channel_seed(args.seed, file.name, snr, kind)
            spec = ChannelSpec(kind, snr, coherence_symbols=args.coherence, seed=seed)
            output = system(image, spec, cbr)
            writer.writerow({"system": "deepjscc-truncated", "channel": kind, "cbr": str(cbr), "snr_db": snr,
                             "image": file.name, "achieved_cbr": round(output.achieved_cbr, 6),
                             "psnr": round(float(psnr(image[None], output.image[None])[0]), 4),
                             "ms_ssim": round(float(ms_ssim(image[None], output.image[None])[0]), 5), "info": ""})
    print(f"wrote {args.out / 'results.csv'}")


if __name__ == "__main__":
    main()
