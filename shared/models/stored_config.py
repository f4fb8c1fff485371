"""The mixin of the architecture configs stored in a weights file's metadata (as JSON)."""

from __future__ import annotations

from dataclasses import asdict


class StoredConfig:
    """``to_dict`` / ``from_dict`` for a frozen dataclass config: JSON turns tuples into lists,
    ``from_dict`` turns them back; the names in ``FIXED`` (fields set by the architecture, written
    for the reader) are dropped on the way in."""

    FIXED = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in data.items() if key not in cls.FIXED})
