"""Sharded `semcom eval`: N processes (a Slurm array, a Kubernetes Indexed Job) each run one
disjoint part of the measurement grid; `semcom eval merge` joins their results.

The grid is every image x channel x CBR x SNR x system of one command line, in the order a
single run measures it. Shard K of N takes the settings at positions K-1, K-1+N, K-1+2N, ...
(round robin, so every shard gets a share of every system and image). A measurement's channel
draw is seeded from (seed, image, SNR, channel) alone (shared.eval.systems.channel_seed), never
from its position or process, so a shard's rows are the single run's rows.

Each shard's --out folder gets results.csv (its rows; resumable like a single run) and
shard.json, the manifest the merge checks: the command line without --shard and --out, the image
names, the grid size and the skip notes. The merged summary's command is that command line less
--shard, with the merge's --out. Shard 1 also draws grid.png (the first image's
reconstructions, the same seeded draws).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "shard.json"


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count`` disjoint parts of the grid."""

    index: int
    count: int

    def select(self, settings: list) -> list:
        """This shard's settings: every ``count``-th one, from position ``index - 1``."""
        return settings[self.index - 1 :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """argparse type of ``--shard K/N``: 1 <= K <= N."""
    index, slash, count = text.partition("/")
    try:
        parsed = Shard(int(index), int(count))
    except ValueError:
        parsed = None
    if not slash or parsed is None or not 1 <= parsed.index <= parsed.count:
        raise argparse.ArgumentTypeError(f"must be K/N with 1 <= K <= N (e.g. 2/3), got {text!r}")
    return parsed


PER_SHARD_OPTIONS = ("--shard", "--out")


def grid_argv(command_line: str) -> list[str]:
    """The eval options of ``command_line`` (``semcom eval ...``) without ``--shard K/N`` and
    ``--out DIR``: what every shard of one run shares (the single run's command, less its --out)."""
    kept, skip = [], False
    for word in shlex.split(command_line)[2:]:
        if skip:
            skip = False
        elif word in PER_SHARD_OPTIONS:
            skip = True
        elif not word.startswith(tuple(f"{option}=" for option in PER_SHARD_OPTIONS)):
            kept.append(word)
    return kept


def write_manifest(out: Path, shard: Shard, command_line: str, data: str, images: list[str], grid_size: int,
                   notes: list[str]) -> None:
    """Record what ``out``'s results.csv is a part of (``shard.json``)."""
    manifest = {"shard": [shard.index, shard.count], "argv": grid_argv(command_line), "data": data,
                "images": images, "grid_size": grid_size, "notes": notes}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def read_manifests(folders: list[Path]) -> list[dict]:
    """The shards' manifests, checked to be all N parts of one grid (``ValueError`` otherwise)."""
    manifests = []
    for folder in folders:
        path = folder / MANIFEST
        if not path.is_file():
            raise ValueError(f"{folder} is not a shard's output folder (no {MANIFEST}; run semcom eval --shard K/N "
                             f"--out {folder})")
        manifests.append({**json.loads(path.read_text()), "folder": folder})
    first = manifests[0]
    for manifest in manifests[1:]:
        for key in ("argv", "data", "images", "grid_size", "notes"):
            if manifest[key] != first[key]:
                raise ValueError(f"{manifest['folder']} and {first['folder']} are shards of different runs "
                                 f"({key} differs: {manifest[key]!r} vs {first[key]!r})")
    count = first["shard"][1]
    indices = sorted(m["shard"][0] for m in manifests)
    if any(m["shard"][1] != count for m in manifests) or indices != list(range(1, count + 1)):
        have = ", ".join(f"{m['shard'][0]}/{m['shard'][1]}" for m in manifests)
        raise ValueError(f"need each of the shards 1/{count} .. {count}/{count} exactly once, got {have}")
    return manifests


def merged_rows(manifests: list[dict], shard_rows: list[list[dict]], key) -> list[dict]:
    """All shards' rows, checked to cover the grid once (``ValueError`` when a shard is
    unfinished or two shards measured the same setting)."""
    rows, seen = [], set()
    for manifest, part in zip(manifests, shard_rows):
        for row in part:
            if key(row) in seen:
                raise ValueError(f"{manifest['folder']}: setting {key(row)} is in two shards")
            seen.add(key(row))
            rows.append(row)
    expected = manifests[0]["grid_size"]
    if len(rows) != expected:
        raise ValueError(f"the shards hold {len(rows)} of the grid's {expected} measurements: finish the "
                         f"missing shards (rerun the same semcom eval --shard command; it resumes)")
    return rows
