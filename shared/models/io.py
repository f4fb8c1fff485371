"""Weights on disk: safetensors files whose metadata carry the architecture and its config.

A file can be *derived*: it names a base weights file (``base``, a path relative to the
derived file's folder), the key prefix under which the base's tensors sit in the derived model
(``base_prefix``, e.g. ``"base."`` for a model that wraps the base), and a checksum of the base's
tensors (``base_sha256``, :func:`state_checksum`). It stores only the tensors the base lacks or
that differ from it; :func:`load_model` loads the base (recursively), checks the checksum and
overlays the stored tensors.

Floating tensors are stored as ``float16`` or ``float32``, or (``dtype`` :data:`INT8`) those of
two or more dimensions, outside the modules a model class names in ``FLOAT16_MODULES``, as
``int8`` with one scale per output channel (dim 0; float32, float16 in the first files): the tensor ``name`` holds ``round(w / scale)`` and
``name + SCALE_SUFFIX`` the scales, ``w ~= int8 * scale``; the metadata's ``int8`` lists those
names. Loading casts every tensor back to the model's float32.
"""

from __future__ import annotations

import hashlib
import json
import os
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

INT8 = torch.int8
"""The ``dtype`` of :func:`save_model` for int8 storage with per-output-channel scales (a config's
``"weights_dtype": "int8"``)."""
SCALE_SUFFIX = ":int8_scale"
"""Suffix of the key holding an int8 tensor's scales, one per output channel."""


def architecture_of(model: nn.Module) -> str:
    for name, (cls, _, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"no registered architecture for {type(model).__name__}")


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over a state dict's names, dtypes, shapes and bytes, in name order: what a
    derived file checks its base against."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def quantize_int8(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one float32 scale per output channel (dim 0) of a (C, ...) float
    tensor: (int8 values of its shape, scales (C,)); ``values * scales`` restores it to within
    half a step (``max |w_c| / 254``). Each channel's largest value is +-127, so quantizing a
    restored tensor again gives the same int8 values (scales to within float32 rounding): a frozen
    module survives any number of saves. (float16 scales, as in the first int8 files, were too
    coarse for that in small channels: their subnormal grid moved values by a step.)"""
    flat = tensor.detach().float().reshape(tensor.shape[0], -1)
    scales = flat.abs().amax(dim=1) / 127
    values = torch.round(flat / torch.where(scales > 0, scales, 1.0)[:, None]).clamp(-127, 127).to(torch.int8)
    return values.reshape(tensor.shape), scales


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One state tensor as stored: itself cast to ``dtype`` (int8 only for floating tensors of
    two or more dimensions and 256 or more elements; the others then keep float16), keyed by
    suffix ('' or SCALE_SUFFIX)."""
    tensor = tensor.detach().cpu()
    if not tensor.is_floating_point():
        return {"": tensor.contiguous()}
    if dtype == INT8:
        if tensor.dim() >= 2 and tensor.numel() >= 256:
            values, scales = quantize_int8(tensor)
            return {"": values.contiguous(), SCALE_SUFFIX: scales.contiguous()}
        dtype = torch.float16
    return {"": tensor.to(dtype).contiguous()}


