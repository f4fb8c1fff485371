"""Per-user fair queueing where the queue forms: the shared FairStage and the transmitter's encoder."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from prometheus_client import REGISTRY

import transmitter.server as tx_server
from semcom_cli.client import SendOptions, stream_requests
from shared.config import load_config
from shared.serving.fairqueue import (BatchPolicy, DeadlineExpiredError, FairQueue, FairStage, Job, QueueFullError,
                                      UserQuotaError)
from shared.serving.rpc import status_code

from ..conftest import Chain
from .test_services import image_bytes

SERVICE_TIME_S = 0.03


def drops(service: str, reason: str) -> float:
    return REGISTRY.get_sample_value("semcom_dropped_total", {"service": service, "reason": reason}) or 0.0


def depth(service: str) -> float:
    return REGISTRY.get_sample_value("semcom_queue_depth", {"service": service})


def test_fair_queue_round_robin_and_bound():
    queue = FairQueue(capacity=5)
    for i in range(3):
        queue.put(Job("flood", None, f"f{i}"))
    queue.put(Job("quiet", None, "q0"))
    queue.put(Job("other", None, "o0"))
    assert queue.active_users == 3
    with pytest.raises(asyncio.QueueFull):
        queue.put(Job("late", None, "x"))
    assert [queue.pop_next().payload for _ in range(5)] == ["f0", "q0", "o0", "f1", "f2"]
    assert queue.pop_next() is None and len(queue) == 0


class Recorder:
    """A blocking 'service' that takes SERVICE_TIME_S and records the order of the calls."""

    def __init__(self):
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, name: str) -> str:
        with self.lock:
            self.calls.append(name)
        time.sleep(SERVICE_TIME_S)
        return name


def steady_user_under_flood(scheduler: str, flooders: int = 3, flood_jobs: int = 15, steady_requests: int = 4):
    """One worker; ``flooders`` users queue ``flood_jobs`` each at once, a steady user sends one
    request at a time. Returns the steady user's waits (s) and how many other calls ran
    between each steady request's arrival and its start."""
    recorder = Recorder()

    async def run():
        stage = FairStage(f"test_{scheduler}", workers=1, capacity=1000, scheduler=scheduler)
        flood = [asyncio.ensure_future(stage.run(f"flood{u}", None, recorder, f"flood{u}-{i}"))
                 for u in range(flooders) for i in range(flood_jobs)]
        await asyncio.sleep(SERVICE_TIME_S / 2)  # the first flood job is being computed
        waits, overtaken = [], []
        for i in range(steady_requests):
            before = len(recorder.calls)
            start = time.perf_counter()
            assert await stage.run("steady", None, recorder, f"steady-{i}") == f"steady-{i}"
            waits.append(time.perf_counter() - start - SERVICE_TIME_S)
            overtaken.append(recorder.calls.index(f"steady-{i}") - before)
        await asyncio.gather(*flood)
        await stage.close()
        return waits, overtaken

    return asyncio.run(run())


def test_a_flood_delays_a_steady_user_by_at_most_one_service_time_per_other_user():
    waits, overtaken = steady_user_under_flood("fair")
    # 3 other active users: at most the call being computed + one per other user per round.
    assert max(overtaken) <= 4, overtaken
    assert max(waits) < 4 * SERVICE_TIME_S + 0.25, waits
    # Arrival order (the transmitter before fair queueing): the steady user waits for the whole flood.
    _, overtaken_fifo = steady_user_under_flood("fifo", steady_requests=1)
    assert overtaken_fifo[0] >= 40, overtaken_fifo


def test_full_stage_refuses_at_once_and_loses_nothing():
    release = threading.Event()
    before = drops("test_full", "queue_full")

    async def run():
        stage = FairStage("test_full", workers=1, capacity=2)
        running = asyncio.ensure_future(stage.run("u", None, release.wait))
        await asyncio.sleep(0.05)  # the worker holds the first job; two more fill the queue
        queued = [asyncio.ensure_future(stage.run("u", None, lambda i=i: i)) for i in range(2)]
        await asyncio.sleep(0)
        start = time.perf_counter()
        with pytest.raises(QueueFullError) as refused:
            await stage.run("v", None, lambda: "never")
        refused_after = time.perf_counter() - start
        assert depth("test_full") == 2
        release.set()
        results = await asyncio.gather(running, *queued)
        await stage.close()
        return refused.value, refused_after, results

    error, refused_after, results = asyncio.run(run())
    assert error.grpc_code is grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in str(error)
    assert refused_after < 0.05
    assert results == [True, 0, 1]
    assert drops("test_full", "queue_full") - before == 1
    assert depth("test_full") == 0


