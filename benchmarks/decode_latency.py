"""Receiver decode latency per decoder mode, on Kodak-size frames.

    python -m benchmarks.decode_latency --modes jscc consistency teacher:25 teacher generative --snr 0 10 20
    python -m benchmarks.decode_latency --device cuda --batch 1 32 --out latency.json

For each mode, SNR and batch size B (``--batch``, default 1), one image (``--image``, default the
first Kodak image) is encoded once, sent over AWGN, and B copies of it are decoded together
``--repeats`` times after a warm-up; the median time per image (the batch's time / B) of the
receiver's stages (equalization, side information, denoising, JSCC decoding, generation: all of
:func:`shared.codecs.rate_adaptive.decode_adaptive_batch`) is printed with the network evaluations
spent, as a markdown table and a JSON line per row (``--out``: all rows as one JSON list). Runs on ``--device`` (CPU here; the same
command on a GPU). The figures are this machine's: a benchmark, not a test.
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
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="image to send (default kodim01)")
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
    image = load_image_file(args.image)
    cbr = parse_cbr(args.cbr)
    rows = []
    for snr in args.snr:
        spec = ChannelSpec("awgn", snr, seed=0)
        encoded = encode_adaptive(codec, image, spec, cbr)
        transmission = transmit(encoded.symbols[None], spec, make_generator(0))
        for text in args.modes:
            mode = parse_mode(text)
            for batch in args.batch:

                def decode():
                    return decode_adaptive_batch(codec, [transmission] * batch, [spec] * batch,
                                                 [encoded.jscc_symbols] * batch, encoded.grid,
                                                 [encoded.image_size] * batch, mode=mode, decoders=decoders)[0]

                outcome = decode()  # warm-up
                times = []
                for _ in range(args.repeats):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                    decode()
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(1000 * (time.perf_counter() - started) / batch)
                row = {"mode": str(mode), "snr_db": snr, "batch": batch, "nfe": outcome.nfe,
                       "decode_ms_per_image": round(statistics.median(times), 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    h, w = image.shape[-2:]
    print(f"\n{args.image.name} ({w}x{h}), CBR {cbr}, AWGN; {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}, median of {args.repeats}\n")
    print("| mode | SNR dB | batch | NFE | decode ms per image |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['snr_db']:g} | {row['batch']} | {row['nfe']} | {row['decode_ms_per_image']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
