"""`semcom bench load`: many users through the whole chain, sequential GSC vs MU-GSC.

Each of U simulated users holds one gRPC stream to the transmitter and keeps a fixed
number of requests in flight (closed loop: a new image as soon as one returns) for the
run's duration. Both receiver configurations are started in turn, as processes on free
ports, with the same images:

* ``sequential`` (GSC): one receiver worker, no batching, arrival order;
* ``mugsc``: the configured worker pool, per-user fair queueing, dynamic batching.

Reported per configuration and U: completed images/s, client-side latency p50/p95/p99,
answers by status (nothing may be lost: sent = answered), and the speed-up of MU-GSC.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from PIL import Image

from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import SAMPLE_IMAGES, load_config
from shared.serving.rpc import open_channel, status_code

from .channel_args import add_channel_options, channel_fields, off_the_wire_flags
from .client import SendOptions
from .launcher import ServiceProcesses

SCHEDULERS = {
    "sequential": {"SEMCOM_RECEIVER_WORKERS": "1", "SEMCOM_RECEIVER_MAX_BATCH": "1",
                   "SEMCOM_RECEIVER_SCHEDULER": "fifo", "SEMCOM_RECEIVER_MAX_WAIT_MS": "0",
                   "SEMCOM_TRANSMITTER_SCHEDULER": "fifo", "SEMCOM_CHANNEL_SCHEDULER": "fifo"},
    "mugsc": {"SEMCOM_RECEIVER_SCHEDULER": "fair", "SEMCOM_TRANSMITTER_SCHEDULER": "fair",
              "SEMCOM_CHANNEL_SCHEDULER": "fair"},
}
CHANNEL_FLAGS_LEFT_OUT = (*off_the_wire_flags(), "--users")  # --users is the user count here (--slot-users)
PORT_FIELDS = ("TRANSMITTER_PORT", "CHANNEL_PORT", "RECEIVER_PORT",
               "TRANSMITTER_METRICS_PORT", "CHANNEL_METRICS_PORT", "RECEIVER_METRICS_PORT")


@dataclass
class UserStats:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    sent: int = 0
    slot_users: Counter = field(default_factory=Counter)  # answered images by how many users shared their slot


def test_image(source: Path, size: str) -> bytes:
    """PNG bytes: the source image as is ('full') or its centre crop of size x size pixels."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if size != "full":
            side = int(size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


async def run_user(target: str, user: str, image: bytes, in_flight: int, stop_at: float, options: SendOptions,
                   stats: UserStats) -> None:
    """One user's closed loop: keep ``in_flight`` requests outstanding until ``stop_at``."""
    config = load_config()
    outbox: asyncio.Queue = asyncio.Queue()
    sent_at: dict[str, float] = {}

    def submit() -> None:
        request_id = f"{user}-{stats.sent}"
        stats.sent += 1
        sent_at[request_id] = time.perf_counter()
        outbox.put_nowait(options.request(request_id, image))

    async def requests():
        while (request := await outbox.get()) is not None:
            yield request

    for _ in range(in_flight):
        submit()
    async with open_channel(target, config) as channel:
        call = pb_grpc.TransmitterStub(channel).Transmit(requests())
        try:
            async for result in call:
                stats.latencies_s.append(time.perf_counter() - sent_at.pop(result.request_id))
                stats.statuses[status_code(result).name] += 1
                if result.slot_users:
                    stats.slot_users[result.slot_users] += 1
                if time.perf_counter() < stop_at:
                    submit()
                elif not sent_at:
                    outbox.put_nowait(None)
        except grpc.aio.AioRpcError as exc:  # the stream broke: what was in flight is unanswered
            stats.statuses[f"STREAM_{exc.code().name}"] += len(sent_at)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def load_run(target: str, users: int, duration_s: float, image: bytes, options: SendOptions,
                   flood: int) -> dict:
    """U users for ``duration_s``; user 0 keeps ``flood`` requests in flight when flood > 1."""
    stop_at = time.perf_counter() + duration_s
    stats = [UserStats() for _ in range(users)]
    start = time.perf_counter()
    await asyncio.gather(*[
        run_user(target, f"user{i}", image, flood if (i == 0 and flood > 1) else 1, stop_at,
                 SendOptions(**{**options.__dict__, "user_id": f"user{i}"}), stats[i])
        for i in range(users)])
    wall = time.perf_counter() - start
    everyone = [x for s in stats for x in s.latencies_s]
    statuses = sum((s.statuses for s in stats), Counter())
    report = {
        "users": users, "wall_s": round(wall, 2), "sent": sum(s.sent for s in stats), "answered": len(everyone),
        "throughput": round(statuses.get("OK", 0) / wall, 3), "statuses": dict(statuses),
        **{f"p{q}_ms": round(1000 * percentile(everyone, q / 100), 1) for q in (50, 95, 99)},
    }
    occupancy = sum((s.slot_users for s in stats), Counter())
    if occupancy:  # slot-sharing channel kinds (mu_mimo): images by users in their slot
        report["slot_users"] = dict(sorted(occupancy.items()))
    if flood > 1:
        steady = [x for s in stats[1:] for x in s.latencies_s]
        report["flooder_p95_ms"] = round(1000 * percentile(stats[0].latencies_s, 0.95), 1)
        report["flooder_answered"] = len(stats[0].latencies_s)
        for q in (50, 95, 99):
            report[f"others_p{q}_ms"] = round(1000 * percentile(steady, q / 100), 1)
    return report


def free_ports() -> dict[str, str]:
    ports = {}
    sockets = []
    for name in PORT_FIELDS:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports[f"SEMCOM_{name}"] = str(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


def run_load(args) -> int:
    image = test_image(args.image, args.size)
    fields = channel_fields(args, CHANNEL_FLAGS_LEFT_OUT) | ({"users": args.slot_users} if args.slot_users else {})
    options = SendOptions(channel=args.channel, snr_db=args.snr, mode=args.mode, seed=0, channel_fields=fields,
                          quality=args.quality)
    window = {} if args.slot_window is None else {"SEMCOM_CHANNEL_SLOT_WINDOW_MS": str(args.slot_window)}
    reports = []
    for scheduler in args.schedulers:
        env = {**free_ports(), **SCHEDULERS[scheduler], **window}
        config = load_config(**{k[len("SEMCOM_"):].lower(): int(v) for k, v in env.items() if k.endswith("PORT")})
        with ServiceProcesses(config, env=env, echo=args.verbose) as services:
            services.wait_healthy()
            asyncio.run(load_run(config.transmitter_target, 1, 0.0, image, options, 0))  # warm-up
            for users in args.users:
                report = {"scheduler": scheduler, "size": args.size,
                          **asyncio.run(load_run(config.transmitter_target, users, args.duration, image, options,
                                                 args.flood))}
                reports.append(report)
                print(json.dumps(report) if args.json else
                      f"{scheduler:>10} U={users:<3} {report['throughput']:7.2f} img/s  p50 {report['p50_ms']:8.1f}  "
                      f"p95 {report['p95_ms']:8.1f}  p99 {report['p99_ms']:8.1f} ms  sent {report['sent']} "
                      f"answered {report['answered']} {report['statuses']}"
                      + (f"  slot users {report['slot_users']}" if "slot_users" in report else "")
                      + (f"  flooder p95 {report['flooder_p95_ms']:.1f} ms; others p50 {report['others_p50_ms']:.1f}"
                         f"  p95 {report['others_p95_ms']:.1f}  p99 {report['others_p99_ms']:.1f} ms"
                         if "others_p95_ms" in report else ""), flush=True)
    if not args.json and set(args.schedulers) == set(SCHEDULERS):
        by_key = {(r["scheduler"], r["users"]): r for r in reports}
        for users in args.users:
            seq, mu = by_key[("sequential", users)], by_key[("mugsc", users)]
            ratio = mu["throughput"] / seq["throughput"] if seq["throughput"] else float("nan")
            print(f"U={users}: MU-GSC / sequential throughput = {ratio:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(reports, indent=1))
    lost = [r for r in reports if r["sent"] != r["answered"]]
    return 1 if lost else 0


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks of the running chain (load)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    load = bench_sub.add_parser("load", help="U concurrent users through the whole chain, GSC vs MU-GSC",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  semcom bench load --users 1 4 16 --duration 20 --size 256\n"
                                       "  semcom bench load --users 8 --flood 16 --schedulers mugsc   # fairness run")
    load.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 64], help="user counts (default 1 4 16 64)")
    load.add_argument("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    load.add_argument("--mode", default="jscc", help="decoder mode (default jscc)")
    load.add_argument("--image", type=Path, default=SAMPLE_IMAGES / "kodim23.png",
                      help="source image (default the shipped sample samples/kodim23.png, Kodak's kodim23)")
    load.add_argument("--size", default="256", help="centre crop side in pixels, or 'full' (default 256)")
    load.add_argument("--channel", default="awgn")
    load.add_argument("--snr", type=float, default=10.0)
    add_channel_options(load, exclude=CHANNEL_FLAGS_LEFT_OUT)
    load.add_argument("--slot-users", type=int, default=0, metavar="K",
                      help="mu_mimo: users sharing a slot (the channel's --users; 0: the service's default, alone)")
    load.add_argument("--slot-window", type=float, default=None, metavar="MS",
                      help="how long the channel emulator holds a slot open for its users, ms "
                           "(default SEMCOM_CHANNEL_SLOT_WINDOW_MS or 5)")
    load.add_argument("--schedulers", nargs="+", choices=list(SCHEDULERS), default=list(SCHEDULERS))
    load.add_argument("--quality", action="store_true",
                      help="also compute PSNR/MS-SSIM of every result (off by default: work a load test does not need)")
    load.add_argument("--flood", type=int, default=0, help="user0 keeps this many requests in flight (fairness run)")
    load.add_argument("--out", type=Path, help="write the reports as JSON here")
    load.add_argument("--json", action="store_true", help="one JSON object per run")
    load.add_argument("--verbose", action="store_true", help="show the services' logs")
    load.set_defaults(func=run_load)
