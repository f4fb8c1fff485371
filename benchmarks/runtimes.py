"""Milliseconds per Kodak image of the default codec's encoder (analysis) and decoder (synthesis)
networks on each serving runtime (shared/models/runtime.py), batch 1 and 8, and the ratio to
eager PyTorch: the measurement behind ``SEMCOM_RUNTIME=auto``.

    python -m benchmarks.runtimes [--runtimes eager compile onnx] [--batches 1 8] [--threads 2]
                                  [--repeats 5] [--device cpu] [--out rows.json]

Each network runs on random images of Kodak's 768 x 512 (the latent of one for the decoder),
warmed up once; the figure is the median of ``--repeats`` calls divided by the batch. Prints a
markdown table and one JSON line per row.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from tqdm import tqdm

from shared.config import RATE_ADAPTIVE_WEIGHTS
from shared.models.io import load_model
from shared.models.runtime import RUNTIMES, use_runtime

KODAK = (512, 768)


def per_image_ms(network, inputs, batch: int, repeats: int, sync) -> float:
    """Median ms of ``network(*inputs)`` over ``repeats`` calls, per image of the batch."""
    times = []
    with torch.no_grad():
        network(*inputs)
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            network(*inputs)
            sync()
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times) / batch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(RATE_ADAPTIVE_WEIGHTS))
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (0: every core)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write all rows as one JSON list here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    base = load_model(args.weights, args.device).eval()
    rows, eager_ms = [], {}
    for runtime in tqdm(args.runtimes, desc="runtimes"):
        model = use_runtime(copy.deepcopy(base), runtime, args.threads)
        for batch in args.batches:
            images = torch.rand(batch, 3, *KODAK, device=args.device)
            condition = model._condition(torch.full((batch,), 10.0, device=args.device),
                                         torch.full((batch,), 16.0, device=args.device))
            with torch.no_grad():
                latent = base.analysis(images, condition)
            for stage, network, inputs in (("encoder", model.analysis, (images, condition)),
                                           ("decoder", model.synthesis, (latent, condition))):
                ms = per_image_ms(network, inputs, batch, args.repeats, sync)
                if runtime == "eager":
                    eager_ms[stage, batch] = ms
                reference = eager_ms.get((stage, batch))
                rows.append({"runtime": runtime, "stage": stage, "batch": batch, "ms_per_image": round(ms, 1),
                             "ratio_to_eager": round(ms / reference, 2) if reference else None,
                             "threads": args.threads or torch.get_num_threads(), "device": args.device})
    print("| runtime | stage | batch | ms per image | / eager |\n|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['runtime']} | {row['stage']} | {row['batch']} | {row['ms_per_image']} | {row['ratio_to_eager']} |")
    for row in rows:
        print(json.dumps(row))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
