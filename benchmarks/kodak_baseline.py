"""Measure the DeepJSCC baseline codec on an image folder versus SNR.

Every image goes, at full resolution, through the very stage functions the services
use: encode_image (transmitter) -> transmit (channel emulator) ->
equalize_and_decode (receiver), then is quantized to 8 bits as the returned PNG is, and
scored with PSNR and MS-SSIM against the original. SNR is Es/N0 per complex symbol (dB).
The encoding does not depend on the channel kind, so each (image, CBR, SNR) is encoded
once and sent through every channel. Channel noise and fading are seeded from
(--seed, image index, SNR, channel), so runs are reproducible.

Writes to --out: results.csv (one row per image and setting), summary.md (mean
"PSNR / MS-SSIM" per channel x CBR and SNR, with the machine it ran on), and
psnr_vs_snr.png, msssim_vs_snr.png. summary.md is also printed.

example (two Kodak images, quick look):
    python -m benchmarks.kodak_baseline --limit 2 --snr 0 10 --channel awgn
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import matplotlib
import torch
from tqdm import tqdm

from shared.channel import CHANNEL_KINDS, ChannelSpec, make_generator
from shared.channel.link import transmit
from shared.codec import achieved_cbr, encode_image, equalize_and_decode, parse_cbr
from shared.config import DEFAULT_WEIGHTS, load_config
from shared.imageio import load_image_file
from shared.models.io import load_deepjscc
from shared.quality import ms_ssim, psnr
from training.data import list_images

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)

FIELDS = ("image", "channel", "cbr", "achieved_cbr", "snr_db", "psnr", "ms_ssim", "encode_ms", "decode_ms")


def channel_seed(seed: int, image_index: int, snr_db: float, kind: str) -> int:
    """A stable 63-bit seed for one (image, SNR, channel) draw (Python's hash() is salted)."""
    digest = hashlib.sha256(repr((seed, image_index, snr_db, kind)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def channel_spec(args, kind: str, snr: float, seed: int) -> ChannelSpec:
    """The channel of one measurement: ``kind`` with this run's K, coherence, MIMO and TDL options."""
    spec = ChannelSpec(kind, snr, k_factor=args.k_factor, coherence_symbols=args.coherence, seed=seed,
                       tx_antennas=args.antennas[0], rx_antennas=args.antennas[1], tdl_model=args.tdl_model)
    spec.validate()
    return spec


def channel_label(args, kind: str) -> str:
    return {"rician": f"rician K={args.k_factor:g}", "mimo": f"mimo {args.antennas[0]}x{args.antennas[1]} svd",
            "tdl": f"TDL-{args.tdl_model} (300 ns, 3 m/s)"}.get(kind, kind)


def measure(model, files: list[Path], args) -> list[dict]:
    """One result row per image x channel x CBR x SNR."""
    rows = []
    bar = tqdm(total=len(files) * len(args.cbr) * len(args.snr) * len(args.channel), desc="kodak", unit="decode")
    for index, path in enumerate(files):
        image = load_image_file(path)
        for cbr in args.cbr:
            for snr in args.snr:
                start = time.perf_counter()
                encoded = encode_image(model, image, snr, cbr)
                encode_ms = 1000 * (time.perf_counter() - start)
                for kind in args.channel:
                    spec = channel_spec(args, kind, snr, channel_seed(args.seed, index, snr, kind))
                    transmission = transmit(encoded.symbols[None], spec, make_generator(spec.seed))
                    start = time.perf_counter()
                    decoded = equalize_and_decode(model, transmission, spec, encoded.symbols_per_token, encoded.grid,
                                                  encoded.image_size)
                    decode_ms = 1000 * (time.perf_counter() - start)
                    received = decoded.mul(255).round().div(255)[None]
                    rows.append({
                        "image": path.name, "channel": kind, "cbr": str(cbr),
                        "achieved_cbr": round(achieved_cbr(transmission.channel_uses, encoded.image_size), 6),
                        "snr_db": snr, "psnr": round(float(psnr(image[None], received)[0]), 4),
                        "ms_ssim": round(float(ms_ssim(image[None], received)[0]), 5),
                        "encode_ms": round(encode_ms, 2), "decode_ms": round(decode_ms, 2),
                    })
                    bar.update(1)
    bar.close()
    return rows


def mean_by_setting(rows: list[dict], metric: str) -> dict[tuple[str, str, float], float]:
    """(channel, cbr, snr) -> mean of ``metric`` over images."""
    groups: dict[tuple[str, str, float], list[float]] = {}
    for row in rows:
        groups.setdefault((row["channel"], row["cbr"], row["snr_db"]), []).append(row[metric])
    return {key: statistics.fmean(values) for key, values in groups.items()}


def summary_markdown(rows: list[dict], args, n_images: int, device: str, command: str) -> str:
    psnrs, ssims = mean_by_setting(rows, "psnr"), mean_by_setting(rows, "ms_ssim")
    lines = [
        f"# DeepJSCC baseline on {args.data} ({n_images} images, full resolution)",
        "",
        "Mean PSNR (dB) / MS-SSIM of the 8-bit output; SNR is Es/N0 per complex symbol (dB); "
        f"flat fading is block fading over {args.coherence} symbols (MIMO: channel uses) with MMSE "
        "equalization (MIMO: SVD precoding and combining) and perfect CSI; TDL is frequency-selective over OFDM. "
        "CBR is the requested one; MIMO spends half the channel uses (two streams).",
        "",
        "| channel | CBR | " + " | ".join(f"{snr:g} dB" for snr in args.snr) + " |",
        "|---|---|" + "---|" * len(args.snr),
    ]
    for kind in args.channel:
        for cbr in map(str, args.cbr):
            cells = (f"{psnrs[kind, cbr, snr]:.2f} / {ssims[kind, cbr, snr]:.3f}" for snr in args.snr)
            lines.append(f"| {channel_label(args, kind)} | {cbr} | " + " | ".join(cells) + " |")
    encode_ms = statistics.fmean(row["encode_ms"] for row in rows)
    decode_ms = statistics.fmean(row["decode_ms"] for row in rows)
    lines += [
        "",
        f"Command: `{command}`; weights {args.weights}; date {datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"machine {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {device}; "
        f"mean encode {encode_ms:.1f} ms, mean equalize+decode {decode_ms:.1f} ms per image.",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], args, metric: str, ylabel: str, path: Path) -> None:
    means = mean_by_setting(rows, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for kind in args.channel:
        for cbr in map(str, args.cbr):
            ax.plot(args.snr, [means[kind, cbr, snr] for snr in args.snr], marker="o",
                    label=f"{channel_label(args, kind)}, CBR {cbr}")
    ax.set_xlabel("SNR, Es/N0 (dB)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"DeepJSCC baseline on {Path(args.data).name}: {ylabel} vs SNR")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(True, alpha=0.4)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kodak_baseline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data/kodak", help="image folder, searched recursively (default: %(default)s)")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="DeepJSCC safetensors file (default: %(default)s)")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0], help="SNRs in dB (default: 0 5 10 15 20)")
    parser.add_argument("--channel", nargs="+", choices=CHANNEL_KINDS, default=["awgn", "rayleigh"], help="channel kinds (default: awgn rayleigh)")
    parser.add_argument("--cbr", nargs="+", default=["1/24", "1/48"], help="channel bandwidth ratios the model serves (default: 1/24 1/48)")
    parser.add_argument("--coherence", type=int, default=64, help="block-fading length in symbols (default: %(default)s)")
    parser.add_argument("--k-factor", type=float, default=1.0, help="Rician K, linear (default: %(default)s)")
    parser.add_argument("--antennas", type=int, nargs=2, default=[2, 2], metavar=("NT", "NR"), help="MIMO antennas (default: 2 2)")
    parser.add_argument("--tdl-model", default="A", help="3GPP TDL profile A..E (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the channel draws (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")
    parser.add_argument("--device", help="cpu | cuda | auto (default: SEMCOM_DEVICE, else auto)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--out", default="runs/kodak_baseline", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = load_config(device=args.device).resolve_device()
    try:
        model = load_deepjscc(args.weights, device)
        args.cbr = [parse_cbr(text) for text in args.cbr]
        for cbr in args.cbr:
            model.config.symbols_per_token(cbr)
        files = list_images(args.data)[: args.limit]
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))

    rows = measure(model, files, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    command = shlex.join([*shlex.split(parser.prog), *(sys.argv[1:] if argv is None else argv)])
    summary = summary_markdown(rows, args, len(files), device, command)
    (out / "summary.md").write_text(summary)
    plot(rows, args, "psnr", "PSNR (dB)", out / "psnr_vs_snr.png")
    plot(rows, args, "ms_ssim", "MS-SSIM", out / "msssim_vs_snr.png")
    print(summary, end="")


if __name__ == "__main__":
    main()
