"""The semantic fine-tuning module (paper 002 sec. III-D): its networks and prior diffusion, the
``finetune`` decoder mode through the codec and the services, and its two-stage trainer."""

from __future__ import annotations

import json
from dataclasses import replace

import grpc
import pytest
import torch

from shared.codecs.rate_adaptive import decode_adaptive_batch, encode_adaptive
from shared.channel import ChannelSpec, make_generator
from shared.channel.link import transmit
from shared.config import load_config
from shared.decoding import DiffusionDecoders, parse_mode
from shared.models.io import load_model, read_metadata, save_model
from shared.models.semantic_finetune import (PriorExtractor, RestorationNet, SemanticFineTuner,
                                             SemanticFineTunerConfig)
from shared.codecs import codec_for
from shared.serving.service import load_diffusion_decoders

from ..conftest import Chain, smooth_image
from .test_diffusion import codec, training_folders  # noqa: F401  (the tiny codec fixture)
from ..serving.test_services import image_bytes, send
from ..conftest import training_log

TINY_TUNER = SemanticFineTunerConfig(prior_channels=4, extractor_width=16, extractor_blocks=1, widths=(8, 16),
                                     heads=2, denoiser_hidden=32, denoiser_layers=2)


def tiny_tuner() -> SemanticFineTuner:
    """A tiny module whose output depends on its prior (N2's last layer not zero, as after training)."""
    torch.manual_seed(3)
    model = SemanticFineTuner(TINY_TUNER)
    torch.nn.init.normal_(model.restoration.out[0].weight, std=0.05)
    for block in model.restoration.modules():
        if hasattr(block, "modulation"):
            torch.nn.init.normal_(block.modulation.mlp[-1].weight, std=0.1)
    return model.eval()


def test_networks_map_images_to_priors_and_priors_to_images():
    decoded, images = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    assert TINY_TUNER.prior_dim == 16 and TINY_TUNER.multiple == 4
    assert PriorExtractor(TINY_TUNER, 6)(torch.cat([decoded, images], 1)).shape == (2, 16)
    assert PriorExtractor(TINY_TUNER, 3)(decoded).shape == (2, 16)
    untrained = RestorationNet(TINY_TUNER)
    assert torch.equal(untrained(decoded, torch.randn(2, 16)), decoded)  # residual on S_hat, last layer zero
    restored, prior = tiny_tuner()(decoded, torch.randn(2, 16))
    assert restored.shape == (2, 3, 32, 48) and prior.shape == (2, 16)


def test_schedule_is_linear_and_the_reverse_process_recovers_the_prior_with_the_true_noise():
    model = SemanticFineTuner(TINY_TUNER)
    assert torch.allclose(1 - model.alphas, torch.linspace(0.1, 0.99, 4))
    assert torch.allclose(model.alphas_cumprod, torch.cumprod(model.alphas, 0))
    prior = torch.randn(3, 16)

    class TrueNoise(torch.nn.Module):  # eps_theta that knows Z_0: eps = (Z_t - sqrt(abar_t) Z_0) / sqrt(1 - abar_t)
        def forward(self, noisy, step_fraction, condition):
            abar = model.alphas_cumprod[(step_fraction * 4).round().long() - 1][:, None]
            return (noisy - abar.sqrt() * prior) / (1 - abar).sqrt()

    model.denoiser = TrueNoise()
    noisy = model.diffuse(prior, torch.randn(3, 16))
    assert torch.allclose(model.reverse(noisy, torch.zeros(3, 16)), prior, atol=1e-4)  # eq. 12 from t = T to 1


def test_refine_is_deterministic_for_a_seeded_generator_and_keeps_any_size():
    model = tiny_tuner()
    decoded = smooth_image(30, 45)[None]
    first = model.refine(decoded, make_generator(7))
    assert first.shape == (1, 3, 30, 45) and float(first.min()) >= 0 and float(first.max()) <= 1
    assert torch.equal(first, model.refine(decoded, make_generator(7)))
    assert not torch.equal(first, model.refine(decoded, make_generator(8)))  # Z_T ~ N(0, I) matters
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.refine(decoded[0])


def test_parse_mode_accepts_finetune_and_refuses_a_count():
    mode = parse_mode(" FineTune ")
    assert mode.name == "finetune" and mode.stage == "image" and mode.diffusion and not mode.latent
    assert mode.pipeline.timer == "finetune" and parse_mode("generative").pipeline.timer == "generate"
    with pytest.raises(ValueError, match="no count"):
        parse_mode("finetune:2")
    with pytest.raises(ValueError, match="finetune"):
        parse_mode("fine-tune")


