"""Channel diagnostics: uncoded QPSK and 16-QAM through :func:`.models.apply_channel`,
measured beside closed-form theory.

Chain: random bits -> Gray-labelled unit-energy QAM (Sionna ``Mapper``) -> ``apply_channel``
-> zero-forcing with the true gains, ``y / h`` -> hard decisions (Sionna max-log ``Demapper``,
which with equal priors is the nearest-point decision) -> bit errors.

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import integrate, special

from .equalizers import per_symbol_gains, zf_equalize
from .models import ChannelOutput, ChannelSpec, apply_channel, make_generator

KINDS = ("awgn", "rayleigh", "rician")
"""The channel kinds diagnosed: the flat SISO ones of :func:`.models.apply_channel`."""

DEEP_FADE = 0.1
"""|h|^2 below which a gain counts as a deep fade (linear; -10 dB)."""


@dataclass(frozen=True)
class Modulation:
    """A Gray-labelled square QAM with exact AWGN bit-error rate ``sum_i w_i Q(a_i sqrt(Es/N0))``.

    Attributes:
        bits_per_symbol: bits per complex symbol.
        ber_terms: the ``(w_i, a_i)`` pairs.
    """

    bits_per_symbol: int
    ber_terms: tuple[tuple[float, float], ...]


MODULATIONS = {
    "qpsk": Modulation(2, ((1.0, 1.0),)),
    "16qam": Modulation(4, ((0.75, 1 / math.sqrt(5)), (0.5, 3 / math.sqrt(5)), (-0.25, 5 / math.sqrt(5)))),
}


def q_function(x: float) -> float:
    """Gaussian tail ``Q(x) = P(N(0, 1) > x)``."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ber_awgn(modulation: str, snr_db: float) -> float:
    """Exact uncoded BER of Gray ``modulation`` over AWGN at Es/N0 = ``snr_db``."""
    g = 10.0 ** (snr_db / 10.0)
    return sum(w * q_function(a * math.sqrt(g)) for w, a in MODULATIONS[modulation].ber_terms)


def ber_rayleigh(modulation: str, snr_db: float) -> float:
    """Closed-form uncoded BER over Rayleigh fading (E|h|^2 = 1, perfect CSI) at average Es/N0 = ``snr_db``."""
    g = 10.0 ** (snr_db / 10.0)
    faded_q = lambda c: 0.5 * (1.0 - math.sqrt(c / (1.0 + c)))  # E[Q(sqrt(2 c x))], x ~ Exp(1)  # noqa: E731
    return sum(w * faded_q(a * a * g / 2.0) for w, a in MODULATIONS[modulation].ber_terms)


def rician_power_pdf(x: float, k_factor: float) -> float:
    """pdf of ``|h|^2`` for Rician fading with K = ``k_factor`` and E|h|^2 = 1 (K = 0: Exp(1))."""
    z = 2.0 * math.sqrt(k_factor * (k_factor + 1.0) * x)
    return (k_factor + 1.0) * math.exp(z - k_factor - (k_factor + 1.0) * x) * special.i0e(z)


def _rician_expectation(f, k_factor: float, upper: float = math.inf) -> float:
    """``E[f(|h|^2); |h|^2 < upper]`` under Rician K, by adaptive quadrature split at the mean 1."""
    integrand = lambda x: f(x) * rician_power_pdf(x, k_factor)  # noqa: E731
    pieces = [(0.0, min(1.0, upper))] + ([(1.0, upper)] if upper > 1.0 else [])
    return sum(integrate.quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-9, limit=200)[0] for lo, hi in pieces)


def ber_rician(modulation: str, snr_db: float, k_factor: float) -> float:
    """Uncoded BER over Rician K fading (perfect CSI) at average Es/N0 = ``snr_db``, by integrating
    the AWGN BER at Es/N0 * |h|^2 over the pdf of |h|^2; K = inf is AWGN."""
    if math.isinf(k_factor):
        return ber_awgn(modulation, snr_db)
    g = 10.0 ** (snr_db / 10.0)
    terms = MODULATIONS[modulation].ber_terms
    return _rician_expectation(lambda x: sum(w * q_function(a * math.sqrt(g * x)) for w, a in terms), k_factor)