def test_a_user_over_its_quota_is_refused_while_others_are_admitted():
    release = threading.Event()

    async def run():
        stage = FairStage("test_quota", workers=1, capacity=10, user_quota=2)
        flood = [asyncio.ensure_future(stage.run("flood", None, release.wait)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(UserQuotaError) as refused:
            await stage.run("flood", None, lambda: "never")
        other = asyncio.ensure_future(stage.run("quiet", None, lambda: "served"))
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*flood, other)
        again = await stage.run("flood", None, lambda: "admitted again")  # its requests were answered
        await stage.close()
        return refused.value, results, again

    error, results, again = asyncio.run(run())
    assert error.grpc_code is grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in str(error)
    assert results == [True, True, "served"] and again == "admitted again"
    assert drops("test_quota", "user_quota") == 1


def test_a_failing_batch_is_retried_job_by_job():
    calls = []

    def decode(frames: list[str]) -> list[str]:
        calls.append(list(frames))
        if "bad" in frames:
            raise RuntimeError("one bad frame")
        return [f"decoded {frame}" for frame in frames]

    async def run():
        stage = FairStage("test_retry", workers=1, capacity=10, batching=BatchPolicy(max_batch=4, max_wait_s=0.2))
        jobs = [stage.run(user, None, decode, frame, key="k") for user, frame in
                [("victim", "a"), ("attacker", "bad"), ("victim", "b")]]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await stage.close()
        return results

    a, bad, b = asyncio.run(run())
    assert (a, b) == ("decoded a", "decoded b")
    assert isinstance(bad, RuntimeError)
    assert calls[0] == ["a", "bad", "b"] and sorted(calls[1:]) == [["a"], ["b"], ["bad"]]


def test_expired_job_is_dropped_before_compute():
    calls = []
    before = drops("test_deadline", "deadline")

    async def run():
        stage = FairStage("test_deadline", workers=1, capacity=10)
        busy = asyncio.ensure_future(stage.run("a", None, time.sleep, 0.15))
        await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExpiredError) as expired:
            await stage.run("b", time.time() + 0.02, calls.append, "computed")
        fresh = await stage.run("b", time.time() + 10, lambda: "ok")
        await busy
        await stage.close()
        return expired.value, fresh

    error, fresh = asyncio.run(run())
    assert error.grpc_code is grpc.StatusCode.DEADLINE_EXCEEDED and calls == []
    assert fresh == "ok"
    assert drops("test_deadline", "deadline") - before == 1


