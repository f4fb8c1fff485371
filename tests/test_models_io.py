"""shared/models/io.py: int8 storage, derived files (base named and checksummed), and every
shipped weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shared.config import REPO_ROOT
from shared.models import DeepJSCC, DeepJSCCConfig, RateAdaptiveConfig, RateAdaptiveJSCC
from shared.models.io import INT8, SCALE_SUFFIX, load_model, quantize_int8, read_metadata, rebase, save_model
from shared.models.vae_upsampler import VAEUpsamplerConfig, VAEUpsamplerJSCC

TINY_CODEC = RateAdaptiveConfig(widths=(8, 8, 8, 8), hyper_width=8, adapter_width=8)
TINY_BASELINE = DeepJSCCConfig(widths=(8, 8, 8, 8))


def perturbed(module: torch.nn.Module) -> None:
    """Add noise to every parameter of ``module`` (a stand-in for training it)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))


def test_int8_quantization_is_per_output_channel_within_half_a_step():
    weight = torch.randn(6, 4, 3, 3) * torch.tensor([1e-3, 1e-2, 0.1, 1.0, 10.0, 0.0])[:, None, None, None]
    values, scales = quantize_int8(weight)
    assert values.dtype == torch.int8 and scales.shape == (6,) and scales.dtype == torch.float32
    restored = values.float() * scales.float()[:, None, None, None]
    step = scales.float()[:, None, None, None]
    assert torch.all((restored - weight).abs() <= 0.5 * step + 1e-7)



def test_int8_quantization_of_a_restored_tensor_is_the_identity():
    """Saving a loaded (dequantized) model again stores the very same int8 values, in channels of
    every magnitude (small FiLM outputs included)."""
    weight = torch.randn(64, 32, 3, 3) * torch.logspace(-6, 1, 64)[:, None, None, None]
    values, scales = quantize_int8(weight)
    assert (values.reshape(64, -1).abs().amax(dim=1) == 127).all()
    restored = values.float() * scales[:, None, None, None]
    again, again_scales = quantize_int8(restored)
    assert torch.equal(again, values) and torch.allclose(again_scales, scales, rtol=1e-6, atol=0)


def test_int8_file_quarters_the_float32_file_and_restores_the_model(tmp_path):
    torch.manual_seed(0)
    model = RateAdaptiveJSCC(TINY_CODEC).eval()
    save_model(model, tmp_path / "fp32.safetensors")
    save_model(model, tmp_path / "int8.safetensors", {"steps": 1}, INT8)
    stored = load_file(tmp_path / "int8.safetensors")
    quantized = read_metadata(tmp_path / "int8.safetensors")["int8"]
    assert quantized and all(stored[name].dtype == torch.int8 and name + SCALE_SUFFIX in stored for name in quantized)
    allocation = [name for name in stored if name.startswith(("analysis.", "hyper_analysis.", "hyper_synthesis."))]
    assert allocation and all(stored[name].dtype == torch.float16 for name in allocation)  # FLOAT16_MODULES
    assert (tmp_path / "int8.safetensors").stat().st_size < 0.6 * (tmp_path / "fp32.safetensors").stat().st_size
    loaded = load_model(tmp_path / "int8.safetensors")
    for name, value in model.state_dict().items():
        restored = loaded.state_dict()[name]
        assert restored.dtype == value.dtype
        assert torch.allclose(restored, value, atol=value.abs().max().item() / 200 + 1e-6), name


def test_derived_file_stores_only_the_changed_modules_and_loads_through_its_base(tmp_path):
    """The robust-transmitter case: the same architecture, only g_a and f_e trained."""
    torch.manual_seed(1)
    base = RateAdaptiveJSCC(TINY_CODEC).eval()
    save_model(base, tmp_path / "codec.safetensors", None, torch.float16)
    derived = load_model(tmp_path / "codec.safetensors")
    perturbed(derived.analysis)
    perturbed(derived.rate_encoder)
    save_model(derived, tmp_path / "robust.safetensors", {"script": "training/train_robust.py"}, torch.float16,
               base=tmp_path / "codec.safetensors")

    stored = load_file(tmp_path / "robust.safetensors")
    assert {name.split(".")[0] for name in stored} == {"analysis", "rate_encoder"}
    metadata = read_metadata(tmp_path / "robust.safetensors")
    assert metadata["base"] == "codec.safetensors" and metadata["base_prefix"] == ""
    loaded = load_model(tmp_path / "robust.safetensors")
    for name, value in derived.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().float()), name