def ber_theory(modulation: str, spec: ChannelSpec) -> float:
    """Uncoded BER of ``modulation`` over the channel of ``spec`` (independent of the coherence length)."""
    if spec.kind == "awgn":
        return ber_awgn(modulation, spec.snr_db)
    if spec.kind == "rayleigh":
        return ber_rayleigh(modulation, spec.snr_db)
    if spec.kind == "rician":
        return ber_rician(modulation, spec.snr_db, spec.k_factor)
    raise ValueError(f"no BER theory for channel kind {spec.kind!r}; diagnosed kinds: {', '.join(KINDS)}")


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
    """A figure measured on the simulated symbols beside its theoretical value."""

    measured: float
    theory: float


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
        k_factor: Rician K (``rician`` only, else ``None``).
        coherence_symbols: block-fading length in symbols (fading kinds only, else ``None``).
        seed: seed of the bits and channel draws.
        symbols: complex symbols per modulation.
        noise_variance: N0 per complex symbol.
        realized_snr_db: measured mean |h x|^2 over measured mean |y - h x|^2, in dB, all modulations.
        fading_draws: independent gains drawn, M modulations x blocks per row (``None`` for AWGN).
        fading: ``mean_power`` (E|h|^2), ``power_variance`` (Var |h|^2), ``k_factor`` (by moments),
            ``deep_fade_fraction`` (P(|h|^2 < DEEP_FADE)), over those gains; ``None`` for AWGN.
        ber: per modulation name, its bit errors.
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
        channel: the channel output (``received`` (M, n), ``block_gains`` (M, n_blocks) or ``None``).
        equalized: (M, n) complex64 zero-forcing estimates ``y / h``.
    """

    spec: ChannelSpec
    modulations: tuple[str, ...]
    bits: list[torch.Tensor]
    decided_bits: list[torch.Tensor]
    transmitted: torch.Tensor
    channel: ChannelOutput
    equalized: torch.Tensor


def _sionna_mapping():
    """Sionna's mapping module, imported on first use (a few seconds); the import reseeds
    torch's global generators, so their states are restored around it."""
    with torch.random.fork_rng():
        import sionna.phy.mapping as mapping
    return mapping


def simulate(spec: ChannelSpec, symbols: int, modulations: tuple[str, ...] = tuple(MODULATIONS)) -> Simulation:
    """Send ``symbols`` random symbols of each modulation through ``spec`` and decide them.

    Bits and channel are drawn from one generator seeded with ``spec.seed``. Each modulation is
    one row of the batch given to ``apply_channel``, so rows see independent gains and noise.
    The receiver equalizes with the true gains (perfect CSI). ``spec.kind`` must be in :data:`KINDS`.
    """
    if spec.kind not in KINDS:
        raise ValueError(f"channel diagnostics cover {', '.join(KINDS)}; got {spec.kind!r}")
    spec.validate()
    mapping = _sionna_mapping()
    generator = make_generator(spec.seed)
    widths = [MODULATIONS[name].bits_per_symbol for name in modulations]
    bits = [torch.randint(0, 2, (symbols * m,), generator=generator).float() for m in widths]
    transmitted = torch.stack([mapping.Mapper("qam", m, device="cpu")(b) for m, b in zip(widths, bits)])
    channel = apply_channel(transmitted, spec, generator)
    zf = zf_equalize(channel.received, per_symbol_gains(channel), channel.noise_variance)
    decided = []
    for row, m in enumerate(widths):
        demapper = mapping.Demapper("maxlog", "qam", m, hard_out=True, device="cpu")
        chunks = zip(zf.symbols[row].split(1 << 16), zf.effective_noise_variance[row].split(1 << 16))
        decided.append(torch.cat([demapper(y, no) for y, no in chunks]))
    return Simulation(spec, tuple(modulations), bits, decided, transmitted, channel, zf.symbols)


