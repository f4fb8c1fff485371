"""Slots of the channel emulator (shared/serving/slots.py), and users sharing them through the three services."""

from __future__ import annotations

import asyncio

import pytest

from semcom_cli.client import SendOptions, is_ok
from shared.config import load_config
from shared.serving.slots import SlotGrouper

from ..conftest import Chain
from .test_services import image_bytes, send


def run_slots(window_s: float, arrivals: list[tuple[float, str, str]], size: int = 3):
    """Submit ``(delay_s, user, item)`` arrivals under one key; the slots sent and each item's result."""
    sent: list[list[str]] = []

    async def send_slot(items):
        sent.append(list(items))
        return [f"{item}@{len(sent)}" for item in items]

    async def main():
        grouper = SlotGrouper(window_s, send_slot)

        async def arrive(delay, user, item):
            await asyncio.sleep(delay)
            return await grouper.submit("key", size, user, item)

        return await asyncio.gather(*(arrive(*a) for a in arrivals))

    return sent, asyncio.run(main())


def test_a_full_slot_is_sent_at_once_and_each_gets_its_share():
    sent, results = run_slots(10.0, [(0.0, "a", "a1"), (0.0, "b", "b1"), (0.0, "c", "c1")])
    assert sent == [["a1", "b1", "c1"]] and results == ["a1@1", "b1@1", "c1@1"]


def test_a_lonely_frame_goes_alone_after_the_window():
    sent, results = run_slots(0.05, [(0.0, "a", "a1"), (0.2, "b", "b1")])
    assert sent == [["a1"], ["b1"]] and results == ["a1@1", "b1@2"]


def test_a_users_second_frame_waits_for_the_next_slot():
    sent, _ = run_slots(0.05, [(0.0, "a", "a1"), (0.0, "a", "a2"), (0.01, "b", "b1")], size=2)
    assert sent == [["a2", "b1"], ["a1"]]  # a2 opened a slot of its own, which b1 filled


def test_errors_reach_every_frame_of_the_slot():
    async def failing(items):
        raise ValueError("bad slot")

    async def main():
        grouper = SlotGrouper(10.0, failing)
        return await asyncio.gather(grouper.submit("k", 2, "a", 1), grouper.submit("k", 2, "b", 2),
                                    return_exceptions=True)

    assert [str(r) for r in asyncio.run(main())] == ["bad slot", "bad slot"]


@pytest.fixture
def slot_chain(tiny_weights):
    config = load_config(weights=str(tiny_weights), bind_host="127.0.0.1", device="cpu", channel_slot_window_ms=2000.0)
    running = Chain(config).start()
    yield running
    running.stop()


def test_three_users_share_a_slot_through_the_three_services(slot_chain):
    images = [image_bytes(64, 64, seed=s) for s in range(3)]
    fields = {"users": 3, "rx_antennas": 3, "multiuser_detector": "zf"}
    requests = [SendOptions(channel="mu_mimo", snr_db=snr, seed=4, user_id=f"user{u}", channel_fields=fields)
                .request(f"u{u}", image) for u, (snr, image) in enumerate(zip((15.0, 15.0, 12.0), images))]
    alone = SendOptions(channel="mu_mimo", snr_db=15.0, seed=4, user_id="solo",
                        channel_fields={"users": 2, "rx_antennas": 3}).request("solo", images[0])
    results = send(slot_chain.target, [*requests, alone])
    assert all(is_ok(r) for r in results.values()), [r.status.message for r in results.values()]
    assert [results[f"u{u}"].slot_users for u in range(3)] == [3, 3, 3]
    assert results["solo"].slot_users == 1  # no partner of its slot size within the window
    assert all(results[f"u{u}"].channel_uses == results[f"u{u}"].num_symbols for u in range(3))  # padding not counted
    assert all(results[f"u{u}"].quality.psnr_db > 10 for u in range(3))
