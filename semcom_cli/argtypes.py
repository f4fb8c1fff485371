"""argparse value types shared by the semcom commands (errors are argparse usage errors)."""

from __future__ import annotations

import argparse
import math

from shared.phy.symbols import parse_cbr


def finite(text: str) -> float:
    """A finite float (dB, K, ...)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def count(text: str) -> int:
    """A whole number >= 1, written plainly or as 1e6."""
    value = float(text)
    if not (value.is_integer() and value >= 1):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, e.g. 1e6, got {text}")
    return int(value)


def cbr(text: str) -> float:
    """A channel bandwidth ratio such as 1/24 or 0.0417."""
    try:
        return float(parse_cbr(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
