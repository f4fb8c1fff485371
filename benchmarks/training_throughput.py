"""Training throughput (crops/s) of a training script under the loop's settings.

    python -m benchmarks.training_throughput --steps 30 --settings fp32:1 fp32:2 bf16:2 bf16-cl:2
    python -m benchmarks.training_throughput --script training.train_baseline --config training/configs/baseline.json

Each setting ``PRECISION[-cl]:THREADS`` runs the script (``--script``, default the rate-adaptive
codec's) for ``--steps`` steps in a fresh run folder with the config's model, batch and crop,
on the images of ``--data`` (default BSDS500 ``val``, loaded once per run and not timed), and
reports the loop's own throughput figure (``images_per_s`` of ``log.csv``: the optimisation
steps only, validation excluded). ``-cl`` turns ``channels_last`` on. Runs one after another on
this machine; a benchmark, not a test: the figures depend on what else the CPU is doing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500" / "val"


def run_setting(script: str, config: dict, setting: str, steps: int, data: str, device: str) -> dict:
    """One script run at ``setting``; its throughput and wall time."""
    precision, _, threads = setting.partition(":")
    channels_last = precision.endswith("-cl")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {**config, "steps": steps, "val_every": steps, "val_images": 1, "max_minutes": 60,
               "train_dirs": [data], "val_dir": data, "channels_last": channels_last,
               "run_dir": f"{tmp}/run", "output": f"{tmp}/w.safetensors"}
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(cfg))
        start = time.time()
        subprocess.run([sys.executable, "-m", script, "--config", str(path), "--device", device,
                        "--precision", precision.removesuffix("-cl"), "--threads", threads or "0"],
                       check=True, capture_output=True, text=True)
        row = next(csv.DictReader(open(f"{tmp}/run/log.csv")))
    return {"setting": setting, "images_per_s": float(row["images_per_s"]), "wall_s": round(time.time() - start, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="training.train_rate_adaptive", help="training module to run")
    parser.add_argument("--config", default="training/configs/rate_adaptive.json", help="its JSON config")
    parser.add_argument("--settings", nargs="+", default=["fp32:1", "fp32:2", "fp32-cl:2", "bf16-cl:2"],
                        metavar="PRECISION[-cl]:THREADS", help="settings to compare")
    parser.add_argument("--steps", type=int, default=30, help="optimisation steps per setting")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder to draw crops from")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    print(f"{args.script}, batch {config['batch_size']} crops of {config['crop']}, {args.steps} steps; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}")
    print("| setting | crops/s | wall s |\n|---|---:|---:|")
    for setting in args.settings:
        row = run_setting(args.script, config, setting, args.steps, args.data, args.device)
        print(f"| {row['setting']} | {row['images_per_s']:.2f} | {row['wall_s']} |", flush=True)


if __name__ == "__main__":
    main()
