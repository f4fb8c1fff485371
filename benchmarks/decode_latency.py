"""Receiver decode latency per decoder mode, on Kodak-size frames.

    python -m benchmarks.decode_latency --modes jscc consistency teacher:25 teacher generative --snr 0 10 20
    python -m benchmarks.decode_latency --device cuda --batch 1 32 --out latency.json
    python -m benchmarks.decode_latency --images ../shared/data/kodak/kodim0[1-4].png --modes jscc consistency

For each image (``--images``, default the first Kodak image), mode, SNR and batch size B
(``--batch``, default 1), the image is encoded once, sent over AWGN, and B copies of it are decoded
together ``--repeats`` times after a warm-up, the modes in turn within each repeat (a change of
the machine's load hits them alike); the median time per image (the batch's time / B) of
the receiver's stages (equalization, side information, denoising, JSCC decoding, generation: all of
:func:`shared.codecs.rate_adaptive.decode_adaptive_batch`) is printed with the network evaluations
spent, with the fastest of the repeats, as a JSON line per row (``--out``: all rows as one JSON
list) and a markdown table of the means over the images with each mode's extra time over the
jscc decode (when jscc is among ``--modes``). Runs on ``--device`` (CPU here; the same command on a GPU). The figures are this
machine's: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from shared.codecs.rate_adaptive import decode_adaptive_batch, encode_adaptive
from shared.channel import ChannelSpec, make_generator
from shared.channel.link import transmit
from shared.phy.symbols import parse_cbr
from shared.config import load_config
from shared.decoding import parse_mode
from shared.imageio import load_image_file
from shared.models.io import load_model
from shared.codecs import codec_for
from shared.serving.service import load_diffusion_decoders

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim01.png"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, nargs="+", default=[DEFAULT_IMAGE], help="images to send (default kodim01)")
    parser.add_argument("--modes", nargs="+", default=["jscc", "consistency", "teacher:25", "generative"])
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0], help="AWGN SNRs (dB)")
    parser.add_argument("--cbr", default="1/48", help="target CBR (default 1/48)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="images decoded together (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per row (median reported)")
    parser.add_argument("--out", type=Path, help="also write the rows here as a JSON list")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(device=args.device)
    device = config.resolve_device()
    codec = load_model(config.weights, device)
    decoders = load_diffusion_decoders(config, codec_for(codec))
    cbr = parse_cbr(args.cbr)
    rows = []
    for path in args.images:
        image = load_image_file(path)
        for snr in args.snr:
            rows += decode_times(codec, decoders, image, ChannelSpec("awgn", snr, seed=0), cbr, args, device,
                                 {"image": path.name, "size": f"{image.shape[-1]}x{image.shape[-2]}"})
    sizes = ", ".join(dict.fromkeys(f"{row['image']} ({row['size']})" for row in rows))
    print(f"\n{sizes}; CBR {cbr}, AWGN; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {device}, median of {args.repeats}, mean over "
          f"{len(args.images)} image(s)\n")
    print(markdown_table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


def decode_times(codec, decoders, image: torch.Tensor, spec: ChannelSpec, cbr, args, device: str,
                 labels: dict) -> list[dict]:
    """One row per ``--modes`` entry and ``--batch`` size: ``labels``, mode, SNR, batch, NFE, the
    median and the fastest decode time per image (ms) of ``image`` (C, H, W) sent once over ``spec``
    (on a shared machine the fastest is the closest to the decode's own cost). The modes
    are timed in turn within each repeat, so a change of the machine's load hits them alike."""
    encoded = encode_adaptive(codec, image, spec, cbr)
    transmission = transmit(encoded.symbols[None], spec, make_generator(0))
    settings = [(parse_mode(text), batch) for text in args.modes for batch in args.batch]

    def decode(mode, batch: int):
        return decode_adaptive_batch(codec, [transmission] * batch, [spec] * batch, [encoded.jscc_symbols] * batch,
                                     encoded.grid, [encoded.image_size] * batch, mode=mode, decoders=decoders)[0]

    outcomes = [decode(mode, batch) for mode, batch in settings]  # warm-up
    times: list[list[float]] = [[] for _ in settings]
    for _ in range(args.repeats):
        for (mode, batch), spent in zip(settings, times):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            decode(mode, batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            spent.append(1000 * (time.perf_counter() - started) / batch)
    rows = [{**labels, "mode": str(mode), "snr_db": spec.snr_db, "batch": batch, "nfe": outcome.nfe,
             "decode_ms_per_image": round(statistics.median(spent), 1), "fastest_ms_per_image": round(min(spent), 1)}
            for (mode, batch), outcome, spent in zip(settings, outcomes, times)]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Per mode, SNR and batch: the mean over the rows' images of the median and of the fastest
    decode ms per image, each with the extra ms over the jscc decode of the same SNR and batch
    ("" when jscc was not measured)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["snr_db"], row["batch"]), []).append(row)
    fields = ("decode_ms_per_image", "fastest_ms_per_image")
    means = {(field, key): statistics.fmean(r[field] for r in group) for field in fields for key, group in groups.items()}
    lines = ["| mode | SNR dB | batch | NFE | images | median ms per image | extra over jscc | fastest ms per image "
             "| extra over jscc |", "|---|---|---|---|---|---|---|---|---|"]
    for (mode, snr, batch), group in groups.items():
        cells = []
        for field in fields:
            plain = means.get((field, ("jscc", snr, batch)))
            mean = means[field, (mode, snr, batch)]
            cells += [f"{mean:.1f}", "" if plain is None else f"{mean - plain:+.1f}"]
        nfe = "/".join(sorted({str(r["nfe"]) for r in group}))
        lines.append(f"| {mode} | {snr:g} | {batch} | {nfe} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
