"""The out-of-distribution latent adapter (paper 003 sec. III-D): wire format, identity, learning,
the receiver's cache and the Adapt -> send path through the three services."""

from __future__ import annotations

import asyncio
import dataclasses
import struct

import grpc
import pytest
import torch

from semcom_cli.client import SendOptions, is_ok
from shared.adaptation.learning import learn_adapter
from shared.adaptation.options import AdaptationOptions
from shared.serving.adapters import AdapterCache, AdapterMissing
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
from shared.config import RATE_ADAPTIVE_WEIGHTS, load_config
from shared.models import RateAdaptiveConfig, RateAdaptiveJSCC
from shared.models.io import load_model, save_model
from shared.models.latent_adapter import LatentAdapter, adapter_bytes
from shared.serving.rpc import code_for_exception, open_channel, replica_targets, status_code

from ..conftest import Chain, free_port
from .test_services import image_bytes, send, smooth_image

TINY = RateAdaptiveConfig(widths=(8, 8, 8, 8), hyper_width=8, adapter_width=8)
CHANNELS = 2 * TINY.max_symbols_per_token


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return RateAdaptiveJSCC(TINY).eval()


def random_adapter(seed: int = 0) -> LatentAdapter:
    g = torch.Generator().manual_seed(seed)
    return LatentAdapter(torch.eye(CHANNELS)[None] + 0.05 * torch.randn(1, CHANNELS, CHANNELS, generator=g),
                         0.1 * torch.randn(1, CHANNELS, generator=g))


def test_wire_format_round_trip_and_malformed_payloads():
    adapter = random_adapter()
    payload = adapter.to_bytes()
    assert len(payload) == adapter_bytes(CHANNELS) == 8 + 2 * (CHANNELS ** 2 + CHANNELS)
    restored = LatentAdapter.from_bytes(payload, CHANNELS)
    assert torch.equal(restored.weight, adapter.weight.detach().half().float())
    assert torch.equal(restored.bias, adapter.bias.detach().half().float())
    assert restored.to_bytes() == payload and restored.parameter_count == CHANNELS ** 2 + CHANNELS
    nan = bytearray(payload)
    nan[8:10] = struct.pack("<e", float("nan"))
    malformed = {
        "shorter than": payload[:5],
        "magic": b"XXXX" + payload[4:],
        "version": payload[:4] + struct.pack("<H", 9) + payload[6:],
        "channel": payload,  # read as a 64-channel codec's
        "bytes": payload[:-2],
        "finite": bytes(nan),
    }
    for words, bad in malformed.items():
        with pytest.raises(ValueError, match=words):
            LatentAdapter.from_bytes(bad, 64 if words == "channel" else CHANNELS)
    with pytest.raises(ValueError):
        LatentAdapter.stack([adapter, LatentAdapter.identity(64)], CHANNELS)


def test_identity_adapter_leaves_the_decode_bit_identical_and_mixed_batches_apply_per_image(tiny_model):
    g = torch.Generator().manual_seed(1)
    received = torch.randn(2, CHANNELS, 4, 4, generator=g)
    symbol_map = torch.full((2, 4, 4), 16)
    snr = torch.tensor([5.0, 15.0])
    with torch.no_grad():
        plain = tiny_model.reconstruct(received, symbol_map, snr)
        same = tiny_model.reconstruct(received, symbol_map, snr, LatentAdapter.identity(CHANNELS))
        adapter = random_adapter()
        mixed = tiny_model.reconstruct(received, symbol_map, snr, LatentAdapter.stack([None, adapter], CHANNELS))
        adapted = tiny_model.reconstruct(received, symbol_map, snr, adapter)
    assert torch.equal(plain, same)
    assert torch.equal(mixed[0], plain[0]) and not torch.equal(mixed[1], plain[1])
    assert torch.allclose(mixed[1], adapted[1], atol=1e-5)


def test_learn_adapter_lowers_the_distortion_with_the_codec_frozen(tiny_model):
    # An untrained tiny synthesis barely responds to its latent (its sigmoid sits near 0.5), so
    # this runs the shipped codec on one small image (64x64: 4x4 tokens, a few seconds).
    codec = load_model(RATE_ADAPTIVE_WEIGHTS, "cpu")
    before = {name: value.clone() for name, value in codec.state_dict().items()}
    images = [smooth_image(64, 64, seed=3)]
    options = AdaptationOptions(steps=20, draws=2, crop_tokens=4, learning_rate=2e-2, seed=0)
    result = learn_adapter(codec, images, options, progress=False)
    assert result.psnr_after_db > result.psnr_before_db + 0.5, (result.psnr_before_db, result.psnr_after_db)
    assert all(torch.equal(before[name], value) for name, value in codec.state_dict().items())
    assert all(p.grad is None for p in codec.parameters())
    assert result.adapter.weight.shape == (1, CHANNELS, CHANNELS)
    with pytest.raises(ValueError, match="SNR range"):
        learn_adapter(tiny_model, images, AdaptationOptions(snr_range_db=(20.0, 0.0)))
    with pytest.raises(ValueError, match="at least one"):
        learn_adapter(tiny_model, [], options)


