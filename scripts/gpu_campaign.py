"""The GPU campaign (issue 15): GPU minutes in, trained weights and GPU figures out.

Run through ``scripts/gpu_campaign.sh`` (which installs the carried wheels on the GPU machine):

    scripts/gpu_campaign.sh --plan        # here: build carry/, print the bytes that travel
    scripts/gpu_campaign.sh --dry-run     # here: the whole campaign on CPU, 20 s of training
    scripts/gpu_campaign.sh               # on the GPU machine, inside one 9-minute call

``plan`` builds the carried folder (``carry/``, ignored by git): the wheels of the packages the
GPU image lacks (:data:`WHEELS`, Python 3.12 manylinux x86_64), the BSDS500 training photos
re-encoded as JPEG in one tar (``train/`` and the ``val/`` images validation reads; quality 85,
or less where the bundle would not fit),
and the Kodak images the evaluation reads; it prints the bytes that would travel (the tracked
and untracked-not-ignored tree plus the carried folder), refuses above 60 MiB, and prints the
device call to make.

``run`` (the campaign; ``--dry-run``: on CPU with tiny settings) does, in this order, each phase
inside what is left of ``--deadline`` seconds and logged whether it worked or not:

1. unpacks the photos;
2. the receiver's decode latency per Kodak image for every decoder mode at batch 1 and 32
   (:mod:`benchmarks.decode_latency`), and ``semcom bench load`` at 1, 16 and 64 users;
3. continues training the default codec from ``weights/rate_adaptive.safetensors``
   (:mod:`training.train_rate_adaptive`, bf16 autocast, compiled) for ``--minutes`` or what the
   deadline leaves after the evaluation's reserve;
4. ``semcom eval`` of the new and the shipped weights on the Kodak images (adaptive, jscc mode,
   AWGN and Rayleigh, SNR 1 and 10 dB, CBR 1/48 and 1/24).

It writes at most 8 files to ``--out`` (default ``$OUT``): ``campaign.json`` (every figure),
``campaign.log``, ``decode_latency.json``, ``load.json``, ``training_log.csv``,
``eval_shipped.csv``, ``eval_new.csv`` and, only when its mean Kodak PSNR beats the shipped
weights', ``rate_adaptive.safetensors`` (int8, as shipped).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
WHEELS = ("diffusers==0.42.1", "sionna-no-rt==2.2.0", "constriction==0.5.0", "pytorch-msssim==1.0.0",
          "importlib-metadata==10.2.0", "lazy-importer==0.1.0", "importlib-resources==7.1.0",
          "grpcio==1.85.3", "grpcio-health-checking==1.85.1", "grpcio-reflection==1.85.1", "protobuf==7.36.2")
"""What the GPU image (PyTorch 2.11, Python 3.12) lacks, or holds older than the generated stubs need."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
BUNDLE_LIMIT = 60 * 2**20
KODAK = ("kodim01.png", "kodim02.png", "kodim03.png", "kodim04.png")
VALIDATION_IMAGES = 16  # training/configs/rate_adaptive.json val_images: all that validation reads
PHOTO_QUALITIES = (85, 80, 75, 70)
"""JPEG qualities the photos are re-encoded at: the highest whose bundle fits the limit."""
SHIPPED = REPO / "weights" / "rate_adaptive.safetensors"
RUN_COMMAND = "bash scripts/gpu_campaign.sh"

GPU = {"device": "cuda", "eval_limit": 4,
       "eval": ["--channel", "awgn", "rayleigh", "--snr", "1", "10", "--cbr", "1/48", "1/24"],
       "modes": ["jscc", "consistency", "teacher:25", "generative", "finetune"],
       "batches": [1, 32], "repeats": 3, "users": [1, 16, 64], "load_duration": 8, "load_size": "256",
       "precision": "bf16", "compile": True, "eval_reserve_s": 75, "latency_cap_s": 120, "load_cap_s": 150,
       "training": {"batch_size": 64, "groups_per_batch": 4, "lr": 0.0002, "min_lr": 0.00001, "warmup_steps": 50,
                    "val_every": 500, "threads": 0}}
DRY_RUN = {"device": "cpu", "eval_limit": 1, "eval": ["--channel", "awgn", "--snr", "10", "--cbr", "1/48"],
           "modes": ["jscc", "consistency", "teacher:2", "generative", "finetune"],
           "batches": [1, 2], "repeats": 1, "users": [1, 2], "load_duration": 1, "load_size": "full",
           "precision": None, "compile": False, "eval_reserve_s": 30, "latency_cap_s": 300, "load_cap_s": 300,
           "crop": (64, 64),
           "training": {"crop": 64, "batch_size": 4, "groups_per_batch": 2, "val_images": 2, "val_every": 1000,
                        "warmup_steps": 5, "steps": 1000, "threads": 2}}
