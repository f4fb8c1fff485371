"""The channel flags of ``semcom send``, ``eval`` and ``channel-stats``, generated once from the
channel blocks' options (:class:`shared.channel.ChannelOption`): a new kind's parameters appear
in every command without editing it."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable

from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.channel import ChannelSpec, channel_kinds, channel_options
from shared.channel.spec import KINDS


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _shown(values: tuple) -> str:
    return " ".join(format(v, "g") if isinstance(v, float) else str(v) for v in values)


def add_kind_option(parser: argparse.ArgumentParser, default: str | list[str] | None = "awgn",
                    multiple: bool = False, help: str = "channel kind") -> None:
    """``--channel KIND`` (``multiple``: one or more) among the registered kinds."""
    kinds = channel_kinds()
    shown = " ".join(default) if isinstance(default, list) else default
    parser.add_argument("--channel", nargs="+" if multiple else None, default=default, required=default is None,
                        choices=kinds, metavar="KIND",
                        help=f"{help}: {', '.join(kinds)}" + (f" (default {shown})" if default else ""))


def add_channel_options(parser: argparse.ArgumentParser, defaults: ChannelSpec | None = None,
                        exclude: Iterable[str] = (), real=float, integer=int) -> None:
    """Every registered kind's parameter flags. ``defaults``: the values a flag takes when not
    given (``None``: zero/empty, which the services replace by their defaults); ``exclude``:
    flags this command does not offer; ``real``, ``integer``: the argparse types of float and int
    parameters."""
    excluded = set(exclude)
    for option in channel_options().values():
        if option.flag in excluded:
            continue
        users = [name for name, block in KINDS.items() if option in block.options]
        if defaults is None:
            values = tuple(type(getattr(ChannelSpec(), f))() for f in option.fields)
            note = "0/empty: the service's default"
        else:
            values = tuple(getattr(defaults, f) for f in option.fields)
            note = f"default {_shown(values)}"
        kind = {float: real, int: integer}.get(option.kind, option.kind)
        several = len(option.fields) > 1
        parser.add_argument(option.flag, type=kind, nargs="+" if several or option.many else None,
                            action=_AtMost(len(option.fields)) if several else "store",
                            default=values if several else values[0], choices=option.choices,
                            metavar=option.metavar, help=f"{option.help}; {', '.join(users)} ({note})")


def _AtMost(count: int) -> type[argparse.Action]:
    """An argparse action storing one to ``count`` values."""

    class AtMost(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            if len(values) > count:
                parser.error(f"{option_string} takes at most {count} values, got {len(values)}")
            setattr(namespace, self.dest, values)

    return AtMost


def off_the_wire_flags() -> tuple[str, ...]:
    """The channel flags whose fields the API's ``ChannelSpec`` does not carry (``mu_mimo``'s
    ``--user-gains``: in the services each user's Es/N0 is its own ``--snr``); in-process commands only."""
    carried = set(pb.ChannelSpec.DESCRIPTOR.fields_by_name)
    return tuple(option.flag for option in channel_options().values() if not set(option.fields) <= carried)


def channel_fields(args: argparse.Namespace, exclude: Iterable[str] = ()) -> dict:
    """The :class:`~shared.channel.ChannelSpec` fields the parsed channel flags set (``exclude``: the
    flags :func:`add_channel_options` left out, whose names the command may use otherwise)."""
    fields = {}
    excluded = set(exclude)
    for option in channel_options().values():
        if option.flag in excluded:
            continue
        value = getattr(args, _dest(option.flag), None)
        if value is None:
            continue
        if option.many:
            fields[option.fields[0]] = tuple(value)
            continue
        values = tuple(value) if len(option.fields) > 1 else (value,)
        fields.update(zip(option.fields[len(option.fields) - len(values):], values))  # fewer values: the last fields
    return fields


def spec_from_args(args: argparse.Namespace, kind: str, snr_db: float, seed: int | None) -> ChannelSpec:
    """The validated :class:`~shared.channel.ChannelSpec` of one measurement of a command."""
    spec = dataclasses.replace(ChannelSpec(), kind=kind, snr_db=snr_db, seed=seed, **channel_fields(args))
    spec.validate()
    return spec

