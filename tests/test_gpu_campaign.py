"""scripts/gpu_campaign.sh --dry-run: the whole GPU campaign on CPU (20 s of training, tiny
settings) on a synthetic carried folder; and the bundle arithmetic of --plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest
import torch
from PIL import Image

from shared.config import REPO_ROOT
from tests.conftest import smooth_image

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import gpu_campaign  # noqa: E402


def save_png(path, height: int, width: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (smooth_image(height, width, seed) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def carry(tmp_path_factory):
    """A carried folder as --plan builds it, with synthetic photos and 'Kodak' images."""
    folder = tmp_path_factory.mktemp("carry")
    photos = folder / "photos"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            save_png(photos / split / f"{i}.png", 160, 192, seed=10 * i + len(split))  # >= 2 crops (val)
    with tarfile.open(folder / "bsds500.tar", "w") as tar:
        for split in ("train", "val"):
            tar.add(photos / split, arcname=split)
    for name in gpu_campaign.KODAK[:2]:
        save_png(folder / "kodak" / name, 128, 160, seed=len(name))
    return folder


@pytest.mark.timeout(900)
def test_dry_run_writes_every_figure_in_at_most_8_files(carry, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(["bash", "scripts/gpu_campaign.sh", "--dry-run", "--carry", str(carry), "--out", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=800,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files)
    assert {"campaign.json", "campaign.log", "decode_latency.json", "load.json", "eval_new.csv",
            "eval_shipped.csv"} <= set(files)
    figures = json.loads((out / "campaign.json").read_text())
    assert all(phase["ok"] for phase in figures["phases"].values()), figures["phases"]
    assert figures["photos"] == {"train": 4, "val": 2}
    latency = {(row["mode"], row["batch"]) for row in figures["decode_latency"]}
    modes = {row["mode"] for row in figures["decode_latency"]}
    assert len(modes) == len(gpu_campaign.DRY_RUN["modes"]) and len(latency) == 2 * len(modes)
    assert all(row["decode_ms_per_image"] > 0 for row in figures["decode_latency"])
    load = {(r["scheduler"], r["users"]) for r in figures["load"]}
    assert load == {(s, u) for s in ("sequential", "mugsc") for u in (1, 2)}
    assert all(r["sent"] == r["answered"] for r in figures["load"])
    assert figures["training"]["final"]["steps"] > 0
    for name in ("new", "shipped"):
        assert 5 < figures["eval"][name]["mean"] < 60
    assert ("rate_adaptive.safetensors" in files) == figures["eval"]["new_is_better"]


def test_plan_counts_the_tree_and_refuses_a_bundle_over_the_limit(monkeypatch, tmp_path, capsys):
    assert 0 < gpu_campaign.tree_bytes() < gpu_campaign.BUNDLE_LIMIT
    def download_wheels(folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "big.whl").write_bytes(b"0" * 2**20)

    monkeypatch.setattr(gpu_campaign, "download_wheels", download_wheels)
    monkeypatch.setattr(gpu_campaign, "BUNDLE_LIMIT", gpu_campaign.tree_bytes())
    bsds, kodak = tmp_path / "bsds", tmp_path / "kodak"
    for split in ("train", "val"):
        save_png(bsds / split / "1.png", 64, 64, seed=1)
    for name in gpu_campaign.KODAK:
        save_png(kodak / name, 32, 32, seed=2)
    args = type("Args", (), {"carry": tmp_path / "carry", "bsds": bsds, "kodak": kodak})
    assert gpu_campaign.plan(args) == 1
    assert "refused" in capsys.readouterr().err
    with tarfile.open(tmp_path / "carry" / "bsds500.tar") as tar:
        assert sorted(tar.getnames()) == ["train/1.jpg", "val/1.jpg"]
