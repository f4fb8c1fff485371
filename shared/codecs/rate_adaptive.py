"""The rate-adaptive codec (``rate-adaptive``, paper 000): its pure stage functions (transmitter
and receiver) and the :class:`RateAdaptiveCodec` that serves them.

Transmitter (:func:`encode_adaptive`): image -> analysis y -> hyper-latent z, quantized to
integers q and range coded (:mod:`shared.phy.entropy_coding`) -> side information
``beta (float32 LE) | coded q`` -> its side-channel symbol count is taken off the image's
bandwidth ``floor(CBR * 3 H W)`` -> beta chosen so that the token allocation spends at most
the rest -> JSCC symbols, power-normalized to mean energy 1 -> frame = JSCC symbols with the
side-channel symbols (:mod:`shared.phy.side_channel`) interleaved at evenly spaced positions
(:func:`side_positions`): a short side-channel codeword sent in one piece would see only a
few fading blocks (no diversity: one side-information loss in 480 Kodak frames over Rayleigh
at 20 dB when it was appended); spread over the frame it sees as many fades as the frame.

Receiver (:func:`decode_adaptive_batch`): split the equalized frame, decode the side channel
(CRC checked; a loss raises :class:`SideInformationLost`), range-decode q, recompute the
allocation from z_hat and beta, check it matches the frame's JSCC symbol count, unpack and
decode. Images sharing a token grid decode in one batched pass whatever their allocations.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..channel import ChannelSpec
from ..channel.equalizers import EqualizedSymbols
from ..channel.link import Transmission, receive
from ..channel.models import make_generator, noise_variance
from ..diffusion.channel_state import diffusion_state, prior_where_unsent
from ..decoding import JSCC, DecoderMode, DiffusionDecoders, decoder_input
from ..phy.entropy_coding import MAX_ABS_VALUE, decode_gaussian, encode_gaussian
from ..models.latent_adapter import LatentAdapter
from ..models.layers import pad_to_multiple
from ..models.rate_adaptive import (RateAdaptiveJSCC, allocate_symbols, choose_beta, normalize_latent, pack_symbols,
                                    symbol_mask, unpack_symbols)
from ..phy.side_channel import (protect_side_information, recover_side_information, side_channel_scheme,
                            side_channel_symbols)
from ..phy.symbols import achieved_cbr, power_normalize
from .base import Codec, DecodedImage, EncodedFrame, FrameHeader, FrameLost, StageTimer, register_codec
from .differentiable_link import noiseless_round_trip, request_mean_symbols

BETA_FORMAT = "<f"


class SideInformationLost(FrameLost):
    """The side channel's CRC failed (or its content is inconsistent): the image cannot be
    decoded, and the receiver says so (gRPC DATA_LOSS)."""


@dataclass
class AdaptiveEncodedImage:
    """One image as the rate-adaptive codec sends it.

    Attributes:
        symbols: (n,) complex64: ``jscc_symbols`` JSCC symbols (mean energy 1) and the side
            channel's unit-energy QAM symbols at :func:`side_positions`.
        power_scale: factor the JSCC symbols were multiplied by to reach energy 1.
        jscc_symbols: how many of ``symbols`` are JSCC symbols.
        side_information: the side channel's payload (beta and the coded hyper-latent).
        symbol_map: (h, w) int64 symbols per token (the transmitter's record; the receiver
            recomputes it from the side information).
        grid: (h, w) token grid.
        image_size: (H, W) of the original image in pixels.
    """

    symbols: torch.Tensor
    power_scale: float
    jscc_symbols: int
    side_information: bytes
    symbol_map: torch.Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def side_symbols(self) -> int:
        return self.symbols.numel() - self.jscc_symbols

    @property
    def cbr(self) -> float:
        return achieved_cbr(self.symbols.numel(), self.image_size)


def _hyper_scales(model: RateAdaptiveJSCC, shape: tuple[int, ...]) -> torch.Tensor:
    return model.hyper_prior.log_scales.detach().cpu().exp()[:, None, None].expand(shape)


def _z_hat(model: RateAdaptiveJSCC, q: torch.Tensor) -> torch.Tensor:
    """Integers (C_z, h/4, w/4) -> z_hat (1, C_z, h/4, w/4) float32 on the CPU."""
    return (q.float() + model.hyper_prior.means.detach().cpu()[:, None, None])[None]


@dataclass
class AnalysedImage:
    """The transmitter's analysis of one image, before the allocation.

    Attributes:
        latent: (1, 2K, h, w) y on the model's device.
        information: (h, w) float64 per-token bits predicted from z_hat (what both ends compute).
        coded_hyper_latent: the range-coded integers of z_hat.
        image_size: (H, W) of the original image.
    """

    latent: torch.Tensor
    information: torch.Tensor
    coded_hyper_latent: bytes
    image_size: tuple[int, int]

    @property
    def side_information_bytes(self) -> int:
        return struct.calcsize(BETA_FORMAT) + len(self.coded_hyper_latent)


@torch.inference_mode()
def analyse_image(model: RateAdaptiveJSCC, image: torch.Tensor, snr_db: float, mean_symbols: float) -> AnalysedImage:
    """(3, H, W) in [0, 1] -> y, the hyper-latent's code and the per-token information.
    ``mean_symbols`` (symbols per token the image will get, about) conditions the analysis."""
    device = next(model.parameters()).device
    padded = pad_to_multiple(image.to(device), model.config.grid_multiple)[None]
    snr = torch.tensor([snr_db], dtype=torch.float32, device=device)
    latent = model.analyse(padded, snr, torch.tensor([mean_symbols], dtype=torch.float32, device=device))
    z = model.hyper_analysis(normalize_latent(latent).abs())[0].cpu()
    q = torch.round(z - model.hyper_prior.means.detach().cpu()[:, None, None]).clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE)
    coded = encode_gaussian(q, _hyper_scales(model, q.shape))
    return AnalysedImage(latent, model.token_information(_z_hat(model, q))[0], coded, tuple(image.shape[-2:]))


def analyse_request(model: RateAdaptiveJSCC, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> tuple[AnalysedImage, float]:
    """(3, H, W) in [0, 1] -> its analysis and the float32 beta whose allocation, with the side
    channel's symbols, fits ``floor(cbr * 3 H W)`` symbols over the channel of ``spec``.

    ``ValueError`` when the bandwidth cannot carry the side information and the smallest
    allocation.
    """
    size = tuple(image.shape[-2:])
    budget = int(float(cbr) * 3 * size[0] * size[1])
    grid = tuple(-(-side // model.config.grid_multiple) * model.config.hyper_downscale for side in size)
    analysed = analyse_image(model, image, spec.snr_db, budget / (grid[0] * grid[1]))
    side_symbols = side_channel_symbols(analysed.side_information_bytes, side_channel_scheme(spec))
    try:
        return analysed, choose_beta(analysed.information, budget - side_symbols, model.config.symbol_levels)
    except ValueError as exc:
        raise ValueError(f"CBR {cbr} is too low for a {size[0]}x{size[1]} image with this codec: {exc}") from None


def encode_adaptive(model: RateAdaptiveJSCC, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> AdaptiveEncodedImage:
    """(3, H, W) in [0, 1] -> the frame's symbols at no more than ``cbr`` over the channel of
    ``spec`` (its SNR conditions the encoder; it and the kind set the side channel's scheme);
    ``ValueError`` as :func:`analyse_request`."""
    return encode_allocated(model, *analyse_request(model, image, spec, cbr), spec)


@torch.inference_mode()
def encode_allocated(model: RateAdaptiveJSCC, analysed: AnalysedImage, beta: float, spec: ChannelSpec) -> AdaptiveEncodedImage:
    """The frame of an analysed image at a given (float32) beta."""
    device = analysed.latent.device
    symbol_map = allocate_symbols(analysed.information, beta, model.config.symbol_levels)
    snr = torch.tensor([spec.snr_db], dtype=torch.float32, device=device)
    sent = model.rate_encode(analysed.latent, symbol_map[None].to(device), snr)[0]
    jscc, scale = power_normalize(pack_symbols(sent, symbol_map.to(device))[None])
    payload = struct.pack(BETA_FORMAT, beta) + analysed.coded_hyper_latent
    side = protect_side_information(payload, side_channel_scheme(spec))
    symbols = torch.empty(jscc.shape[1] + side.numel(), dtype=torch.complex64)
    at_side = side_positions(symbols.numel(), side.numel())
    symbols[at_side] = side
    symbols[~at_side] = jscc[0].cpu()
    return AdaptiveEncodedImage(symbols, float(scale[0]), jscc.shape[1], payload, symbol_map,
                                tuple(symbol_map.shape), analysed.image_size)


def recover_symbol_map(model: RateAdaptiveJSCC, payload: bytes, grid: tuple[int, int]) -> torch.Tensor:
    """The receiver's allocation: side-channel payload, token grid (h, w) -> (h, w) k map.

    ``SideInformationLost`` when the payload does not decode to a hyper-latent of this grid.
    """
    beta_bytes = struct.calcsize(BETA_FORMAT)
    shape = (model.config.hyper_channels, grid[0] // model.config.hyper_downscale,
             grid[1] // model.config.hyper_downscale)
    try:
        (beta,) = struct.unpack(BETA_FORMAT, payload[:beta_bytes])
        q = decode_gaussian(payload[beta_bytes:], _hyper_scales(model, shape))
    except Exception as exc:  # struct, shape or constriction's own decoding errors
        raise SideInformationLost(f"side information does not decode: {exc}") from None
    return allocate_symbols(model.token_information(_z_hat(model, q))[0], beta, model.config.symbol_levels)


def side_positions(frame_symbols: int, side_symbols: int) -> torch.Tensor:
    """(frame_symbols,) bool: where a frame's ``side_symbols`` side-channel symbols sit, evenly
    spaced (the i-th at ``floor(i * frame_symbols / side_symbols)``)."""
    mask = torch.zeros(frame_symbols, dtype=torch.bool)
    mask[torch.arange(side_symbols) * frame_symbols // max(side_symbols, 1)] = True
    return mask


def _split(equalized: EqualizedSymbols, jscc_symbols: int) -> tuple[EqualizedSymbols, EqualizedSymbols]:
    """(1, n) equalized frame -> its JSCC symbols (1, jscc_symbols) and side-channel symbols."""
    at_side = side_positions(equalized.symbols.shape[1], equalized.symbols.shape[1] - jscc_symbols)

    def part(where: torch.Tensor) -> EqualizedSymbols:
        return EqualizedSymbols(equalized.symbols[:, where], equalized.effective_gain[:, where],
                                equalized.effective_noise_variance[:, where])

    return part(~at_side), part(at_side)


@dataclass
class ReceivedLatent:
    """One frame's JSCC part in the codec's latent layout (2K, h, w), ready to decode.

    Attributes:
        equalized: the MMSE-equalized symbols, zero-filled (what the JSCC decoder reads).
        symbol_map: (h, w) symbols per token.
        state: the diffusion state (:mod:`shared.diffusion.channel_state`) as (values, sigma)
            in the same layout, unsent elements 0 and ``SIGMA_MAX``, and its time t_m; ``None``
            unless a diffusion mode asked for it.
    """

    equalized: torch.Tensor
    symbol_map: torch.Tensor
    state: tuple[torch.Tensor, torch.Tensor, float] | None = None


def received_latent(symbols: EqualizedSymbols, symbol_map: torch.Tensor, max_symbols: int,
                    noise_variance: float | None) -> ReceivedLatent:
    """(1, n) equalized JSCC symbols and the k map -> :class:`ReceivedLatent`; with the channel's
    N0 given, also the diffusion state."""
    latent = unpack_symbols(symbols.symbols[0], symbol_map, max_symbols)
    if noise_variance is None:
        return ReceivedLatent(latent, symbol_map)
    state = diffusion_state(symbols, noise_variance)
    sent = symbol_mask(symbol_map[None], max_symbols)[0]
    sigma = unpack_symbols(torch.complex(state.sigma[0], state.sigma[0]), symbol_map, max_symbols)
    return ReceivedLatent(latent, symbol_map, (unpack_symbols(state.values[0], symbol_map, max_symbols),
                                               prior_where_unsent(sigma, sent),
                                               float(state.t[0])))


@torch.inference_mode()
def reconstruct_received(model: RateAdaptiveJSCC, received: list[ReceivedLatent], snr_db: list[float],
                         mode: DecoderMode = JSCC, decoders: DiffusionDecoders | None = None,
                         timer: Callable[[str], AbstractContextManager] | None = None,
                         adapter: LatentAdapter | None = None) -> tuple[torch.Tensor, list[int]]:
    """Frames of one token grid -> (B, 3, H, W) images and the network evaluations each took: the
    JSCC decoder on the equalized latents, after ``mode``'s latent-stage pipeline (teacher,
    consistency) or followed by its image-stage pipeline (generative, finetune; :mod:`shared.decoding`),
    each timed as its pipeline's ``timer`` stage."""
    timer = timer or (lambda _stage: nullcontext())
    decoders = decoders or DiffusionDecoders()  # empty: a diffusion mode is refused by model_for
    device = next(model.parameters()).device
    maps = torch.stack([r.symbol_map for r in received]).to(device)
    snr = torch.tensor(snr_db, dtype=torch.float32, device=device)
    nfe = [1] * len(received)
    pipeline = mode.pipeline
    if pipeline.stage == "latent":
        values, sigma = (torch.stack([r.state[i] for r in received]) for i in (0, 1))
        t = torch.tensor([r.state[2] for r in received])
        with timer(pipeline.timer):
            refined = decoders.refine(mode, values, sigma, symbol_mask(maps, model.config.max_symbols_per_token),
                                      t, snr)
        latent, snr = decoder_input(refined)
        nfe = [1 + n for n in refined.nfe]
    else:
        latent = torch.stack([r.equalized for r in received]).to(device)
    with timer("decode"):
        images = model.reconstruct(latent.to(device), maps, snr.to(device), adapter)  # adapter: per image, or None
    if pipeline.stage == "image":
        with timer(pipeline.timer):
            images, evaluations = decoders.refine_image(mode, images, make_generator(0))
        nfe = [n + evaluations for n in nfe]
    return images.float().cpu(), nfe


