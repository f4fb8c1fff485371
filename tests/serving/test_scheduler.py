"""The MU-GSC receiver scheduler (a batching FairStage): fairness, batching, limits, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from receiver.server import ReceiverService
from semcom_cli.client import SendOptions
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.codecs import codec_for
from shared.config import load_config
from shared.models.io import load_model
from shared.serving.fairqueue import BatchPolicy, FairQueue, Job, QueueFullError
from shared.serving.rpc import status_code

from ..conftest import Chain
from .test_services import image_bytes, send


def drain(queue: FairQueue, policy: BatchPolicy) -> list[list[Job]]:
    async def run():
        batches = []
        while len(queue):
            batches.append(await queue.get_batch(policy.max_batch, policy.max_wait_s))
        return batches

    return asyncio.run(run())


def test_round_robin_keeps_a_flooding_user_from_starving_others():
    queue, policy = FairQueue(100), BatchPolicy(1, 0)
    for i in range(10):
        queue.put(Job("flood", "k", f"flood-{i}"))
    queue.put(Job("quiet", "k", "quiet-0"))
    queue.put(Job("quiet", "k", "quiet-1"))
    order = [batch[0].payload for batch in drain(queue, policy)]
    assert order[:4] == ["flood-0", "quiet-0", "flood-1", "quiet-1"]
    assert order[4:] == [f"flood-{i}" for i in range(2, 10)]


def test_fifo_mode_serves_in_arrival_order():
    queue, policy = FairQueue(100, fair=False), BatchPolicy(1, 0)
    for i in range(5):
        queue.put(Job("flood", "k", f"flood-{i}"))
    queue.put(Job("quiet", "k", "quiet-0"))
    assert [b[0].payload for b in drain(queue, policy)] == [f"flood-{i}" for i in range(5)] + ["quiet-0"]


def test_batches_group_compatible_jobs_one_per_user_per_round():
    queue, policy = FairQueue(100), BatchPolicy(3, 0)
    for user, key in [("a", "big"), ("a", "big"), ("b", "small"), ("c", "big"), ("d", "big")]:
        queue.put(Job(user, key, f"{user}-{key}"))
    batches = [[job.payload for job in batch] for batch in drain(queue, policy)]
    assert batches[0] == ["a-big", "c-big", "d-big"]  # b's job has another key
    assert batches[1] == ["b-small"]
    assert batches[2] == ["a-big"]


def test_worker_waits_up_to_max_wait_to_fill_a_batch():
    async def run():
        queue, policy = FairQueue(10), BatchPolicy(4, 0.2)
        queue.put(Job("a", "k", 1))
        asyncio.get_running_loop().call_later(0.05, queue.put, Job("b", "k", 2))
        asyncio.get_running_loop().call_later(0.05, queue.put, Job("c", "other", 3))
        start = time.perf_counter()
        batch = await queue.get_batch(policy.max_batch, policy.max_wait_s)
        return [j.payload for j in batch], time.perf_counter() - start, len(queue)

    payloads, waited, left = asyncio.run(run())
    assert payloads == [1, 2] and left == 1
    assert 0.15 < waited < 1.0  # waited for more until max_wait, not forever


def test_capacity_and_removal():
    queue, policy = FairQueue(3), BatchPolicy(8, 0)
    for i in range(3):
        queue.put(Job("u", "k", i))
    with pytest.raises(asyncio.QueueFull):
        queue.put(Job("v", "k", 9))
    removed = queue.remove(lambda job: job.payload != 1)
    assert [j.payload for j in removed] == [0, 2] and len(queue) == 1
    queue.put(Job("v", "k", 9))
    assert [[j.payload for j in b] for b in drain(queue, policy)] == [[1, 9]]
    with pytest.raises(ValueError):
        FairQueue(capacity=0)
    with pytest.raises(ValueError):
        BatchPolicy(max_batch=0, max_wait_s=0)


class RecordingSession:
    """Stands in for a StreamSession: records answers."""

    closed = False

    def __init__(self):
        self.answers = []

    def answer(self, result):
        self.answers.append(result)


def test_full_queue_answers_resource_exhausted_at_once(tiny_weights):
    config = load_config(weights=str(tiny_weights), device="cpu", receiver_queue_size=2, receiver_workers=1)

    async def run():
        service = ReceiverService(config, codec_for(load_model(config.weights)))
        for i in range(2):  # two queued jobs whose callers already left: the queue is full
            left = asyncio.get_running_loop().create_future()
            left.cancel()
            service.stage.queue.put(Job("u", "k", (None, (), left)))
        frame = pb.ReceivedFrame(frame=pb.SymbolFrame(
            request_id="late", user_id="u", symbols=bytes(8 * 16), num_symbols=16, token_lengths=[16],
            grid_height=1, grid_width=1, image_height=16, image_width=16))
        try:
            with pytest.raises(QueueFullError, match="queue is full") as refused:
                await service._handle(frame, RecordingSession())
            return refused.value
        finally:
            await service.close()

    assert asyncio.run(run()).grpc_code is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def batching_chain(tiny_weights):
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu",
                         receiver_max_batch=8, receiver_max_wait_ms=200.0, receiver_workers=1)
    running = Chain(config).start()
    yield running
    running.stop()


def test_receiver_batches_concurrent_requests_and_honours_deadlines(batching_chain):
    image = image_bytes(64, 64)
    requests = [SendOptions(seed=i, user_id=f"user{i % 3}").request(str(i), image) for i in range(8)]
    expired = SendOptions(seed=9).request("expired", image)
    expired.deadline_ms = 0.001
    bad_deadline = SendOptions().request("bad-deadline", image)
    bad_deadline.deadline_ms = float("nan")
    results = send(batching_chain.target, [*requests, expired, bad_deadline])
    assert all(status_code(results[str(i)]) is grpc.StatusCode.OK for i in range(8))
    assert max(results[str(i)].batch_size for i in range(8)) > 1
    assert all("queue" in results[str(i)].latency_ms for i in range(8))
    assert status_code(results["expired"]) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_code(results["bad-deadline"]) is grpc.StatusCode.INVALID_ARGUMENT


def test_bad_frames_of_one_user_never_fail_another_users_batch(batching_chain):
    from channel_emulator.server import propagate
    from shared.serving.rpc import open_channel
    from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
    from transmitter.server import encode_request

    config, codec = batching_chain.config, batching_chain.services[0].codec
    image = image_bytes(64, 64)
    mimo = {"tx_antennas": 2, "rx_antennas": 2}
    frames = []
    for i in range(16):
        options = SendOptions(channel="mimo", seed=i, user_id="attacker" if i % 2 else "victim", channel_fields=mimo)
        request = options.request(str(i), image)
        received = propagate(encode_request(codec, request, config)[0], config)
        if i % 2:
            received.state.rx_antennas = 0
        frames.append(received)

    async def run():
        async with open_channel(batching_chain.targets["Receiver"], config) as channel:
            return [r async for r in pb_grpc.ReceiverStub(channel).Receive(iter(frames), timeout=60)]

    results = {r.request_id: r for r in asyncio.run(run())}
    assert len(results) == 16
    assert all(status_code(results[str(i)]) is grpc.StatusCode.OK for i in range(0, 16, 2))
    assert all(status_code(results[str(i)]) is grpc.StatusCode.INVALID_ARGUMENT for i in range(1, 16, 2))
    assert max(results[str(i)].batch_size for i in range(0, 16, 2)) > 1


def test_cancelled_stream_frees_its_queued_work(tiny_weights):
    from prometheus_client import REGISTRY

    from channel_emulator.server import propagate
    from receiver.server import register
    from shared.api.semcom.v1 import semcom_pb2_grpc as pb_grpc
    from shared.serving.rpc import open_channel, start_server
    from transmitter.server import encode_request

    config = load_config(weights=str(tiny_weights), device="cpu", bind_host="127.0.0.1", receiver_workers=1,
                         receiver_max_batch=1, receiver_max_wait_ms=0.0)
    model = codec_for(load_model(config.weights))
    frames = [propagate(encode_request(model, SendOptions(seed=i).request(str(i), image_bytes(256, 256)), config)[0],
                        config) for i in range(20)]
    before = REGISTRY.get_sample_value("semcom_dropped_total", {"service": "receiver", "reason": "cancelled"}) or 0

    async def run():
        service = ReceiverService(config, model)
        server, port = await start_server(config, 0, "Receiver", register(service))
        try:
            async with open_channel(f"127.0.0.1:{port}", config) as channel:
                call = pb_grpc.ReceiverStub(channel).Receive(iter(frames))
                first = await call.read()
                call.cancel()
            await asyncio.sleep(0.3)
            return first
        finally:
            await server.stop(0)
            await service.close()

    first = asyncio.run(run())
    assert status_code(first) is grpc.StatusCode.OK
    dropped = REGISTRY.get_sample_value("semcom_dropped_total", {"service": "receiver", "reason": "cancelled"}) - before
    assert dropped >= 5  # queued frames of the cancelled stream were never decoded
