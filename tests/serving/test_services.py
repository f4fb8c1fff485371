"""The three services end to end on localhost: streaming, bad input, failures, metrics."""

from __future__ import annotations

import asyncio
import io
import math

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client import REGISTRY

from semcom_cli.client import SendOptions, is_ok, stream_requests
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import load_config
from shared.quality import psnr
from shared.serving.rpc import open_channel, status_code

from ..conftest import Chain, free_port, smooth_image

STAGES = {"decode_input", "encode", "channel", "equalize", "decode", "reconstruct", "quality", "end_to_end"}


def image_bytes(height: int, width: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    array = (smooth_image(height, width, seed) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def send(target: str, requests: list[pb.ImageRequest]) -> dict[str, pb.ImageResult]:
    """All results of one stream, by request id; asserts exactly one answer per request."""

    async def collect():
        return [r async for r in stream_requests(target, requests, load_config(), timeout_s=120)]

    results = asyncio.run(collect())
    ids = [r.request_id for r in results]
    assert sorted(ids) == sorted(q.request_id for q in requests), "every request gets exactly one answer"
    return {r.request_id: r for r in results}


def test_stream_of_images_end_to_end(chain):
    sizes = [(64, 96, "PNG"), (50, 37, "JPEG"), (128, 128, "WEBP")]
    requests = []
    for i, (h, w, fmt) in enumerate(sizes):
        for kind, cbr in (("awgn", 1 / 24), ("rayleigh", 1 / 48)):
            options = SendOptions(channel=kind, snr_db=10.0, cbr=cbr, seed=i, user_id=f"user{i}")
            requests.append(options.request(f"{fmt}-{kind}", image_bytes(h, w, fmt, seed=i)))
    results = send(chain.target, requests)
    for request in requests:
        result = results[request.request_id]
        assert is_ok(result), result.status.message
        decoded = Image.open(io.BytesIO(result.image))
        original = Image.open(io.BytesIO(request.image))
        assert decoded.format == "PNG" and decoded.size == original.size
        assert (result.width, result.height) == original.size
        assert result.user_id == request.user_id and result.mode == "jscc" and result.nfe == 1
        assert result.channel.kind == request.channel.kind
        assert STAGES <= set(result.latency_ms), set(result.latency_ms)
        assert all(v >= 0 for v in result.latency_ms.values())
        assert math.isfinite(result.quality.psnr_db) and 0 < result.quality.ms_ssim <= 1
        # CBR is paid on the padded grid: exact for multiples of 16, a little above otherwise.
        w, h = original.size
        grid = math.ceil(h / 16) * math.ceil(w / 16)
        expected = grid * round(request.target_cbr * 768) / (3 * h * w)
        assert result.achieved_cbr == pytest.approx(expected)
        assert result.num_symbols == grid * round(request.target_cbr * 768)



def test_quality_figures_only_when_asked(chain):
    """skip_quality: the same image back, no PSNR/MS-SSIM and no quality stage spent on them."""
    image = image_bytes(64, 64)
    asked = SendOptions(seed=3).request("asked", image)
    skipped = SendOptions(seed=3, quality=False).request("skipped", image)
    results = send(chain.target, [asked, skipped])
    assert is_ok(results["asked"]) and is_ok(results["skipped"])
    assert results["asked"].quality.psnr_db > 0 and "quality" in results["asked"].latency_ms
    assert not results["skipped"].HasField("quality") and "quality" not in results["skipped"].latency_ms
    assert results["skipped"].image == results["asked"].image

def test_bad_input_answered_and_stream_goes_on(chain):
    good = image_bytes(64, 64)
    ok = SendOptions()
    bad_cases = {
        "empty": (ok.request("empty", b""), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        "garbage": (ok.request("garbage", b"not an image at all"), grpc.StatusCode.INVALID_ARGUMENT, "decode"),
        "bomb": (ok.request("bomb", image_bytes(600, 600)), grpc.StatusCode.INVALID_ARGUMENT, "over the limit"),
        "tiny": (ok.request("tiny", image_bytes(8, 8)), grpc.StatusCode.INVALID_ARGUMENT, "at least"),
        "gif": (ok.request("gif", image_bytes(32, 32, "GIF")), grpc.StatusCode.INVALID_ARGUMENT, "format"),
        "snr-nan": (SendOptions(snr_db=float("nan")).request("snr-nan", good), grpc.StatusCode.INVALID_ARGUMENT, "SNR"),
        "snr-huge": (SendOptions(snr_db=1e9).request("snr-huge", good), grpc.StatusCode.INVALID_ARGUMENT, "SNR"),
        "cbr-inf": (SendOptions(cbr=float("inf")).request("cbr-inf", good), grpc.StatusCode.INVALID_ARGUMENT, "CBR"),
        "cbr-neg": (SendOptions(cbr=-0.5).request("cbr-neg", good), grpc.StatusCode.INVALID_ARGUMENT, "CBR"),
        "cbr-unserved": (SendOptions(cbr=0.1).request("cbr-unserved", good), grpc.StatusCode.INVALID_ARGUMENT, "served"),
        "kind": (SendOptions(channel="teleport").request("kind", good), grpc.StatusCode.INVALID_ARGUMENT, "channel kind"),
        "mode": (SendOptions(mode="magic").request("mode", good), grpc.StatusCode.INVALID_ARGUMENT, "mode"),
        "k-neg": (SendOptions(channel="rician", channel_fields={"k_factor": -1}).request("k-neg", good), grpc.StatusCode.INVALID_ARGUMENT, "K"),
    }
    mimo = SendOptions(channel="mimo").request("mimo-pilots", good)
    mimo.channel.csi = "lmmse"
    bad_cases["mimo-pilots"] = (mimo, grpc.StatusCode.UNIMPLEMENTED, "perfect CSI")
    tdl = SendOptions(channel="tdl").request("tdl-profile", good)
    tdl.channel.tdl_model = "Z"
    bad_cases["tdl-profile"] = (tdl, grpc.StatusCode.INVALID_ARGUMENT, "TDL profile")
    requests = []
    for i, (request, _, _) in enumerate(bad_cases.values()):
        requests += [request, SendOptions(seed=i).request(f"good-{i}", good)]
    results = send(chain.target, requests)
    for name, (_, code, words) in bad_cases.items():
        assert status_code(results[name]) is code, (name, results[name].status)
        assert words.lower() in results[name].status.message.lower(), (name, results[name].status.message)
    assert all(is_ok(results[f"good-{i}"]) for i in range(len(bad_cases)))


def test_duplicate_request_id_in_flight_is_refused(chain):
    good = image_bytes(64, 64)
    results = []

    async def collect():
        requests = [SendOptions().request("same", good), SendOptions().request("same", good)]
        async for r in stream_requests(chain.target, requests, load_config(), timeout_s=60):
            results.append(r)

    asyncio.run(collect())
    codes = sorted(status_code(r).name for r in results)
    assert codes == ["ALREADY_EXISTS", "OK"]


def test_transmit_one_maps_errors_to_grpc_status(chain):
    async def call(request):
        async with open_channel(chain.target, load_config()) as channel:
            return await pb_grpc.TransmitterStub(channel).TransmitOne(request, timeout=60)

    result = asyncio.run(call(SendOptions().request("one", image_bytes(48, 64))))
    assert is_ok(result) and result.width == 64 and result.height == 48
    with pytest.raises(grpc.aio.AioRpcError) as error:
        asyncio.run(call(SendOptions().request("bad", b"\x89PNG broken")))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "decode" in error.value.details()


def test_unreachable_channel_emulator_answers_every_request(tiny_weights):
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu")
    broken = Chain(config).start(channel_target=f"127.0.0.1:{free_port()}")
    try:
        requests = [SendOptions().request(str(i), image_bytes(32, 32, seed=i)) for i in range(3)]
        requests.append(SendOptions().request("bad", b""))
        results = send(broken.target, requests)
        for i in range(3):
            assert status_code(results[str(i)]) is grpc.StatusCode.UNAVAILABLE
            assert "channel emulator" in results[str(i)].status.message
        assert status_code(results["bad"]) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        broken.stop()


def test_health_and_metrics(chain):
    from semcom_cli.client import check_health

    assert asyncio.run(check_health(chain.target))
    send(chain.target, [SendOptions(seed=1).request("metrics", image_bytes(64, 64))])
    for service, stage in [("transmitter", "decode_input"), ("transmitter", "encode"), ("channel_emulator", "channel"),
                           ("receiver", "equalize"), ("receiver", "decode"), ("transmitter", "end_to_end")]:
        count = REGISTRY.get_sample_value("semcom_stage_latency_seconds_count", {"service": service, "stage": stage})
        assert count and count >= 1, (service, stage)
    assert REGISTRY.get_sample_value("semcom_images_total", {"service": "receiver", "status": "OK"}) >= 1
    assert REGISTRY.get_sample_value("semcom_symbols_total", {"service": "channel_emulator"}) > 0
    assert REGISTRY.get_sample_value("semcom_in_flight_requests", {"service": "transmitter"}) == 0


def test_every_channel_kind_through_the_services(chain):
    good = image_bytes(64, 64)  # 16 tokens: n = 512 symbols at CBR 1/24
    cases = {
        "rician": ({"kind": "rician", "k_factor": 1.0}, 512, 0),
        "mimo-svd": ({"kind": "mimo", "tx_antennas": 2, "rx_antennas": 2}, 256, 2 * 2 * 2 * 32 * 4),
        "mimo-open": ({"kind": "mimo", "mimo_scheme": "open_loop", "tx_antennas": 2, "rx_antennas": 4}, 256, 0),
        "tdl": ({"kind": "tdl", "tdl_model": "C", "delay_spread_ns": 100, "speed_mps": 30}, 512, 0),
        "lmmse": ({"kind": "rayleigh", "csi": "lmmse", "pilots": 2, "coherence_symbols": 64}, 512 + 2 * 8, 0),
        "ls-awgn": ({"kind": "awgn", "csi": "ls", "pilots": 3}, 512 + 3, 0),
    }
    requests = []
    for name, (fields, _, _) in cases.items():
        request = SendOptions(seed=7).request(name, good)
        for key, value in fields.items():
            setattr(request.channel, key, value)
        request.channel.snr_db = 15.0
        requests.append(request)
    results = send(chain.target, requests)
    for name, (_, uses, feedback) in cases.items():
        result = results[name]
        assert is_ok(result), (name, result.status.message)
        assert result.channel_uses == uses, name
        assert result.achieved_cbr == pytest.approx(uses / (3 * 64 * 64)), name
        assert (result.feedback_bits > 0) == (feedback > 0), name


def test_16bit_grayscale_is_scored_against_what_the_codec_saw(chain):
    levels = (smooth_image(64, 64, seed=4)[0].numpy() * 65535).round().astype("uint16")
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    result = send(chain.target, [SendOptions(seed=2).request("gray16", buffer.getvalue())])["gray16"]
    assert is_ok(result), result.status.message
    truth = torch.from_numpy(levels.astype("float32") / 65535).expand(3, -1, -1)
    received = torch.from_numpy(np.asarray(Image.open(io.BytesIO(result.image)).convert("RGB"), dtype="float32") / 255)
    true_psnr = psnr(truth[None], received.permute(2, 0, 1)[None])[0].item()
    assert result.quality.psnr_db == pytest.approx(true_psnr, abs=0.1)


def test_a_frame_over_the_message_limit_fails_alone(tiny_weights):
    # 64x64 antennas with one channel use per block: the channel state of a 64x64 image is ~0.5 MB
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu", max_message_bytes=200_000)
    small = Chain(config).start()
    try:
        good = image_bytes(64, 64)
        huge = SendOptions(channel="mimo", seed=1, channel_fields={"tx_antennas": 64, "rx_antennas": 64,
                                                                   "coherence_symbols": 1}).request("huge", good)
        requests = [huge] + [SendOptions(seed=i).request(f"good-{i}", good) for i in range(3)]
        results = send(small.target, requests)
        assert status_code(results["huge"]) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over the message limit" in results["huge"].status.message
        assert all(is_ok(results[f"good-{i}"]) for i in range(3))
    finally:
        small.stop()
