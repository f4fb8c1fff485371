"""``semcom health``: ask a service's gRPC health service; exit 0 when it answers SERVING.

Imports gRPC only (no PyTorch), so container healthchecks stay cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check_health(target: str, timeout_s: float = 2.0, service: str = "") -> bool:
    """True when the gRPC health service at ``target`` answers SERVING."""
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except (grpc.aio.AioRpcError, asyncio.TimeoutError):
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="host:port of any semcom service")
    parser.add_argument("--timeout", type=float, default=2.0)


def run(args) -> int:
    healthy = asyncio.run(check_health(args.target, args.timeout))
    print("SERVING" if healthy else "NOT SERVING", file=sys.stderr)
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semcom health",
                                     description="check a service's gRPC health (exit 0 when SERVING)")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
