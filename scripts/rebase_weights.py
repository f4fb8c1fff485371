"""Re-derive derived weights files on their base files as those are now (shared.models.io.rebase).

    python scripts/rebase_weights.py weights/rate_adaptive_robust.safetensors [...]

For a base retrained where the derived modules still fit it: the default codec's receiver side
and hyperprior retrained under a frozen analysis (training/configs/rate_adaptive_continued.json)
leave the robust transmitter's analysis and f_e valid; this keeps them and takes the rest from
the new base. Each file is rewritten in place; the tensors it stores are unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.models.io import rebase  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="derived weights files")
    for path in parser.parse_args(argv).files:
        print(f"{path}: {rebase(path)} tensors kept, the rest from its base")


if __name__ == "__main__":
    main()
