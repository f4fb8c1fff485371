"""Generate the Python gRPC stubs of proto/ into shared/api/ (committed; a test checks they are current).

    python scripts/gen_proto.py [--check]

Imports inside the generated files are made package-relative so they live in ``shared.api``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "shared" / "api"


def generate(target: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={target}",
                        f"--pyi_out={target}", f"--grpc_python_out={target}", *protos])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    for path in target.rglob("*_pb2*.py*"):
        text = re.sub(r"^from semcom\.v1 import (\w+)", r"from . import \1", path.read_text(), flags=re.M)
        path.write_text(text)
    for folder in [target / "semcom", target / "semcom" / "v1"]:
        (folder / "__init__.py").touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [p.relative_to(tmp) for p in Path(tmp).rglob("*.py*")
                 if not (OUT / p.relative_to(tmp)).is_file() or (OUT / p.relative_to(tmp)).read_text() != p.read_text()]
    if stale:
        print("stale generated stubs: " + ", ".join(map(str, stale)) + "; run python scripts/gen_proto.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
