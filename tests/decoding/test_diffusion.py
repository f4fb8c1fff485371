"""The generative receiver: channel as a diffusion step, schedule and samplers, the denoisers,
decoder modes through the codec, the services and the evaluation harness, and their training."""

from __future__ import annotations

import csv
import json
import math

import grpc
import pytest
import torch

from shared.codecs.rate_adaptive import decode_adaptive_batch, encode_adaptive
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.channel import ChannelSpec, make_generator
from shared.channel.link import receive, transmit
from shared.config import load_config
from shared.diffusion.channel_state import SIGMA_MAX, as_mmse_observation, diffusion_state, effective_snr_db
from shared.decoding import DecoderMode, DiffusionDecoders, parse_mode
from shared.diffusion.sampling import (channel_schedule, consistency_sample, heun_nfe, heun_sample, karras_times,
                                       resampling_times)
from shared.serving.wire import decoder_mode
from shared.models import RateAdaptiveJSCC
from shared.models.io import load_model, read_metadata, save_model
from shared.models.generative_decoder import GenerativeDecoder, GenerativeDecoderConfig
from shared.models.latent_denoiser import LatentDenoiser, LatentDenoiserConfig

from ..conftest import Chain
from ..codecs.test_rate_adaptive import TINY
from ..serving.test_services import image_bytes, send, smooth_image
from ..conftest import training_log

TINY_DENOISER = LatentDenoiserConfig(widths=(32, 32), steps=20)
TINY_GENERATIVE = GenerativeDecoderConfig(widths=(16, 16), train_steps=100, default_steps=2)


def tiny_denoiser(parameterization: str = "edm") -> LatentDenoiser:
    torch.manual_seed(1)
    model = LatentDenoiser(LatentDenoiserConfig.from_dict({**TINY_DENOISER.to_dict(),
                                                           "parameterization": parameterization}))
    model.calibration.copy_(torch.linspace(1e-4, 1.0, model.calibration.numel()))
    return model.eval()


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return RateAdaptiveJSCC(TINY).eval()


def tiny_generative() -> GenerativeDecoder:
    torch.manual_seed(2)
    return GenerativeDecoder(TINY_GENERATIVE).eval()


@pytest.fixture(scope="module")
def decoders():
    return DiffusionDecoders(teacher=tiny_denoiser("edm"), student=tiny_denoiser("consistency"),
                             generative=tiny_generative())


def unit_symbols(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(2, n, generator=g), torch.randn(2, n, generator=g)) / math.sqrt(2)


@pytest.mark.parametrize("kind", ["awgn", "rayleigh", "rician"])
def test_equalized_symbols_are_a_ve_diffusion_state_at_the_channel_noise(kind):
    x = unit_symbols(200_000)
    spec = ChannelSpec(kind, 5.0, k_factor=2.0, coherence_symbols=4, seed=3)
    equalized = receive(transmit(x, spec, make_generator(3)), spec)
    state = diffusion_state(equalized, 10 ** (-0.5))
    assert torch.allclose(state.t, torch.full((2,), math.sqrt(10 ** (-0.5) / 2)))
    if kind == "awgn":  # the channel's own noise, no extra: r = 1 everywhere
        assert torch.allclose(state.profile, torch.ones_like(state.profile), atol=1e-5)
    usable = state.sigma < SIGMA_MAX
    noise = (state.values - x)[usable]
    standardized = torch.cat([noise.real, noise.imag]) / state.sigma[usable].repeat(2)
    assert abs(float(standardized.std()) - 1.0) < 0.01  # x_t = x_0 + sigma_i eps per real part
    assert abs(float(standardized.mean())) < 0.01


def test_decoder_sees_a_refined_estimate_as_an_awgn_mmse_output():
    assert torch.allclose(effective_snr_db(torch.tensor([0.1, 1.0])), torch.tensor([10.0, 0.0]))
    estimate = torch.ones(1, 4)
    assert torch.allclose(as_mmse_observation(estimate, torch.tensor([0.0])), torch.full((1, 4), 0.5))


def test_schedule_starts_where_the_channel_left_off_and_steps_grow_as_snr_drops():
    times = karras_times(100, 0.002, 2.0, 7.0)
    assert times[0].item() == pytest.approx(0.002) and times[-1].item() == pytest.approx(2.0)
    assert bool((times[1:] > times[:-1]).all())
    nfe = []
    for snr in (20.0, 10.0, 0.0):
        t_m = math.sqrt(10 ** (-snr / 10) / 2)
        schedule = channel_schedule(t_m, times)
        assert schedule[0].item() == pytest.approx(t_m) and schedule[-1].item() == 0.0
        assert bool((schedule[1:] < schedule[:-1]).all())
        nfe.append(heun_nfe(schedule))
    assert nfe[0] < nfe[1] < nfe[2]
    assert channel_schedule(1e-4, times).tolist() == [1e-4, 0.0]


def test_heun_ode_maps_a_gaussian_state_to_the_exact_flow_endpoint():
    """For x_0 ~ N(0, s^2) the ideal denoiser is s^2 / (s^2 + sigma^2) x and the probability-flow
    ODE scales x_t by s / sqrt(s^2 + t^2): the sampler must land there, per element."""
    s = 0.7
    profile = torch.tensor([[1.0, 2.0, 0.5]])
    t_m = 0.8
    x = torch.tensor([[0.3, -1.2, 0.9]])

    def ideal(x, sigma, t):
        return s**2 / (s**2 + sigma**2) * x

    out = heun_sample(ideal, x, profile, channel_schedule(t_m, karras_times(100, 0.002, 2.0, 7.0)))
    expected = x * s / torch.sqrt(s**2 + (profile * t_m) ** 2)
    assert torch.allclose(out, expected, atol=2e-3)


def test_consistency_sampling_spends_one_evaluation_per_round_below_t_m():
    calls = []

    def model(x, sigma, t):
        calls.append(float(t[0]))
        return x * 0.5

    times = karras_times(40, 0.002, 2.0, 7.0)
    schedule = channel_schedule(0.5, times)
    x = torch.ones(2, 3)
    _, nfe = consistency_sample(model, x, torch.ones_like(x), torch.full((2,), 0.5), schedule, rounds=3,
                                generator=make_generator(0))
    assert nfe == 3 == len(calls) and calls[0] == 0.5 and 0.5 > calls[1] > calls[2] > 0
    assert resampling_times(schedule, 1) == []


def test_consistency_parameterization_meets_its_boundary_and_edm_is_smooth():
    student, teacher = tiny_denoiser("consistency"), tiny_denoiser("edm")
    x = torch.randn(2, 128, 4, 4)
    profile = torch.rand(2, 128, 4, 4) + 0.5
    t1 = torch.full((2,), student.config.t_min)
    with torch.no_grad():
        assert torch.allclose(student(x, profile * student.config.t_min, t1), x, atol=1e-6)
        out = teacher(x, profile, torch.ones(2))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_symbol_error_interpolates_the_calibration_and_treats_deep_fades_as_the_prior():
    model = tiny_denoiser()
    times = model.calibration_times
    sigma = torch.stack([torch.full((2, 2, 2), float(times[3])), torch.full((2, 2, 2), 100.0)])
    error = model.symbol_error(sigma, torch.ones_like(sigma, dtype=torch.bool))
    assert error[0].item() == pytest.approx(float(model.calibration[3]), rel=1e-4) and error[1].item() == 1.0
    uncalibrated = LatentDenoiser(TINY_DENOISER)
    with pytest.raises(RuntimeError, match="calibration"):
        uncalibrated.symbol_error(sigma, sigma > 0)


def test_mode_names_parse_to_canonical_forms_with_clear_errors():
    assert str(parse_mode("")) == "jscc" and decoder_mode(" Teacher:50 ") == "teacher:50"
    assert parse_mode("consistency") == DecoderMode("consistency") and parse_mode("consistency:2").count == 2
    for bad, message in (("magic", "unknown decoder mode"), ("teacher:x", "integer"), ("teacher:1", r"\[2, 1000\]"),
                         ("jscc:3", "no count"), ("consistency:9", r"\[1, 8\]"), ("generative:0", r"\[1, 50\]")):
        with pytest.raises(ValueError, match=message):
            parse_mode(bad)
    assert parse_mode("generative:4").pipeline.setting == "distortion"
    assert parse_mode("generative-p").pipeline.setting == "perception"
    assert parse_mode("generative").stage == "image" and not parse_mode("generative").latent and parse_mode("teacher").latent


