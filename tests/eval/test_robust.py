"""The robust encoder (paper 003 sec. III-C): perturbations, PGD, its trainer and `semcom eval --perturb`."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest
import torch

from benchmarks.robustness_table import robustness_table
from shared.channel import make_generator
from shared.models import RateAdaptiveConfig, RateAdaptiveJSCC
from shared.models.io import load_model, read_metadata, save_model
from shared.eval.perturbation import Perturbation, input_noise, parse_perturbation, pgd_semantic_error, project

from ..serving.test_services import image_bytes, smooth_image
from ..conftest import training_log

TINY = RateAdaptiveConfig(widths=(8, 8, 8, 8), hyper_width=8, adapter_width=8)


@pytest.fixture(scope="module")
def tiny_codec_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("robust") / "adaptive.safetensors"
    save_model(RateAdaptiveJSCC(TINY), path)
    return path


def test_perturbation_specs_parse_or_teach():
    assert parse_perturbation("pgd:0.3") == Perturbation("pgd", 0.3, 5)
    assert parse_perturbation("PGD:0.3:10") == Perturbation("pgd", 0.3, 10)
    assert parse_perturbation("noise:7.5") == Perturbation("noise", 7.5)
    assert [str(parse_perturbation(t)) for t in ("pgd:0.30", "pgd:0.3:10", "noise:10")] == ["pgd:0.3", "pgd:0.3:10",
                                                                                               "noise:10"]
    for bad in ("pgd", "pgd:x", "pgd:0", "pgd:-0.1", "pgd:0.3:0", "pgd:0.3:2.5", "noise:10:2", "noise:nan", "blur:3"):
        with pytest.raises(ValueError, match=r"pgd:LEVEL\[:STEPS\].*noise:SNR"):
            parse_perturbation(bad)


def test_input_noise_has_the_asked_image_snr():
    image = 0.3 + 0.4 * smooth_image(128, 160, seed=2)  # away from 0 and 1: the clamp stays rare
    for snr in (5.0, 10.0, 12.5, 20.0):
        noisy = input_noise(image, snr, make_generator(1))
        realized = 10 * math.log10(float(image.pow(2).mean() / (noisy - image).pow(2).mean()))
        assert noisy.min() >= 0 and noisy.max() <= 1
        assert abs(realized - snr) < 0.2 if snr >= 10 else realized >= snr  # the clamp only removes noise
    assert torch.equal(input_noise(image, 10.0, make_generator(1)), input_noise(image, 10.0, make_generator(1)))


def test_pgd_stays_in_the_ball_and_box_and_beats_random_noise_of_its_norm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1), torch.nn.Sigmoid())
    images = torch.stack([smooth_image(64, 96, seed=s) for s in (0, 1)])
    images[0, :, :8] = 1.0  # a saturated stripe: the box binds there

    def forward(x):
        return model(x)

    level = 0.1
    radius = level * math.sqrt(64 * 96)
    delta = pgd_semantic_error(forward, images, level, 4, make_generator(0))
    norms = delta.flatten(1).norm(dim=1)
    assert (norms <= radius * (1 + 1e-5)).all() and (norms > 0.5 * radius).all()
    assert (images + delta).min() >= 0 and (images + delta).max() <= 1
    random = torch.randn(images.shape, generator=make_generator(3))
    random = project(random * (norms / random.flatten(1).norm(dim=1))[:, None, None, None], images, norms)
    with torch.no_grad():
        clean = forward(images)
        attacked = (forward(images + delta) - clean).pow(2).flatten(1).mean(dim=1)
        noisy = (forward(images + random) - clean).pow(2).flatten(1).mean(dim=1)
    assert (attacked > 2 * noisy).all()
    assert all(p.grad is None for p in model.parameters())


def test_training_fine_tunes_only_the_transmitter(tmp_path, tiny_codec_weights):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(2):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(130, 140, seed=i))
    config = json.loads(open("training/configs/robust_encoder.json").read())
    config.update(init_from=str(tiny_codec_weights), train_dirs=[str(tmp_path / "train")], val_dir=str(tmp_path / "val"),
                  crop=64, batch_size=2, groups_per_batch=2, pgd_steps=2, steps=2, val_every=1, val_images=1,
                  warmup_steps=1, run_dir=str(tmp_path / "run"), output=str(tmp_path / "robust.safetensors"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    from training.train_robust import main

    main(["--config", str(path), "--device", "cpu"])
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2] and {"psnr_clean", "psnr_pgd0.3", "train_change_mse"} <= set(log[0])
    before = load_model(tiny_codec_weights).state_dict()
    after = load_model(tmp_path / "robust.safetensors").state_dict()
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"analysis", "rate_encoder"}  # the rest is the base's, as stored there
    metadata = read_metadata(tmp_path / "robust.safetensors")
    assert metadata["base"] == os.path.relpath(tiny_codec_weights, tmp_path)
    assert metadata["provenance"]["script"] == "training/train_robust.py"
    assert "psnr_clean" in metadata["provenance"]["validation_before"]


def test_eval_runs_perturbed_systems_deterministically_and_refuses_gradient_free_ones(tmp_path, tiny_codec_weights,
                                                                                     capsys):
    from semcom_cli.main import main as cli

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(image_bytes(128, 128))
    common = ["eval", "--data", str(data), "--snr", "10", "--cbr", "1/24", "--adaptive-weights",
              str(tiny_codec_weights), "--robust-weights", str(tiny_codec_weights), "--device", "cpu"]
    argv = [*common, "--systems", "adaptive", "adaptive-robust", "--perturb", "pgd:0.2:2", "noise:10"]
    results = []
    for out in (tmp_path / "one", tmp_path / "two"):
        assert cli([*argv, "--out", str(out)]) == 0
        results.append({r["system"]: r for r in csv.DictReader((out / "results.csv").open())})
    rows = results[0]
    assert set(rows) == {f"{s}{p}" for s in ("adaptive", "adaptive-robust") for p in ("", "@pgd:0.2:2", "@noise:10")}
    assert all(results[1][name]["psnr"] == row["psnr"] for name, row in rows.items())  # same perturbation
    assert 9 < float(rows["adaptive@noise:10"]["info"].split("input_psnr=")[1]) < float("inf")
    assert "| adaptive@pgd:0.2:2 | awgn | 1/24 |" in (tmp_path / "one" / "summary.md").read_text()
    table = robustness_table(list(rows.values()))
    assert "| metric | clean | pgd:0.2:2 | noise:10 |" in table
    assert f"| adaptive-robust | awgn | 1/24 | 10 dB | PSNR (dB) | {float(rows['adaptive-robust']['psnr']):.2f} |" in table
    assert cli([*argv, "--out", str(tmp_path / "one")]) == 0  # resumes: nothing new
    assert len(list(csv.DictReader((tmp_path / "one" / "results.csv").open()))) == len(rows)

    assert cli([*common, "--systems", "jpeg-ldpc", "--perturb", "pgd:0.3", "--out", str(tmp_path / "x")]) == 2
    assert "jpeg-ldpc has no gradient" in capsys.readouterr().err
    assert cli([*common, "--systems", "adaptive", "--perturb", "blur:2", "--out", str(tmp_path / "x")]) == 2
    assert "bad perturbation 'blur:2'" in capsys.readouterr().err
