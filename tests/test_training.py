"""The training loop: trains, validates, checkpoints, resumes to the step, exports loadable
weights, and runs data-parallel under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from shared.models.io import load_model, read_metadata
from training.train_baseline import main

from .serving.test_services import image_bytes
from .conftest import training_log


def tiny_baseline_config(tmp_path, **overrides) -> str:
    """A baseline config on three tiny images under ``tmp_path``; returns its path."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir(exist_ok=True)
        for i in range(3):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(40, 56, seed=i))
    config = json.loads(open("training/configs/baseline.json").read())
    config.update(model={"widths": [8, 8, 8, 8], "max_symbols_per_token": 32, "trained_symbols_per_token": [16, 32]},
                  train_dirs=[str(tmp_path / "train")], val_dir=str(tmp_path / "val"), crop=16, batch_size=4,
                  groups_per_batch=2, steps=4, val_every=2, val_images=2, run_dir=str(tmp_path / "run"),
                  output=str(tmp_path / "w.safetensors"), warmup_steps=1, threads=1)
    config.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_train_resume_and_export(tmp_path):
    config = tiny_baseline_config(tmp_path)
    main(["--config", config, "--steps", "2", "--device", "cpu"])
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log] == [2] and "psnr_k16_snr10" in log[0] and log[0]["images_per_s"] > 0
    main(["--config", config, "--device", "cpu"])  # resumes at step 2, runs to 4
    assert [r["step"] for r in training_log(tmp_path / "run")] == [2, 4]
    model = load_model(tmp_path / "w.safetensors")
    assert model.config.widths == (8, 8, 8, 8)
    provenance = read_metadata(tmp_path / "w.safetensors")["provenance"]
    assert provenance["steps"] == 4 and provenance["script"] == "training/train_baseline.py"
    assert provenance["precision"] == "fp32" and provenance["world_size"] == 1


def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch):
    """Model, optimizer, EMA and every random generator (crop positions, channel draws) resume
    exactly: a run interrupted after 2 of 4 steps (as by Ctrl-C or SIGTERM) and run again ends
    with the weights of the uninterrupted run."""
    from training.data import DeviceCrops

    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    for folder in (whole, interrupted):
        folder.mkdir()
    main(["--config", tiny_baseline_config(whole, channels_last=False), "--device", "cpu"])
    config = tiny_baseline_config(interrupted, channels_last=False)
    draw = DeviceCrops.batch
    calls = []

    def interrupt_at_third_batch(self, size):
        calls.append(size)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return draw(self, size)

    monkeypatch.setattr(DeviceCrops, "batch", interrupt_at_third_batch)
    with pytest.raises(SystemExit, match="interrupted at step 2"):
        main(["--config", config, "--device", "cpu"])
    monkeypatch.setattr(DeviceCrops, "batch", draw)
    main(["--config", config, "--device", "cpu"])
    expected = load_model(whole / "w.safetensors").state_dict()
    resumed = load_model(interrupted / "w.safetensors").state_dict()
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)


def test_init_weights_and_overrides_from_the_command_line(tmp_path):
    config = tiny_baseline_config(tmp_path)
    main(["--config", config, "--steps", "2", "--device", "cpu"])
    start = load_model(tmp_path / "w.safetensors").state_dict()
    main(["--config", config, "--device", "cpu", "--steps", "1", "--init-weights", str(tmp_path / "w.safetensors"),
          "--run-dir", str(tmp_path / "run2"), "--output", str(tmp_path / "w2.safetensors"), "--batch-size", "2"])
    provenance = read_metadata(tmp_path / "w2.safetensors")["provenance"]
    assert provenance["steps"] == 1 and provenance["config"]["batch_size"] == 2
    after = load_model(tmp_path / "w2.safetensors").state_dict()
    changed = [name for name in start if not torch.equal(start[name], after[name])]
    assert changed and len(changed) < len(start) * 2  # one small step from the given weights



def test_train_modules_freezes_the_others(tmp_path):
    """--train-modules decoder: the encoder's weights (what the transmitter sends) stay exactly
    the given ones; the decoder's move. A name the model lacks is refused with its sub-modules."""
    config = tiny_baseline_config(tmp_path)
    main(["--config", config, "--steps", "1", "--device", "cpu"])
    start = load_model(tmp_path / "w.safetensors").state_dict()
    main(["--config", config, "--device", "cpu", "--steps", "2", "--init-weights", str(tmp_path / "w.safetensors"),
          "--run-dir", str(tmp_path / "run2"), "--output", str(tmp_path / "w2.safetensors"),
          "--train-modules", "decoder"])
    after = load_model(tmp_path / "w2.safetensors").state_dict()
    changed = {name.split(".")[0] for name in start if not torch.equal(start[name], after[name])}
    assert changed == {"decoder"}
    with pytest.raises(ValueError, match="encoder, decoder"):
        main(["--config", config, "--device", "cpu", "--run-dir", str(tmp_path / "run3"), "--train-modules", "g_x"])


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` on this machine (gloo on CPU)."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_two_processes_gloo(tmp_path):
    """``torchrun --nproc_per_node 2`` on CPU (gloo): the loss falls and both ranks end with
    identical weights (the loop compares the replicas at the end)."""
    config = tiny_baseline_config(tmp_path, steps=30, val_every=10, lr=0.05, min_lr=0.05)  # data, budget, lr
    done = torchrun("tests/ddp_fit.py", "--config", config, "--device", "cpu")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["world_size"] == 2 and report["replica_spread"] == 0.0
    losses = [float(row["loss"]) for row in report["log"]]
    assert [int(row["step"]) for row in report["log"]] == [10, 20, 30] and losses[-1] < losses[0] / 2


def test_training_script_under_torchrun(tmp_path):
    """A real training script under torchrun: rank 0 writes the weights, recording both ranks."""
    config = tiny_baseline_config(tmp_path, run_dir=str(tmp_path / "ddp_run"))
    torchrun("-m", "training.train_baseline", "--config", config, "--device", "cpu")
    provenance = read_metadata(tmp_path / "w.safetensors")["provenance"]
    assert provenance["world_size"] == 2 and provenance["replica_spread"] == 0.0 and provenance["steps"] == 4
    assert [r["step"] for r in training_log(tmp_path / "ddp_run")] == [2, 4]
