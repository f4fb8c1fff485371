"""Fixtures shared by the unit tests of the stage modules."""

from __future__ import annotations

import math

import pytest
import torch

# The unit tests use small tensors: one intra-op thread is as fast, and it avoids the
# many-fold slowdown of oversubscribed OpenMP threads when other jobs load the CPUs.
torch.set_num_threads(1)


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic (3, H, W) float32 image in [0, 1]: gradients and waves, photo-like enough
    for lossy codecs and MS-SSIM to behave as on natural images."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    channels = []
    for _ in range(3):
        fy, fx, phase = (torch.rand(3, generator=gen) * torch.tensor([3.0, 3.0, 2 * math.pi])).tolist()
        wave = torch.sin(2 * math.pi * (fy * ys + fx * xs) + phase)
        channels.append(0.5 + 0.3 * wave + 0.15 * (ys - xs))
    return torch.stack(channels).clamp(0, 1).float()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Training runs set the thread count from their config (default: every core); put it back."""
    yield
    torch.set_num_threads(1)


def training_log(run_dir) -> list[dict]:
    """The rows of a training run's ``log.csv``, numbers parsed (empty cells dropped)."""
    import csv
    from pathlib import Path

    def value(text: str):
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with (Path(run_dir) / "log.csv").open() as f:
        return [{k: value(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


@pytest.fixture
def make_image():
    """Factory fixture: ``make_image(height, width, seed=0)`` -> (3, H, W) image in [0, 1]."""
    return smooth_image


# --- the three services, in-process, on free localhost ports -------------------------

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

from channel_emulator.server import ChannelEmulatorService  # noqa: E402
from channel_emulator.server import register as register_channel  # noqa: E402
from receiver.server import ReceiverService  # noqa: E402
from receiver.server import register as register_receiver  # noqa: E402
from shared.config import load_config  # noqa: E402
from shared.models import DeepJSCC, DeepJSCCConfig  # noqa: E402
from shared.models.io import save_model  # noqa: E402
from shared.serving.rpc import start_server  # noqa: E402
from shared.serving.service import load_codec, load_diffusion_decoders  # noqa: E402
from transmitter.server import TransmitterService  # noqa: E402
from transmitter.server import register as register_transmitter  # noqa: E402

TINY = DeepJSCCConfig(widths=(8, 8, 8, 8))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Path of an untrained tiny DeepJSCC in the shipped weights format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_model(DeepJSCC(TINY), path, {"purpose": "tests"})
    return path


class Chain:
    """Receiver, channel emulator and transmitter served from one background event loop."""

    def __init__(self, config, codec=None):
        """``codec``: the :class:`~shared.codecs.Codec` both ends serve (default: the one of
        ``config.weights``)."""
        self.config = config
        self.codec = codec
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers = []
        self.services = []

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self, channel_target: str | None):
        codec = self.codec or load_codec(self.config)
        receiver = ReceiverService(self.config, codec, load_diffusion_decoders(self.config, codec))
        server, rx_port = await start_server(self.config, 0, "Receiver", register_receiver(receiver))
        self.servers.append(server)
        config = dataclasses.replace(self.config, receiver_address=f"127.0.0.1:{rx_port}")
        channel = ChannelEmulatorService(config)
        server, ch_port = await start_server(config, 0, "ChannelEmulator", register_channel(channel))
        self.servers.append(server)
        config = dataclasses.replace(config, channel_address=channel_target or f"127.0.0.1:{ch_port}")
        transmitter = TransmitterService(config, codec)
        server, tx_port = await start_server(config, 0, "Transmitter", register_transmitter(transmitter))
        self.servers.append(server)
        self.services = [transmitter, channel, receiver]
        self.target = f"127.0.0.1:{tx_port}"
        self.targets = {"Transmitter": self.target, "ChannelEmulator": f"127.0.0.1:{ch_port}",
                        "Receiver": f"127.0.0.1:{rx_port}"}

    def start(self, channel_target: str | None = None) -> "Chain":
        self.thread.start()
        self.call(self._start(channel_target))
        return self

    def stop(self) -> None:
        async def _stop():
            for server in self.servers:
                await server.stop(1)
            for service in self.services:
                await service.close()

        self.call(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def chain(tiny_weights):
    """The whole chain with the tiny model and a small pixel limit (for bad-input tests)."""
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu", max_image_pixels=300_000)
    running = Chain(config).start()
    yield running
    running.stop()
