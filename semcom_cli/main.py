"""semcom: generative semantic communication for wireless images, as gRPC microservices.

An image travels  client -> transmitter (semantic encoder, power normalization)
-> channel emulator (fading + noise) -> receiver (MMSE equalization, decoder) and its
reconstruction comes back with quality figures and per-stage latencies.

Start here:
  semcom up                                   # run the three services (Ctrl-C stops them)
  semcom send photo.png --channel rayleigh --snr 5 --out rx/
  semcom demo                                 # up + send the sample photos at a few SNRs + down

Settings (ports, weights, workers, limits) come from SEMCOM_* environment variables,
e.g. SEMCOM_TRANSMITTER_PORT=60051; see shared/config.py for the full list.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shlex
import signal
import sys
import time
from pathlib import Path

import grpc
from tqdm import tqdm

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.channel import channel_kinds
from shared.config import SAMPLE_IMAGES, load_config
from shared.decoding import PIPELINES, mode_help
from shared.imageio import load_image_file
from shared.perceptual import PERCEPTUAL_METRICS, PerceptualScorer, load_perceptual

from . import adapt, argtypes, bench, channel_stats, evaluate
from .channel_args import add_channel_options, add_kind_option, channel_fields, off_the_wire_flags
from . import health as health_cli
from .client import SendOptions, expand_images, is_ok, stream_requests
from .launcher import ServiceProcesses


def _mode_stages(stage: str) -> tuple[str, ...]:
    """The latency stages of the decoder modes that run in pipeline ``stage`` (:mod:`shared.decoding`)."""
    return tuple(dict.fromkeys(p.timer for p in PIPELINES.values() if p.stage == stage))


MODE_STAGES = (*_mode_stages("latent"), *_mode_stages("image"))  # shown only when a decoder mode spent time in them
STAGES = ("decode_input", "encode", "channel", "equalize", *_mode_stages("latent"), "decode", *_mode_stages("image"),
          "end_to_end")
"""The per-stage latencies of the table; a mode's stage is shown only when a result spent time in it."""


def result_record(path: Path, result: pb.ImageResult, options: SendOptions, output: Path | None) -> dict:
    """The JSON object printed for one image by ``semcom send --json``."""
    ok = is_ok(result)
    return {
        "image": str(path),
        "status": grpc.StatusCode.OK.name if ok else _status_name(result.status.code),
        "error": None if ok else result.status.message,
        "psnr": round(result.quality.psnr_db, 3) if ok else None,
        "ms_ssim": round(result.quality.ms_ssim, 5) if ok else None,
        "cbr": result.achieved_cbr if ok else None,
        "target_cbr": options.cbr,
        "snr_db": options.snr_db,
        "channel": options.channel,
        "mode": result.mode or options.mode,
        "nfe": result.nfe,
        "latency_ms": {k: round(v, 2) for k, v in sorted(result.latency_ms.items())},
        "output": str(output) if output else None,
    }


def perceptual_scores(path: Path, result: pb.ImageResult, scorer: PerceptualScorer) -> dict[str, float | None]:
    """The perceptual metrics (:mod:`shared.perceptual`) of one result's image against the sent
    file, for ``semcom send --json``: None for those not computed and for a failed request."""
    values = {}
    if is_ok(result):
        reference, estimate = load_image_file(path)[None], load_image_file(io.BytesIO(result.image))[None]
        values = {name: round(float(value[0]), 5) for name, value in scorer(reference, estimate).items()}
    return {name: values.get(name) for name in PERCEPTUAL_METRICS}


def _status_name(code: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), f"CODE_{code}")


def format_table(records: list[dict]) -> str:
    """A fixed-width per-image table: quality, CBR and per-stage latency (ms)."""
    ok = [r for r in records if not r["error"]]
    columns = [s for s in STAGES if s not in MODE_STAGES or any(s in r["latency_ms"] for r in ok)]
    head = f"{'image':<22} {'status':<16} {'PSNR dB':>8} {'MS-SSIM':>8} {'CBR':>8} " + " ".join(
        f"{s[:10]:>10}" for s in columns)
    lines = [head, "-" * len(head)]
    for r in records:
        name = Path(r["image"]).name[:22]
        if r["error"]:
            lines.append(f"{name:<22} {r['status']:<16} {r['error']}")
            continue
        stages = " ".join(f"{r['latency_ms'].get(s, float('nan')):>10.1f}" for s in columns)
        lines.append(f"{name:<22} {r['status']:<16} {r['psnr']:>8.2f} {r['ms_ssim']:>8.4f} "
                     f"{'1/' + format(1 / r['cbr'], '.4g'):>8} {stages}")
    if ok:
        mean = lambda key: sum(r[key] for r in ok) / len(ok)  # noqa: E731
        e2e = sum(r["latency_ms"].get("end_to_end", 0.0) for r in ok) / len(ok)
        lines.append("-" * len(head))
        lines.append(f"{'mean of ' + str(len(ok)) + ' ok':<22} {'':<16} {mean('psnr'):>8.2f} {mean('ms_ssim'):>8.4f} "
                     f"{'':>8} {'':>{11 * (len(columns) - 1) - 1}} {e2e:>10.1f}")
    return "\n".join(lines)


