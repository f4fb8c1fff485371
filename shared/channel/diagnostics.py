"""Channel diagnostics: uncoded QPSK and 16-QAM through every channel kind of :mod:`.link`,
measured beside closed-form theory.

Chain: random bits -> Gray-labelled unit-energy QAM (Sionna ``Mapper``) -> the channel ->
zero-forcing with the true channel (perfect CSI) -> hard decisions (Sionna max-log ``Demapper``,
which with equal priors is the nearest-point decision) -> bit errors. Per kind:

* ``awgn``, ``rayleigh``, ``rician``: :func:`.flat.apply_channel`, then ``y / h``.
* ``tdl``: :func:`.link.transmit`, then ``y / H`` per resource element with the returned per-symbol
  gains. Each modulation's symbols go out as independent links of one OFDM slot each (rows of
  :attr:`.tdl.TDLConfig.grid_symbols`), so that the measurement spans many channel realizations:
  one long link sees only a few coherence times (3 m/s at 3.5 GHz: 35 Hz Doppler, about 56 slots
  per coherence time). The per-resource-element statistics do not depend on this split.
* ``mimo``: :func:`.link.transmit`, then :func:`.mimo.mimo_receive`: ``svd`` with ``"zf"``, the scalar
  ZF ``r_i / σ_i`` of every combined sub-channel ``r_i = σ_i s_i + n_i`` (the ML decision per
  sub-channel, as for SISO); ``open_loop`` with ZF detection ``(H^H H)^-1 H^H y`` when Nr >= Nt,
  whose per-stream output is interference-free with Gaussian noise, so that its BER has a closed
  form (it is not the joint ML detector: this measures the ZF receiver, not the best one); with
  Nr < Nt, where ZF does not exist, LMMSE detection divided by its per-stream gain ``(W H)_ii``
  (unbiased, as MMSE shrinks the 16-QAM amplitudes), which leaves non-Gaussian inter-stream
  interference: no theory is given (``None``).

Why zero-forcing: with perfect CSI the ML decision on ``y = h x + n`` is
``argmin_c |y - h c|^2 = argmin_c |h|^2 |y / h - c|^2``, the nearest point to the ZF output.
The MMSE output is scaled by ``|h|^2 / (|h|^2 + N0) < 1``, which shrinks the constellation
and biases the amplitude decisions of 16-QAM.

Theory, with ``g = Es/N0`` (linear, per complex symbol, Es = 1) and ``x = |h|^2``, E[x] = 1:

* AWGN, Gray labelling, exact: ``Pb(g) = sum_i w_i Q(a_i sqrt(g))`` (see :data:`MODULATIONS`)
    - QPSK: ``Q(sqrt(g))`` (each bit is BPSK of amplitude 1/sqrt(2) in noise of variance N0/2);
    - 16-QAM: ``[3 Q(u) + 2 Q(3u) - Q(5u)] / 4`` with ``u = sqrt(g / 5)`` (Gray 4-PAM per axis,
      points at +-1/sqrt(10), +-3/sqrt(10); ``u`` is the half-distance over the noise std).
* Fading, perfect CSI: ``Pb = E_x[Pb_AWGN(g x)]``.
    - Rayleigh, ``x ~ Exp(1)``: ``E[Q(a sqrt(g x))] = J(a^2 g / 2)`` with
      ``J(c) = (1 - sqrt(c / (1 + c))) / 2``; so QPSK ``J(g / 2)`` (``g / 2`` = Eb/N0) and 16-QAM
      ``[3 J(g/10) + 2 J(9g/10) - J(25g/10)] / 4``.
    - Rician K: numerical integration (``scipy.integrate.quad``) over the pdf of ``x``,
      ``f(x) = (K+1) exp(-K - (K+1) x) I0(2 sqrt(K (K+1) x))``.
    - Gamma, ``x ~ Gamma(L, 1)`` (mean L): ``E[Q(sqrt(2 c x))] = ((1 - mu) / 2)^L
      sum_{k<L} C(L-1+k, k) ((1 + mu) / 2)^k``, ``mu = sqrt(c / (1 + c))`` (Proakis, L-branch MRC);
      L = 1 is ``J``.
* MIMO ``svd``, H with i.i.d. CN(0, 1) entries: the sub-channel gains ``λ = σ_i^2`` are the nonzero
  eigenvalues of the complex Wishart matrix ``H^H H``; every stream carries the same share of the
  symbols, so the BER is ``E[Pb_AWGN(g λ)]`` over the marginal pdf of one unordered eigenvalue
  (Telatar 1999), with ``m = min(Nt, Nr)``, ``n = max(Nt, Nr)``:
  ``f(λ) = (1/m) sum_{k<m} k! / (k+n-m)! [L_k^(n-m)(λ)]^2 λ^(n-m) e^-λ`` (generalized Laguerre
  polynomials), mean ``n``, variance ``m n``; integrated numerically. 1 x 1 is Rayleigh; 1 x n is
  Gamma(n, 1) (maximum-ratio transmission / combining).
* MIMO ``open_loop`` with ZF, Nr >= Nt: per stream the post-ZF SNR is ``g / [(H^H H)^-1]_ii``, and
  ``1 / [(H^H H)^-1]_ii`` is Gamma(Nr - Nt + 1, 1) (a chi-square with 2 (Nr - Nt + 1) degrees of
  freedom, halved): the Gamma closed form with L = Nr - Nt + 1.
* TDL over OFDM: each resource element sees ``H[k] = sum_l a_l exp(-2j pi f_k tau_l)``; the scattered
  taps are independent zero-mean (sum-of-sinusoids, near-Gaussian) with powers ``p_l`` and the
  profile normalized to total power 1, so ``H[k]`` is Rayleigh (NLOS profiles A, B, C) or Rician
  with ``K = P_LoS / sum(p_l)`` (LOS profiles D, E: the line-of-sight part of the first tap over all
  scattered power, the Rayleigh part of the first tap included; read from Sionna's profile by
  :func:`tdl_k_factor`, 7.9 for D and 8.5 for E). Not the per-tap K of TR 38.901 (13.3 dB for D,
  22 dB for E, Sionna's ``TDL.k_factor``), which leaves out the later taps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special

from .equalizers import EqualizedSymbols, per_symbol_gains, zf_equalize
from .flat import apply_channel
from .link import transmit
from .mimo import MimoChannelOutput, mimo_detector, mimo_receive
from ..imageio import save_figure
from .models import ChannelOutput, make_generator
from .spec import ChannelSpec, channel_kind
from .tdl import TDLConfig, tdl_k_factor
from .theory import (MODULATIONS, ber_awgn, ber_gamma, ber_rayleigh, ber_rician, ber_wishart,  # noqa: F401
                     q_function, rician_expectation, rician_power_pdf, wishart_eigenvalue_pdf, wishart_expectation)

KINDS = ("awgn", "rayleigh", "rician", "mimo", "tdl")
"""The channel kinds :func:`simulate` measures (the shipped ones); every registered kind has
:func:`ber_theory` through its block."""

DEEP_FADE = 0.1
"""|h|^2 (MIMO: σ_i^2, ZF gain) below which a gain counts as a deep fade (linear; -10 dB)."""


def ber_theory(modulation: str, spec: ChannelSpec) -> float | None:
    """Uncoded BER of ``modulation`` over the channel of ``spec`` (independent of the coherence length)
    with the receiver of :func:`simulate`, from the kind's block (:meth:`~.base.ChannelKind.ber_theory`);
    ``None`` where there is no theory (``open_loop`` MIMO with Nr < Nt, LMMSE detection)."""
    return channel_kind(spec.kind).ber_theory(modulation, spec)


def estimate_k_factor(power: torch.Tensor) -> float:
    """Rician K from samples of ``|h|^2`` by moments: with mean ``m`` and variance ``v``,
    the line-of-sight power is ``sqrt(m^2 - v)`` and the scattered power ``m - sqrt(m^2 - v)``.
    Clamped to 0 when the sample variance exceeds ``m^2`` (Rayleigh-like samples); ``inf`` for
    constant samples (no scattering)."""
    power = power.double()
    mean, var = power.mean().item(), power.var().item()
    los = math.sqrt(max(mean * mean - var, 0.0))
    return los / (mean - los) if mean > los else math.inf


@dataclass
class Measured:
    """A figure measured on the simulated symbols beside its theoretical value (``None``: no theory)."""

    measured: float
    theory: float | None


@dataclass
class BitErrors:
    """Hard-decision bit errors of one modulation.

    Attributes:
        bits: transmitted bits.
        errors: wrongly decided bits.
        ber: errors / bits, beside the theoretical BER.
    """

    bits: int
    errors: int
    ber: Measured


@dataclass
class ChannelStats:
    """What :func:`summarize` reports; ``to_dict()`` is JSON-serializable (K = inf becomes ``Infinity``).

    Attributes:
        kind, snr_db: the channel and its nominal Es/N0 (dB).
        k_factor: Rician K (``rician``; ``tdl``: the per-resource-element K of the profile, 0 for
            A, B, C; else ``None``).
        coherence_symbols: block-fading length in symbols (``rayleigh``, ``rician``) or channel uses
            (``mimo``); else ``None``.
        seed: seed of the bits and channel draws.
        symbols: complex symbols per modulation.
        noise_variance: N0 per complex symbol (MIMO: per receive antenna and channel use).
        realized_snr_db: measured mean |h x|^2 over measured mean |y - h x|^2, in dB, all modulations.
            MIMO: received signal energy per data symbol and receive antenna,
            ``sum |H x_t|^2 / (n Nr)``, over the noise energy per receive antenna and channel use;
            theory ``snr_db`` + 10 log10(Nt / Ns) (``E tr(H^H H) = Nt Nr`` per channel use of Ns
            symbols: 0 dB except for ``svd`` with Nt > Nr, whose precoder gathers the energy of Nt
            antennas onto Nr streams).
        fading_draws: independent channel draws: gains (``rayleigh``, ``rician``) or matrices H
            (``mimo``), M modulations x blocks per row; one-slot links (``tdl``, whose
            per-resource-element gains within a link are correlated); ``None`` for AWGN.
        fading: ``None`` for AWGN; over the gains |h|^2 (``tdl``: |H|^2 of every resource element):
            ``mean_power``, ``power_variance``, ``k_factor`` (by moments), ``deep_fade_fraction``
            (P(|h|^2 < DEEP_FADE)). ``mimo``: over the eigenvalues λ = σ_i^2 of every H^H H
            (Wishart theory): ``eigenvalue_mean`` (n), ``eigenvalue_variance`` (m n),
            ``eigenvalue_deep_fade_fraction``; ``open_loop`` ZF adds the same three of the post-ZF
            gains ``1 / [(H^H H)^-1]_ii`` (Gamma(Nr - Nt + 1, 1)): ``zf_gain_mean``,
            ``zf_gain_variance``, ``zf_gain_deep_fade_fraction``.
        ber: per modulation name, its bit errors.
        detector: the receiver, ``zf`` or (``open_loop`` MIMO with Nr < Nt) gain-normalized ``mmse``.
        tx_antennas, rx_antennas, mimo_scheme: ``mimo`` only, else ``None``.
        tdl_model, delay_spread_ns, speed_mps: ``tdl`` only, else ``None``.
    """

    kind: str
    snr_db: float
    k_factor: float | None
    coherence_symbols: int | None
    seed: int | None
    symbols: int
    noise_variance: float
    realized_snr_db: Measured
    fading_draws: int | None
    fading: dict[str, Measured] | None
    ber: dict[str, BitErrors]
    detector: str = "zf"
    tx_antennas: int | None = None
    rx_antennas: int | None = None
    mimo_scheme: str | None = None
    tdl_model: str | None = None
    delay_spread_ns: float | None = None
    speed_mps: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Simulation:
    """One pass of uncoded symbols through the channel; row i is modulation ``modulations[i]``.

    Attributes:
        spec: the channel.
        modulations: names, keys of :data:`MODULATIONS`.
        bits: per modulation, (n * bits_per_symbol,) float32 transmitted bits.
        decided_bits: per modulation, the hard decisions, same shape.
        transmitted: (M, n) complex64 unit-energy symbols.
        channel: SISO kinds and ``tdl``: the channel output (``received`` (M, n), ``block_gains``
            (M, n_blocks), ``tdl``: (M, n) per resource element, or ``None``); ``None`` for ``mimo``.
        equalized: (M, n) complex64 zero-forcing estimates ``y / h`` (MIMO: the detector's output
            divided by its gain).
        mimo: ``mimo``: the received signal and channel state; else ``None``.
        combined: ``mimo`` ``svd``: (M, n) complex64 combined sub-channel outputs ``r_i = σ_i s_i + n_i``
            (``U^H y``) per data symbol; else ``None``.
        detector: ``zf`` or ``mmse`` (:func:`mimo_detector`).
        links: ``tdl``: independent one-slot links, all modulations; else ``None``.
    """

    spec: ChannelSpec
    modulations: tuple[str, ...]
    bits: list[torch.Tensor]
    decided_bits: list[torch.Tensor]
    transmitted: torch.Tensor
    channel: ChannelOutput | None
    equalized: torch.Tensor
    mimo: MimoChannelOutput | None = None
    combined: torch.Tensor | None = None
    detector: str = "zf"
    links: int | None = None


def _sionna_mapping():
    """Sionna's mapping module, imported on first use (a few seconds); the import reseeds
    torch's global generators, so their states are restored around it."""
    with torch.random.fork_rng():
        import sionna.phy.mapping as mapping
    return mapping


