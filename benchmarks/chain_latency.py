"""End-to-end latency of the three services, per image and per stage.

    python -m benchmarks.chain_latency [--images DIR] [--channel awgn] [--snr 10] [--cbr 1/24]

Starts the services as processes (as `semcom up` does, with the configured weights and
device), sends one warm-up image, then

* one image at a time (a new stream each, nothing else in flight): the latency a single
  user sees, per stage (mean, p50, p95 in ms);
* all images on one stream at once: wall time and throughput (images/s).

Prints a markdown report and writes it with the raw JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from semcom_cli.client import SendOptions, expand_images, is_ok, stream_requests
from semcom_cli.launcher import ServiceProcesses
from semcom_cli.main import DEFAULT_DEMO_IMAGES, STAGES
from shared.phy.symbols import parse_cbr
from shared.config import load_config

REPORT_STAGES = (*STAGES[:-1], "reconstruct", "quality", "end_to_end")


async def run_stream(target, requests, config):
    results = [r async for r in stream_requests(target, requests, config)]
    failed = [r for r in results if not is_ok(r)]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0].status.message}")
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(DEFAULT_DEMO_IMAGES))
    parser.add_argument("--channel", default="awgn")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--cbr", default="1/24")
    parser.add_argument("--out", type=Path, default=Path("runs/chain_latency"))
    args = parser.parse_args(argv)

    config = load_config()
    files = expand_images([args.images])
    options = SendOptions(channel=args.channel, snr_db=args.snr, cbr=float(parse_cbr(args.cbr)), seed=0)
    requests = [options.request(str(i), path.read_bytes()) for i, path in enumerate(files)]
    target = config.transmitter_target
    with ServiceProcesses(config, echo=False) as services:
        services.wait_healthy()
        asyncio.run(run_stream(target, requests[:1], config))  # warm-up
        sequential = []
        for request in requests:
            sequential += asyncio.run(run_stream(target, [request], config))
        start = time.perf_counter()
        asyncio.run(run_stream(target, requests, config))
        concurrent_s = time.perf_counter() - start

    rows = []
    for stage in REPORT_STAGES:
        values = [r.latency_ms[stage] for r in sequential if stage in r.latency_ms]
        rows.append((stage, statistics.mean(values), percentile(values, 0.5), percentile(values, 0.95)))
    device = load_config().resolve_device()
    lines = [
        f"Command: `python -m benchmarks.chain_latency {' '.join(argv or sys.argv[1:])}`",
        f"Date: {datetime.date.today()}; machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, device {device}; receiver workers {config.receiver_workers}",
        f"Images: {len(files)} from {args.images}; channel {args.channel}, SNR {args.snr:g} dB, CBR {args.cbr}",
        "",
        "| stage | mean ms | p50 ms | p95 ms |",
        "|---|---:|---:|---:|",
        *[f"| {stage} | {mean:.1f} | {p50:.1f} | {p95:.1f} |" for stage, mean, p50, p95 in rows],
        "",
        f"One image at a time: {len(sequential) / sum(r.latency_ms['end_to_end'] / 1000 for r in sequential):.2f} images/s; "
        f"all {len(requests)} on one stream: {concurrent_s:.1f} s, {len(requests) / concurrent_s:.2f} images/s.",
    ]
    report = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(report + "\n")
    (args.out / "sequential.json").write_text(json.dumps([dict(r.latency_ms) for r in sequential], indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
