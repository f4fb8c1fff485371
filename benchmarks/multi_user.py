"""Kodak PSNR per user when K users share the slots of a ``mu_mimo`` uplink (paper 002's MU-GSC
setting: three single-antenna users, three receive antennas), beside the single-user figures.

    python -m benchmarks.multi_user --limit 4 --users 1 2 3 --antennas 3 --snr 0 10 20

In-process, the services' stages: every image is encoded by the default codec at ``--cbr``; for K
users, slot j carries the images ``j, j + 1, .., j + K - 1`` (cyclically) as users 0 .. K-1, so
every image is sent once by every user position; the frames of a slot are zero-padded to the
longest (the padding is not counted in any user's CBR) and superposed
(:func:`shared.channel.mu_mimo.multiuser_channel`, i.i.d. Rayleigh per user, ``--coherence``
channel uses per H); the receiver separates them with each detector (ZF, MMSE; the same channel
draws for both) and decodes each user's frame in ``--mode``
(:meth:`shared.channel.mu_mimo.MultiUserMIMO.transmit_slot`). Beside them, single-user SISO references
(``--references``, default ``awgn rayleigh``) at the same Es/N0.

Each user's Es/N0 is ``--snr`` (equal large-scale gains). MMSE-SIC is not run: the JSCC symbols are
analog, so there is no decision to cancel (:mod:`shared.channel.detection`). Prints a markdown
table of the mean PSNR per user position and a JSON line per row (``--out``: all rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from shared.channel import ChannelSpec, make_generator
from shared.channel.link import transmit
from shared.channel.spec import channel_kind
from shared.channel.mu_mimo import MULTIUSER_DETECTORS
from shared.codecs import FrameHeader, FrameLost, codec_for
from shared.config import load_config
from shared.decoding import parse_mode
from shared.eval.separation import GREY
from shared.eval.systems import channel_seed, quantize
from shared.imageio import load_image_file
from shared.models.io import load_model
from shared.phy.symbols import parse_cbr
from shared.quality import psnr
from shared.serving.service import load_diffusion_decoders

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def slot_psnr(codec, frames, images, spec, mode, decoders, seed) -> list[float]:
    """Send ``frames`` (one per user) superposed in one slot of ``spec`` and decode each: the PSNR (dB)
    of every user's 8-bit reconstruction of its image (a lost frame scores the mid-grey image)."""
    block = channel_kind(spec.kind)
    generator = make_generator(seed)
    views = (block.transmit_slot([f.symbols for f in frames], spec, generator) if block.shares_slots
             else [transmit(f.symbols[None], spec, generator) for f in frames])
    scores = []
    for view, frame, image in zip(views, frames, images):  # one at a time: a decoder batch shares one token grid
        (outcome,) = codec.decode_batch([view], [spec], [FrameHeader.of(frame)], mode, decoders)
        decoded = torch.full_like(image, GREY) if isinstance(outcome, FrameLost) else outcome.image
        scores.append(float(psnr(image[None], quantize(decoded)[None])[0]))
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=KODAK, help="folder of images (default Kodak)")
    parser.add_argument("--limit", type=int, default=4, help="first N images (default 4)")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 2, 3], help="users per slot K (default 1 2 3)")
    parser.add_argument("--antennas", type=int, default=3, help="receive antennas Nr (default 3)")
    parser.add_argument("--detectors", nargs="+", choices=MULTIUSER_DETECTORS, default=list(MULTIUSER_DETECTORS))
    parser.add_argument("--references", nargs="*", default=["awgn", "rayleigh"], help="single-user SISO kinds")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0], help="Es/N0 per user (dB)")
    parser.add_argument("--cbr", default="1/24", help="target CBR (default 1/24)")
    parser.add_argument("--coherence", type=int, default=64, help="channel uses per H (default 64)")
    parser.add_argument("--mode", default="jscc", help="decoder mode (default jscc)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the channel draws")
    parser.add_argument("--out", type=Path, help="also write the rows here as a JSON list")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = parser.parse_args(argv)
    config = load_config(device=args.device)
    codec = codec_for(load_model(config.weights, config.resolve_device()))
    mode = parse_mode(args.mode)
    decoders = load_diffusion_decoders(config, codec)
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")[: args.limit]
    images = [load_image_file(p) for p in paths]
    cbr = parse_cbr(args.cbr)
    settings = [(kind, 1, None) for kind in args.references]
    settings += [("mu_mimo", k, d) for k in args.users for d in args.detectors]
    rows = []
    for snr in args.snr:
        encoded = {}  # threshold table -> frames: the side channel's scheme depends on it
        for kind, k, detector in settings:
            spec = ChannelSpec(kind, snr, coherence_symbols=args.coherence, users=k, rx_antennas=args.antennas,
                               multiuser_detector=detector or "mmse")
            spec.validate()
            table = channel_kind(kind).threshold_table
            if table not in encoded:
                encoded[table] = [codec.encode(image, spec, cbr) for image in images]
            frames = encoded[table]
            per_user: list[list[float]] = [[] for _ in range(k)]
            for j, name in enumerate(p.name for p in paths):
                members = [(j + u) % len(images) for u in range(k)]
                seed = channel_seed(args.seed, name, snr, f"{kind}-{k}")  # the same draws for every detector
                scores = slot_psnr(codec, [frames[i] for i in members], [images[i] for i in members],
                                   dataclasses.replace(spec, seed=seed), mode, decoders, seed)
                for u, score in enumerate(scores):
                    per_user[u].append(score)
            row = {"kind": kind, "users": k, "antennas": args.antennas if kind == "mu_mimo" else 1,
                   "detector": detector, "snr_db": snr,
                   "psnr_per_user": [round(statistics.mean(s), 2) for s in per_user],
                   "psnr_mean": round(statistics.mean(x for s in per_user for x in s), 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{len(images)} images of {args.images}, CBR {cbr}, mode {mode}, coherence {args.coherence} channel uses; "
          f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)\n")
    print("| channel | K | Nr | detector | SNR dB | PSNR per user (dB) | mean |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['kind']} | {row['users']} | {row['antennas']} | {row['detector'] or '-'} | {row['snr_db']:g} | "
              f"{' / '.join(f'{p:.2f}' for p in row['psnr_per_user'])} | {row['psnr_mean']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