async def send_images(target: str, files: list[Path], options: SendOptions, out_dir: Path | None,
                      as_json: bool, timeout_s: float | None) -> list[dict]:
    """Stream ``files`` to the transmitter at ``target``; print and save results as they arrive
    (``as_json``: one JSON object per image, the perceptual metrics included)."""
    config = load_config()
    scorer = load_perceptual(config.perceptual_weights) if as_json else None
    for note in scorer.skipped.values() if scorer else ():
        print(f"semcom send: note: {note}", file=sys.stderr)
    requests = [options.request(str(i), path.read_bytes()) for i, path in enumerate(files)]
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[int, dict] = {}
    with tqdm(total=len(files), desc=f"{options.channel} {options.snr_db:g} dB", unit="img",
              file=sys.stderr, disable=None) as bar:
        async for result in stream_requests(target, requests, config, timeout_s):
            index = int(result.request_id)
            output = None
            if out_dir and is_ok(result):
                output = out_dir / f"{files[index].stem}_{options.channel}_{options.snr_db:g}dB.png"
                output.write_bytes(result.image)
            records[index] = result_record(files[index], result, options, output)
            if as_json:
                records[index].update(perceptual_scores(files[index], result, scorer))
                tqdm.write(json.dumps(records[index]), file=sys.stdout)
            bar.update(1)
    return [records[i] for i in sorted(records)]


def add_send_options(parser: argparse.ArgumentParser) -> None:
    add_kind_option(parser)
    parser.add_argument("--cbr", type=argtypes.cbr, default=1 / 24, help="channel bandwidth ratio, e.g. 1/24 or 1/48 (default 1/24)")
    parser.add_argument("--mode", default="jscc", help=f"decoder mode: {mode_help()}")
    add_channel_options(parser, exclude=off_the_wire_flags())
    parser.add_argument("--seed", type=int, help="seed of the channel draws (default: fresh randomness)")
    parser.add_argument("--user", default="cli", help="user id sent with each request")
    parser.add_argument("--use-adapter", action="store_true",
                        help="decode through the user's out-of-distribution latent adapter, learned first with "
                             "`semcom adapt --user U IMAGE ...` (rate-adaptive codec; default: off, identity)")
    parser.add_argument("--target", help="transmitter address host:port (default from SEMCOM_HOST/SEMCOM_TRANSMITTER_PORT)")
    parser.add_argument("--timeout", type=float, default=None, help="give up on the stream after this many seconds")


def options_from(args, snr_db: float) -> SendOptions:
    return SendOptions(channel=args.channel, snr_db=snr_db, cbr=args.cbr, mode=args.mode, seed=args.seed,
                       user_id=args.user, use_adapter=args.use_adapter, channel_fields=channel_fields(args))


def run_send(args) -> int:
    config = load_config()
    target = args.target or config.transmitter_target
    try:
        files = expand_images(args.images)
        records = asyncio.run(send_images(target, files, options_from(args, args.snr), args.out, args.json, args.timeout))
    except FileNotFoundError as exc:
        print(f"semcom send: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"semcom send: the transmitter at {target} failed: {exc.code().name}: {exc.details()}\n"
              "Is it running? Start the services with `semcom up`.", file=sys.stderr)
        return 3
    if not args.json:
        print(format_table(records))
    return 0 if all(not r["error"] for r in records) else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_up(args) -> int:
    config = load_config()
    # Ctrl-C and SIGTERM stop the services even when this process inherited an ignored SIGINT
    # (started in the background by a shell, nohup, or a test runner).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        with ServiceProcesses(config) as services:
            services.wait_healthy(args.startup_timeout)
            print(f"semcom is up: transmitter at {config.transmitter_target}; metrics on :{config.transmitter_metrics_port}, "
                  f":{config.channel_metrics_port}, :{config.receiver_metrics_port}. Ctrl-C stops.", file=sys.stderr)
            while True:  # supervise: a crashed service is started again, the others stay up
                for module, code in services.restart_exited():
                    print(f"semcom up: {module} exited with code {code}; restarting it", file=sys.stderr)
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping services", file=sys.stderr)
        return 0
    except RuntimeError as exc:
        print(f"semcom up: {exc}", file=sys.stderr)
        return 1