def test_cancelled_caller_frees_its_queued_job():
    calls = []
    before = drops("test_cancel", "cancelled")

    async def run():
        stage = FairStage("test_cancel", workers=1, capacity=10)
        busy = asyncio.ensure_future(stage.run("a", None, time.sleep, 0.1))
        await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(stage.run("b", None, calls.append, i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert len(stage.queue) == 3
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        queued_after_cancel = len(stage.queue)
        await busy
        await asyncio.sleep(0.05)
        await stage.close()
        return queued_after_cancel

    assert asyncio.run(run()) == 0
    assert calls == []  # never computed
    assert drops("test_cancel", "cancelled") - before == 3
    assert depth("test_cancel") == 0


def test_run_first_work_goes_ahead_of_the_queue_without_taking_its_room():
    order = []
    release = threading.Event()

    async def run():
        stage = FairStage("test_first", workers=1, capacity=1)
        busy = asyncio.ensure_future(stage.run("a", None, release.wait))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(stage.run("b", None, order.append, "queued"))
        await asyncio.sleep(0)
        first = [asyncio.ensure_future(stage.run_first(order.append, f"first-{i}")) for i in range(2)]
        await asyncio.sleep(0)
        assert len(stage.queue) == 1  # run_first work does not count against the bound
        release.set()
        await asyncio.gather(busy, queued, *first)
        await stage.close()

    asyncio.run(run())
    assert order == ["first-0", "first-1", "queued"]


def test_stage_rejects_bad_settings():
    with pytest.raises(ValueError):
        FairStage("test_bad", workers=1, capacity=1, scheduler="lifo")
    with pytest.raises(ValueError):
        FairStage("test_bad", workers=0, capacity=1)
    with pytest.raises(ValueError):
        FairStage("test_bad", workers=1, capacity=1, user_quota=-1)


# --- the transmitter, in the whole chain, with a slowed encoder -------------------------

ENCODE_S = 0.05


@pytest.fixture
def slow_chain(tiny_weights, monkeypatch, request):
    """The chain with one transmitter encoder worker whose encoding takes >= ENCODE_S."""
    real = tx_server.encode_request

    def slow_encode(*args, **kwargs):
        time.sleep(ENCODE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(tx_server, "encode_request", slow_encode)
    overrides = getattr(request, "param", {})
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu", transmitter_workers=1,
                         **overrides)
    running = Chain(config).start()
    yield running
    running.stop()


async def timed_stream(target: str, requests, config) -> dict:
    """Results of one stream by request id, with the seconds from the stream's start to each."""
    start = time.perf_counter()
    out = {}
    async for result in stream_requests(target, requests, config, timeout_s=120):
        out[result.request_id] = (result, time.perf_counter() - start)
    return out


@pytest.mark.parametrize("slow_chain", [{"transmitter_scheduler": "fair"}, {"transmitter_scheduler": "fifo"}],
                         indirect=True, ids=["fair", "fifo"])
def test_transmitter_serves_a_steady_user_between_a_floods_requests(slow_chain):
    image = image_bytes(64, 64)
    flood = [SendOptions(seed=i, user_id="flood").request(f"flood-{i}", image) for i in range(30)]
    config = load_config()

    async def run():
        flooding = asyncio.ensure_future(timed_stream(slow_chain.target, flood, config))
        await asyncio.sleep(6 * ENCODE_S)  # the flood is queued at the transmitter
        steady = {}
        for i in range(3):  # one request at a time
            request = SendOptions(seed=100 + i, user_id="steady").request(f"steady-{i}", image)
            steady.update(await timed_stream(slow_chain.target, [request], config))
        return await flooding, steady

    flood_results, steady_results = asyncio.run(run())
    assert len(flood_results) == 30 and len(steady_results) == 3  # nothing lost
    assert all(status_code(r) is grpc.StatusCode.OK for r, _ in [*flood_results.values(), *steady_results.values()])
    flood_span = max(t for _, t in flood_results.values())
    assert flood_span > 30 * ENCODE_S
    if slow_chain.config.transmitter_scheduler == "fifo":  # arrival order: behind most of the flood
        assert steady_results["steady-0"][0].latency_ms["tx_queue"] > 1000 * 15 * ENCODE_S
        return
    # the transmitter's work per request (slowest flood encode + quality figures; the CPU is shared)
    service_ms = 1000 * ENCODE_S + max(r.latency_ms["decode_input"] + r.latency_ms["encode"] + r.latency_ms["quality"]
                                       for r, _ in flood_results.values())
    for result, seconds in steady_results.values():
        # one other active user: the encode in progress + at most one flood request per round (+ slack)
        assert result.latency_ms["tx_queue"] < 2 * service_ms + 100, (dict(result.latency_ms), service_ms)
        assert seconds < flood_span / 3, (seconds, flood_span)
        assert "channel_queue" in result.latency_ms


@pytest.mark.parametrize("slow_chain", [{"user_quota": 2}], indirect=True)
def test_transmitter_refuses_a_flooder_over_its_quota_and_serves_the_others(slow_chain):
    image = image_bytes(64, 64)
    flood = [SendOptions(seed=i, user_id="flood").request(f"flood-{i}", image) for i in range(8)]
    steady = [SendOptions(seed=i, user_id="steady").request(f"steady-{i}", image) for i in range(2)]
    results = asyncio.run(timed_stream(slow_chain.target, [*flood, *steady], load_config()))
    assert len(results) == 10  # every request answered
    assert all(status_code(results[r.request_id][0]) is grpc.StatusCode.OK for r in steady)
    refused = [results[r.request_id][0] for r in flood
               if status_code(results[r.request_id][0]) is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(refused) >= 4 and "quota" in refused[0].status.message


@pytest.mark.parametrize("slow_chain", [{"transmitter_queue_size": 3}], indirect=True)
def test_transmitter_full_queue_refuses_at_once_and_answers_everything(slow_chain):
    image = image_bytes(64, 64)
    burst = [SendOptions(seed=i, user_id="burst").request(f"burst-{i}", image) for i in range(12)]
    before = drops("transmitter", "queue_full")
    results = asyncio.run(timed_stream(slow_chain.target, burst, load_config()))
    codes = [status_code(r) for r, _ in results.values()]
    assert len(codes) == 12  # every request answered
    refused = [r for r, _ in results.values() if status_code(r) is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert codes.count(grpc.StatusCode.OK) >= 3 and len(refused) >= 4
    assert codes.count(grpc.StatusCode.OK) + len(refused) == 12
    assert "transmitter queue is full" in refused[0].status.message
    assert drops("transmitter", "queue_full") - before == len(refused)
    # refused at once, not after waiting for the encoder
    fastest_ok = min(t for r, t in results.values() if status_code(r) is grpc.StatusCode.OK)
    assert min(t for r, t in results.values() if status_code(r) is grpc.StatusCode.RESOURCE_EXHAUSTED) < fastest_ok


def test_transmitter_drops_an_expired_request_before_encoding(slow_chain, monkeypatch):
    image = image_bytes(64, 64)
    encoded = []
    slowed = tx_server.encode_request

    def counting(model, request, config):
        encoded.append(request.request_id)
        return slowed(model, request, config)

    monkeypatch.setattr(tx_server, "encode_request", counting)
    burst = [SendOptions(seed=i, user_id="burst").request(f"burst-{i}", image) for i in range(4)]
    expired = SendOptions(user_id="late").request("expired", image)
    expired.deadline_ms = 0.001
    in_time = SendOptions(user_id="late2").request("in-time", image)
    in_time.deadline_ms = 60_000
    before = drops("transmitter", "deadline")
    results = asyncio.run(timed_stream(slow_chain.target, [*burst, expired, in_time], load_config()))
    assert len(results) == 6
    result = results["expired"][0]
    assert status_code(result) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "before the transmitter took the request" in result.status.message
    assert "expired" not in encoded and "in-time" in encoded
    assert status_code(results["in-time"][0]) is grpc.StatusCode.OK
    assert drops("transmitter", "deadline") - before == 1
