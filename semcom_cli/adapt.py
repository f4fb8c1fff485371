"""`semcom adapt`: learn a user's out-of-distribution latent adapter (paper 003 sec. III-D).

The transmitter fits the single-layer adapter g_w(z) = W z + b between the codec's rate
decoder and synthesis to the given images (one image = one-shot, a few = few-shot) over
simulated AWGN/Rayleigh draws in an SNR range, with the codec frozen, and publishes it to every
receiver replica. Afterwards `semcom send --user U --use-adapter ...` decodes that user's images through
it; without --use-adapter traffic stays in-domain (identity).

example:
  semcom adapt --user artist drawing.png                       # one-shot
  semcom adapt --user artist a.png b.png c.png --snr 0 20 --steps 300
  semcom send --user artist --use-adapter other_drawing.png --snr 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import load_config
from shared.serving.rpc import open_channel

from . import argtypes
from .client import expand_images


async def request_adapter(target: str, request: pb.AdaptRequest, timeout_s: float) -> pb.AdaptResult:
    """Call Transmitter.Adapt at ``target`` (raises ``grpc.aio.AioRpcError`` on failure)."""
    async with open_channel(target, load_config()) as channel:
        return await pb_grpc.TransmitterStub(channel).Adapt(request, timeout=timeout_s)


def format_result(result: pb.AdaptResult) -> str:
    stages = ", ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(result.latency_ms.items()))
    return (f"user {result.user_id}: adapter version {result.version} published to {result.receivers} receiver replica(s)\n"
            f"  parameters: {result.parameters} ({result.parameter_bytes} bytes, float16)\n"
            f"  PSNR on the adaptation images (simulated channel draws): {result.psnr_before_db:.2f} dB without, "
            f"{result.psnr_after_db:.2f} dB with the adapter ({result.psnr_after_db - result.psnr_before_db:+.2f} dB)\n"
            f"  latency: {stages}")


def run(args) -> int:
    config = load_config()
    target = args.target or config.transmitter_target
    try:
        files = expand_images(args.images)
    except FileNotFoundError as exc:
        print(f"semcom adapt: {exc}", file=sys.stderr)
        return 2
    low, high = args.snr
    if low > high:
        print(f"semcom adapt: --snr LO HI must have LO <= HI, got {low:g} {high:g}", file=sys.stderr)
        return 2
    if args.steps < 0:
        print(f"semcom adapt: --steps must be >= 0, got {args.steps}", file=sys.stderr)
        return 2
    request = pb.AdaptRequest(user_id=args.user, images=[path.read_bytes() for path in files], snr_min_db=low,
                              snr_max_db=high, steps=args.steps)
    print(f"learning the adapter of user {args.user} from {len(files)} image(s) on the transmitter ...",
          file=sys.stderr)
    try:
        result = asyncio.run(request_adapter(target, request, args.timeout))
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        print(f"semcom adapt: {code.name}: {exc.details()}", file=sys.stderr)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED):
            return 2
        if code is grpc.StatusCode.UNAVAILABLE:
            print("Are the services running? Start them with `semcom up`.", file=sys.stderr)
        return 3
    print(format_result(result))
    return 0


def add_parser(sub) -> None:
    parser = sub.add_parser("adapt", help="learn a user's out-of-distribution latent adapter on the transmitter",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="adaptation images (PNG, JPEG, WebP) or folders of them")
    parser.add_argument("--user", required=True, help="user id the adapter belongs to (as in semcom send --user)")
    parser.add_argument("--snr", type=argtypes.finite, nargs=2, default=(0.0, 20.0), metavar=("LO", "HI"),
                        help="SNR range (dB) of the simulated channel draws the adapter is fitted over (default 0 20)")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (default 0: the service's, 200)")
    parser.add_argument("--target", help="transmitter address host:port (default from SEMCOM_HOST/SEMCOM_TRANSMITTER_PORT)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default 900)")
    parser.set_defaults(func=run)
