"""The per-user latent adapters the services keep: the receiver's bounded cache of published
adapters and the error a frame gets when its adapter version is not held."""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..models.latent_adapter import LatentAdapter


class AdapterMissing(Exception):
    """A frame asks for a user's adapter version the receiver does not hold (FAILED_PRECONDITION)."""


class AdapterCache:
    """The receiver's per-user adapters, least recently used evicted beyond ``capacity`` users.

    Thread safe; :meth:`get` marks the user as recently used.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"SEMCOM_RECEIVER_ADAPTER_CACHE must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, LatentAdapter]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def publish(self, user_id: str, version: int, adapter: LatentAdapter) -> None:
        """Store ``user_id``'s adapter ``version`` (replacing any other version of the user)."""
        with self._lock:
            self._entries[user_id] = (version, adapter)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def get(self, user_id: str, version: int) -> LatentAdapter:
        """The adapter ``version`` of ``user_id``; :class:`AdapterMissing` when it is not held."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None:
                self._entries.move_to_end(user_id)
        if entry is None or entry[0] != version:
            held = "no adapter" if entry is None else f"adapter version {entry[0]}"
            raise AdapterMissing(f"the receiver holds {held} for user {user_id!r}, the frame needs version {version}: "
                                 f"run `semcom adapt --user {user_id} IMAGE ...` again")
        return entry[1]