def decode_adaptive_batch(
    model: RateAdaptiveJSCC,
    transmissions: list[Transmission],
    specs: list[ChannelSpec],
    jscc_symbols: list[int],
    grid: tuple[int, int],
    image_sizes: list[tuple[int, int]],
    stage_timer: Callable[[str], AbstractContextManager] | None = None,
    mode: DecoderMode = JSCC,
    decoders: DiffusionDecoders | None = None,
    adapters: list[LatentAdapter | None] | None = None,
) -> list[DecodedImage | SideInformationLost]:
    """The receiver's stages for frames sharing a token grid: per frame a :class:`DecodedImage`
    of (3, H_i, W_i), or the :class:`SideInformationLost` that stopped it. ``stage_timer(name)``
    wraps the ``equalize``, ``side_information`` and ``decode`` stages and the mode's own (its
    pipeline's ``timer``: ``denoise``, ``generate``, ``finetune``). ``mode`` and ``decoders``: see
    :func:`reconstruct_received`. ``adapters``: each frame's latent adapter (``None``: identity),
    applied between f_d and g_s; ``None``: no adapter for any frame."""
    timer = stage_timer or (lambda _stage: nullcontext())
    with timer("equalize"):
        equalized = [_split(receive(t, spec), n) for t, spec, n in zip(transmissions, specs, jscc_symbols)]
    outcomes: list[DecodedImage | SideInformationLost | None] = []
    received, snrs, ready, side_bytes = [], [], [], []
    with timer("side_information"):
        for (symbols, side), spec in zip(equalized, specs):
            payload = recover_side_information(side, side_channel_scheme(spec))
            try:
                if payload is None:
                    raise SideInformationLost("side information lost on the channel (CRC failed)")
                symbol_map = recover_symbol_map(model, payload, grid)
                if int(symbol_map.sum()) != symbols.symbols.shape[1]:
                    raise SideInformationLost(f"side information allocates {int(symbol_map.sum())} symbols, "
                                              f"the frame holds {symbols.symbols.shape[1]}")
            except SideInformationLost as exc:
                outcomes.append(exc)
                continue
            outcomes.append(None)
            ready.append(len(outcomes) - 1)
            side_bytes.append(len(payload))
            n0 = noise_variance(spec.snr_db) if mode.latent else None
            received.append(received_latent(symbols, symbol_map, model.config.max_symbols_per_token, n0))
            snrs.append(spec.snr_db)
    if ready:
        adapter = None if adapters is None or all(a is None for a in adapters) else LatentAdapter.stack(
            [adapters[i] for i in ready], 2 * model.config.max_symbols_per_token)
        images, nfe = reconstruct_received(model, received, snrs, mode, decoders, timer, adapter)
        for index, image, size, count in zip(ready, images, side_bytes, nfe):
            h, w = image_sizes[index]
            outcomes[index] = DecodedImage(image[:, :h, :w], size, count)
    return outcomes


