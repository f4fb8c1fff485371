"""The ``semcom`` console script.

``semcom health`` is what every container healthcheck runs every few seconds, so it is
answered without importing PyTorch (a fraction of a second instead of several seconds of
CPU per probe); every other command goes to :mod:`semcom_cli.main`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["health"]:
        from .health import main as health_main

        return health_main(args[1:])
    from .main import main as full_main

    return full_main(argv)


if __name__ == "__main__":
    sys.exit(main())