def test_receiver_cache_is_a_bounded_lru_and_asks_for_semcom_adapt():
    cache = AdapterCache(2)
    identity = LatentAdapter.identity(CHANNELS)
    cache.publish("a", 1, identity)
    cache.publish("b", 1, identity)
    assert cache.get("a", 1) is identity  # a is now the most recently used
    cache.publish("c", 3, identity)  # evicts b
    assert len(cache) == 2
    with pytest.raises(AdapterMissing, match="semcom adapt --user b"):
        cache.get("b", 1)
    with pytest.raises(AdapterMissing, match="version 3"):
        cache.get("c", 2)
    assert code_for_exception(AdapterMissing("x")) is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ValueError):
        AdapterCache(0)


@pytest.fixture(scope="module")
def adaptive_chain(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("adapter") / "w.safetensors"
    save_model(tiny_model, path)
    running = Chain(load_config(weights=str(path), bind_host="127.0.0.1", device="cpu")).start()
    yield running
    running.stop()


def adapt(target: str, request: pb.AdaptRequest) -> pb.AdaptResult:
    async def call():
        async with open_channel(target, load_config()) as channel:
            return await pb_grpc.TransmitterStub(channel).Adapt(request, timeout=60)

    return asyncio.run(call())


def adapter_request(request_id: str, user: str, use_adapter: bool = True) -> pb.ImageRequest:
    options = SendOptions(snr_db=10.0, cbr=1 / 24, seed=1, user_id=user, use_adapter=use_adapter)
    return options.request(request_id, image_bytes(64, 64, seed=5))


def test_adapt_then_send_with_the_adapter_through_the_services(adaptive_chain):
    target = adaptive_chain.target
    early = send(target, [adapter_request("early", "artist")])["early"]
    assert status_code(early) is grpc.StatusCode.FAILED_PRECONDITION and "semcom adapt" in early.status.message

    result = adapt(target, pb.AdaptRequest(user_id="artist", images=[image_bytes(64, 64, seed=4)], steps=5))
    assert result.version == 1 and result.parameters == CHANNELS ** 2 + CHANNELS and result.receivers == 1
    assert result.parameter_bytes == adapter_bytes(CHANNELS)
    assert {"decode_input", "adapt", "publish", "end_to_end"} <= set(result.latency_ms)
    assert adapt(target, pb.AdaptRequest(user_id="artist", images=[image_bytes(64, 64)], steps=2)).version == 2

    results = send(target, [adapter_request("with", "artist"), adapter_request("without", "artist", False),
                            adapter_request("other", "someone-else", False)])
    assert all(is_ok(r) for r in results.values()), [r.status.message for r in results.values()]

    receiver = adaptive_chain.services[2]
    receiver.adapters.publish("artist", 7, LatentAdapter.identity(CHANNELS))  # the transmitter stamps 2
    stale = send(target, [adapter_request("stale", "artist")])["stale"]
    assert status_code(stale) is grpc.StatusCode.FAILED_PRECONDITION
    assert "version 2" in stale.status.message and "semcom adapt --user artist" in stale.status.message


def test_bad_adapt_and_publish_requests_are_refused(adaptive_chain):
    cases = {
        "images": pb.AdaptRequest(user_id="u"),
        "decode": pb.AdaptRequest(user_id="u", images=[b"not an image"]),
        "user_id": pb.AdaptRequest(images=[image_bytes(64, 64)]),
        "SNR range": pb.AdaptRequest(user_id="u", images=[image_bytes(64, 64)], snr_min_db=30, snr_max_db=5),
    }
    for words, request in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as error:
            adapt(adaptive_chain.target, request)
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and words in error.value.details(), words

    async def publish(update):
        receiver_target = adaptive_chain.services[0].config.receiver_target
        async with open_channel(receiver_target, load_config()) as channel:
            return await pb_grpc.ReceiverStub(channel).PublishAdapter(update, timeout=10)

    good = random_adapter().to_bytes()
    ack = asyncio.run(publish(pb.AdapterUpdate(user_id="p", version=1, model="rate-adaptive", parameters=good)))
    assert ack.version == 1 and ack.cached_users >= 1
    for update in (pb.AdapterUpdate(user_id="p", version=1, model="rate-adaptive", parameters=good[:-4]),
                   pb.AdapterUpdate(user_id="p", version=1, model="deepjscc-baseline", parameters=good),
                   pb.AdapterUpdate(user_id="p", version=0, model="rate-adaptive", parameters=good)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            asyncio.run(publish(update))
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_publishing_reaches_every_replica_behind_a_dns_name():
    assert replica_targets("receiver.example:50053") == ["receiver.example:50053"]
    assert replica_targets("dns:///localhost:50053") == ["127.0.0.1:50053"]


def test_unreachable_receiver_answers_unavailable(adaptive_chain):
    transmitter = adaptive_chain.services[0]
    working = transmitter.config
    transmitter.config = dataclasses.replace(working, receiver_address=f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            adapt(adaptive_chain.target, pb.AdaptRequest(user_id="lonely", images=[image_bytes(64, 64)], steps=1))
        assert error.value.code() is grpc.StatusCode.UNAVAILABLE and "receiver" in error.value.details()
    finally:
        transmitter.config = working


def test_fixed_rate_baseline_refuses_the_adapter(chain):
    result = send(chain.target, [adapter_request("baseline", "u")])["baseline"]
    assert status_code(result) is grpc.StatusCode.UNIMPLEMENTED and "fixed-rate" in result.status.message
    with pytest.raises(grpc.aio.AioRpcError) as error:
        adapt(chain.target, pb.AdaptRequest(user_id="u", images=[image_bytes(64, 64)]))
    assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED
