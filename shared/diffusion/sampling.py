"""Time schedule and samplers of the VE latent diffusion (paper 003 sec. IV-B/C; EDM).

Shapes: a state ``x`` is (B, ...) real (the latent layout of the symbols), ``profile`` the
same shape (r_i of :mod:`.channel_state`, noise ``sigma_i = r_i t``), ``t`` (B,). A denoiser is
any callable ``D(x, sigma, t) -> x0 estimate`` (B, ...).

- :func:`karras_times`: ``t_n = (t_1^(1/rho) + (n-1)/(N-1) (T^(1/rho) - t_1^(1/rho)))^rho``,
  n = 1..N (paper 003 sec. IV-B; N = 100, t_1 = 0.002, T = 2, rho = 7 by default).
- :func:`channel_schedule`: the steps of that schedule below the channel's t_m, starting at
  t_m itself and ending at 0: the reverse process starts where the channel left off, so the
  number of steps (and of network evaluations) grows as the SNR drops.
- :func:`heun_sample`: the deterministic 2nd-order ODE sampler of EDM (Alg. 1) on
  ``dx/dt = (x - D(x; r t)) / t``: the teacher.
- :func:`consistency_sample`: one evaluation of a consistency model at t_m, then ``s - 1``
  re-noise / denoise rounds on a subsequence of the schedule (paper 003 Alg. 4, lines 5-11).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def karras_times(steps: int, t_min: float, t_max: float, rho: float) -> torch.Tensor:
    """(steps,) float64 times ascending, t_1 = t_min ... t_N = t_max."""
    if steps < 2:
        raise ValueError(f"a schedule needs at least 2 steps, got {steps}")
    fraction = torch.linspace(0, 1, steps, dtype=torch.float64)
    return (t_min ** (1 / rho) + fraction * (t_max ** (1 / rho) - t_min ** (1 / rho))) ** rho


def channel_schedule(t_m: float, times: torch.Tensor) -> torch.Tensor:
    """Descending times ``[min(t_m, T), t_j, ..., t_1, 0]``: the schedule's times strictly below
    t_m (float64 (m + 1,)). A t_m at or below t_1 gives ``[t_m, 0]``: one denoising step."""
    start = min(float(t_m), float(times[-1]))
    below = times[times < start * (1 - 1e-9)].flip(0)
    return torch.cat([torch.tensor([start], dtype=torch.float64), below, torch.zeros(1, dtype=torch.float64)])


def heun_nfe(schedule: torch.Tensor) -> int:
    """Network evaluations :func:`heun_sample` spends on a :func:`channel_schedule`: two per
    step, one for the last (Euler to t = 0)."""
    return 2 * (schedule.numel() - 1) - 1


def heun_step(denoiser: Denoiser, x: torch.Tensor, profile: torch.Tensor, t_now: torch.Tensor,
              t_next: torch.Tensor) -> torch.Tensor:
    """One step of the probability-flow ODE from ``t_now`` to ``t_next`` (each (B,), one time per
    image): Heun's method when every ``t_next`` is positive, Euler when they are all 0 (the last
    step, which lands on the denoiser's estimate)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    now, nxt = t_now.view(shape), t_next.view(shape)
    slope = (x - denoiser(x, profile * now, t_now)) / now
    x_next = x + (nxt - now) * slope
    if bool((t_next > 0).all()):
        slope_next = (x_next - denoiser(x_next, profile * nxt, t_next)) / nxt
        x_next = x + (nxt - now) * 0.5 * (slope + slope_next)
    return x_next


def heun_sample(denoiser: Denoiser, x: torch.Tensor, profile: torch.Tensor, schedule: torch.Tensor) -> torch.Tensor:
    """Integrate the probability-flow ODE from ``schedule[0]`` (the state's time) to 0 with
    :func:`heun_step`, for images sharing one schedule."""
    b = x.shape[0]
    for t_now, t_next in zip(schedule[:-1].tolist(), schedule[1:].tolist()):
        x = heun_step(denoiser, x, profile, x.new_full((b,), t_now), x.new_full((b,), t_next))
    return x


def resampling_times(schedule: torch.Tensor, rounds: int) -> list[float]:
    """The subsequence tau_2..tau_s (paper 003 Alg. 4 line 7) of a :func:`channel_schedule`:
    ``rounds - 1`` times evenly spaced (by index) strictly between t_m and 0."""
    inner = schedule[1:-1]
    if rounds <= 1 or inner.numel() == 0:
        return []
    index = torch.linspace(0, inner.numel() - 1, rounds + 1)[1:-1].round().long().unique()
    return inner[index].tolist()


def consistency_sample(
    model: Denoiser, x: torch.Tensor, profile: torch.Tensor, t_m: torch.Tensor, schedule: torch.Tensor,
    rounds: int = 1, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """``f(x, t_m)``, then for each time of :func:`resampling_times` re-noise the estimate to it
    (``z + r t eps``) and apply ``f`` again. Returns the estimate and the evaluations spent.
    ``t_m`` is (B,): images may start at different times; ``schedule`` gives the subsequence."""
    estimate = model(x, profile * t_m.view(-1, *([1] * (x.dim() - 1))), t_m)
    times = resampling_times(schedule, rounds)
    for t in times:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        estimate = model(estimate + profile * t * noise, profile * t, x.new_full((x.shape[0],), t))
    return estimate, 1 + len(times)