def test_codec_decodes_in_every_mode_and_reports_its_evaluations(codec, decoders):
    image = smooth_image(128, 128)
    outcomes = {}
    for snr in (2.0, 18.0):
        spec = ChannelSpec("rayleigh", snr, seed=1, coherence_symbols=16)
        encoded = encode_adaptive(codec, image, spec, 1 / 24)
        transmission = transmit(encoded.symbols[None], spec, make_generator(1))
        for mode in ("jscc", "teacher:10", "consistency", "consistency:3", "generative", "generative-p:3"):
            (outcome,) = decode_adaptive_batch(codec, [transmission], [spec], [encoded.jscc_symbols], encoded.grid,
                                               [encoded.image_size], mode=parse_mode(mode), decoders=decoders)
            assert outcome.image.shape == (3, 128, 128) and bool(torch.isfinite(outcome.image).all())
            outcomes[mode, snr] = outcome.nfe
    assert outcomes["jscc", 2.0] == 1 and outcomes["consistency", 2.0] == 2 and outcomes["consistency:3", 2.0] == 4
    assert outcomes["teacher:10", 2.0] > outcomes["teacher:10", 18.0] > 2
    assert outcomes["generative", 2.0] == 3 and outcomes["generative-p:3", 2.0] == 4


def test_generative_decoder_predicts_images_deterministically_in_the_distortion_setting():
    model = tiny_generative()
    condition = smooth_image(64, 96)[None]
    first = model.sample(condition, "distortion", 3, make_generator(5))
    again = model.sample(condition, "distortion", 3, make_generator(5))
    assert first.shape == (1, 3, 64, 96) and torch.equal(first, again)
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    with pytest.raises(ValueError, match="setting"):
        model.sample(condition, "artistic", 1)


def test_a_mode_without_its_weights_is_refused(codec):
    with pytest.raises(NotImplementedError, match="teacher weights"):
        DiffusionDecoders(student=tiny_denoiser("consistency")).model_for(parse_mode("teacher"))


@pytest.fixture(scope="module")
def diffusion_chain(tmp_path_factory, codec):
    folder = tmp_path_factory.mktemp("diffusion")
    save_model(codec, folder / "codec.safetensors")
    save_model(tiny_denoiser("edm"), folder / "teacher.safetensors")
    config = load_config(weights=str(folder / "codec.safetensors"), teacher_weights=str(folder / "teacher.safetensors"),
                         consistency_weights=str(folder / "absent.safetensors"), generative_weights="",
                         bind_host="127.0.0.1", device="cpu")
    running = Chain(config).start()
    yield running
    running.stop()


def test_services_serve_the_decoder_modes_per_request(diffusion_chain):
    def request(rid: str, mode: str, snr: float) -> pb.ImageRequest:
        return pb.ImageRequest(request_id=rid, user_id="u", image=image_bytes(128, 128), mode=mode, target_cbr=1 / 24,
                               channel=pb.ChannelSpec(kind="awgn", snr_db=snr, seed=1))

    results = send(diffusion_chain.target, [request("jscc", "", 10.0), request("low", "teacher:12", 3.0),
                                            request("high", "teacher:12", 18.0), request("student", "consistency", 10),
                                            request("gen", "generative", 10.0), request("bad", "teacher:0", 10.0)])
    for rid in ("jscc", "low", "high"):
        assert results[rid].status.code == grpc.StatusCode.OK.value[0], results[rid].status.message
    assert results["jscc"].mode == "jscc" and results["jscc"].nfe == 1
    assert results["low"].mode == "teacher:12" and results["low"].nfe > results["high"].nfe > 1
    assert "denoise" in results["low"].latency_ms and "denoise" not in results["jscc"].latency_ms
    assert results["student"].status.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "consistency weights" in results["student"].status.message
    assert results["gen"].status.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "generative weights" in results["gen"].status.message
    assert results["bad"].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_fixed_rate_receiver_refuses_diffusion_modes(chain):
    results = send(chain.target, [pb.ImageRequest(request_id="t", user_id="u", image=image_bytes(64, 64),
                                                  mode="consistency", channel=pb.ChannelSpec(snr_db=10.0))])
    assert results["t"].status.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "rate-adaptive" in results["t"].status.message


