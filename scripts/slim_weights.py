"""Rewrite the shipped weights in their lean storage (issue 15): how weights/ was made.

    python scripts/slim_weights.py [--weights weights] [--dry-run]

Loads every file of ``SHIPPED`` (each as it is stored now, derived or not), then writes each
back in the storage the table gives: ``float16``, or ``int8`` with per-output-channel scales
(:data:`shared.models.io.INT8`), and, for a derived model, only the modules it changes over its
base (its metadata names the base file and the base's checksum). Bases are written first. A
derived model's tensors that equal its original base's (the frozen modules: the robust
transmitter's receiver side, the VAE up-sampler's baseline) are replaced by the base's tensors
as now stored, so the derived file keeps working with the base as shipped and stores none of
them. No training: the weights are the trained ones, stored smaller; ``semcom eval`` on Kodak-4
before and after is in BENCHMARKS.md. ``--dry-run`` prints the plan and the sizes it would
write (into a temporary folder) and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.models.io import INT8, load_model, read_metadata, save_model  # noqa: E402

SHIPPED = {  # file stem -> (storage, base file stem or None, key prefix of the base's tensors)
    "deepjscc_baseline": (INT8, None, ""),
    "rate_adaptive": (INT8, None, ""),
    "latent_teacher": (INT8, None, ""),
    "latent_consistency": (INT8, None, ""),
    "generative_decoder": (INT8, None, ""),
    "semantic_finetune": (INT8, None, ""),
    "rate_adaptive_robust": (INT8, "rate_adaptive", ""),
    "vae_upsampler_x2": (INT8, "deepjscc_baseline", "base."),
    "vae_upsampler_x4": (INT8, "deepjscc_baseline", "base."),
}
"""What ships and how; a base precedes the files derived from it."""


def follow_base(model: torch.nn.Module, original_base: dict, new_base: dict, prefix: str) -> int:
    """Replace ``model``'s tensors that equal (to float16) its original base's tensor by the base
    as now stored; returns how many were replaced."""
    state = model.state_dict()
    replaced = 0
    for name, reference in original_base.items():
        key = prefix + name
        if key in state and torch.equal(state[key].half(), reference.half()):
            state[key] = new_base[name]
            replaced += 1
    model.load_state_dict(state)
    return replaced


def slim(weights: Path, out: Path) -> list[tuple[str, int, int]]:
    """Write every file of SHIPPED from ``weights`` into ``out``; (stem, bytes before, after)."""
    originals = {stem: load_model(weights / f"{stem}.safetensors") for stem in SHIPPED}
    rows = []
    for stem, (storage, base, prefix) in SHIPPED.items():
        source = weights / f"{stem}.safetensors"
        metadata = read_metadata(source)
        model = originals[stem]
        if base is not None:
            count = follow_base(model, originals[base].state_dict(),
                                load_model(out / f"{base}.safetensors").state_dict(), prefix)
            print(f"{stem}: {count} tensors follow {base}")
        storage_note = f"{str(storage).removeprefix('torch.')} (scripts/slim_weights.py)"
        provenance = {**metadata.get("provenance", {}),
                      "storage": storage_note + (f", derived from {base}" if base else "")}
        save_model(model, out / f"{stem}.safetensors", provenance, storage,
                   base=out / f"{base}.safetensors" if base else None, base_prefix=prefix)
        rows.append((stem, source.stat().st_size, (out / f"{stem}.safetensors").stat().st_size))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights"), help="folder of the shipped files")
    parser.add_argument("--dry-run", action="store_true", help="print the sizes; leave the files alone")
    args = parser.parse_args(argv)
    missing = [stem for stem in SHIPPED if not (args.weights / f"{stem}.safetensors").is_file()]
    if missing:
        parser.error(f"no {', '.join(missing)} under {args.weights}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = slim(args.weights, Path(tmp))
        if not args.dry_run:
            for stem in SHIPPED:
                shutil.copyfile(Path(tmp) / f"{stem}.safetensors", args.weights / f"{stem}.safetensors")
    print(json.dumps({stem: {"before": before, "after": after} for stem, before, after in rows}, indent=1))
    print(f"total {sum(r[1] for r in rows)} -> {sum(r[2] for r in rows)} bytes")


if __name__ == "__main__":
    main()
