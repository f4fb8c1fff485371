"""`semcom eval`: every system through the same channel code, on an image folder.

For each image x channel x CBR x SNR x system the image is sent and scored (PSNR and
MS-SSIM of the 8-bit output against the original). Channel draws are seeded from (seed,
image, SNR, channel), the same for every system, so systems meet the same noise and fades.

Writes to --out:
  results.csv        one row per image and setting; the run resumes from it (rows already
                     there are skipped), so an interrupted run goes on where it stopped
  summary.md         mean PSNR / MS-SSIM per system, channel and CBR versus SNR, with the
                     command, date and machine
  psnr_vs_snr.png, msssim_vs_snr.png   one panel per channel x CBR, one line per system
  grid.png           the first image's reconstructions, systems x SNRs (first channel, CBR)

Systems, all at the same target CBR:
  adaptive       the rate-adaptive codec: hyperprior symbol allocation per token, side
                 information over a protected LDPC side channel, counted in the CBR; once per
                 --modes entry: jscc (its decoder alone), teacher[:N] (diffusion ODE from the
                 channel's t_m), consistency[:s] (the distilled 1-step student),
                 generative[-p][:steps] (the conditional diffusion image decoder, distortion-
                 or perception-oriented), labelled adaptive, adaptive/teacher:N ...
  deepjscc       the fixed-rate SNR-adaptive DeepJSCC baseline (shipped weights)
  jpeg-ldpc      JPEG (Pillow) + 5G NR LDPC + QAM (Sionna), the best modulation and code
  avif-ldpc      rate for the nominal SNR (AWGN thresholds measured on this link), decoded
                 through the same channel: one lost codeword loses the file (the cliff)
  avif-capacity  the separation bound: AVIF at the AWGN capacity budget N log2(1+SNR) bits
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from shared.channel import CHANNEL_KINDS, ChannelSpec
from shared.codec import parse_cbr
from shared.diffusion.modes import parse_mode
from shared.config import (BASELINE_WEIGHTS, CONSISTENCY_WEIGHTS, GENERATIVE_WEIGHTS, RATE_ADAPTIVE_WEIGHTS,
                           TEACHER_WEIGHTS, load_config)
from shared.evaluation import (System, capacity_system, channel_seed, deepjscc_system, rate_adaptive_system,
                               separation_system)
from shared.imageio import load_image_file
from shared.quality import ms_ssim, psnr

from . import argtypes

FIELDS = ("system", "channel", "cbr", "snr_db", "image", "achieved_cbr", "psnr", "ms_ssim", "info")
SYSTEMS = ("adaptive", "deepjscc", "jpeg-ldpc", "avif-ldpc", "avif-capacity")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def system_names(args) -> list[str]:
    """The systems' labels: each of ``--systems``, the adaptive codec once per ``--modes`` entry
    (``adaptive`` for jscc, ``adaptive/teacher:25`` ...)."""
    names = []
    for name in args.systems:
        if name == "adaptive":
            names += ["adaptive" if mode == "jscc" else f"adaptive/{mode}" for mode in args.modes]
        else:
            names.append(name)
    return names


def build_systems(args, device: str) -> dict[str, System]:
    """Every system of the run; ``NotImplementedError`` for a mode whose weights do not load."""
    from shared.models.io import load_model
    from shared.service import load_diffusion_decoders

    modes = [parse_mode(mode) for mode in args.modes] if "adaptive" in args.systems else []
    if modes:
        codec = load_model(args.adaptive_weights, device)
        config = load_config(device=device, teacher_weights=args.teacher_weights,
                             consistency_weights=args.consistency_weights, generative_weights=args.generative_weights)
        decoders = load_diffusion_decoders(config, codec) if any(m.diffusion for m in modes) else None
        for mode in modes:
            if mode.diffusion:
                decoders.model_for(mode)

    def adaptive(label: str) -> System:
        return rate_adaptive_system(codec, parse_mode(label.partition("/")[2]), decoders)

    factories = {
        "deepjscc": lambda: deepjscc_system(load_model(args.weights, device)),
        "jpeg-ldpc": lambda: separation_system("jpeg"),
        "avif-ldpc": lambda: separation_system("avif"),
        "avif-capacity": lambda: capacity_system("avif"),
    }
    return {name: adaptive(name) if name.startswith("adaptive") else factories[name]() for name in system_names(args)}


def channel_spec(args, kind: str, snr: float, seed: int) -> ChannelSpec:
    """One measurement's channel: ``kind`` with this run's K, coherence, MIMO and TDL options."""
    spec = ChannelSpec(kind, snr, k_factor=args.k_factor, coherence_symbols=args.coherence, seed=seed,
                       tx_antennas=args.antennas[0], rx_antennas=args.antennas[1], tdl_model=args.tdl_model)
    spec.validate()
    return spec


def channel_label(args, kind: str) -> str:
    return {"rician": f"rician K={args.k_factor:g}", "mimo": f"mimo {args.antennas[0]}x{args.antennas[1]} svd",
            "tdl": f"TDL-{args.tdl_model}"}.get(kind, kind)


def read_done(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{**row, "snr_db": float(row["snr_db"]), "psnr": float(row["psnr"]), "ms_ssim": float(row["ms_ssim"])}
            for row in csv.DictReader(f)]


def row_key(row: dict) -> tuple:
    return row["system"], row["channel"], row["cbr"], float(row["snr_db"]), row["image"]


def evaluate(args, systems: dict[str, System], files: list[Path], out: Path) -> list[dict]:
    """Run every missing measurement, appending rows to results.csv as they complete."""
    path = out / "results.csv"
    rows = read_done(path)
    done = {row_key(row) for row in rows}
    settings = [(f, kind, cbr, snr, name) for f in files for kind in args.channel for cbr in args.cbr
                for snr in args.snr for name in systems]
    todo = [s for s in settings if (s[4], s[1], str(s[2]), float(s[3]), s[0].name) not in done]
    new_file = not path.is_file()
    with path.open("a", newline="") as f, tqdm(total=len(settings), initial=len(settings) - len(todo),
                                               desc="eval", unit="run") as bar:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        if new_file:
            writer.writeheader()
        image_cache: dict[Path, torch.Tensor] = {}
        for file, kind, cbr, snr, name in todo:
            image = image_cache.setdefault(file, load_image_file(file))
            spec = channel_spec(args, kind, snr, channel_seed(args.seed, file.name, snr, kind))
            output = systems[name](image, spec, cbr)
            row = {"system": name, "channel": kind, "cbr": str(cbr), "snr_db": float(snr), "image": file.name,
                   "achieved_cbr": round(output.achieved_cbr, 6),
                   "psnr": round(float(psnr(image[None], output.image[None])[0]), 4),
                   "ms_ssim": round(float(ms_ssim(image[None], output.image[None])[0]), 5),
                   "info": " ".join(f"{k}={v}" for k, v in output.info.items())}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            bar.update(1)
    return rows


def means(rows: list[dict], metric: str) -> dict[tuple, float]:
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["channel"], row["cbr"], float(row["snr_db"])), []).append(float(row[metric]))
    return {key: statistics.fmean(values) for key, values in groups.items()}


def summary(rows: list[dict], args, n_images: int, command: str) -> str:
    psnrs, ssims = means(rows, "psnr"), means(rows, "ms_ssim")
    lines = [f"Mean PSNR (dB) / MS-SSIM over {n_images} images of {args.data} (8-bit outputs); SNR = Es/N0 per "
             f"complex symbol; fading blocks of {args.coherence} symbols (MIMO: channel uses), perfect CSI.", "",
             "| system | channel | CBR | " + " | ".join(f"{snr:g} dB" for snr in args.snr) + " |",
             "|---|---|---|" + "---|" * len(args.snr)]
    for kind in args.channel:
        for cbr in map(str, args.cbr):
            for name in system_names(args):
                cells = [f"{psnrs[name, kind, cbr, float(snr)]:.2f} / {ssims[name, kind, cbr, float(snr)]:.3f}"
                         for snr in args.snr]
                lines.append(f"| {name} | {channel_label(args, kind)} | {cbr} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{command}`; {datetime.date.today()}; {platform.machine()}, {os.cpu_count()} CPU cores, "
              f"torch {torch.__version__}, device {load_config(device=args.device).resolve_device()}."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], args, metric: str, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = means(rows, metric)
    panels = [(kind, str(cbr)) for kind in args.channel for cbr in args.cbr]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (kind, cbr) in zip(axes[0], panels):
        for name in system_names(args):
            ax.plot(args.snr, [values[name, kind, cbr, float(snr)] for snr in args.snr], marker="o", label=name)
        ax.set_title(f"{channel_label(args, kind)}, CBR {cbr}")
        ax.set_xlabel("SNR, Es/N0 (dB)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.4)
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def grid(args, systems: dict[str, System], file: Path, path: Path) -> None:
    """The first image and its reconstructions: one row per system, one column per SNR."""
    from PIL import Image, ImageDraw

    image = load_image_file(file)
    kind, cbr = args.channel[0], args.cbr[0]
    tiles = []
    for name in systems:
        row = [image]
        for snr in args.snr:
            spec = channel_spec(args, kind, snr, channel_seed(args.seed, file.name, snr, kind))
            row.append(systems[name](image, spec, cbr).image)
        tiles.append(row)
    h, w = image.shape[-2] // 2, image.shape[-1] // 2
    canvas = Image.new("RGB", (w * (1 + len(args.snr)), (h + 14) * len(tiles)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, row) in enumerate(zip(systems, tiles)):
        for c, (snr, tile) in enumerate(zip([None, *args.snr], row)):
            small = torch.nn.functional.interpolate(tile[None], size=(h, w), mode="area")[0]
            array = small.mul(255).round().byte().permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(array), (c * w, r * (h + 14) + 14))
            caption = file.name if snr is None else f"{name}, {kind} {snr:g} dB, CBR {cbr}"
            draw.text((c * w + 4, r * (h + 14)), caption, fill="black")
    canvas.save(path)


def run_eval(args) -> int:
    from training.data import list_images

    try:
        args.cbr = [parse_cbr(text) for text in args.cbr]
        files = list_images(args.data)[: args.limit]
        for kind in args.channel:
            channel_spec(args, kind, args.snr[0], 0)
        device = load_config(device=args.device).resolve_device()
        args.modes = [str(parse_mode(mode)) for mode in args.modes]
        systems = build_systems(args, device)
        for cbr in args.cbr:  # a system that does not serve a CBR says so now, not mid-run
            next(iter(systems.values()))(load_image_file(files[0])[:, :256, :256], ChannelSpec(), cbr)
    except (FileNotFoundError, ValueError, NotImplementedError) as exc:
        print(f"semcom eval: {exc}", file=sys.stderr)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = evaluate(args, systems, files, out)
    wanted = {(n, k, str(c), float(s), f.name) for f in files for k in args.channel for c in args.cbr
              for s in args.snr for n in system_names(args)}
    rows = [row for row in rows if row_key(row) in wanted]
    text = summary(rows, args, len(files), args.command_line)
    (out / "summary.md").write_text(text)
    plot(rows, args, "psnr", "PSNR (dB)", out / "psnr_vs_snr.png")
    plot(rows, args, "ms_ssim", "MS-SSIM", out / "msssim_vs_snr.png")
    grid(args, systems, files[0], out / "grid.png")
    print(text, end="")
    return 0


def add_parser(sub) -> None:
    parser = sub.add_parser("eval", help="evaluate systems on an image folder over channels, SNRs and CBRs",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  semcom eval --data ../shared/data/kodak --channel awgn rayleigh "
                                   "--snr 0 5 10 15 20 --cbr 1/24 1/48 --out runs/eval")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"image folder (default {DEFAULT_DATA})")
    parser.add_argument("--channel", nargs="+", choices=CHANNEL_KINDS, default=["awgn"], help="channel kinds")
    parser.add_argument("--snr", type=argtypes.finite, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0],
                        help="SNRs in dB (default 0 5 10 15 20)")
    parser.add_argument("--cbr", nargs="+", default=["1/24", "1/48"], help="target CBRs (default 1/24 1/48)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["deepjscc"],
                        help=f"systems to compare: {', '.join(SYSTEMS)} (default deepjscc)")
    parser.add_argument("--modes", nargs="+", default=["jscc"],
                        help="decoder modes of the adaptive codec, each its own system: jscc, teacher[:N], "
                             "consistency[:s], generative[:steps], generative-p[:steps] (default jscc)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the channel draws (default 0)")
    parser.add_argument("--coherence", type=int, default=64, help="block-fading length (default 64)")
    parser.add_argument("--k-factor", type=argtypes.finite, default=1.0, help="Rician K (default 1)")
    parser.add_argument("--antennas", type=int, nargs=2, default=[2, 2], metavar=("NT", "NR"), help="MIMO antennas")
    parser.add_argument("--tdl-model", default="A", help="3GPP TDL profile A..E (default A)")
    parser.add_argument("--weights", default=str(BASELINE_WEIGHTS), help="fixed-rate DeepJSCC weights")
    parser.add_argument("--adaptive-weights", default=str(RATE_ADAPTIVE_WEIGHTS), help="rate-adaptive codec weights")
    parser.add_argument("--teacher-weights", default=str(TEACHER_WEIGHTS), help="diffusion teacher weights")
    parser.add_argument("--consistency-weights", default=str(CONSISTENCY_WEIGHTS), help="consistency student weights")
    parser.add_argument("--generative-weights", default=str(GENERATIVE_WEIGHTS), help="generative image decoder weights")
    parser.add_argument("--device", help="cpu | cuda | auto (default SEMCOM_DEVICE, else auto)")
    parser.set_defaults(func=run_eval)
