"""Serving runtimes (shared/models/runtime.py): each gives eager PyTorch's output within a stated
tolerance at any image size and batch, gradients still flow, and the config's choice resolves."""

from __future__ import annotations

import copy

import pytest
import torch

from shared.models import RateAdaptiveJSCC
from shared.models.runtime import resolve_runtime, use_runtime

from ..codecs.test_rate_adaptive import TINY

TOLERANCE = {"onnx": 1e-4, "compile": 1e-4}
"""Largest absolute difference to eager allowed, on outputs of magnitude about 1 (float32 kernels
that sum in another order)."""


def outputs(model: RateAdaptiveJSCC, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    snr_db, mean_symbols = torch.full((len(images),), 10.0), torch.full((len(images),), 16.0)
    condition = model._condition(snr_db, mean_symbols)
    with torch.no_grad():
        latent = model.analysis(images, condition)
        return latent, model.synthesis(latent, condition)


@pytest.mark.parametrize("runtime", ["onnx", "compile"])
def test_runtime_matches_eager_at_every_size_and_batch(runtime):
    torch.manual_seed(0)
    eager = RateAdaptiveJSCC(TINY).eval()
    served = use_runtime(copy.deepcopy(eager), runtime)
    for shape in ((1, 3, 64, 96), (3, 3, 48, 32)):  # sizes and batches other than the export's
        images = torch.rand(shape)
        for want, got in zip(outputs(eager, images), outputs(served, images)):
            assert got.shape == want.shape
            assert (got - want).abs().max() <= TOLERANCE[runtime]


def test_onnx_network_leaves_gradients_to_pytorch():
    model = use_runtime(RateAdaptiveJSCC(TINY), "onnx")
    model.analysis.network.requires_grad_(True)
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    condition = model._condition(torch.tensor([5.0]), torch.tensor([8.0]))
    model.analysis(images, condition).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert model.analysis.network.conditioning[0].mlp[0].weight.grad is not None  # through PyTorch


def test_runtime_choice():
    assert resolve_runtime("auto", "cpu") == "onnx" and resolve_runtime("auto", "cuda") == "eager"
    assert resolve_runtime("compile", "cpu") == "compile"
    with pytest.raises(ValueError, match="eager, compile, onnx"):
        resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ValueError, match="eager, compile, onnx"):
        use_runtime(RateAdaptiveJSCC(TINY), "tvm")
