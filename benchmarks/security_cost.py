"""What TLS (mTLS between the services) and token authentication cost end to end.

    python -m benchmarks.security_cost [--duration 20] [--size 256] [--in-flight 1 8]

Serves the three services in this process on loopback with the shipped codec on the CPU, twice:
plaintext without authentication, then TLS + mTLS + tokens (a dev CA from scripts/make_certs.sh),
and for each number of requests in flight one user's closed loop (``semcom bench load``'s) for
``--duration`` seconds: images answered per second and the median and p95 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.faults import Services, photo, png
from semcom_cli.bench import UserStats, percentile, run_user
from semcom_cli.client import SendOptions
from shared.config import REPO_ROOT, load_config


def secure_settings(folder: Path) -> dict[str, str]:
    """The SEMCOM_* settings of TLS + tokens with a fresh dev CA in ``folder``."""
    subprocess.run([str(REPO_ROOT / "scripts" / "make_certs.sh"), str(folder)], check=True, capture_output=True)
    tokens = folder / "tokens.txt"
    tokens.write_text(tokens.read_text() + "bench-token bench\n")
    return {"tls_cert_file": str(folder / "service.pem"), "tls_key_file": str(folder / "service.key"),
            "tls_ca_file": str(folder / "ca.pem"), "auth_tokens_file": str(tokens)}


async def measure(settings: dict[str, str], image: bytes, in_flight: int, duration_s: float) -> dict:
    services = await Services().start(load_config(device="cpu", bind_host="127.0.0.1", **settings))
    # the client (run_user reads its settings from the environment): the CA and a user's token only
    client = {"SEMCOM_TLS_CA_FILE": settings.get("tls_ca_file", ""), "SEMCOM_TOKEN": "bench-token" if settings else ""}
    saved = {key: os.environ.get(key) for key in client}
    os.environ.update(client)
    try:
        stats = UserStats()
        start = time.perf_counter()
        await run_user(f"127.0.0.1:{services.ports['Transmitter']}", "bench", image, in_flight,
                       start + duration_s, SendOptions(user_id="bench"), stats)
        wall = time.perf_counter() - start
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
        await services.stop()
    return {"ok": stats.statuses.get("OK", 0), "answered": sum(stats.statuses.values()),
            "throughput": stats.statuses.get("OK", 0) / wall, "p50_ms": 1000 * percentile(stats.latencies_s, 0.5),
            "p95_ms": 1000 * percentile(stats.latencies_s, 0.95)}


async def main(args) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    image = png(photo(args.size))
    with tempfile.TemporaryDirectory() as folder:
        modes = {"plaintext, no auth": {}, "TLS + mTLS + tokens": secure_settings(Path(folder))}
        print("| transport | in flight | answered (OK) | img/s | p50 ms | p95 ms |\n|---|---:|---:|---:|---:|---:|")
        for in_flight in args.in_flight:
            for name, settings in modes.items():
                row = await measure(settings, image, in_flight, args.duration)
                print(f"| {name} | {in_flight} | {row['answered']} ({row['ok']}) | {row['throughput']:.2f} | "
                      f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--size", type=int, default=256, help="side of the square test image, pixels")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8])
    asyncio.run(main(parser.parse_args()))
