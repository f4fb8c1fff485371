"""The rate-adaptive codec: allocation, entropy coding, side channel, codec stages, service chain, training."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import grpc
import pytest
import torch

from shared.codecs.rate_adaptive import (SideInformationLost, decode_adaptive_batch, encode_adaptive, recover_symbol_map,
                                   side_positions)
from shared.api.semcom.v1 import semcom_pb2 as pb
from shared.channel import ChannelSpec, make_generator
from shared.channel.link import receive, transmit
from shared.config import load_config
from shared.phy.entropy_coding import decode_gaussian, encode_gaussian
from shared.models import RateAdaptiveConfig, RateAdaptiveJSCC
from shared.models.io import load_model, read_metadata, save_model
from shared.models.rate_adaptive import allocate_symbols, choose_beta, pack_symbols, unpack_symbols
from shared.phy.side_channel import (protect_side_information, recover_side_information, side_channel_scheme,
                                 side_channel_symbols)

from ..conftest import Chain
from ..serving.test_services import image_bytes, smooth_image
from ..conftest import training_log

TINY = RateAdaptiveConfig(widths=(8, 8, 8, 8), hyper_width=8, adapter_width=8)
LEVELS = TINY.symbol_levels


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return RateAdaptiveJSCC(TINY).eval()


def test_pack_unpack_round_trip_follows_the_length_map():
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(2 * 64, 3, 5, generator=g)
    symbol_map = torch.tensor(LEVELS)[torch.randint(len(LEVELS), (3, 5), generator=g)]
    symbols = pack_symbols(latent, symbol_map)
    assert symbols.numel() == int(symbol_map.sum())
    first = torch.complex(latent[0, 0, 0], latent[1, 0, 0])
    assert symbols[0] == first  # token (0, 0) comes first, its first symbol first
    restored = unpack_symbols(symbols, symbol_map, 64)
    sent = (torch.arange(128)[:, None, None] // 2) < symbol_map[None]
    assert torch.equal(restored, latent * sent)
    with pytest.raises(ValueError, match="do not fill"):
        unpack_symbols(symbols[:-1], symbol_map, 64)


def test_allocation_meets_the_budget_and_favours_informative_tokens():
    information = torch.linspace(10, 400, 48, dtype=torch.float64).reshape(6, 8)
    for budget in (200, 700, 1500, 3000):
        beta = choose_beta(information, budget, LEVELS)
        assert beta == float(torch.tensor(beta, dtype=torch.float32))  # exactly what the wire carries
        symbol_map = allocate_symbols(information, beta, LEVELS)
        assert int(symbol_map.sum()) <= budget
        assert set(symbol_map.flatten().tolist()) <= set(LEVELS)
        assert (symbol_map.flatten().diff() >= 0).all()  # more information, never fewer symbols
        assert int(symbol_map.sum()) > 0.8 * min(budget, 64 * 48)  # and the budget is used
    with pytest.raises(ValueError, match="below the minimum"):
        choose_beta(information, 2 * 48 - 1, LEVELS)


def test_range_coding_round_trip_and_cost():
    g = torch.Generator().manual_seed(1)
    scales = torch.rand(8, 4, 6, generator=g) * 3 + 0.2
    values = torch.round(torch.randn(8, 4, 6, generator=g) * scales).long()
    data = encode_gaussian(values, scales)
    assert torch.equal(decode_gaussian(data, scales), values)
    assert len(data) < values.numel()  # well under a byte per value at these scales
    with pytest.raises(ValueError, match="outside"):
        encode_gaussian(torch.tensor([500]), torch.tensor([1.0]))


def test_side_channel_delivers_or_reports_loss():
    payload = os.urandom(90)
    robust = side_channel_scheme(ChannelSpec("awgn", -5.0))
    assert robust == ("qpsk", Fraction(1, 5))
    symbols = protect_side_information(payload, robust)
    assert symbols.numel() == side_channel_symbols(90, robust)
    assert torch.allclose(symbols.abs().pow(2).mean(), torch.tensor(1.0), atol=1e-5)
    good = ChannelSpec("awgn", 6.0)
    assert recover_side_information(receive(transmit(symbols[None], good, make_generator(0)), good), robust) == payload
    bad = ChannelSpec("awgn", -10.0)
    assert recover_side_information(receive(transmit(symbols[None], bad, make_generator(0)), bad), robust) is None


def test_side_channel_spends_fewer_symbols_at_high_snr_and_on_awgn():
    count = {(kind, snr): side_channel_symbols(200, side_channel_scheme(ChannelSpec(kind, snr)))
             for kind in ("awgn", "rayleigh") for snr in (0.0, 10.0, 20.0)}
    for kind in ("awgn", "rayleigh"):
        assert count[kind, 0.0] >= count[kind, 10.0] >= count[kind, 20.0]
    assert count["awgn", 20.0] < count["awgn", 0.0]
    assert all(count["awgn", snr] <= count["rayleigh", snr] for snr in (0.0, 10.0, 20.0))
    for kind, snr in (("awgn", 10.0), ("rayleigh", 20.0)):  # each pick delivers at its SNR
        spec = ChannelSpec(kind, snr, coherence_symbols=64)
        payload = os.urandom(200)
        sent = protect_side_information(payload, side_channel_scheme(spec))
        equalized = receive(transmit(sent[None], spec, make_generator(3)), spec)
        assert recover_side_information(equalized, side_channel_scheme(spec)) == payload


def test_codec_stages_meet_the_cbr_and_the_receiver_recovers_the_allocation(tiny_model):
    images = [smooth_image(128, 192, seed=0), smooth_image(120, 190, seed=1)]
    cbr = Fraction(1, 24)
    spec = ChannelSpec("rayleigh", 15.0, coherence_symbols=64)
    encoded = [encode_adaptive(tiny_model, image, spec, cbr) for image in images]
    for image, e in zip(images, encoded):
        assert e.cbr <= float(cbr) and e.cbr > 0.9 * float(cbr)
        assert e.side_symbols == side_channel_symbols(len(e.side_information), side_channel_scheme(spec)) > 0
        assert e.grid == (8, 12)
        assert torch.equal(recover_symbol_map(tiny_model, e.side_information, e.grid), e.symbol_map)
        assert int(e.symbol_map.sum()) == e.jscc_symbols
        at_side = side_positions(e.symbols.numel(), e.side_symbols)
        assert int(at_side.sum()) == e.side_symbols and at_side[0] and not at_side[1]  # spread, not appended
        assert torch.allclose(e.symbols[~at_side].abs().pow(2).mean(), torch.tensor(1.0), atol=1e-4)
    transmissions = [transmit(e.symbols[None], spec, make_generator(i)) for i, e in enumerate(encoded)]
    outcomes = decode_adaptive_batch(tiny_model, transmissions, [spec, spec], [e.jscc_symbols for e in encoded],
                                     (8, 12), [e.image_size for e in encoded])
    assert [tuple(o.image.shape) for o in outcomes] == [(3, 128, 192), (3, 120, 190)]
    assert outcomes[0].side_information_bytes == len(encoded[0].side_information)
    lost_spec = ChannelSpec("rayleigh", -10.0, coherence_symbols=64)  # the scheme was picked for 15 dB
    lost = decode_adaptive_batch(tiny_model, [transmit(encoded[0].symbols[None], lost_spec, make_generator(0))],
                                 [spec], [encoded[0].jscc_symbols], (8, 12), [encoded[0].image_size])
    assert isinstance(lost[0], SideInformationLost)
    with pytest.raises(ValueError, match="too low"):
        encode_adaptive(tiny_model, images[0], spec, Fraction(1, 2000))


def test_weights_round_trip_in_float16(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "w.safetensors", {"steps": 1}, torch.float16)
    loaded = load_model(tmp_path / "w.safetensors")
    assert isinstance(loaded, RateAdaptiveJSCC) and loaded.config == TINY
    assert read_metadata(tmp_path / "w.safetensors")["architecture"] == "rate_adaptive"
    for name, value in tiny_model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], value.half().float())


@pytest.fixture(scope="module")
def adaptive_chain(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("adaptive") / "w.safetensors"
    save_model(tiny_model, path)
    config = load_config(weights=str(path), bind_host="127.0.0.1", device="cpu")
    running = Chain(config).start()
    yield running
    running.stop()


def test_service_chain_serves_the_rate_adaptive_codec(adaptive_chain):
    from ..serving.test_services import send

    requests = [pb.ImageRequest(request_id="ok", user_id="u", image=image_bytes(128, 128),
                                channel=pb.ChannelSpec(kind="awgn", snr_db=12.0), target_cbr=1 / 24),
                pb.ImageRequest(request_id="lost", user_id="u", image=image_bytes(128, 128),
                                channel=pb.ChannelSpec(kind="awgn", snr_db=-10.0), target_cbr=1 / 24)]
    results = send(adaptive_chain.target, requests)
    ok = results["ok"]
    assert ok.status.code == grpc.StatusCode.OK.value[0], ok.status.message
    assert 0.9 / 24 < ok.achieved_cbr <= 1 / 24 and ok.side_information_bytes > 0
    assert ok.width == 128 and ok.height == 128
    lost = results["lost"]
    assert lost.status.code == grpc.StatusCode.DATA_LOSS.value[0] and "side information" in lost.status.message


def test_training_runs_resumes_and_exports(tmp_path, tiny_weights):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(3):
            (tmp_path / split / f"{i}.png").write_bytes(image_bytes(130, 140, seed=i))
    config = json.loads(open("training/configs/rate_adaptive.json").read())
    config.update(model={"widths": [8, 8, 8, 8], "max_symbols_per_token": 64, "hyper_width": 8, "adapter_width": 8},
                  init_from=str(tiny_weights), train_dirs=[str(tmp_path / "train")], val_dir=str(tmp_path / "val"),
                  crop=64, batch_size=4, groups_per_batch=2, steps=4, val_every=2, val_images=1,
                  run_dir=str(tmp_path / "run"), output=str(tmp_path / "w.safetensors"), warmup_steps=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    from training.train_rate_adaptive import main

    main(["--config", str(path), "--steps", "2", "--device", "cpu"])
    main(["--config", str(path), "--device", "cpu"])  # resumes at step 2, runs to 4
    log = training_log(tmp_path / "run")
    assert [r["step"] for r in log] == [2, 4] and "psnr_k16_snr10" in log[0]
    assert log[0]["z_bits_per_token"] > 0
    model = load_model(tmp_path / "w.safetensors")
    assert isinstance(model, RateAdaptiveJSCC)
    assert read_metadata(tmp_path / "w.safetensors")["provenance"]["script"] == "training/train_rate_adaptive.py"


def test_eval_compares_the_rate_adaptive_codec_at_equal_cbr(tiny_model, tiny_weights, tmp_path):
    import csv

    from semcom_cli.main import main as cli

    weights = tmp_path / "adaptive.safetensors"
    save_model(tiny_model, weights)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(image_bytes(128, 128))
    out = tmp_path / "out"
    assert cli(["eval", "--data", str(data), "--snr", "10", "--cbr", "1/24", "--systems", "adaptive", "deepjscc",
                "--weights", str(tiny_weights), "--adaptive-weights", str(weights), "--device", "cpu",
                "--out", str(out)]) == 0
    rows = {r["system"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"adaptive", "deepjscc"}
    adaptive = rows["adaptive"]
    assert 0.9 / 24 < float(adaptive["achieved_cbr"]) <= 1 / 24 + 1e-6  # the CSV rounds to 6 digits
    assert "side_symbols=" in adaptive["info"] and "failed=0" in adaptive["info"]


def test_allocation_is_thread_safe_and_leaves_the_model_untouched(tiny_model):
    from concurrent.futures import ThreadPoolExecutor

    z_hat = torch.randn(1, TINY.hyper_channels, 2, 3, generator=torch.Generator().manual_seed(0)).round()
    expected = tiny_model.token_information(z_hat)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: tiny_model.token_information(z_hat), range(16)))
    assert all(torch.equal(r, expected) for r in results)
    assert all(p.dtype == torch.float32 for p in tiny_model.parameters())
