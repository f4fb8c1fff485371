"""The training script: trains, validates, checkpoints, resumes and exports loadable weights."""

from __future__ import annotations

import json

from shared.models.io import load_model, read_metadata
from training.train_baseline import main

from .serving.test_services import image_bytes


def test_train_resume_and_export(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(3):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(40, 56, seed=i))
    config = json.loads(open("training/configs/baseline.json").read())
    config.update(model={"widths": [8, 8, 8, 8], "max_symbols_per_token": 32, "trained_symbols_per_token": [16, 32]},
                  train_dirs=[str(tmp_path / "train")], val_dir=str(tmp_path / "val"), crop=16, batch_size=4,
                  groups_per_batch=2, steps=4, val_every=2, val_images=2, run_dir=str(tmp_path / "run"),
                  output=str(tmp_path / "w.safetensors"), warmup_steps=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    main(["--config", str(path), "--steps", "2", "--device", "cpu"])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2] and "psnr_k16_snr10" in log[0]
    main(["--config", str(path), "--device", "cpu"])  # resumes at step 2, runs to 4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    model = load_model(tmp_path / "w.safetensors")
    assert model.config.widths == (8, 8, 8, 8)
    provenance = read_metadata(tmp_path / "w.safetensors")["provenance"]
    assert provenance["steps"] == 4 and provenance["script"] == "training/train_baseline.py"