def test_the_mode_is_refused_without_weights(tmp_path, codec):  # noqa: F811
    with pytest.raises(NotImplementedError, match="finetune weights"):
        DiffusionDecoders(generative=None).model_for(parse_mode("finetune"))
    config = load_config(teacher_weights="", consistency_weights="", generative_weights="", finetune_weights="",
                         device="cpu")
    with pytest.raises(NotImplementedError, match="finetune weights"):
        load_diffusion_decoders(config, codec_for(codec)).model_for(parse_mode("finetune"))
    save_model(tiny_tuner(), tmp_path / "finetune.safetensors")
    served = load_diffusion_decoders(replace(config, finetune_weights=str(tmp_path / "finetune.safetensors")), codec_for(codec))
    assert isinstance(served.model_for(parse_mode("finetune")), SemanticFineTuner)


def test_codec_decodes_in_finetune_mode_and_counts_its_evaluations(codec):  # noqa: F811
    image = smooth_image(128, 128)
    spec = ChannelSpec("awgn", 5.0, seed=1)
    encoded = encode_adaptive(codec, image, spec, 1 / 24)
    transmission = transmit(encoded.symbols[None], spec, make_generator(1))
    decoders = DiffusionDecoders(finetune=tiny_tuner())
    outcomes = {mode: decode_adaptive_batch(codec, [transmission], [spec], [encoded.jscc_symbols], encoded.grid,
                                            [encoded.image_size], mode=parse_mode(mode), decoders=decoders)[0]
                for mode in ("jscc", "finetune")}
    assert outcomes["finetune"].image.shape == (3, 128, 128)
    assert outcomes["jscc"].nfe == 1 and outcomes["finetune"].nfe == 1 + 4 + 2  # + T eps_theta, N1, N2
    assert not torch.equal(outcomes["jscc"].image, outcomes["finetune"].image)


def test_services_serve_the_finetune_mode_per_request(tmp_path, codec):  # noqa: F811
    save_model(codec, tmp_path / "codec.safetensors")
    save_model(tiny_tuner(), tmp_path / "finetune.safetensors")
    config = load_config(weights=str(tmp_path / "codec.safetensors"), teacher_weights="", consistency_weights="",
                         generative_weights="", finetune_weights=str(tmp_path / "finetune.safetensors"),
                         bind_host="127.0.0.1", device="cpu")
    running = Chain(config).start()
    try:
        request = pb_request("ft", "finetune")
        results = send(running.target, [request, pb_request("plain", "jscc")])
    finally:
        running.stop()
    assert results["ft"].status.code == grpc.StatusCode.OK.value[0], results["ft"].status.message
    assert results["ft"].mode == "finetune" and results["ft"].nfe == 7
    assert "finetune" in results["ft"].latency_ms and "finetune" not in results["plain"].latency_ms


def pb_request(rid: str, mode: str):
    from shared.api.semcom.v1 import semcom_pb2 as pb

    return pb.ImageRequest(request_id=rid, user_id="u", image=image_bytes(64, 64), mode=mode, target_cbr=1 / 24,
                           channel=pb.ChannelSpec(kind="awgn", snr_db=8.0, seed=1))


def test_trainer_runs_both_stages_resumes_and_exports(tmp_path, codec):  # noqa: F811
    training_folders(tmp_path, codec)
    config = {**json.loads(open("training/configs/semantic_finetune.json").read()),
              "codec": str(tmp_path / "codec.safetensors"), "model": TINY_TUNER.to_dict(),
              "train_dirs": [str(tmp_path / "train")], "val_dir": str(tmp_path / "val"), "crop": 64, "batch_size": 4,
              "groups_per_batch": 2, "steps": 4, "pretrain_fraction": 0.5, "val_every": 1, "val_images": 1,
              "warmup_steps": 1, "run_dir": str(tmp_path / "run"), "output": str(tmp_path / "finetune.safetensors")}
    (tmp_path / "f.json").write_text(json.dumps(config))
    from training.train_finetune import main

    main(["--config", str(tmp_path / "f.json"), "--steps", "2", "--device", "cpu"])
    main(["--config", str(tmp_path / "f.json"), "--device", "cpu"])  # resumes at step 2, runs to 4
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log[-2:]] == [3, 4]
    assert log[0]["stage"] == "pretrain" and "l_diff" not in log[0]
    assert log[-1]["stage"] == "diffusion" and "l_diff" in log[-1]
    model = load_model(tmp_path / "finetune.safetensors")
    assert isinstance(model, SemanticFineTuner) and model.config == TINY_TUNER
    provenance = read_metadata(tmp_path / "finetune.safetensors")["provenance"]
    assert provenance["script"] == "training/train_finetune.py" and "awgn1_finetune" in provenance["validation"]
