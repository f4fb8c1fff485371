"""`semcom eval`: the harness runs, writes its outputs and resumes."""

from __future__ import annotations

import csv

from PIL import Image

from semcom_cli.main import main

from .serving.test_services import image_bytes


def test_eval_writes_results_plots_grid_and_resumes(tiny_weights, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        (data / f"img{i}.png").write_bytes(image_bytes(48, 64, seed=i))
    out = tmp_path / "out"
    argv = ["eval", "--data", str(data), "--channel", "awgn", "mimo", "--snr", "0", "10", "--cbr", "1/24", "1/48",
            "--weights", str(tiny_weights), "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2 * 2 * 2
    mimo = [r for r in rows if r["channel"] == "mimo" and r["cbr"] == "1/24"]
    assert all(abs(float(r["achieved_cbr"]) - 1 / 48) < 1e-6 for r in mimo)  # two streams: half the channel uses
    summary = (out / "summary.md").read_text()
    assert "| deepjscc | mimo 2x2 svd | 1/48 |" in summary and "semcom eval" in summary
    for name in ("psnr_vs_snr.png", "msssim_vs_snr.png", "grid.png"):
        assert Image.open(out / name).size[0] >= 96
    assert main(argv) == 0  # resumes: nothing new to run, same rows
    assert len(list(csv.DictReader((out / "results.csv").open()))) == len(rows)


def test_eval_rejects_unserved_cbr(tiny_weights, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(image_bytes(32, 32))
    assert main(["eval", "--data", str(tmp_path), "--cbr", "1/10", "--weights", str(tiny_weights)]) == 2
    assert "not served" in capsys.readouterr().err
