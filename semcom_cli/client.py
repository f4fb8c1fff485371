"""gRPC client of the transmitter: stream images, collect results as they complete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import SemcomConfig
from shared.serving.rpc import open_channel, status_code

from .health import check_health  # noqa: F401  (re-exported: launcher, tests)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass
class SendOptions:
    """What a user asks of every image in one ``semcom send``."""

    channel: str = "awgn"
    snr_db: float = 10.0
    cbr: float = 1 / 24
    mode: str = "jscc"
    seed: int | None = None
    user_id: str = "cli"
    channel_fields: dict = field(default_factory=dict)
    """The kind's other ``ChannelSpec`` fields (``k_factor``, ``tx_antennas``, ...; the CLI's
    :func:`~semcom_cli.channel_args.channel_fields`); absent or zero ones take the service's defaults."""
    use_adapter: bool = False  # decode through the user's latent adapter (semcom adapt)
    quality: bool = True  # PSNR/MS-SSIM in the results (off: the transmitter skips that work)

    def request(self, request_id: str, image: bytes) -> pb.ImageRequest:
        spec = pb.ChannelSpec(kind=self.channel, snr_db=self.snr_db, **self.channel_fields)
        if self.seed is not None:
            spec.seed = self.seed
        return pb.ImageRequest(request_id=request_id, user_id=self.user_id, image=image, channel=spec,
                               target_cbr=self.cbr, mode=self.mode, use_adapter=self.use_adapter,
                               skip_quality=not self.quality)


def expand_images(paths: Iterable[str]) -> list[Path]:
    """Files as given; folders expanded to their images (sorted). ``FileNotFoundError`` if none."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such image or folder: {raw}")
    if not files:
        raise FileNotFoundError("no images to send (PNG, JPEG or WebP)")
    return files


async def stream_requests(target: str, requests: list[pb.ImageRequest], config: SemcomConfig,
                          timeout_s: float | None = None) -> AsyncIterator[pb.ImageResult]:
    """Send ``requests`` on one Transmit stream; yield each result as it arrives.

    Raises ``grpc.aio.AioRpcError`` if the stream itself fails (e.g. nobody listening).
    """

    async def requests_iter():
        for request in requests:
            yield request

    async with open_channel(target, config) as channel:
        stub = pb_grpc.TransmitterStub(channel)
        call = stub.Transmit(requests_iter(), timeout=timeout_s, wait_for_ready=False)
        async for result in call:
            yield result


def is_ok(result: pb.ImageResult) -> bool:
    return status_code(result) is grpc.StatusCode.OK