def _per_symbol(per_stream: torch.Tensor, output: MimoChannelOutput) -> torch.Tensor:
    """(B, n_blocks, Ns) per-block, per-stream figures -> (B, n) per data symbol (the layout of :mod:`.mimo`)."""
    batch, blocks, streams = per_stream.shape
    coherence = output.state.coherence_uses
    expanded = per_stream[:, :, None, :].expand(batch, blocks, coherence, streams)
    return expanded.reshape(batch, -1)[:, : output.n_symbols]


def _tdl_links(transmitted: torch.Tensor, spec: ChannelSpec, generator: torch.Generator) -> tuple[ChannelOutput, int]:
    """Send each (M, n) row as independent one-slot links through :func:`.link.transmit`; the
    received symbols and per-resource-element gains are put back as (M, n) rows."""
    rows, n = transmitted.shape
    slot = TDLConfig(spec.tdl_model, spec.delay_spread_ns, spec.speed_mps).grid_symbols
    per_row = -(-n // slot)
    links = F.pad(transmitted, (0, per_row * slot - n)).reshape(rows * per_row, slot)
    output = transmit(links, spec, generator).siso
    back = lambda t: t.reshape(rows, per_row * slot)[:, :n]  # noqa: E731
    return ChannelOutput(back(output.received), back(output.block_gains), 1, output.noise_variance), rows * per_row


def simulate(spec: ChannelSpec, symbols: int, modulations: tuple[str, ...] = tuple(MODULATIONS)) -> Simulation:
    """Send ``symbols`` random symbols of each modulation through ``spec`` and decide them.

    Bits and channel are drawn from one generator seeded with ``spec.seed`` (``tdl``: Sionna
    draws the channel from ``spec.seed``). Each modulation is one row of the batch given to the
    channel, so rows see independent gains and noise (``tdl``: each row is cut into one-slot
    links). The receiver equalizes with the true channel (perfect CSI; module docstring).
    """
    if spec.kind not in KINDS:
        raise ValueError(f"channel diagnostics cover {', '.join(KINDS)}; got {spec.kind!r}")
    spec.validate()
    mapping = _sionna_mapping()
    generator = make_generator(spec.seed)
    widths = [MODULATIONS[name].bits_per_symbol for name in modulations]
    bits = [torch.randint(0, 2, (symbols * m,), generator=generator).float() for m in widths]
    transmitted = torch.stack([mapping.Mapper("qam", m, device="cpu")(b) for m, b in zip(widths, bits)])
    channel = mimo = combined = links = None
    detector = "zf"
    if spec.kind == "mimo":
        detector = mimo_detector(spec)
        mimo = transmit(transmitted, spec, generator).mimo
        eq = mimo_receive(mimo, detector)
        if spec.mimo_scheme == "svd":  # eq.symbols = r / σ
            combined = eq.symbols * _per_symbol(mimo.state.singular_values, mimo)
        gain = eq.effective_gain  # 1 for ZF; (W H)_ii for LMMSE
        eq = EqualizedSymbols(eq.symbols / gain, torch.ones_like(gain), eq.effective_noise_variance / gain**2)
    else:
        if spec.kind == "tdl":
            channel, links = _tdl_links(transmitted, spec, generator)
        else:
            channel = apply_channel(transmitted, spec, generator)
        eq = zf_equalize(channel.received, per_symbol_gains(channel), channel.noise_variance)
    decided = []
    for row, m in enumerate(widths):
        demapper = mapping.Demapper("maxlog", "qam", m, hard_out=True, device="cpu")
        chunks = zip(eq.symbols[row].split(1 << 16), eq.effective_noise_variance[row].split(1 << 16))
        decided.append(torch.cat([demapper(y, no) for y, no in chunks]))
    return Simulation(spec, tuple(modulations), bits, decided, transmitted, channel, eq.symbols,
                      mimo, combined, detector, links)


def _energy(z: torch.Tensor) -> float:
    """Mean |z|^2 in double precision."""
    return (z.real.double() ** 2 + z.imag.double() ** 2).mean().item()


def _mimo_signal(transmitted: torch.Tensor, output: MimoChannelOutput) -> torch.Tensor:
    """(B, channel_uses, Nr) noiseless received signal ``H x_t`` (``svd``: ``H V s_t = U Σ s_t``)."""
    state = output.state
    batch, n = transmitted.shape
    blocks, coherence = state.channel.shape[1], state.coherence_uses
    streams = state.singular_values.shape[-1] if state.scheme == "svd" else state.channel.shape[-1]
    s = F.pad(transmitted, (0, blocks * coherence * streams - n)).reshape(batch, blocks, coherence, streams)
    if state.scheme == "svd":
        y = (s * state.singular_values[:, :, None, :]) @ state.combiner.transpose(-1, -2)
    else:
        y = s @ state.channel.transpose(-1, -2)
    return y.reshape(batch, blocks * coherence, -1)[:, : output.channel_uses]


def _fraction(mask: torch.Tensor) -> float:
    return mask.double().mean().item()


def _mimo_summary(sim: Simulation) -> tuple[Measured, dict[str, Measured], int]:
    """Realized SNR, fading statistics and independent matrices of a ``mimo`` simulation."""
    spec, output = sim.spec, sim.mimo
    state = output.state
    n_tx, n_rx = spec.tx_antennas, spec.rx_antennas
    signal = _mimo_signal(sim.transmitted, output)
    per_symbol = _energy(signal) * output.channel_uses / output.n_symbols  # per data symbol and receive antenna
    streams = min(n_tx, n_rx) if spec.mimo_scheme == "svd" else n_tx
    realized = Measured(10.0 * math.log10(per_symbol / _energy(output.received - signal)),
                        spec.snr_db + 10.0 * math.log10(n_tx / streams))
    h = state.channel.to(torch.complex128)
    sigma = state.singular_values if state.scheme == "svd" else torch.linalg.svdvals(h)
    eigen = sigma.double().flatten() ** 2
    m, n = min(n_tx, n_rx), max(n_tx, n_rx)
    fading = {
        "eigenvalue_mean": Measured(eigen.mean().item(), float(n)),
        "eigenvalue_variance": Measured(eigen.var().item(), float(m * n)),
        "eigenvalue_deep_fade_fraction": Measured(_fraction(eigen < DEEP_FADE),
                                                  wishart_expectation(lambda x: 1.0, n_tx, n_rx, DEEP_FADE)),
    }
    if state.scheme == "open_loop" and sim.detector == "zf":
        hh = h.conj().transpose(-1, -2)
        gain = 1.0 / torch.diagonal(torch.linalg.inv(hh @ h), dim1=-2, dim2=-1).real.flatten()
        shape = n_rx - n_tx + 1
        fading |= {
            "zf_gain_mean": Measured(gain.mean().item(), float(shape)),
            "zf_gain_variance": Measured(gain.var().item(), float(shape)),
            "zf_gain_deep_fade_fraction": Measured(_fraction(gain < DEEP_FADE), float(special.gammainc(shape, DEEP_FADE))),
        }
    return realized, fading, state.channel.shape[0] * state.channel.shape[1]


def summarize(sim: Simulation) -> ChannelStats:
    """Measured realized SNR, fading statistics and BER of ``sim`` beside their theory."""
    spec, channel = sim.spec, sim.channel
    k = spec.k_factor if spec.kind == "rician" else tdl_k_factor(spec.tdl_model) if spec.kind == "tdl" else None
    fading = draws = coherence = None
    if sim.mimo is not None:
        realized, fading, draws = _mimo_summary(sim)
        coherence = sim.mimo.state.coherence_uses
    else:
        signal = per_symbol_gains(channel) * sim.transmitted
        realized = Measured(10.0 * math.log10(_energy(signal) / _energy(channel.received - signal)), spec.snr_db)
    if channel is not None and channel.block_gains is not None:
        k_fading = k or 0.0
        los = 1.0 if math.isinf(k_fading) else k_fading / (k_fading + 1.0)  # line-of-sight share of E|h|^2
        power = (channel.block_gains.real.double() ** 2 + channel.block_gains.imag.double() ** 2).flatten()
        fading = {
            "mean_power": Measured(power.mean().item(), 1.0),
            "power_variance": Measured(power.var().item(), 1.0 - los**2),  # = (2K + 1) / (K + 1)^2
            "k_factor": Measured(estimate_k_factor(power), k_fading),
            "deep_fade_fraction": Measured(_fraction(power < DEEP_FADE), 0.0 if math.isinf(k_fading)
                                           else rician_expectation(lambda x: 1.0, k_fading, DEEP_FADE)),
        }
        draws = sim.links if spec.kind == "tdl" else power.numel()
        coherence = None if spec.kind == "tdl" else channel.coherence_symbols
    ber = {}
    for name, bits, decided in zip(sim.modulations, sim.bits, sim.decided_bits):
        errors = int((bits != decided).sum())
        ber[name] = BitErrors(bits.numel(), errors, Measured(errors / bits.numel(), ber_theory(name, spec)))
    mimo, tdl = spec.kind == "mimo", spec.kind == "tdl"
    return ChannelStats(
        kind=spec.kind, snr_db=spec.snr_db, k_factor=k if spec.kind in ("rician", "tdl") else None,
        coherence_symbols=coherence, seed=spec.seed, symbols=sim.transmitted.shape[1],
        noise_variance=sim.mimo.state.noise_variance if mimo else channel.noise_variance,
        realized_snr_db=realized, fading_draws=draws, fading=fading, ber=ber, detector=sim.detector,
        tx_antennas=spec.tx_antennas if mimo else None, rx_antennas=spec.rx_antennas if mimo else None,
        mimo_scheme=spec.mimo_scheme if mimo else None, tdl_model=spec.tdl_model if tdl else None,
        delay_spread_ns=spec.delay_spread_ns if tdl else None, speed_mps=spec.speed_mps if tdl else None)


def describe_channel(spec: ChannelSpec, detector: str = "zf") -> str:
    """A short description of the channel and the receiver, for titles."""
    return channel_kind(spec.kind).describe(spec, detector)


def plot_constellations(sim: Simulation, path: str | Path, max_points: int = 3000) -> Path:
    """Draw the first ``max_points`` symbols of each modulation received (``y = h x + n``; MIMO
    ``svd``: combined ``r = U^H y = σ s + n``) and after zero-forcing (``y / h``, ``r / σ``; MIMO
    ``open_loop``: the detector output only), ideal points in red, to a PNG: one row per modulation,
    one panel per stage, equal axes clipped to the 99th percentile of |y|."""
    from matplotlib.figure import Figure

    mapping = _sionna_mapping()
    spec = sim.spec
    coherence = sim.mimo.state.coherence_uses if sim.mimo is not None else getattr(sim.channel, "coherence_symbols", 0)
    fading = {"awgn": "", "rayleigh": f", coherence {coherence}",
              "rician": f", K {spec.k_factor:g}, coherence {coherence}",
              "mimo": f", coherence {coherence} channel uses", "tdl": ""}[spec.kind]
    if sim.mimo is not None:
        before = None if sim.combined is None else (sim.combined, "combined r = U^H y = σ s + n")
        after = "after ZF r / σ" if spec.mimo_scheme == "svd" else {
            "zf": "after ZF detection", "mmse": "after LMMSE detection / gain"}[sim.detector]
    else:
        before = (sim.channel.received, "received y = h x + n")
        after = "after zero-forcing y / h"
    stages = ([before] if before else []) + [(sim.equalized, after)]
    fig = Figure(figsize=(4.5 * len(stages), 4.5 * len(sim.modulations)), layout="constrained")
    title = f"{describe_channel(spec, sim.detector)}{fading}, Es/N0 {spec.snr_db:g} dB"
    fig.suptitle(title if len(stages) > 1 else title.replace(", ", "\n", 1))
    axes = fig.subplots(len(sim.modulations), len(stages), squeeze=False)
    for row, name in enumerate(sim.modulations):
        ideal = mapping.Constellation("qam", MODULATIONS[name].bits_per_symbol, device="cpu")().numpy()
        for ax, (points, label) in zip(axes[row], stages):
            points = points[row, :max_points].numpy()
            limit = max(1.5, 1.1 * float(np.quantile(np.abs(points), 0.99)))
            ax.scatter(points.real, points.imag, s=2, alpha=0.4)
            ax.scatter(ideal.real, ideal.imag, s=30, c="red", marker="x")
            ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xlabel="in-phase",
                   ylabel="quadrature", title=f"{name}, {label}")
            ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)
    return Path(path)
