"""Nt x Nr block-fading Rayleigh MIMO channel with SVD precoding or open-loop detection.

Transmit side (:func:`mimo_channel`, run by the channel emulator) and receive side
(:func:`mimo_receive`, run by the receiver) are separate pure functions; the first returns
the received signal and the channel state the receiver needs (:class:`MimoState`).

Layout: the (B, n) symbol stream is laid onto ``Ns`` spatial streams, symbol ``k`` in
channel use ``k // Ns`` on stream ``k % Ns``; the tail of the last channel use is
zero-padded, so an image spends ``ceil(n / Ns)`` channel uses instead of SISO's ``n``.
One ``H`` (Nr x Nt, i.i.d. CN(0, 1) entries) holds for ``coherence_uses`` consecutive
channel uses (the last block may be shorter); batch rows are independent links.

Schemes (:data:`MIMO_SCHEMES`):

* ``svd``: CSI at the transmitter (paper 001 eq. 23-28). Per block ``H = U Σ V^H``
  (reduced SVD, ``Ns = min(Nt, Nr)`` streams), the transmitter sends ``x = V s`` and the
  receiver combines ``r = U^H y = Σ s + U^H n``: decoupled sub-channels
  ``r_i = σ_i s_i + n_i`` with SNR ``σ_i^2 / N0`` (noise ``σ/σ_i`` in the diffusion view of
  eq. 29). A scalar equalizer of :mod:`.equalizers` then runs per sub-channel. ``V`` is fed
  back from the receiver once per coherence block; the emulator applies it unquantized and
  :func:`feedback_cost` states what that feedback costs.
* ``open_loop``: no precoding, ``Ns = Nt`` streams, one per transmit antenna; the receiver
  applies ``W = (H^H H + N0 I)^-1 H^H`` (LMMSE, paper 003 eq. 17) or ``(H^H H)^-1 H^H``
  (ZF, needs Nr >= Nt). Per stream the output is ``x_hat_i = g_i s_i + w_i`` with gain
  ``g_i = (W H)_ii`` and noise-plus-interference variance
  ``sum_{j != i} |(W H)_ij|^2 + N0 ||W_i||^2``. (Zero-padded tail symbols carry no energy,
  so the interference figure is an upper bound in the last channel use only.)

SNR convention, the SISO one of :mod:`.models` per data symbol: ``snr_db`` is Es/N0 per
complex data symbol, every data symbol is sent with unit energy (``E|s_i|^2 = 1``) and
every receive antenna adds ``CN(0, N0)`` noise, ``N0 = 10 ** (-snr_db / 10)``. A channel
use then carries ``Ns`` symbols and total transmit energy ``Ns`` summed over the antennas
(``||V s||^2 = ||s||^2``), every receive antenna sees mean signal energy ``Nt`` per
channel use, and an image costs the same energy ``n * Es`` over any antenna configuration
as over SISO. (For total transmit energy 1 per channel use, pass ``snr_db - 10 log10(Ns)``.)

1 x 1 ``open_loop`` is the SISO Rayleigh channel of :func:`.flat.apply_channel` with
``coherence_symbols = coherence_uses``: same seed, same draws (noise first, then H).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base import ChannelKind, ChannelOption, Transmission, register_channel_kind
from .detection import linear_detect
from .equalizers import EQUALIZERS, EqualizedSymbols
from .flat import COHERENCE
from .models import complex_normal, noise_variance
from .spec import ChannelSpec
from .theory import ber_gamma, ber_wishart
from ..phy.symbols import pack_complex, unpack_complex

MIMO_SCHEMES = ("svd", "open_loop")
MAX_ANTENNAS = 64
"""Antennas at either end at most (channel matrices of Nr x Nt per block are allocated before sending)."""

ANTENNAS = ChannelOption("--antennas", ("tx_antennas", "rx_antennas"), int,
                         "transmit and receive antennas NT NR (mu_mimo: NR only, single-antenna users)",
                         metavar="N")


@dataclass(frozen=True)
class MimoSpec:
    """What a user asks the MIMO channel emulator for.

    Attributes:
        n_tx: transmit antennas Nt.
        n_rx: receive antennas Nr.
        snr_db: Es/N0 per complex data symbol, dB (module docstring).
        scheme: one of :data:`MIMO_SCHEMES`.
        coherence_uses: block-fading length in channel uses: one H per block.
        seed: seed of the channel's random draws; ``None`` draws fresh randomness.
    """

    n_tx: int = 2
    n_rx: int = 2
    snr_db: float = 10.0
    scheme: str = "svd"
    coherence_uses: int = 64
    seed: int | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` with a message a user can act on."""
        if self.scheme not in MIMO_SCHEMES:
            raise ValueError(f"unknown MIMO scheme {self.scheme!r}; choose one of {', '.join(MIMO_SCHEMES)}")
        if not (1 <= self.n_tx <= MAX_ANTENNAS and 1 <= self.n_rx <= MAX_ANTENNAS):
            raise ValueError(f"antenna counts must be 1 to {MAX_ANTENNAS}, got n_tx={self.n_tx}, n_rx={self.n_rx}")
        if not math.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be a finite number of dB, got {self.snr_db}")
        if self.coherence_uses < 1:
            raise ValueError(f"coherence_uses must be >= 1, got {self.coherence_uses}")

    @property
    def n_streams(self) -> int:
        """Spatial streams Ns: ``min(Nt, Nr)`` for ``svd``, ``Nt`` for ``open_loop``."""
        return min(self.n_tx, self.n_rx) if self.scheme == "svd" else self.n_tx


