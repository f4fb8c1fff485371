"""Weights on disk: safetensors files whose metadata carry the architecture and its config."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .deepjscc import DeepJSCC, DeepJSCCConfig
from .generative_decoder import GenerativeDecoder, GenerativeDecoderConfig
from .latent_denoiser import LatentDenoiser, LatentDenoiserConfig
from .rate_adaptive import RateAdaptiveConfig, RateAdaptiveJSCC
from .semantic_finetune import SemanticFineTuner, SemanticFineTunerConfig
from .vae_upsampler import VAEUpsamplerConfig, VAEUpsamplerJSCC

ARCHITECTURES = {
    "deepjscc": (DeepJSCC, DeepJSCCConfig, "training.train_baseline --config training/configs/baseline.json"),
    "rate_adaptive": (RateAdaptiveJSCC, RateAdaptiveConfig,
                      "training.train_rate_adaptive --config training/configs/rate_adaptive.json"),
    "latent_denoiser": (LatentDenoiser, LatentDenoiserConfig,
                        "training.train_denoiser --config training/configs/latent_teacher.json (then "
                        "latent_consistency.json)"),
    "generative_decoder": (GenerativeDecoder, GenerativeDecoderConfig,
                           "training.train_generative --config training/configs/generative_decoder.json"),
    "semantic_finetune": (SemanticFineTuner, SemanticFineTunerConfig,
                          "training.train_finetune --config training/configs/semantic_finetune.json"),
    "vae_upsampler": (VAEUpsamplerJSCC, VAEUpsamplerConfig,
                      "training.train_vae_upsampler --config training/configs/vae_upsampler_x2.json (or _x4)"),
}
"""Architecture name in the metadata -> (model class, config class, training command)."""


def architecture_of(model: nn.Module) -> str:
    for name, (cls, _, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"no registered architecture for {type(model).__name__}")


def save_model(
    model: nn.Module, path: str | Path, provenance: dict | None = None, dtype: torch.dtype = torch.float32
) -> None:
    """Write ``model``'s weights with its architecture, config (and how it was made) in the
    metadata; floating tensors stored as ``dtype`` (float16 halves the file; loading casts back
    to the model's float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    metadata = {"architecture": architecture_of(model), "config": json.dumps(model.config.to_dict())}
    if provenance:
        metadata["provenance"] = json.dumps(provenance)
    save_file(tensors, str(path), metadata=metadata)


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, JSON fields decoded."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: (json.loads(v) if k in ("config", "provenance") else v) for k, v in raw.items()}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model stored at ``path`` (its architecture read from the metadata), in eval mode.

    Raises ``FileNotFoundError`` with the retraining command when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        commands = "; or ".join(f"`python -m {command}`" for _, _, command in ARCHITECTURES.values())
        raise FileNotFoundError(f"model weights not found at {path}; train them with {commands}")
    metadata = read_metadata(path)
    model_cls, config_cls, _ = ARCHITECTURES[metadata.get("architecture", "deepjscc")]
    model = model_cls(config_cls.from_dict(metadata["config"]))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()
