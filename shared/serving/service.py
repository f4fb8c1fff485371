"""Process entry point shared by the three services: config, logging, metrics, gRPC, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from ..config import SemcomConfig, load_config
from .rpc import start_server
from .telemetry import start_metrics_server


def setup_logging(config: SemcomConfig, name: str) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def load_codec(config: SemcomConfig):
    """The codec (:mod:`shared.codecs`) of the network in ``config.weights``, on ``config.device``,
    its big networks on ``config.runtime`` (:mod:`shared.models.runtime`)."""
    import torch

    from ..codecs import codec_for
    from ..models.io import load_model as load_weights
    from ..models.runtime import resolve_runtime, use_runtime

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = config.resolve_device()
    model = load_weights(config.weights, device)
    return codec_for(use_runtime(model, resolve_runtime(config.runtime, device), config.torch_threads))


def load_diffusion_decoders(config: SemcomConfig, codec):
    """The networks the registered decoder modes need (:func:`shared.decoding.mode_weights`, each
    from its config field: ``config.teacher_weights``, ...) for ``codec``; none for a codec that
    serves no decoder stage (:attr:`~shared.codecs.Codec.decoder_stages`). Each is optional: a
    missing file, or a latent denoiser made for another latent size, leaves its modes unserved
    (logged; requests for them are answered UNIMPLEMENTED)."""
    from pathlib import Path

    from ..decoding import DiffusionDecoders, mode_weights
    from ..models.io import load_model as load_weights

    if not codec.decoder_stages:
        return DiffusionDecoders()
    log = logging.getLogger("semcom.receiver")
    loaded = {}
    for name, weights in mode_weights().items():
        path = getattr(config, weights.config_field)
        if not path or not Path(path).is_file():
            log.warning("no %s weights at %r: its decoder modes are not served", weights.role, path)
            continue
        model = load_weights(path, config.resolve_device())
        channels = getattr(model.config, "latent_channels", None)
        if channels is not None and channels != codec.latent_channels:
            log.warning("%s denoiser %s has %d latent channels, the codec %d: its decoder mode is not served",
                        weights.role, path, channels, codec.latent_channels)
            continue
        loaded[name] = model
    return DiffusionDecoders(**loaded)


async def serve(config: SemcomConfig, service_name: str, port: int, metrics_port: int,
                build: Callable[[SemcomConfig], tuple[Callable, Callable[[], Awaitable[None]]]]) -> None:
    """Run one service until SIGINT/SIGTERM, then stop gracefully (in-flight calls get 5 s)."""
    register, close = build(config)
    start_metrics_server(config.listen_host, metrics_port)
    server, _ = await start_server(config, port, service_name, register)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("semcom").info("%s shutting down", service_name)
    await server.stop(5)
    await close()


def main(service_name: str, port_field: str, metrics_field: str, build) -> None:
    """``python -m <service>``: settings from ``SEMCOM_*`` environment variables."""
    config = load_config()
    setup_logging(config, service_name)
    asyncio.run(serve(config, service_name, getattr(config, port_field), getattr(config, metrics_field), build))