def test_rebase_keeps_the_derived_modules_and_follows_a_retrained_base(tmp_path):
    """The codec's receiver side retrained (a new base file): the robust file no longer loads,
    rebase() keeps its own tensors bit for bit and takes the new receiver side."""
    torch.manual_seed(3)
    codec = tmp_path / "codec.safetensors"
    save_model(RateAdaptiveJSCC(TINY_CODEC).eval(), codec, None, INT8)
    derived = load_model(codec)
    perturbed(derived.analysis)
    perturbed(derived.rate_encoder)
    save_model(derived, tmp_path / "robust.safetensors", {"script": "training/train_robust.py"}, INT8, base=codec)
    stored = load_file(tmp_path / "robust.safetensors")
    retrained = load_model(codec)
    perturbed(retrained.synthesis)
    save_model(retrained, codec, None, INT8)
    with pytest.raises(ValueError, match="rebase_weights.py"):
        load_model(tmp_path / "robust.safetensors")

    assert rebase(tmp_path / "robust.safetensors") == len([n for n in stored if not n.endswith(SCALE_SUFFIX)])
    again = load_file(tmp_path / "robust.safetensors")
    assert stored.keys() == again.keys() and all(torch.equal(stored[n], again[n]) for n in stored)
    loaded, new_base = load_model(tmp_path / "robust.safetensors"), load_model(codec)
    for name, value in loaded.state_dict().items():
        source = derived if name.startswith(("analysis.", "rate_encoder.")) else new_base
        assert torch.allclose(value, source.state_dict()[name], atol=1e-2), name
    assert read_metadata(tmp_path / "robust.safetensors")["provenance"]["script"] == "training/train_robust.py"

def test_derived_file_with_a_wrapped_base_under_a_prefix(tmp_path):
    """The VAE up-sampler case: the baseline sits under ``base.``; only F_d and F_u are stored."""
    torch.manual_seed(2)
    baseline = DeepJSCC(TINY_BASELINE).eval()
    save_model(baseline, tmp_path / "weights" / "baseline.safetensors", None, INT8)
    model = VAEUpsamplerJSCC(VAEUpsamplerConfig(base=TINY_BASELINE, width=8)).eval()
    model.base.load_state_dict(load_model(tmp_path / "weights" / "baseline.safetensors").state_dict())
    path = tmp_path / "derived" / "upsampler.safetensors"
    save_model(model, path, None, INT8, base=tmp_path / "weights" / "baseline.safetensors", base_prefix="base.")

    assert read_metadata(path)["base"] == "../weights/baseline.safetensors"
    assert not any(name.startswith("base.") for name in load_file(path))
    loaded = load_model(path)
    assert isinstance(loaded, VAEUpsamplerJSCC)
    for name, value in model.base.state_dict().items():
        assert torch.equal(loaded.base.state_dict()[name], value), name
    image = torch.rand(1, 3, 32, 32)
    snr = torch.tensor([10.0])
    assert torch.allclose(loaded.encode(image, snr, model.config.sent_symbols_per_token),
                          model.encode(image, snr, model.config.sent_symbols_per_token), atol=0.05)


def test_derived_file_refuses_a_changed_or_missing_base(tmp_path):
    torch.manual_seed(3)
    save_model(RateAdaptiveJSCC(TINY_CODEC), tmp_path / "codec.safetensors", None, torch.float16)
    derived = load_model(tmp_path / "codec.safetensors")
    perturbed(derived.analysis)
    save_model(derived, tmp_path / "robust.safetensors", {"script": "training/train_robust.py"}, torch.float16,
               base=tmp_path / "codec.safetensors")
    save_model(RateAdaptiveJSCC(TINY_CODEC), tmp_path / "codec.safetensors", None, torch.float16)  # retrained base
    with pytest.raises(ValueError, match=r"derived from another .*codec\.safetensors.*training\.train_robust"):
        load_model(tmp_path / "robust.safetensors")
    (tmp_path / "codec.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="base weights .*codec.safetensors are missing"):
        load_model(tmp_path / "robust.safetensors")


SHIPPED = sorted((REPO_ROOT / "weights").glob("*.safetensors"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_weights_file_loads_and_is_small(path: Path):
    assert path.stat().st_size < 16 * 2**20
    stored = load_file(path)
    assert all(t.dtype in (torch.float16, torch.int8) or not t.is_floating_point() or name.endswith(SCALE_SUFFIX)
               for name, t in stored.items())  # per-channel int8 scales may be float32
    model = load_model(path)
    assert not model.training
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()
               and not t.isnan().all())  # an uncalibrated error model is NaN by design


def test_the_robust_transmitter_and_the_upsamplers_ship_as_derived_files():
    weights = REPO_ROOT / "weights"
    assert read_metadata(weights / "rate_adaptive_robust.safetensors")["base"] == "rate_adaptive.safetensors"
    for r in (2, 4):
        assert read_metadata(weights / f"vae_upsampler_x{r}.safetensors")["base"] == "deepjscc_baseline.safetensors"