def _restored(tensors: dict[str, torch.Tensor], int8_names: list[str]) -> dict[str, torch.Tensor]:
    """The stored tensors as float32 state (int8 ones times their scales)."""
    state = {name: tensor for name, tensor in tensors.items() if not name.endswith(SCALE_SUFFIX)}
    for name in int8_names:
        scales = tensors[name + SCALE_SUFFIX].float()
        state[name] = state[name].float() * scales.reshape(-1, *[1] * (state[name].dim() - 1))
    return {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def save_model(
    model: nn.Module, path: str | Path, provenance: dict | None = None, dtype: torch.dtype = torch.float32,
    base: str | Path | None = None, base_prefix: str = "",
) -> None:
    """Write ``model``'s weights with its architecture, config (and how it was made) in the
    metadata; floating tensors stored as ``dtype`` (``torch.float16`` halves the file, ``INT8``
    quarters it; loading casts back to the model's float32).

    With ``base`` (a weights file), only the tensors that the base (its tensors named
    ``base_prefix + name`` in ``model``) lacks or that differ from it once stored are written,
    and the metadata names the base (relative to ``path``'s folder) and its checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    metadata = {"architecture": architecture_of(model), "config": json.dumps(model.config.to_dict())}
    if base is not None:
        base_state = load_model(base).state_dict()
        metadata.update(base=Path(os.path.relpath(Path(base).resolve(), path.parent.resolve())).as_posix(),
                        base_prefix=base_prefix, base_sha256=state_checksum(base_state))
        state = {name: tensor for name, tensor in state.items()
                 if not _equals_base(name, tensor, base_state, base_prefix)}
    tensors, int8_names = {}, []
    float16_modules = tuple(f"{module}." for module in getattr(model, "FLOAT16_MODULES", ()))
    for name, tensor in state.items():
        kept = torch.float16 if dtype == INT8 and name.startswith(float16_modules) else dtype
        for suffix, stored in _stored(tensor, kept).items():
            tensors[name + suffix] = stored
        if name + SCALE_SUFFIX in tensors:
            int8_names.append(name)
    if int8_names:
        metadata["int8"] = json.dumps(int8_names)
    if provenance:
        metadata["provenance"] = json.dumps(provenance)
    save_file(tensors, str(path), metadata=metadata)


def _equals_base(name: str, tensor: torch.Tensor, base_state: dict[str, torch.Tensor], prefix: str) -> bool:
    """Whether state tensor ``name`` is the base's ``name`` less ``prefix``, value for value."""
    if not name.startswith(prefix):
        return False
    reference = base_state.get(name[len(prefix):])
    return (reference is not None and reference.shape == tensor.shape
            and torch.equal(reference, tensor.detach().cpu().to(reference.dtype)))


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, JSON fields decoded."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: (json.loads(v) if k in ("config", "provenance", "int8") else v) for k, v in raw.items()}


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The full float32 state dict stored at ``path``: int8 tensors dequantized and, for a
    derived file, its base's state (checked against ``base_sha256``) under the stored tensors.

    Raises ``FileNotFoundError`` when the base is missing and ``ValueError`` when it is not
    the base the file was derived from."""
    path = Path(path)
    metadata = read_metadata(path)
    state = _restored(load_file(str(path)), metadata.get("int8", []))
    if "base" not in metadata:
        return state
    base_path = path.parent / metadata["base"]
    if not base_path.is_file():
        raise FileNotFoundError(f"{path} stores only the modules it changes; its base weights {base_path} are missing")
    base_state = load_model(base_path).state_dict()
    if state_checksum(base_state) != metadata["base_sha256"]:
        script = metadata.get("provenance", {}).get("script", "")
        command = script.removesuffix(".py").replace("/", ".") or ARCHITECTURES[metadata["architecture"]][2]
        raise ValueError(
            f"{path} was derived from another {base_path} (its tensors' checksum is {state_checksum(base_state)[:12]}, "
            f"{path.name} was made on {metadata['base_sha256'][:12]}): restore that base file, or re-derive "
            f"{path.name} from the new one (`python -m {command}`, or `python scripts/rebase_weights.py {path}` "
            f"where its modules still fit the new base)")
    prefix = metadata.get("base_prefix", "")
    return {**{prefix + name: tensor for name, tensor in base_state.items()}, **state}



def rebase(path: str | Path) -> int:
    """Re-derive the derived file at ``path`` on its base file as that file is now: the tensors it
    stores are kept (bit for bit: int8 storage is idempotent), every other tensor is the base's,
    and ``base_sha256`` names the new base. For a base retrained where the derived modules still
    fit it (the default codec's receiver side and hyperprior retrained under a frozen analysis:
    the robust transmitter). Returns how many tensors the file keeps."""
    path = Path(path)
    metadata = read_metadata(path)
    if "base" not in metadata:
        raise ValueError(f"{path} is not a derived file (it names no base)")
    own = _restored(load_file(str(path)), metadata.get("int8", []))
    base_path = path.parent / metadata["base"]
    prefix = metadata.get("base_prefix", "")
    model_cls, config_cls, _ = ARCHITECTURES[metadata["architecture"]]
    model = model_cls(config_cls.from_dict(metadata["config"]))
    base_state = load_model(base_path).state_dict()
    model.load_state_dict({**{prefix + name: tensor for name, tensor in base_state.items()}, **own})
    dtype = INT8 if metadata.get("int8") else torch.float16
    provenance = {**metadata.get("provenance", {}), "rebased_on": state_checksum(base_state)}
    save_model(model, path, provenance, dtype, base=base_path, base_prefix=prefix)
    return len(own)

def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model stored at ``path`` (its architecture read from the metadata, a derived file's
    base resolved), in eval mode.

    Raises ``FileNotFoundError`` with the retraining command when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        commands = "; or ".join(f"`python -m {command}`" for _, _, command in ARCHITECTURES.values())
        raise FileNotFoundError(f"model weights not found at {path}; train them with {commands}")
    metadata = read_metadata(path)
    model_cls, config_cls, _ = ARCHITECTURES[metadata.get("architecture", "deepjscc")]
    model = model_cls(config_cls.from_dict(metadata["config"]))
    model.load_state_dict(load_state(path))
    return model.to(device).eval()
