"""The one registration mechanism of the pluggable blocks (codecs, channel kinds, decoder modes):
a class decorator that files the class, or one instance of it, under its name where it is defined."""

from __future__ import annotations

from collections.abc import Callable


def registrar(table: dict, name: str, what: str, make: Callable[[type], object] = lambda cls: cls):
    """A class decorator that sets ``cls.name = name`` and stores ``make(cls)`` in ``table[name]``;
    ``ValueError`` when another class already holds ``name`` (``what`` names the kind of block)."""

    def register(cls: type) -> type:
        held = table.get(name)
        if held is not None and (held if isinstance(held, type) else type(held)) is not cls:
            owner = held.__name__ if isinstance(held, type) else type(held).__name__
            raise ValueError(f"{what} name {name!r} is already registered by {owner}")
        cls.name = name
        table[name] = make(cls)
        return cls

    return register