@register_codec("rate-adaptive", RateAdaptiveJSCC)
class RateAdaptiveCodec(Codec):
    """The rate-adaptive codec: any CBR its side channel and smallest allocation fit; its frame
    carries the allocation in its side-channel symbols (no token lengths); every decoder mode
    (latent and image stages); per-user latent adapters between f_d and g_s."""

    decoder_stages = ("latent", "image")

    @property
    def latent_channels(self) -> int:
        return 2 * self.model.config.max_symbols_per_token

    @property
    def adapter_channels(self) -> int:
        return 2 * self.model.config.max_symbols_per_token

    @property
    def pad_multiple(self) -> int:
        return self.model.config.grid_multiple

    def encode(self, image: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> EncodedFrame:
        encoded = encode_adaptive(self.model, image, spec, cbr)
        info = {"side_symbols": encoded.side_symbols, "side_bytes": len(encoded.side_information),
                "mean_symbols_per_token": round(float(encoded.symbol_map.float().mean()), 3)}
        return EncodedFrame(encoded.symbols, encoded.power_scale, encoded.grid, encoded.image_size,
                            side_symbols=encoded.side_symbols, info=info)

    def check_frame(self, header: FrameHeader) -> Hashable:
        """Any allocations batch together (key 0)."""
        super().check_frame(header)
        if header.token_lengths or not 0 < header.side_symbols < header.num_symbols:
            raise ValueError("frame is not from the rate-adaptive codec this receiver serves "
                             f"({header.side_symbols} side-channel symbols of {header.num_symbols})")
        return 0

    def decode_batch(self, transmissions: list[Transmission], specs: list[ChannelSpec], headers: list[FrameHeader],
                     mode: DecoderMode = JSCC, decoders: DiffusionDecoders | None = None,
                     adapters: list[LatentAdapter | None] | None = None, timer: StageTimer | None = None,
                     ) -> list[DecodedImage | SideInformationLost]:
        jscc = [h.num_symbols - h.side_symbols for h in headers]
        return decode_adaptive_batch(self.model, transmissions, specs, jscc, headers[0].grid,
                                     [h.image_size for h in headers], stage_timer=timer, mode=mode,
                                     decoders=decoders, adapters=adapters)

    def forward(self, images: torch.Tensor, spec: ChannelSpec, cbr: Fraction) -> torch.Tensor:
        mean_symbols = request_mean_symbols(self.model, tuple(images.shape[-2:]), cbr)
        return noiseless_round_trip(self.model, images.to(self.device), spec.snr_db, mean_symbols).to(images.device)