def summarize(sim: Simulation) -> ChannelStats:
    """Measured realized SNR, fading statistics and BER of ``sim`` beside their theory."""
    spec, channel = sim.spec, sim.channel
    signal = per_symbol_gains(channel) * sim.transmitted
    energy = lambda z: (z.real.double() ** 2 + z.imag.double() ** 2).mean().item()  # noqa: E731
    realized = Measured(10.0 * math.log10(energy(signal) / energy(channel.received - signal)), spec.snr_db)
    fading = None
    if channel.block_gains is not None:
        k = spec.k_factor if spec.kind == "rician" else 0.0
        los = 1.0 if math.isinf(k) else k / (k + 1.0)  # line-of-sight share of E|h|^2
        power = (channel.block_gains.real.double() ** 2 + channel.block_gains.imag.double() ** 2).flatten()
        fading = {
            "mean_power": Measured(power.mean().item(), 1.0),
            "power_variance": Measured(power.var().item(), 1.0 - los**2),  # = (2K + 1) / (K + 1)^2
            "k_factor": Measured(estimate_k_factor(power), k),
            "deep_fade_fraction": Measured((power < DEEP_FADE).double().mean().item(),
                                           0.0 if math.isinf(k) else _rician_expectation(lambda x: 1.0, k, DEEP_FADE)),
        }
    ber = {}
    for name, bits, decided in zip(sim.modulations, sim.bits, sim.decided_bits):
        errors = int((bits != decided).sum())
        ber[name] = BitErrors(bits.numel(), errors, Measured(errors / bits.numel(), ber_theory(name, spec)))
    return ChannelStats(
        kind=spec.kind, snr_db=spec.snr_db,
        k_factor=spec.k_factor if spec.kind == "rician" else None,
        coherence_symbols=channel.coherence_symbols if channel.block_gains is not None else None,
        seed=spec.seed, symbols=sim.transmitted.shape[1], noise_variance=channel.noise_variance,
        realized_snr_db=realized, fading_draws=None if fading is None else power.numel(), fading=fading, ber=ber)


def plot_constellations(sim: Simulation, path: str | Path, max_points: int = 3000) -> Path:
    """Draw the first ``max_points`` symbols of each modulation received (``y = h x + n``) and
    after zero-forcing (``y / h``), ideal points in red, to a PNG: one row per modulation,
    two panels, equal axes clipped to the 99th percentile of |y|."""
    from matplotlib.figure import Figure

    mapping = _sionna_mapping()
    spec = sim.spec
    fading = {"awgn": "", "rayleigh": f", coherence {sim.channel.coherence_symbols}",
              "rician": f", K {spec.k_factor:g}, coherence {sim.channel.coherence_symbols}"}[spec.kind]
    fig = Figure(figsize=(9, 4.5 * len(sim.modulations)), layout="constrained")
    fig.suptitle(f"{spec.kind} channel{fading}, Es/N0 {spec.snr_db:g} dB")
    axes = fig.subplots(len(sim.modulations), 2, squeeze=False)
    for row, name in enumerate(sim.modulations):
        ideal = mapping.Constellation("qam", MODULATIONS[name].bits_per_symbol, device="cpu")().numpy()
        for ax, points, label in ((axes[row, 0], sim.channel.received[row], "received y = h x + n"),
                                  (axes[row, 1], sim.equalized[row], "after zero-forcing y / h")):
            points = points[:max_points].numpy()
            limit = max(1.5, 1.1 * float(np.quantile(np.abs(points), 0.99)))
            ax.scatter(points.real, points.imag, s=2, alpha=0.4)
            ax.scatter(ideal.real, ideal.imag, s=30, c="red", marker="x")
            ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xlabel="in-phase",
                   ylabel="quadrature", title=f"{name}, {label}")
            ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return Path(path)
