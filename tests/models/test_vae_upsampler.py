"""The VAE up-sampler on the frozen baseline: rates, the loss terms, SNR conditioning, training
and the evaluation harness."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import grpc
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from semcom_cli.main import main as semcom
from shared.channel import ChannelSpec
from shared.codecs import codec_for
from shared.eval.systems import codec_system, serves
from shared.models import DeepJSCC
from shared.models.io import load_model, read_metadata, save_model
from shared.models.vae_upsampler import (VAEUpsamplerConfig, VAEUpsamplerJSCC, kl_channel_to_posterior,
                                         kl_to_standard_normal)
from training.train_vae_upsampler import hybrid_loss
from training.train_vae_upsampler import main as train

from ..conftest import TINY
from ..serving.test_services import image_bytes
from ..conftest import training_log

SHIPPED = Path("weights/vae_upsampler_x2.safetensors")


def tiny_model(compression: int, variational: bool = True) -> VAEUpsamplerJSCC:
    torch.manual_seed(0)
    return VAEUpsamplerJSCC(VAEUpsamplerConfig(base=TINY, compression=compression, width=8, variational=variational))


@pytest.mark.parametrize("compression, cbr", [(2, Fraction(1, 48)), (4, Fraction(1, 96))])
def test_symbol_counts_shapes_and_served_cbr(compression, cbr, make_image):
    model = tiny_model(compression).eval()
    k = 32 // compression
    assert model.config.symbols_per_token(cbr) == k and model.config.cbr_of(k) == cbr
    with pytest.raises(ValueError, match="not served"):
        model.config.symbols_per_token(Fraction(1, 24))
    image = make_image(32, 48)
    snr = torch.tensor([10.0])
    symbols = model.encode(image[None], snr, k)
    assert symbols.shape == (1, 2 * 3 * k) and symbols.is_complex()
    assert model.decode(symbols, snr, k, (2, 3)).shape == (1, 3, 32, 48)
    with pytest.raises(ValueError, match="sends"):
        model.encode(image[None], snr, 32)
    system = codec_system(codec_for(model))  # the baseline's path serves it unchanged
    assert serves(system, cbr) and not serves(system, Fraction(1, 24))
    output = system(make_image(40, 40), ChannelSpec("rayleigh", 5.0, seed=1), cbr)
    assert output.image.shape == (3, 40, 40)
    assert abs(output.achieved_cbr - 9 * k / (3 * 40 * 40)) < 1e-9  # padded to a 3x3 token grid


def test_kl_terms_match_the_closed_form():
    g = torch.Generator().manual_seed(0)
    mean, log_variance, target = torch.randn(3, 50, generator=g)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * log_variance)), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_to_standard_normal(mean, log_variance), expected)
    noise_variance = 0.05
    expected = kl_divergence(Normal(target, noise_variance**0.5), Normal(mean, torch.exp(0.5 * log_variance)))
    torch.testing.assert_close(kl_channel_to_posterior(target, noise_variance, mean, log_variance), expected)
    exact = kl_channel_to_posterior(target, noise_variance, target, torch.full_like(target, torch.tensor(0.05).log()))
    torch.testing.assert_close(exact, torch.zeros_like(exact), atol=1e-6, rtol=0)  # zero at a perfect match


def test_hybrid_loss_terms_and_the_deterministic_ablation():
    g = torch.Generator().manual_seed(0)
    y, mean = torch.randn(2, 1, 4, 2, 2, generator=g)
    log_variance = torch.full_like(y, -2.0)
    terms = hybrid_loss(y, mean, log_variance, 10.0, 0.1, 0.1, g)
    torch.testing.assert_close(terms["loss"], terms["mse"] + 0.1 * terms["kl"] + 0.1 * terms["guidance"])
    deterministic = hybrid_loss(y, mean, None, 10.0, 0.0, 0.0, g)
    assert set(deterministic) == {"mse", "loss"}
    with pytest.raises(ValueError, match="no variance"):
        hybrid_loss(y, mean, None, 10.0, 0.1, 0.0, g)


def test_snr_conditions_the_variance_branch_only():
    model = tiny_model(2).eval()
    for weight in (model.upsampler.variance_conditioning.mlp[-1].weight, model.upsampler.log_variance.weight):
        torch.nn.init.normal_(weight, std=0.1)  # zero at init; training moves them
    received = torch.randn(1, 32, 2, 2)
    low_mean, low = model.posterior(received, torch.tensor([0.0]))
    high_mean, high = model.posterior(received, torch.tensor([20.0]))
    assert (low - high).abs().max() > 1e-3
    torch.testing.assert_close(low_mean, high_mean)
    assert tiny_model(2, variational=False).posterior(received, torch.tensor([0.0]))[1] is None


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped weights not trained yet")
@torch.no_grad()
def test_shipped_upsampler_is_less_certain_at_low_snr(make_image):
    model = load_model(SHIPPED)
    image = make_image(64, 64)[None]
    sigmas = []
    for snr in (0.0, 20.0):
        snr_t = torch.tensor([snr])
        received = model.downsampler(model.base_latent(image, snr_t))
        sigmas.append(float(torch.exp(0.5 * model.posterior(received, snr_t)[1]).mean()))
    assert sigmas[0] > sigmas[1]


@pytest.fixture
def tiny_base(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "base.safetensors"
    save_model(DeepJSCC(TINY), path, {"purpose": "tests"})
    return path


def test_trainer_runs_and_writes_loadable_weights(tmp_path, tiny_base):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(3):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(40, 56, seed=i))
    config = json.loads(open("training/configs/vae_upsampler_x2.json").read())
    config.update(model={**config["model"], "width": 8}, base_weights=str(tiny_base),
                  train_dirs=[str(tmp_path / "train")], val_dir=str(tmp_path / "val"), crop=16, batch_size=4,
                  groups_per_batch=2, steps=2, val_every=2, val_images=2, run_dir=str(tmp_path / "run"),
                  output=str(tmp_path / "w.safetensors"), warmup_steps=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    frozen_before = {k: v.clone() for k, v in load_model(tiny_base).state_dict().items()}
    train(["--config", str(path), "--device", "cpu"])
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log] == [2] and {"psnr_snr10", "psnr_sample_snr10", "sigma_y_snr1"} <= set(log[0])
    model = load_model(tmp_path / "w.safetensors")
    assert isinstance(model, VAEUpsamplerJSCC) and model.config.trained_symbols_per_token == (16,)
    for name, tensor in model.base.state_dict().items():  # the baseline stays frozen: the base file's
        assert torch.equal(tensor, frozen_before[name]), name
    assert read_metadata(tmp_path / "w.safetensors")["base"] == "base.safetensors"
    provenance = read_metadata(tmp_path / "w.safetensors")["provenance"]
    assert provenance["steps"] == 2 and provenance["script"] == "training/train_vae_upsampler.py"


def test_eval_runs_each_vae_at_its_own_cbr(tmp_path, tiny_base, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        (data / f"img{i}.png").write_bytes(image_bytes(32, 48, seed=i))
    weights = []
    for r in (2, 4):
        weights.append(tmp_path / f"tiny_x{r}.safetensors")
        save_model(tiny_model(r), weights[-1], {"purpose": "tests"})
    out = tmp_path / "out"
    argv = ["eval", "--data", str(data), "--systems", "deepjscc", "deepjscc-vae", "--vae-weights", *map(str, weights),
            "--weights", str(tiny_base), "--snr", "5", "--cbr", "1/48", "1/96", "--device", "cpu", "--out", str(out)]
    assert semcom(argv) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    served = {(r["system"], r["cbr"]) for r in rows}
    assert served == {("deepjscc", "1/48"), ("deepjscc-vae/tiny_x2", "1/48"), ("deepjscc-vae/tiny_x4", "1/96")}
    assert len(rows) == 2 * 3
    assert all(abs(float(r["achieved_cbr"]) - float(Fraction(r["cbr"]))) < 1e-6 for r in rows)
    assert "note: deepjscc-vae/tiny_x4 serves only CBR 1/96" in capsys.readouterr().err
    summary = (out / "summary.md").read_text()
    assert "| deepjscc-vae/tiny_x2 | awgn | 1/48 |" in summary
    assert "| deepjscc-vae/tiny_x2 | awgn | 1/96 |" not in summary
    argv[argv.index("--cbr") + 1: argv.index("--device")] = ["1/24"]  # deepjscc alone serves it
    argv[-1] = str(tmp_path / "out24")
    assert semcom(argv) == 0
    assert {r["system"] for r in csv.DictReader((tmp_path / "out24" / "results.csv").open())} == {"deepjscc"}
    assert semcom(["eval", "--data", str(data), "--systems", "deepjscc-vae", "--vae-weights", str(weights[0]),
                   "--cbr", "1/10", "--out", str(out)]) == 2
    assert "not served" in capsys.readouterr().err


def test_services_serve_it_as_a_fixed_rate_codec(tmp_path):
    from semcom_cli.client import SendOptions, is_ok
    from shared.config import load_config
    from shared.serving.rpc import status_code

    from ..conftest import Chain
    from ..serving.test_services import send

    path = tmp_path / "tiny_x2.safetensors"
    save_model(tiny_model(2), path, {"purpose": "tests"})
    chain = Chain(load_config(weights=str(path), bind_host="127.0.0.1", device="cpu")).start()
    try:
        image = image_bytes(48, 64)
        results = send(chain.target, [SendOptions(cbr=1 / 48, channel="rayleigh").request("x2", image),
                                      SendOptions(cbr=1 / 24).request("base-rate", image)])
    finally:
        chain.stop()
    assert is_ok(results["x2"]) and results["x2"].num_symbols == 3 * 4 * 16
    assert status_code(results["base-rate"]) is grpc.StatusCode.INVALID_ARGUMENT
    assert "not served" in results["base-rate"].status.message
