"""Channel emulator throughput in complex symbols per second, one stream vs many.

    python -m benchmarks.channel_throughput [--streams 1 16] [--kinds awgn rayleigh mimo tdl]

Runs the real ChannelEmulator gRPC service in this process, with a null receiver behind it
(answers every frame at once, so only the emulator and gRPC are measured). Each client
stream sends Kodak-size frames (768x512 at CBR 1/24: 49,152 complex symbols) back to back
for ``--duration`` seconds, one frame in flight per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import platform
import sys
import time

import grpc
import torch

from channel_emulator.server import ChannelEmulatorService
from channel_emulator.server import register as register_channel
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.channel import complex_normal, make_generator
from shared.config import load_config
from shared.serving.rpc import open_channel, start_server
from shared.phy.symbols import pack_complex

KODAK_SYMBOLS = 768 * 512 * 3 // 24


class NullReceiver(pb_grpc.ReceiverServicer):
    """Answers every received frame with OK and nothing else."""

    async def Receive(self, request_iterator, context):
        async for received in request_iterator:
            yield pb.ImageResult(request_id=received.frame.request_id, status=pb.Status(code=0))


def frame(kind: str, index: int, symbols: bytes) -> pb.SymbolFrame:
    channel = pb.ChannelSpec(kind=kind, snr_db=10.0, seed=index)
    return pb.SymbolFrame(request_id=str(index), channel=channel, symbols=symbols, num_symbols=KODAK_SYMBOLS,
                          image_height=512, image_width=768)


async def stream(target: str, kind: str, symbols: bytes, stop_at: float, config) -> int:
    """Frames sent and answered on one stream until ``stop_at``."""
    outbox: asyncio.Queue = asyncio.Queue()
    done = 0

    async def frames():
        while (item := await outbox.get()) is not None:
            yield item

    async with open_channel(target, config) as channel:
        call = pb_grpc.ChannelEmulatorStub(channel).Propagate(frames())
        outbox.put_nowait(frame(kind, 0, symbols))
        async for result in call:
            if result.status.code != 0:
                raise RuntimeError(result.status.message)
            done += 1
            outbox.put_nowait(frame(kind, done, symbols) if time.perf_counter() < stop_at else None)
    return done


async def measure(kinds, stream_counts, duration_s: float) -> list[tuple[str, int, float]]:
    config = load_config(bind_host="127.0.0.1")
    receiver = grpc.aio.server()
    pb_grpc.add_ReceiverServicer_to_server(NullReceiver(), receiver)
    rx_port = receiver.add_insecure_port("127.0.0.1:0")
    await receiver.start()
    config = dataclasses.replace(config, receiver_address=f"127.0.0.1:{rx_port}")
    service = ChannelEmulatorService(config)
    server, port = await start_server(config, 0, "ChannelEmulator", register_channel(service))
    symbols = pack_complex(complex_normal((KODAK_SYMBOLS,), 1.0, make_generator(0)))
    rows = []
    try:
        for kind in kinds:
            await stream(f"127.0.0.1:{port}", kind, symbols, 0.0, config)  # warm-up (imports, first draws)
            for count in stream_counts:
                start = time.perf_counter()
                stop_at = start + duration_s
                frames = await asyncio.gather(*[stream(f"127.0.0.1:{port}", kind, symbols, stop_at, config)
                                                for _ in range(count)])
                wall = time.perf_counter() - start
                rows.append((kind, count, sum(frames) * KODAK_SYMBOLS / wall))
                print(f"{kind:>9} {count:>3} streams: {rows[-1][2] / 1e6:8.2f} M symbols/s "
                      f"({sum(frames) / wall:.1f} Kodak frames/s)", flush=True)
    finally:
        await server.stop(1)
        await receiver.stop(1)
        await service.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--kinds", nargs="+", default=["awgn", "rayleigh", "rician", "mimo", "tdl"])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.kinds, args.streams, args.duration))
    print(f"\n{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}")
    print("| channel | " + " | ".join(f"{c} stream{'s' if c > 1 else ''}" for c in args.streams) + " |")
    print("|---|" + "---:|" * len(args.streams))
    for kind in args.kinds:
        cells = [f"{rate / 1e6:.2f} M/s" for k, _, rate in rows if k == kind]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