"""The campaign's settings on the GPU and in the CPU dry run (``*_cap_s``: the most a measurement
may take; ``crop``: the dry run's images, center crops of the Kodak ones, height x width)."""


def python_executable() -> str:
    return os.environ.get("PYTHON") or sys.executable


# --- plan: the carried folder ------------------------------------------------------------


def download_wheels(wheels: Path) -> None:
    """The WHEELS, and nothing else, into a fresh ``wheels`` folder (one version of each)."""
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([python_executable(), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels), *WHEELS],
                   check=True)


def pack_photos(bsds: Path, tar_path: Path, quality: int) -> int:
    """BSDS500 ``train/`` (all) and ``val/`` (the first VALIDATION_IMAGES) as JPEG ``quality`` in
    one tar; returns the number of images."""
    from PIL import Image

    count = 0
    with tarfile.open(tar_path, "w") as tar:
        for split, limit in (("train", None), ("val", VALIDATION_IMAGES)):
            files = sorted(p for p in (bsds / split).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            for path in files[:limit]:
                data = io.BytesIO()
                Image.open(path).convert("RGB").save(data, "JPEG", quality=quality, optimize=True)
                info = tarfile.TarInfo(f"{split}/{path.stem}.jpg")
                info.size = data.tell()
                data.seek(0)
                tar.addfile(info, data)
                count += 1
    return count


def tree_bytes() -> int:
    """Bytes of the files a device call sends: tracked, and untracked but not ignored."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
    return sum((REPO / name).stat().st_size for name in set(listing.split("\0")) if name and (REPO / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def plan(args) -> int:
    carry = args.carry
    carry.mkdir(parents=True, exist_ok=True)
    print(f"wheels for Python 3.12 manylinux x86_64 into {carry / 'wheels'} ...", flush=True)
    download_wheels(carry / "wheels")
    (carry / "kodak").mkdir(exist_ok=True)
    for name in KODAK:
        shutil.copyfile(args.kodak / name, carry / "kodak" / name)
    for quality in PHOTO_QUALITIES:
        print(f"photos: {args.bsds} -> {carry / 'bsds500.tar'} (JPEG quality {quality}) ...", flush=True)
        images = pack_photos(args.bsds, carry / "bsds500.tar", quality)
        parts = {"tree (tracked + untracked, not ignored)": tree_bytes(),
                 f"{carry.name}/wheels ({len(list((carry / 'wheels').glob('*.whl')))} wheels)":
                 folder_bytes(carry / "wheels"),
                 f"{carry.name}/bsds500.tar ({images} photos, JPEG quality {quality})":
                 (carry / "bsds500.tar").stat().st_size,
                 f"{carry.name}/kodak ({len(KODAK)} images)": folder_bytes(carry / "kodak")}
        total = sum(parts.values())
        if total <= BUNDLE_LIMIT:
            break
    for name, size in parts.items():
        print(f"{size:>12,d} B  {size / 2**20:6.2f} MiB  {name}")
    print(f"{total:>12,d} B  {total / 2**20:6.2f} MiB  would travel (limit {BUNDLE_LIMIT / 2**20:.0f} MiB)")
    if total > BUNDLE_LIMIT:
        print(f"refused: {total / 2**20:.2f} MiB > {BUNDLE_LIMIT / 2**20:.0f} MiB", file=sys.stderr)
        return 1
    print("\nthe device call (one 9-minute command):")
    print(json.dumps({"command": RUN_COMMAND, "carry": [carry.name], "timeout_s": 570}))
    return 0


# --- run: the campaign ---------------------------------------------------------------------


class Campaign:
    """The phases' shared state: the deadline, the log (console and ``campaign.log``) and the
    figures (``campaign.json``)."""

    def __init__(self, out: Path, deadline_s: float):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.start = time.time()
        self.deadline = self.start + deadline_s
        self.log_file = (out / "campaign.log").open("a")
        self.figures: dict = {"phases": {}}

    def left(self) -> float:
        return self.deadline - time.time()

    def log(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def call(self, command: list[str], timeout: float, env: dict | None = None) -> str:
        """Run ``command`` (its output logged); its stdout. Raises on a non-zero exit or the timeout."""
        self.log("$ " + " ".join(command))
        process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1),
                                 env={**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30", **(env or {})})
        for stream in (process.stdout, process.stderr):
            if stream.strip():
                self.log_file.write(stream if stream.endswith("\n") else stream + "\n")
        tail = (process.stdout + process.stderr).strip().splitlines()[-3:]
        self.log(f"exit {process.returncode}: " + " | ".join(tail)[-400:])
        if process.returncode:
            raise RuntimeError(f"{command[2] if len(command) > 2 else command[0]} exited {process.returncode}")
        return process.stdout

    def phase(self, name: str, function, *args):
        """``function(*args)`` timed and logged; None (and the error in the figures) if it fails."""
        started = time.time()
        self.log(f"== {name} ({self.left():.0f} s left)")
        try:
            result = function(*args)
            self.figures["phases"][name] = {"ok": True, "seconds": round(time.time() - started, 1)}
            return result
        except Exception as error:  # a failed phase must not cost the others' figures
            self.figures["phases"][name] = {"ok": False, "seconds": round(time.time() - started, 1),
                                            "error": f"{type(error).__name__}: {error}"}
            self.log(f"{name} failed: {type(error).__name__}: {error}")
            return None

    def write_figures(self) -> None:
        self.figures["wall_s"] = round(time.time() - self.start, 1)
        (self.out / "campaign.json").write_text(json.dumps(self.figures, indent=1))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def unpack_photos(tar_path: Path, folder: Path) -> dict:
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder, filter="data")
    return {split: len(list((folder / split).glob("*"))) for split in ("train", "val")}


def small_images(kodak: Path, folder: Path, size: tuple[int, int]) -> Path:
    """Center crops (height x width) of the Kodak images: the dry run's stand-ins."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(kodak.glob("*.png")):
        image = Image.open(path)
        left, top = (image.width - size[1]) // 2, (image.height - size[0]) // 2
        image.crop((left, top, left + size[1], top + size[0])).save(folder / path.name)
    return folder


def decode_latency(c: Campaign, settings: dict, image: Path) -> list[dict]:
    output = c.out / "decode_latency.json"
    c.call([python_executable(), "-m", "benchmarks.decode_latency", "--device", settings["device"], "--images",
            str(image), "--modes", *settings["modes"], "--snr", "10", "--batch", *map(str, settings["batches"]),
            "--repeats", str(settings["repeats"]), "--out", str(output)],
           min(settings["latency_cap_s"], c.left() - 60))
    return json.loads(output.read_text())


def load_bench(c: Campaign, settings: dict, image: Path) -> list[dict]:
    output = c.out / "load.json"
    c.call([python_executable(), "-m", "semcom_cli.entry", "bench", "load", "--users", *map(str, settings["users"]),
            "--duration", str(settings["load_duration"]), "--image", str(image), "--size", settings["load_size"],
            "--out", str(output)], min(settings["load_cap_s"], c.left() - 60),
           env={"SEMCOM_DEVICE": settings["device"]})
    return json.loads(output.read_text())


def train(c: Campaign, settings: dict, photos: Path, work: Path, minutes: float) -> dict:
    budget = min(minutes, (c.left() - settings["eval_reserve_s"] - 45) / 60)
    if budget <= 0:
        raise RuntimeError(f"no time left to train ({c.left():.0f} s before the deadline)")
    paths = {"train_dirs": [str(photos / "train")], "val_dir": str(photos / "val"), "run_dir": str(work / "run"),
             "output": str(work / "rate_adaptive.safetensors")}
    config = {**json.loads((REPO / "training/configs/rate_adaptive.json").read_text()), **settings["training"]}
    config_path = work / "rate_adaptive_campaign.json"
    config_path.write_text(json.dumps(config, indent=1))
    command = [python_executable(), "-m", "training.train_rate_adaptive", "--config", str(config_path),
               "--device", settings["device"], "--max-minutes", f"{budget:.2f}"]
    command += ["--init-weights", str(SHIPPED), "--run-dir", paths["run_dir"], "--output", paths["output"],
                "--train-dirs", *paths["train_dirs"], "--val-dir", paths["val_dir"]]
    command += (["--precision", settings["precision"]] if settings["precision"] else [])
    command += ["--compile"] if settings["compile"] else []
    stdout = c.call(command, budget * 60 + 120)
    if (work / "run" / "log.csv").is_file():  # the run's validation log
        shutil.copyfile(work / "run" / "log.csv", c.out / "training_log.csv")
    final = json_lines(stdout)
    return {"minutes_budget": round(budget, 2), "command": " ".join(command),
            "final": final[-1] if final else None}


def kodak_psnr(c: Campaign, settings: dict, kodak: Path, weights: Path, name: str) -> dict:
    """Mean PSNR (dB) of the adaptive codec of ``weights`` (jscc mode) per channel/SNR/CBR of
    ``settings["eval"]`` on the first ``settings["eval_limit"]`` Kodak images, and over all of
    them (``mean``)."""
    folder = Path(tempfile.mkdtemp(prefix=f"eval_{name}_"))
    c.call([python_executable(), "-m", "semcom_cli.entry", "eval", "--data", str(kodak), "--limit",
            str(settings["eval_limit"]), "--systems", "adaptive", "--modes", "jscc", *settings["eval"],
            "--adaptive-weights", str(weights), "--device", settings["device"], "--out", str(folder)], c.left() - 5)
    shutil.copyfile(folder / "results.csv", c.out / f"eval_{name}.csv")
    rows = [r for r in csv.DictReader((folder / "results.csv").open()) if r["system"] == "adaptive"]
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(f"{row['channel']} {row['snr_db']} dB {row['cbr']}", []).append(float(row["psnr"]))
    table = {key: round(sum(v) / len(v), 4) for key, v in groups.items()}
    table["mean"] = round(sum(float(r["psnr"]) for r in rows) / len(rows), 4)
    return table


def run(args) -> int:
    settings = DRY_RUN if args.dry_run else GPU
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None:
        print("no output folder: give --out DIR or set OUT", file=sys.stderr)
        return 2
    minutes = args.minutes if args.minutes is not None else (20 / 60 if args.dry_run else 6.0)
    missing = [p for p in (args.carry / "bsds500.tar", args.carry / "kodak") if not p.exists()]
    if missing:
        print(f"missing {', '.join(map(str, missing))}: build the carried folder with --plan", file=sys.stderr)
        return 2
    c = Campaign(out, args.deadline)
    work = Path(tempfile.mkdtemp(prefix="gpu_campaign_"))
    probe = c.call([python_executable(), "-c", "import torch, platform; print(platform.python_version(), "
                    "torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"], 120)
    c.figures.update(dry_run=args.dry_run, machine=probe.strip(), settings={k: v for k, v in settings.items()})
    c.figures["photos"] = c.phase("unpack photos", unpack_photos, args.carry / "bsds500.tar", work / "photos")
    kodak = args.carry / "kodak"
    if "crop" in settings:
        kodak = small_images(kodak, work / "kodak", settings["crop"])
    first = sorted(kodak.glob("*.png"))[0]
    c.figures["decode_latency"] = c.phase("decode latency", decode_latency, c, settings, first)
    c.figures["load"] = c.phase("bench load", load_bench, c, settings, first)
    c.write_figures()
    training = c.phase("training", train, c, settings, work / "photos", work, minutes)
    c.figures["training"] = training
    new_weights = work / "rate_adaptive.safetensors"
    if training and new_weights.is_file():
        new = c.phase("eval new", kodak_psnr, c, settings, kodak, new_weights, "new")
        shipped = c.phase("eval shipped", kodak_psnr, c, settings, kodak, SHIPPED, "shipped")
        better = bool(new and shipped and new["mean"] > shipped["mean"])
        c.figures["eval"] = {"new": new, "shipped": shipped, "new_is_better": better}
        if better:
            shutil.copyfile(new_weights, c.out / "rate_adaptive.safetensors")
        c.log(f"Kodak mean PSNR new {new and new['mean']} dB, shipped {shipped and shipped['mean']} dB: "
              + ("new weights written" if better else "new weights not kept"))
    c.write_figures()
    written = sorted(p.name for p in c.out.iterdir())
    c.log(f"wrote {len(written)} files to {c.out}: {', '.join(written)}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p["ok"] for p in c.figures["phases"].values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    plan_parser = sub.add_parser("plan", help="build the carried folder and print the bytes that travel")
    plan_parser.add_argument("--carry", type=Path, default=REPO / "carry", help="the carried folder (default carry/)")
    plan_parser.add_argument("--bsds", type=Path, default=SHARED_DATA / "bsds500", help="BSDS500 (train/, val/)")
    plan_parser.add_argument("--kodak", type=Path, default=SHARED_DATA / "kodak", help="the Kodak images")
    run_parser = sub.add_parser("run", help="the campaign (on the GPU; --dry-run: here on CPU)")
    run_parser.add_argument("--carry", type=Path, default=REPO / "carry", help="the carried folder (default carry/)")
    run_parser.add_argument("--out", type=Path, help="output folder (default $OUT)")
    run_parser.add_argument("--minutes", type=float, help="training budget (default 6; dry run 20 s)")
    run_parser.add_argument("--deadline", type=float, default=530.0,
                            help="seconds the whole campaign may take (default 530: inside a 9-minute call)")
    run_parser.add_argument("--dry-run", action="store_true", help="on CPU with tiny settings")
    args = parser.parse_args(argv)
    return plan(args) if args.command == "plan" else run(args)


if __name__ == "__main__":
    sys.exit(main())
