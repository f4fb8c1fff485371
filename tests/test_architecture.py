"""Imports point one way (docs/architecture.md): only the serving layer, the generated stubs, the
service folders and the CLI import grpc; the serving layer never imports the evaluation package;
the networks (shared/models) import no codec, decoding, serving or evaluation code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

GRPC_IMPORTERS = ("shared/serving/", "shared/api/", "transmitter/", "channel_emulator/", "receiver/",
                  "semcom_cli/")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = list(path.relative_to(REPO_ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def library_files() -> list[Path]:
    return [p for folder in ("shared", "transmitter", "channel_emulator", "receiver", "semcom_cli")
            for p in sorted((REPO_ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_imports_point_one_way(path):
    relative = path.relative_to(REPO_ROOT).as_posix()
    modules = imported_modules(path)
    if not relative.startswith(GRPC_IMPORTERS):
        assert not {m for m in modules if m == "grpc" or m.startswith(("grpc.", "grpc_"))}, \
            f"{relative} imports grpc outside the serving layer"
    if relative.startswith("shared/serving/"):
        assert not {m for m in modules if m.startswith("shared.eval")}, f"{relative} imports the evaluation package"
    if relative.startswith("shared/models/"):
        forbidden = ("shared.codecs", "shared.decoding", "shared.serving", "shared.eval")
        assert not {m for m in modules if m.startswith(forbidden)}, f"{relative} imports above the networks"
