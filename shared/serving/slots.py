"""Slots of the channel emulator: frames of different users that share the same channel uses.

A frame of a slot-sharing channel kind (:attr:`shared.channel.ChannelKind.shares_slots`) joins the
open slot of its key (the channel parameters its partners must share) unless its user already has
a frame there; the first frame opens a slot, which is sent when it holds ``size`` frames or
``window_s`` after it opened, with whatever frames came: a frame that finds no partner goes alone,
so no frame waits longer than the window. Each frame's caller gets its own share of the slot's
result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Slot:
    size: int
    done: asyncio.Future
    items: list = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    sent: bool = False


class SlotGrouper:
    """Groups items of different users into slots and runs ``send(items)`` once per slot.

    Args:
        window_s: how long a slot stays open after its first item, seconds.
        send: ``await send(items)`` returns one result per item, in order.
    """

    def __init__(self, window_s: float, send: Callable[[list], Awaitable[list]]):
        self.window_s = window_s
        self._send = send
        self._open: dict[Hashable, _Slot] = {}
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, key: Hashable, size: int, user_id: str, item: Any) -> Any:
        """Put ``item`` of ``user_id`` into the open slot of ``key`` (one of ``size`` items) and
        return its result once the slot was sent; raises what ``send`` raised."""
        loop = asyncio.get_running_loop()
        slot = self._open.get(key)
        if slot is None or user_id in slot.users:
            slot = _Slot(size, loop.create_future())
            self._open[key] = slot
            loop.call_later(self.window_s, self._close, key, slot)
        index = len(slot.items)
        slot.items.append(item)
        slot.users.add(user_id)
        if len(slot.items) >= slot.size:
            self._close(key, slot)
        return (await asyncio.shield(slot.done))[index]

    def _close(self, key: Hashable, slot: _Slot) -> None:
        if self._open.get(key) is slot:
            del self._open[key]
        if slot.sent:
            return
        slot.sent = True
        task = asyncio.ensure_future(self._run(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, slot: _Slot) -> None:
        try:
            slot.done.set_result(await self._send(slot.items))
        except Exception as exc:  # every member of the slot gets the error
            slot.done.set_exception(exc)
