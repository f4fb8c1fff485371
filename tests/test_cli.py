"""The `semcom` command: send (table and JSON), errors a user can act on, and `up` as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from semcom_cli.main import main

from .conftest import free_port
from .serving.test_services import image_bytes
from .test_perceptual import export_stand_in

JSON_KEYS = {"image", "psnr", "ms_ssim", "vif", "lpips", "dists", "cbr", "snr_db", "channel", "mode", "latency_ms"}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(image_bytes(64, 80, "PNG", seed=1))
    (folder / "b.jpg").write_bytes(image_bytes(48, 48, "JPEG", seed=2))
    return folder


def test_send_json_and_outputs(chain, images, tmp_path, capsys, monkeypatch):
    out = tmp_path / "rx"
    export_stand_in(tmp_path / "perceptual" / "lpips.pt2")  # LPIPS from a stand-in network, no DISTS
    monkeypatch.setenv("SEMCOM_PERCEPTUAL_WEIGHTS", str(tmp_path / "perceptual"))
    code = main(["send", str(images), "--channel", "rayleigh", "--snr", "5", "--cbr", "1/48", "--seed", "3",
                 "--target", chain.target, "--out", str(out), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert len(records) == 2
    assert "DISTS not computed" in captured.err
    for record in records:
        assert JSON_KEYS <= set(record)
        assert record["channel"] == "rayleigh" and record["snr_db"] == 5.0 and record["mode"] == "jscc"
        assert record["error"] is None and record["psnr"] > 0 and record["cbr"] > 0
        assert 0 <= record["vif"] <= 1 and record["lpips"] >= 0 and record["dists"] is None
        assert os.path.isfile(record["output"])
    assert sorted(p.name for p in out.iterdir()) == ["a_rayleigh_5dB.png", "b_rayleigh_5dB.png"]


def test_send_table_reports_bad_files_without_stopping(chain, images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"garbage")
    code = main(["send", str(images), "--target", chain.target])
    table = capsys.readouterr().out
    assert code == 1  # one image failed
    assert "INVALID_ARGUMENT" in table and "a.png" in table and "mean of 2 ok" in table


def test_send_user_errors(tmp_path, capsys):
    assert main(["send", str(tmp_path / "missing.png")]) == 2
    assert "no such image" in capsys.readouterr().err
    (tmp_path / "x.png").write_bytes(image_bytes(32, 32))
    assert main(["send", str(tmp_path / "x.png"), "--target", f"127.0.0.1:{free_port()}", "--timeout", "5"]) == 3
    assert "semcom up" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["send", str(tmp_path / "x.png"), "--snr", "nan"])
    with pytest.raises(SystemExit):
        main(["send", str(tmp_path / "x.png"), "--cbr", "0"])


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["send", "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_up_runs_three_processes_and_stops_on_ctrl_c(tiny_weights, tmp_path):
    ports = {name: str(free_port()) for name in
             ("TRANSMITTER_PORT", "CHANNEL_PORT", "RECEIVER_PORT",
              "TRANSMITTER_METRICS_PORT", "CHANNEL_METRICS_PORT", "RECEIVER_METRICS_PORT")}
    env = {**os.environ, **{f"SEMCOM_{k}": v for k, v in ports.items()},
           "SEMCOM_WEIGHTS": str(tiny_weights), "SEMCOM_DEVICE": "cpu", "SEMCOM_BIND_HOST": "127.0.0.1"}
    # started with SIGINT ignored, as a shell's background job or a test runner may start it
    up = subprocess.Popen([sys.executable, "-m", "semcom_cli.main", "up"], env=env, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = up.stderr.readline()
            lines.append(line)
            if "semcom is up" in line or not line:
                break
        assert any("semcom is up" in line for line in lines), "".join(lines)
        # keep draining the services' echoed logs: a full pipe would block `up` itself
        threading.Thread(target=lambda: [lines.append(line) for line in up.stderr], daemon=True).start()
        (tmp_path / "x.png").write_bytes(image_bytes(64, 64))
        sent = subprocess.run([sys.executable, "-m", "semcom_cli.main", "send", str(tmp_path / "x.png"), "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout.splitlines()[-1])["error"] is None
        from urllib.request import urlopen

        metrics = urlopen(f"http://127.0.0.1:{ports['RECEIVER_METRICS_PORT']}/metrics", timeout=10).read().decode()
        assert 'semcom_stage_latency_seconds_count{service="receiver",stage="decode"} 1.0' in metrics
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()


def test_bench_load_loses_nothing(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEMCOM_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("SEMCOM_DEVICE", "cpu")
    (tmp_path / "src.png").write_bytes(image_bytes(96, 128))
    out = tmp_path / "load.json"
    code = main(["bench", "load", "--users", "1", "3", "--duration", "1.5", "--size", "64", "--image",
                 str(tmp_path / "src.png"), "--out", str(out)])
    assert code == 0
    reports = json.loads(out.read_text())
    assert [(r["scheduler"], r["users"]) for r in reports] == [("sequential", 1), ("sequential", 3), ("mugsc", 1), ("mugsc", 3)]
    for report in reports:
        assert report["sent"] == report["answered"] == report["statuses"]["OK"] > 0
        assert report["throughput"] > 0 and report["p50_ms"] <= report["p99_ms"]
    assert "MU-GSC / sequential throughput" in capsys.readouterr().out


def test_bench_load_shares_mu_mimo_slots(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOM_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("SEMCOM_DEVICE", "cpu")
    (tmp_path / "src.png").write_bytes(image_bytes(96, 128))
    out = tmp_path / "load.json"
    code = main(["bench", "load", "--users", "3", "--duration", "1.5", "--size", "64", "--image", str(tmp_path / "src.png"),
                 "--channel", "mu_mimo", "--slot-users", "3", "--antennas", "3", "--slot-window", "500",
                 "--schedulers", "mugsc", "--out", str(out)])
    assert code == 0
    (report,) = json.loads(out.read_text())
    assert report["sent"] == report["answered"] == report["statuses"]["OK"] > 0
    assert sum(report["slot_users"].values()) == report["answered"] and max(map(int, report["slot_users"])) > 1


def test_demo_sends_the_shipped_samples(tiny_weights, tmp_path, monkeypatch, capsys):
    """`semcom demo` without --images: the photos in samples/ through the three services (a fresh clone's first run)."""
    from shared.config import SAMPLE_IMAGES

    for name in ("TRANSMITTER_PORT", "CHANNEL_PORT", "RECEIVER_PORT",
                 "TRANSMITTER_METRICS_PORT", "CHANNEL_METRICS_PORT", "RECEIVER_METRICS_PORT"):
        monkeypatch.setenv(f"SEMCOM_{name}", str(free_port()))
    monkeypatch.setenv("SEMCOM_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("SEMCOM_DEVICE", "cpu")
    monkeypatch.setenv("SEMCOM_BIND_HOST", "127.0.0.1")
    samples = sorted(SAMPLE_IMAGES.glob("*.png"))
    assert len(samples) >= 2 and sum(p.stat().st_size for p in samples) <= 3_000_000
    assert main(["demo", "--channel", "awgn", "--snr", "10", "--out", str(tmp_path)]) == 0
    summary_line = capsys.readouterr().out.splitlines()[-3].split()
    assert summary_line[:3] == ["awgn", "10", f"{len(samples)}/{len(samples)}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{p.stem}_awgn_10dB.png" for p in samples]


def test_a_crashed_service_is_restarted_and_the_others_stay_up(tiny_weights, tmp_path):
    from semcom_cli.launcher import ServiceProcesses
    from shared.config import load_config

    ports = {f"SEMCOM_{name}": str(free_port()) for name in
             ("TRANSMITTER_PORT", "CHANNEL_PORT", "RECEIVER_PORT",
              "TRANSMITTER_METRICS_PORT", "CHANNEL_METRICS_PORT", "RECEIVER_METRICS_PORT")}
    env = {**ports, "SEMCOM_WEIGHTS": str(tiny_weights), "SEMCOM_DEVICE": "cpu", "SEMCOM_BIND_HOST": "127.0.0.1"}
    config = load_config(**{key.removeprefix("SEMCOM_").lower(): int(value) for key, value in ports.items()})
    (tmp_path / "x.png").write_bytes(image_bytes(64, 64))
    with ServiceProcesses(config, env=env, echo=False) as services:
        services.wait_healthy(120)
        others = [process.pid for module, process in services.processes if module != "receiver"]
        receiver = dict(services.processes)["receiver"]
        receiver.kill()
        receiver.wait()
        assert services.restart_exited() == [("receiver", -signal.SIGKILL)]
        services.wait_healthy(120)
        assert [process.pid for module, process in services.processes if module != "receiver"] == others
        assert all(process.poll() is None for _, process in services.processes)
        sent = subprocess.run([sys.executable, "-m", "semcom_cli.main", "send", str(tmp_path / "x.png"), "--json"],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout.splitlines()[-1])["error"] is None
