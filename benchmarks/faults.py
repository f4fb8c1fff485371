"""Attacks and faults an outside client can cause, and what the services answer (issue 18).

    python -m benchmarks.faults

Serves the three services in this process on loopback with the shipped codec on the CPU (the
message limit set to 2 MB so that one oversized frame is cheap to make) and prints one markdown
row per probe: what it does and what it observed. Only the API and settings of every release
since the serving layer (``shared.serving``) are used, so the same command measures a checkout
of an earlier commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import socket
import time

import grpc
import numpy as np
import torch
from PIL import Image
from prometheus_client import REGISTRY, generate_latest

from channel_emulator.server import ChannelEmulatorService, propagate
from channel_emulator.server import register as register_channel
from receiver.server import ReceiverService
from receiver.server import register as register_receiver
from semcom_cli.bench import UserStats, run_user
from semcom_cli.client import SendOptions, stream_requests
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import SAMPLE_IMAGES, load_config
from shared.quality import psnr
from shared.serving.rpc import start_server, status_code
from shared.serving.service import load_codec, load_diffusion_decoders
from transmitter.server import TransmitterService, encode_request
from transmitter.server import register as register_transmitter

MESSAGE_LIMIT = 2_000_000


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def photo(size: int = 128) -> np.ndarray:
    """A centre crop of the first shipped Kodak sample, (size, size, 3) uint8."""
    image = np.asarray(Image.open(sorted(SAMPLE_IMAGES.glob("*.png"))[0]).convert("RGB"))
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


class Services:
    """The three services on free loopback ports, in this event loop."""

    async def start(self, config):
        codec = load_codec(config)
        self.codec = codec
        self.receiver = ReceiverService(config, codec, load_diffusion_decoders(config, codec))
        rx, rx_port = await start_server(config, 0, "Receiver", register_receiver(self.receiver))
        config = dataclasses.replace(config, receiver_address=f"127.0.0.1:{rx_port}")
        self.channel = ChannelEmulatorService(config)
        ch, ch_port = await start_server(config, 0, "ChannelEmulator", register_channel(self.channel))
        config = dataclasses.replace(config, channel_address=f"127.0.0.1:{ch_port}")
        self.transmitter = TransmitterService(config, codec)
        tx, tx_port = await start_server(config, 0, "Transmitter", register_transmitter(self.transmitter))
        self.servers, self.config = [tx, ch, rx], config
        self.ports = {"Transmitter": tx_port, "ChannelEmulator": ch_port, "Receiver": rx_port}
        return self

    async def stop(self):
        for server in self.servers:
            await server.stop(0)
        for service in (self.transmitter, self.channel, self.receiver):
            await service.close()


async def send(config, requests, timeout_s=300) -> list[pb.ImageResult]:
    target = f"127.0.0.1:{config.transmitter_port}"
    return [r async for r in stream_requests(target, requests, config, timeout_s=timeout_s)]


def codes(results) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[status_code(result).name] = counts.get(status_code(result).name, 0) + 1
    return ", ".join(f"{n} {code}" for code, n in sorted(counts.items()))


async def raw_stream(port: int, messages: list[bytes]) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream("/semcom.v1.Transmitter/Transmit", request_serializer=None,
                                     response_deserializer=pb.ImageResult.FromString)(iter(messages), timeout=60)
        try:
            answers = [r async for r in call]
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return f"{(await call.code()).name} with {len(answers)} answers"


async def probes(services: Services) -> list[tuple[str, str]]:
    config = dataclasses.replace(services.config, transmitter_port=services.ports["Transmitter"])
    image = png(photo(64))
    rows = []

    rng = np.random.default_rng(0)
    outcomes = [await raw_stream(services.ports["Transmitter"], [rng.bytes(32)]) for _ in range(10)]
    rows.append(("10 streams of one random 32-byte message (Transmit)", ", ".join(sorted(set(outcomes)))
                 + f" ({outcomes.count('INVALID_ARGUMENT')}/10 INVALID_ARGUMENT)"))

    async with grpc.aio.insecure_channel(f"127.0.0.1:{services.ports['Transmitter']}") as channel:
        call = channel.unary_unary("/semcom.v1.Transmitter/TransmitOne", request_serializer=None,
                                   response_deserializer=pb.ImageResult.FromString)
        try:
            await call(b"\xff\xff\xff", timeout=30)
            rows.append(("TransmitOne of 3 unparseable bytes", "OK"))
        except grpc.aio.AioRpcError as exc:
            rows.append(("TransmitOne of 3 unparseable bytes", exc.code().name))

    huge = {"10^5 x 10^5 MIMO antennas": SendOptions(channel="mimo", channel_fields={"tx_antennas": 100_000,
                                                                                   "rx_antennas": 100_000}),
            "5e6 pilots per block (Rayleigh, LMMSE)": SendOptions(channel="rayleigh",
                                                                   channel_fields={"csi": "lmmse", "pilots": 5_000_000})}
    for name, options in huge.items():
        start = time.perf_counter()
        results = await send(config, [options.request("huge", image)])
        rows.append((f"a request with {name}", f"{codes(results)} after {time.perf_counter() - start:.1f} s"))

    big = SendOptions(channel="mimo", seed=1, channel_fields={"tx_antennas": 64, "rx_antennas": 64,
                                                             "coherence_symbols": 1}).request("big", png(photo(128)))
    results = await send(config, [big] + [SendOptions(seed=i).request(f"good-{i}", image) for i in range(3)])
    by_id = {r.request_id: r for r in results}
    rows.append(("one frame over the message limit (64x64 MIMO state) then 3 good requests, one stream",
                 f"big: {status_code(by_id['big']).name}; good: {codes(by_id[f'good-{i}'] for i in range(3))}"))

    gray = photo(128)[..., 0].astype(np.uint16) * 257
    result = (await send(config, [SendOptions(seed=2).request("gray16", png(gray))]))[0]
    truth = torch.from_numpy(gray.astype(np.float32) / 65535).expand(3, -1, -1)
    received = torch.from_numpy(np.asarray(Image.open(io.BytesIO(result.image)).convert("RGB"), np.float32) / 255)
    true_psnr = psnr(truth[None], received.permute(2, 0, 1)[None])[0].item()
    rows.append(("16-bit grayscale PNG 128x128: reported / true PSNR",
                 f"{result.quality.psnr_db:.1f} / {true_psnr:.1f} dB"))

    bomb = png(np.zeros((3000, 3000), dtype=bool))
    start = time.perf_counter()
    results = await send(config, [SendOptions().request("bomb", bomb)])
    rows.append((f"1-bit PNG of 3000x3000 in {len(bomb)} bytes",
                 f"{codes(results)} after {time.perf_counter() - start:.1f} s"))

    # one user's bad MIMO frames (state rx_antennas = 0) batched with a victim's, straight to the receiver
    frames = []
    for i in range(32):
        attacker = i % 4 == 0
        options = SendOptions(channel="mimo", seed=i, user_id="attacker" if attacker else "victim")
        received = propagate(encode_request(services.codec, options.request(str(i), image), config)[0], config)
        if attacker:
            received.state.rx_antennas = 0
        frames.append(received)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{services.ports['Receiver']}") as channel:
        answers = [r async for r in pb_grpc.ReceiverStub(channel).Receive(iter(frames), timeout=300)]
    victim = [r for r in answers if r.user_id == "victim"]
    attacker = [r for r in answers if r.user_id == "attacker"]
    rows.append(("8 bad MIMO frames of one user among 24 of a victim, one receiver stream",
                 f"victim: {codes(victim)}; attacker: {codes(attacker)}"))

    # a sustained flood: one user keeps 400 requests in flight for 8 s, another one request for 6 s
    target = f"127.0.0.1:{config.transmitter_port}"
    flooder, victim = UserStats(), UserStats()

    async def victim_later():
        await asyncio.sleep(1.0)
        await run_user(target, "victim", image, 1, time.perf_counter() + 6.0, SendOptions(user_id="victim"), victim)

    await asyncio.gather(run_user(target, "flooder", image, 400, time.perf_counter() + 8.0,
                                  SendOptions(user_id="flooder"), flooder), victim_later())
    rows.append(("one user keeps 400 requests in flight for 8 s, another one for 6 s",
                 f"victim: {dict(victim.statuses)}; flooder: {dict(flooder.statuses)}"))

    before = len(generate_latest(REGISTRY))
    await send(config, [SendOptions(user_id="u" * 65536).request("long-user", image)])
    rows.append(("one request with a 64 KB user_id: growth of the receiver's /metrics",
                 f"{(len(generate_latest(REGISTRY)) - before) / 1000:.1f} kB"))
    return rows


def reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


async def binding_probes() -> list[tuple[str, str]]:
    """A server started with the default settings (SEMCOM_HOST=127.0.0.1): where it listens, reflection."""
    server, port = await start_server(load_config(), 0, "Receiver", lambda server: None)
    try:
        where = "all interfaces" if reachable("127.0.0.2", port) else "127.0.0.1 only"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         request_serializer=None, response_deserializer=lambda data: data)
            try:
                answers = [a async for a in call(iter([b"\x3a\x00"]), timeout=10)]  # list_services = ""
                reflection = f"open ({len(answers[0])} bytes listing the services)"
            except grpc.aio.AioRpcError as exc:
                reflection = exc.code().name
    finally:
        await server.stop(0)
    return [("gRPC server with SEMCOM_HOST=127.0.0.1 (default settings): listens on", where),
            ("server reflection, default settings", reflection)]


async def main() -> None:
    config = load_config(device="cpu", bind_host="127.0.0.1", max_message_bytes=MESSAGE_LIMIT)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = await binding_probes()
    services = await Services().start(config)
    try:
        rows += await probes(services)
    finally:
        await services.stop()
    print("| attack or fault | observed |\n|---|---|")
    for probe, observed in rows:
        print(f"| {probe} | {observed} |")


if __name__ == "__main__":
    asyncio.run(main())
