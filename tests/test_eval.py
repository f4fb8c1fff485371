"""`semcom eval`: the harness runs, writes its outputs and resumes."""

from __future__ import annotations

import csv
import re

from PIL import Image

from semcom_cli.main import main

from .serving.test_services import image_bytes
from .test_perceptual import export_stand_in


def test_eval_writes_results_plots_grid_and_resumes(tiny_weights, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        (data / f"img{i}.png").write_bytes(image_bytes(48, 64, seed=i))
    out = tmp_path / "out"
    export_stand_in(tmp_path / "perceptual" / "lpips.pt2")  # LPIPS from a stand-in network, no DISTS
    argv = ["eval", "--data", str(data), "--channel", "awgn", "mimo", "--snr", "0", "10", "--cbr", "1/24", "1/48",
            "--weights", str(tiny_weights), "--device", "cpu", "--perceptual-weights", str(tmp_path / "perceptual"),
            "--out", str(out)]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2 * 2 * 2
    mimo = [r for r in rows if r["channel"] == "mimo" and r["cbr"] == "1/24"]
    assert all(abs(float(r["achieved_cbr"]) - 1 / 48) < 1e-6 for r in mimo)  # two streams: half the channel uses
    assert all(0 <= float(r["vif"]) <= 1 and float(r["lpips"]) >= 0 and r["dists"] == "" for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| deepjscc | mimo 2x2 svd | 1/48 |" in summary and "semcom eval" in summary
    assert "Mean VIF (higher is better)" in summary and "Mean LPIPS (lower is better)" in summary
    assert "DISTS not computed" in summary and "DISTS (" not in summary
    for name in ("psnr_vs_snr.png", "msssim_vs_snr.png", "vif_vs_snr.png", "lpips_vs_snr.png",
                 "perception_distortion_vif.png", "perception_distortion_lpips.png", "grid.png"):
        assert Image.open(out / name).size[0] >= 96
    assert not (out / "dists_vs_snr.png").exists()
    assert main(argv) == 0  # resumes: nothing new to run, same rows
    assert len(list(csv.DictReader((out / "results.csv").open()))) == len(rows)


def test_eval_refuses_a_results_csv_of_other_columns(tiny_weights, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(image_bytes(32, 32))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("system,channel,cbr,snr_db,image,achieved_cbr,psnr,ms_ssim,info\n")
    assert main(["eval", "--data", str(tmp_path / "data"), "--weights", str(tiny_weights), "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 2
    assert "new --out" in capsys.readouterr().err


def test_eval_rejects_unserved_cbr(tiny_weights, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(image_bytes(32, 32))
    assert main(["eval", "--data", str(tmp_path), "--cbr", "1/10", "--weights", str(tiny_weights)]) == 2
    assert "not served" in capsys.readouterr().err


def test_eval_shards_merge_to_the_single_run(tiny_weights, tmp_path, capsys):
    """merge(--shard 1/3, 2/3, 3/3) writes the single run's results.csv, summary.md, plots and grid."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"img{i}.png").write_bytes(image_bytes(32, 48, seed=i))
    grid = ["eval", "--data", str(data), "--channel", "awgn", "rayleigh", "--snr", "0", "10", "--cbr", "1/24",
            "--systems", "deepjscc", "jpeg-ldpc", "--weights", str(tiny_weights), "--device", "cpu"]
    assert main([*grid, "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "run").rename(tmp_path / "single")  # the merge goes where the single run went: same command
    shards = [tmp_path / f"shard{k}" for k in (1, 2, 3)]
    for k, folder in enumerate(shards, 1):
        assert main([*grid, "--shard", f"{k}/3", "--out", str(folder)]) == 0
        assert not (folder / "summary.md").exists()
    sizes = [len(list(csv.DictReader((folder / "results.csv").open()))) for folder in shards]
    assert sizes == [8, 8, 8]  # 3 images x 2 channels x 2 SNRs x 2 systems, disjoint thirds
    assert main(["eval", "merge", *map(str, shards), "--out", str(tmp_path / "run")]) == 0
    def without_timings(path):  # the receiver's time (info rx_ms) is this machine's, not the grid's
        return re.sub(r" rx_ms=[0-9.]+", "", path.read_text())
    assert without_timings(tmp_path / "run" / "results.csv") == without_timings(tmp_path / "single" / "results.csv")
    for name in ("summary.md", "psnr_vs_snr.png", "msssim_vs_snr.png", "grid.png"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name


def test_eval_merge_refuses_incomplete_or_foreign_shards(tiny_weights, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(image_bytes(32, 32))
    grid = ["eval", "--data", str(tmp_path / "data"), "--snr", "5", "10", "--cbr", "1/24",
            "--weights", str(tiny_weights), "--device", "cpu"]
    for k in (1, 2):
        assert main([*grid, "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")]) == 0
    assert main([*grid, "--snr", "20", "--shard", "2/2", "--out", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    assert main(["eval", "merge", str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 2
    assert "exactly once" in capsys.readouterr().err
    assert main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "other"), "--out", str(tmp_path / "m")]) == 2
    assert "different runs" in capsys.readouterr().err
    assert main(["eval", "merge", str(tmp_path / "data"), "--out", str(tmp_path / "m")]) == 2
    assert "not a shard" in capsys.readouterr().err
    lines = (tmp_path / "s2" / "results.csv").read_text().splitlines()
    (tmp_path / "s2" / "results.csv").write_text("\n".join(lines[:-1]) + "\n")  # shard 2 interrupted
    assert main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m")]) == 2
    assert "1 of the grid's 2" in capsys.readouterr().err