def test_eval_runs_each_mode_as_a_system(codec, tmp_path):
    from semcom_cli.main import main as cli

    save_model(codec, tmp_path / "codec.safetensors")
    save_model(tiny_denoiser("consistency"), tmp_path / "student.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(image_bytes(128, 128))
    out = tmp_path / "out"
    assert cli(["eval", "--data", str(data), "--snr", "5", "--cbr", "1/24", "--systems", "adaptive",
                "--modes", "jscc", "consistency", "--adaptive-weights", str(tmp_path / "codec.safetensors"),
                "--consistency-weights", str(tmp_path / "student.safetensors"), "--device", "cpu",
                "--out", str(out)]) == 0
    rows = {r["system"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"adaptive", "adaptive/consistency"}
    assert "nfe=1 " in rows["adaptive"]["info"] and "nfe=2 " in rows["adaptive/consistency"]["info"]
    assert "adaptive/consistency" in (out / "summary.md").read_text() and (out / "grid.png").is_file()


def training_folders(tmp_path, codec) -> None:
    """Three small images in ``train/`` and ``val/`` under ``tmp_path`` and the codec's weights."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(3):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(130, 140, seed=i))
    save_model(codec, tmp_path / "codec.safetensors")


def test_denoiser_training_runs_both_stages_resumes_and_exports(tmp_path, codec):
    training_folders(tmp_path, codec)
    common = dict(codec=str(tmp_path / "codec.safetensors"), train_dirs=[str(tmp_path / "train")],
                  val_dir=str(tmp_path / "val"), crop=64, batch_size=4, groups_per_batch=2, steps=4, val_every=2,
                  val_images=1, calibration_images=1, warmup_steps=1)
    from training.train_denoiser import main

    teacher_cfg = {**json.loads(open("training/configs/latent_teacher.json").read()), **common,
                   "model": {**TINY_DENOISER.to_dict(), "steps": 8}, "calibration_steps": 4,
                   "run_dir": str(tmp_path / "run_t"), "output": str(tmp_path / "teacher.safetensors")}
    (tmp_path / "t.json").write_text(json.dumps(teacher_cfg))
    main(["--config", str(tmp_path / "t.json"), "--steps", "2", "--device", "cpu"])
    main(["--config", str(tmp_path / "t.json"), "--device", "cpu"])  # resumes at step 2, runs to 4
    log = training_log(tmp_path / "run_t")
    assert [r["step"] for r in log] == [2, 4]
    teacher = load_model(tmp_path / "teacher.safetensors")
    assert isinstance(teacher, LatentDenoiser) and teacher.calibrated and teacher.config.parameterization == "edm"
    provenance = read_metadata(tmp_path / "teacher.safetensors")["provenance"]
    assert provenance["script"] == "training/train_denoiser.py" and "awgn1_teacher" in provenance

    student_cfg = {**json.loads(open("training/configs/latent_consistency.json").read()), **common,
                   "teacher": str(tmp_path / "teacher.safetensors"), "distill_steps": 6,
                   "run_dir": str(tmp_path / "run_s"), "output": str(tmp_path / "student.safetensors")}
    (tmp_path / "s.json").write_text(json.dumps(student_cfg))
    main(["--config", str(tmp_path / "s.json"), "--steps", "2", "--device", "cpu"])
    student = load_model(tmp_path / "student.safetensors")
    assert student.config.parameterization == "consistency" and student.calibrated
    assert "rayleigh10_consistency" in read_metadata(tmp_path / "student.safetensors")["provenance"]


def test_generative_decoder_training_runs_resumes_and_exports(tmp_path, codec):
    training_folders(tmp_path, codec)
    config = {**json.loads(open("training/configs/generative_decoder.json").read()),
              "codec": str(tmp_path / "codec.safetensors"), "model": TINY_GENERATIVE.to_dict(),
              "train_dirs": [str(tmp_path / "train")], "val_dir": str(tmp_path / "val"), "crop": 64, "batch_size": 4,
              "groups_per_batch": 2, "steps": 4, "val_every": 2, "val_images": 1, "warmup_steps": 1,
              "run_dir": str(tmp_path / "run"), "output": str(tmp_path / "generative.safetensors")}
    (tmp_path / "g.json").write_text(json.dumps(config))
    from training.train_generative import main

    main(["--config", str(tmp_path / "g.json"), "--steps", "2", "--device", "cpu"])
    main(["--config", str(tmp_path / "g.json"), "--device", "cpu"])
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log] == [2, 4]
    assert isinstance(load_model(tmp_path / "generative.safetensors"), GenerativeDecoder)
    provenance = read_metadata(tmp_path / "generative.safetensors")["provenance"]
    assert provenance["script"] == "training/train_generative.py" and "awgn1_perception" in provenance["validation"]