def run_demo(args) -> int:
    """The main job on built-in defaults: start services, send images at several SNRs, stop."""
    config = load_config()
    try:
        files = expand_images([args.images])
    except FileNotFoundError as exc:
        print(f"semcom demo: {exc}; pass --images DIR", file=sys.stderr)
        return 2
    summary = []
    with ServiceProcesses(config, echo=args.verbose) as services:
        try:
            services.wait_healthy(args.startup_timeout)
        except RuntimeError as exc:
            print(f"semcom demo: {exc}", file=sys.stderr)
            return 1
        for channel in args.channel:
            for snr in args.snr:
                options = SendOptions(channel=channel, snr_db=snr, cbr=args.cbr, seed=args.seed)
                records = asyncio.run(send_images(config.transmitter_target, files, options, args.out, False, None))
                print(f"\n== {channel}, SNR {snr:g} dB, CBR 1/{1 / args.cbr:.0f} ==")
                print(format_table(records))
                ok = [r for r in records if not r["error"]]
                summary.append((channel, snr, len(ok), len(records),
                                sum(r["psnr"] for r in ok) / max(len(ok), 1),
                                sum(r["ms_ssim"] for r in ok) / max(len(ok), 1),
                                sum(r["latency_ms"]["end_to_end"] for r in ok) / max(len(ok), 1)))
    print(f"\n{'channel':<10} {'SNR dB':>7} {'ok':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'e2e ms':>8}")
    for channel, snr, n_ok, n, p, m, e in summary:
        print(f"{channel:<10} {snr:>7g} {f'{n_ok}/{n}':>7} {p:>8.2f} {m:>8.4f} {e:>8.1f}")
    print(f"\nreconstructions in {args.out}/")
    return 0 if all(s[2] == s[3] for s in summary) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semcom", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the three services locally until Ctrl-C",
                        description="Start receiver, channel emulator and transmitter on the configured ports "
                                    "(SEMCOM_*_PORT), with their logs prefixed by service name.")
    up.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for health (default 120)")
    up.set_defaults(func=run_up)

    send = sub.add_parser("send", help="send images through the running services",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Stream images to the transmitter; print PSNR, MS-SSIM, achieved CBR and "
                                      "per-stage latency (ms) per image.\n\nexample:\n"
                                      "  semcom send kodim01.png kodim02.png --channel rayleigh --snr 5 --out rx/\n"
                                      "  semcom send ../shared/data/kodak --snr 10 --cbr 1/48 --json")
    send.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP) or folders of them")
    send.add_argument("--snr", type=argtypes.finite, default=10.0, help="Es/N0 per complex symbol in dB (default 10)")
    add_send_options(send)
    send.add_argument("--out", type=Path, help="write reconstructions (PNG) into this folder")
    send.add_argument("--json", action="store_true",
                      help="print one JSON object per image instead of a table, with the perceptual metrics vif, "
                           "lpips and dists (null where not computed; see SEMCOM_PERCEPTUAL_WEIGHTS)")
    send.set_defaults(func=run_send)

    demo = sub.add_parser("demo", help="start the services, send a folder at several SNRs, stop",
                          description="The main job on built-in defaults: shipped weights, all three services "
                                      "locally, the shipped sample photos (three Kodak images, samples/) over AWGN "
                                      "and Rayleigh. The full Kodak set: --images ../shared/data/kodak")
    demo.add_argument("--images", default=str(SAMPLE_IMAGES), help=f"folder of images (default {SAMPLE_IMAGES})")
    demo.add_argument("--channel", nargs="+", default=["awgn", "rayleigh"], choices=channel_kinds())
    demo.add_argument("--snr", nargs="+", type=argtypes.finite, default=[1.0, 10.0, 20.0], help="SNRs in dB (default 1 10 20)")
    demo.add_argument("--cbr", type=argtypes.cbr, default=1 / 24, help="channel bandwidth ratio (default 1/24)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the channel draws (default 0)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="where reconstructions go (default runs/demo)")
    demo.add_argument("--startup-timeout", type=float, default=120.0)
    demo.add_argument("--verbose", action="store_true", help="show the services' logs")
    demo.set_defaults(func=run_demo)

    bench.add_parser(sub)
    channel_stats.add_parser(sub)
    evaluate.add_parser(sub)
    adapt.add_parser(sub)

    health = sub.add_parser("health", help="check a service's gRPC health (exit 0 when SERVING)")
    health_cli.add_arguments(health)
    health.set_defaults(func=health_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["semcom", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