@dataclass(frozen=True)
class MimoLayout:
    """How ``n_symbols`` data symbols occupy the channel under a :class:`MimoSpec`.

    Attributes:
        n_symbols: data symbols per image.
        n_streams: spatial streams Ns.
        channel_uses: ``ceil(n_symbols / Ns)``, channel uses spent per image.
        coherence_uses: channel uses per block, ``min(spec.coherence_uses, channel_uses)``.
        n_blocks: coherence blocks per image (one H each).
    """

    n_symbols: int
    n_streams: int
    channel_uses: int
    coherence_uses: int
    n_blocks: int


def mimo_layout(spec: MimoSpec, n_symbols: int) -> MimoLayout:
    """Channel uses and coherence blocks of an image of ``n_symbols`` complex symbols."""
    streams = spec.n_streams
    uses = -(-n_symbols // streams)
    coherence = min(spec.coherence_uses, uses)
    return MimoLayout(n_symbols, streams, uses, coherence, -(-uses // coherence))


@dataclass(frozen=True)
class FeedbackCost:
    """CSI feedback the ``svd`` scheme needs per image (zero for ``open_loop``).

    Attributes:
        n_blocks: coherence blocks per image; V is fed back once per block.
        complex_per_block: complex entries of V (Nt x Ns) fed back per block.
        bits_per_real: quantization of each real and imaginary part, bits.
    """

    n_blocks: int
    complex_per_block: int
    bits_per_real: int

    @property
    def bits_per_block(self) -> int:
        """Feedback bits per coherence block."""
        return 2 * self.bits_per_real * self.complex_per_block

    @property
    def total_bits(self) -> int:
        """Feedback bits per image."""
        return self.n_blocks * self.bits_per_block


def feedback_cost(spec: MimoSpec, n_symbols: int, bits_per_real: int = 32) -> FeedbackCost:
    """Feedback of V per image of ``n_symbols`` symbols.

    Every entry of the Nt x Ns matrix V is fed back, real and imaginary parts at
    ``bits_per_real`` bits each; the default 32 is the float32 V the emulator applies.
    """
    layout = mimo_layout(spec, n_symbols)
    entries = spec.n_tx * layout.n_streams if spec.scheme == "svd" else 0
    return FeedbackCost(layout.n_blocks, entries, bits_per_real)


@dataclass
class MimoState:
    """Channel state the receiver is given (perfect CSI).

    Attributes:
        scheme: the :data:`MIMO_SCHEMES` entry used at the transmitter.
        channel: (B, n_blocks, Nr, Nt) complex64 H of every coherence block; the
            ``open_loop`` receiver uses it.
        combiner: (B, n_blocks, Nr, Ns) complex64 U of every block (``svd``; else ``None``),
            passed rather than recomputed so that it matches the V applied at the transmitter.
        singular_values: (B, n_blocks, Ns) float32 σ_i in descending order (``svd``; else ``None``).
        coherence_uses: channel uses per block (the last block may be shorter).
        noise_variance: N0, complex noise variance per receive antenna and channel use.
    """

    scheme: str
    channel: torch.Tensor
    combiner: torch.Tensor | None
    singular_values: torch.Tensor | None
    coherence_uses: int
    noise_variance: float


@dataclass
class MimoChannelOutput:
    """What the channel emulator hands to the receiver.

    Attributes:
        received: (B, channel_uses, Nr) complex64 received signal, ``y_t = H x_t + n_t``.
        state: the receiver's channel state.
        n_symbols: data symbols per image, n.
    """

    received: torch.Tensor
    state: MimoState
    n_symbols: int

    @property
    def channel_uses(self) -> int:
        """Channel uses spent per image, ``ceil(n / Ns)``."""
        return self.received.shape[1]


def mimo_channel(symbols: torch.Tensor, spec: MimoSpec, generator: torch.Generator | None = None) -> MimoChannelOutput:
    """Send (B, n) complex symbols of unit mean energy over the MIMO channel of ``spec``.

    Draws the (B, channel_uses, Nr) noise, then H per block; for ``svd`` precodes every
    block with its V. Differentiable in ``symbols``.
    """
    batch, n = symbols.shape
    layout = mimo_layout(spec, n)
    blocks, coherence, streams = layout.n_blocks, layout.coherence_uses, layout.n_streams
    n0 = noise_variance(spec.snr_db)
    noise = complex_normal((batch, layout.channel_uses, spec.n_rx), n0, generator, symbols.device)
    h = complex_normal((batch, blocks, spec.n_rx, spec.n_tx), 1.0, generator, symbols.device)
    s = F.pad(symbols, (0, blocks * coherence * streams - n)).reshape(batch, blocks, coherence, streams)
    if spec.scheme == "svd":
        u, sigma, vh = torch.linalg.svd(h, full_matrices=False)
        x = s @ vh.conj()  # row form of x_t = V s_t
    else:
        u = sigma = None
        x = s
    y = (x @ h.transpose(-1, -2)).reshape(batch, blocks * coherence, spec.n_rx)
    state = MimoState(spec.scheme, h, u, sigma, coherence, n0)
    return MimoChannelOutput(y[:, : layout.channel_uses] + noise, state, n)


def mimo_receive(output: MimoChannelOutput, equalizer: str = "mmse") -> EqualizedSymbols:
    """Recover the (B, n) symbol stream, in its original order, from ``output``.

    ``equalizer`` is ``mmse`` or ``zf``: for ``svd`` the scalar equalizer applied to each
    combined sub-channel ``r_i = σ_i s_i + n_i``; for ``open_loop`` the LMMSE or ZF matrix.
    Returns per-symbol estimates, real gains and noise(-plus-interference) variances.
    """
    if equalizer not in EQUALIZERS:
        raise ValueError(f"unknown equalizer {equalizer!r}; choose one of {', '.join(EQUALIZERS)}")
    state, n = output.state, output.n_symbols
    batch, uses, n_rx = output.received.shape
    blocks, coherence = state.channel.shape[1], state.coherence_uses
    y = F.pad(output.received, (0, 0, 0, blocks * coherence - uses)).reshape(batch, blocks, coherence, n_rx)
    n0 = state.noise_variance
    if state.scheme == "svd":
        r = y @ state.combiner.conj()  # row form of r_t = U^H y_t
        gains = state.singular_values[:, :, None, :].expand_as(r).to(r.dtype)
        eq = EQUALIZERS[equalizer](r, gains, n0)
        symbols, gain, var = eq.symbols, eq.effective_gain, eq.effective_noise_variance
    else:
        symbols, gain, var = linear_detect(y, state.channel, n0 if equalizer == "mmse" else 0.0, n0)
        gain, var = (t[:, :, None, :].expand(symbols.shape) for t in (gain, var))
    return EqualizedSymbols(*(t.reshape(batch, -1)[:, :n] for t in (symbols, gain, var)))


def mimo_spec(spec: ChannelSpec) -> MimoSpec:
    """The :class:`MimoSpec` of a ``mimo`` :class:`~.spec.ChannelSpec`."""
    return MimoSpec(spec.tx_antennas, spec.rx_antennas, spec.snr_db, spec.mimo_scheme, spec.coherence_symbols, spec.seed)


def mimo_detector(spec: ChannelSpec) -> str:
    """The :func:`mimo_receive` equalizer the diagnostics use for a ``mimo`` spec: ``zf``
    (per sub-channel for ``svd``; ZF detection for ``open_loop`` with Nr >= Nt), else ``mmse``."""
    return "zf" if spec.mimo_scheme == "svd" or spec.rx_antennas >= spec.tx_antennas else "mmse"


@register_channel_kind("mimo")
class MIMO(ChannelKind):
    """``mimo``: Nt x Nr block-fading Rayleigh, ``svd`` or ``open_loop`` (module docstring).
    Inputs: (B, n) complex64 symbols. Outputs: (B, ceil(n / Ns), Nr) received and the
    :class:`MimoState`; the receiver's (B, n) equalized symbols in the original order."""

    options = (ANTENNAS,
               ChannelOption("--mimo-scheme", ("mimo_scheme",), str,
                             "svd: precoding with CSI at the transmitter; open_loop: no precoding, LMMSE receiver", choices=MIMO_SCHEMES),
               COHERENCE)

    def validate(self, spec: ChannelSpec) -> None:
        super().validate(spec)
        mimo_spec(spec).validate()

    def transmit(self, symbols: torch.Tensor, spec: ChannelSpec, generator: torch.Generator | None) -> Transmission:
        """SVD precoding or open loop; the feedback of V is counted in ``feedback_bits``."""
        mspec = mimo_spec(spec)
        output = mimo_channel(symbols, mspec, generator)
        return Transmission(None, output, None, output.channel_uses, feedback_cost(mspec, symbols.shape[1]).total_bits)

    def receive(self, transmission: Transmission, spec: ChannelSpec) -> EqualizedSymbols:
        """U^H combining + MMSE per sub-channel (``svd``) or LMMSE detection (``open_loop``)."""
        return mimo_receive(transmission.mimo, "mmse")

    def to_wire(self, transmission: Transmission) -> tuple[torch.Tensor, dict]:
        mimo = transmission.mimo.state
        state = {"channel_uses": transmission.channel_uses, "feedback_bits": transmission.feedback_bits,
                 "noise_variance": mimo.noise_variance, "coherence_symbols": mimo.coherence_uses,
                 "num_blocks": mimo.channel.shape[1], "rx_antennas": mimo.channel.shape[-2],
                 "tx_antennas": mimo.channel.shape[-1], "channel_matrices": pack_complex(mimo.channel[0].flatten())}
        if mimo.combiner is not None:
            state |= {"combiners": pack_complex(mimo.combiner[0].flatten()),
                      "singular_values": mimo.singular_values[0].float().numpy().astype("<f4").tobytes()}
        return transmission.mimo.received[0].flatten(), state

    def from_wire(self, samples: bytes, n_symbols: int, state, spec: ChannelSpec) -> Transmission:
        nb, nr, nt = state.num_blocks, state.rx_antennas, state.tx_antennas
        if (nr, nt) != (spec.rx_antennas, spec.tx_antennas):
            raise ValueError(f"the MIMO state is of {nr}x{nt} antennas, the channel spec of "
                             f"{spec.rx_antennas}x{spec.tx_antennas}")
        scheme = spec.mimo_scheme
        streams = min(nt, nr) if scheme == "svd" else nt
        uses = -(-n_symbols // streams)
        coherence = min(state.coherence_symbols, uses)  # one block covers the frame at most
        if n_symbols < 1 or coherence < 1 or nb != -(-uses // coherence):
            raise ValueError(f"the MIMO state's {nb} blocks of {state.coherence_symbols} channel uses do not cover "
                             f"{n_symbols} symbols")
        h = unpack_complex(state.channel_matrices, nb * nr * nt).reshape(1, nb, nr, nt)
        u = sigma = None
        if scheme == "svd":
            u = unpack_complex(state.combiners, nb * nr * streams).reshape(1, nb, nr, streams)
            if len(state.singular_values) != 4 * nb * streams:
                raise ValueError("singular values do not match the MIMO state's size")
            sigma = torch.from_numpy(np.frombuffer(state.singular_values, dtype="<f4").copy()).reshape(1, nb, streams)
        received = unpack_complex(samples, uses * nr).reshape(1, uses, nr)
        mimo_state = MimoState(scheme, h, u, sigma, coherence, state.noise_variance)
        return Transmission(None, MimoChannelOutput(received, mimo_state, n_symbols), None, state.channel_uses,
                            state.feedback_bits)

    def ber_theory(self, modulation: str, spec: ChannelSpec) -> float | None:
        """Wishart-averaged BER (``svd``), the Gamma(Nr - Nt + 1) one of ZF detection, else none."""
        if spec.mimo_scheme == "svd":
            return ber_wishart(modulation, spec.snr_db, spec.tx_antennas, spec.rx_antennas)
        if mimo_detector(spec) == "zf":
            return ber_gamma(modulation, spec.snr_db, spec.rx_antennas - spec.tx_antennas + 1)
        return None

    def describe(self, spec: ChannelSpec, detector: str = "zf") -> str:
        receiver = {"svd": "ZF per sub-channel", "zf": "ZF detection", "mmse": "LMMSE detection / gain"}
        return (f"mimo {spec.tx_antennas}x{spec.rx_antennas} {spec.mimo_scheme} "
                f"({receiver['svd' if spec.mimo_scheme == 'svd' else detector]})")
