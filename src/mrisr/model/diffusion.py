"""The forward noising process and DDIM sampling of a conditional DDPM.

Notation follows DDPM (Ho et al., 2020): ``alpha[t]`` is the
signal kept by step ``t``, ``alpha_bar[t]`` the cumulative product, and the
forward process is ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` with
``eps ~ N(0, noise_scale * I)`` (the seed's 0.3; 1.0 is the usual DDPM).

Two schedules are offered:

* ``"cosine"``: Nichol & Dhariwal's cosine ``alpha_bar`` (offset s = 0.008,
  betas clipped at 0.999), the standard choice.
* ``"cos2_product"``: the seed's literal per-step ``alpha_t = cos^2(pi t / 2T)`` whose
  product ``alpha_bar`` collapses to ~0 within the first fifth of the steps;
  kept so the two can be compared (see docs/decisions/0004-schedule-and-parameterisation.md).

Index ``t`` runs over ``0 .. T-1``; ``t = T-1`` is (almost) pure noise.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np
import torch

Schedule = Literal["cosine", "cos2_product"]
Prediction = Literal["x0", "eps", "v"]


def cos2_alphas(timesteps: int) -> np.ndarray:
    """Per-step ``alpha_t = cos^2(pi t / 2T)`` for ``t = 1..T`` (the seed's formula 1)."""
    t = np.arange(1, timesteps + 1, dtype=np.float64)
    alphas = np.cos(np.pi * t / (2 * timesteps)) ** 2
    # alpha_T is exactly 0 (a step that destroys all signal); keep it tiny but positive
    # so that 1 / sqrt(alpha) in the samplers stays finite.
    return np.clip(alphas, 1e-12, 1.0)


def cosine_alpha_bar(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine ``alpha_bar`` for ``t = 1..T``, betas clipped at ``max_beta``."""
    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / timesteps + offset) / (1 + offset) * np.pi / 2) ** 2

    t = np.arange(timesteps + 1, dtype=np.float64)
    alpha_bar = f(t) / f(np.zeros(1))
    betas = np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0, max_beta)
    return np.cumprod(1 - betas)


def make_alpha_bar(schedule: Schedule, timesteps: int) -> np.ndarray:
    """``alpha_bar`` for ``t = 1..T`` (float64) under the named schedule, floored at 1e-12.

    The cos2_product schedule underflows to exactly 0 after a few hundred
    steps; the floor keeps the samplers' ratios finite (1e-12 is pure noise all the same).
    """
    if schedule == "cos2_product":
        alpha_bar = np.cumprod(cos2_alphas(timesteps))
    elif schedule == "cosine":
        alpha_bar = cosine_alpha_bar(timesteps)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'cos2_product'")
    return np.maximum(alpha_bar, 1e-12)


def posterior_mean_coefficients(alpha_bar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the seed's reverse step ``q(x_{t-1} | x_t, x0)``.

    Returns ``(coef_x0, coef_xt, variance)`` so that
    ``mu = coef_x0 * x0 + coef_xt * x_t`` (the seed's formula for mu_t) and
    ``variance`` is the posterior variance (before ``noise_scale``).
    """
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    alphas = alpha_bar / alpha_bar_prev
    betas = 1 - alphas
    coef_x0 = np.sqrt(alpha_bar_prev) * betas / (1 - alpha_bar)
    coef_xt = np.sqrt(alphas) * (1 - alpha_bar_prev) / (1 - alpha_bar)
    variance = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
    return coef_x0, coef_xt, variance


class GaussianDiffusion:
    """Forward process, training target and DDIM sampler for one schedule (the config's ``diffusion:`` section)."""

    def __init__(self, schedule: Schedule, timesteps: int, noise_scale: float, prediction: Prediction,
                 scale_input: bool) -> None:
        self.schedule = schedule
        self.scale_input = scale_input
        self.timesteps = timesteps
        self.noise_scale = noise_scale
        self.noise_std = math.sqrt(noise_scale)
        self.prediction = prediction
        self.alpha_bar = torch.tensor(make_alpha_bar(schedule, timesteps), dtype=torch.float64)

    def _alpha_bar_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``alpha_bar[t]`` shaped to broadcast over a batch like ``like``."""
        values = self.alpha_bar.to(like.device)[t].to(like.dtype)
        return values.view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x0)``; ``noise`` is standard normal (scaled here)."""
        alpha_bar = self._alpha_bar_at(t, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * self.noise_std * noise

    def network_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network sees of ``x_t``: with ``scale_input``, ``sqrt(alpha_bar_t) x_t``, nothing at t = T.

        At t = T, x_t is pure noise; fed as it is, a network trained there must
        learn to ignore its noise channel, which keeps it from using x_t at any t.
        """
        return self._alpha_bar_at(t, x_t).sqrt() * x_t if self.scale_input else x_t

    def training_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network regresses on, for the configured parameterisation."""
        if self.prediction == "x0":
            return x0
        if self.prediction == "eps":
            return noise
        alpha_bar = self._alpha_bar_at(t, x0)
        return alpha_bar.sqrt() * self.noise_std * noise - (1 - alpha_bar).sqrt() * x0  # v

    def predict_x0_eps(
        self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert a network output into ``(x0, eps)`` estimates (eps standard normal)."""
        alpha_bar = self._alpha_bar_at(t, x_t)
        signal, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt() * self.noise_std
        if self.prediction == "x0":
            x0 = output
            eps = (x_t - signal * x0) / sigma.clamp_min(1e-8)
        elif self.prediction == "eps":
            eps = output
            x0 = (x_t - sigma * eps) / signal.clamp_min(1e-4)
        else:  # v = sqrt(ab) n - sqrt(1-ab) x0 with n = noise_std * eps; sqrt(ab)^2 + sqrt(1-ab)^2 = 1
            root_one_minus = (1 - alpha_bar).sqrt()
            x0 = signal * x_t - root_one_minus * output
            eps = (root_one_minus * x_t + signal * output) / self.noise_std
        return x0, eps

    def ddim_timesteps(self, steps: int, refine_from: float | None = None) -> list[int]:
        """``steps`` indices from ``T-1`` down to 0: evenly spaced, or ``T-1`` then evenly from ``refine_from * T``.

        The first step, from pure noise, is the one-pass (regression) estimate;
        with ``refine_from`` the remaining steps re-noise it only to that
        fraction of the schedule and refine it from there ("predict, then refine").
        """
        steps = max(1, min(steps, self.timesteps))
        last = self.timesteps - 1
        if refine_from is None or steps < 2:
            points = np.linspace(last, 0, steps)
        else:
            points = np.concatenate([[last], np.linspace(refine_from * last, 0, steps - 1)])
        return sorted({int(round(v)) for v in points}, reverse=True)

    @torch.no_grad()
    def ddim_sample(
        self,
        denoise: Callable[[torch.Tensor, int], torch.Tensor],
        noise: torch.Tensor,
        steps: int,
        eta: float = 0.0,
        generators: Sequence[torch.Generator] | None = None,
        project: Callable[[torch.Tensor], torch.Tensor] | None = None,
        refine_from: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run DDIM from ``noise`` (standard normal, one row per sample): the first step's and the final x0 estimates.

        The first step, from pure noise, is the network's posterior mean (the
        one-pass estimate); the final estimates are the samples.

        ``denoise(x_t, t)`` returns the network output for the whole batch
        ``x_t``, so that a caller can evaluate it patch-wise (see
        :func:`mrisr.inference.windows.sliding_window`). ``eta = 0`` is deterministic DDIM;
        with ``eta > 0`` row i draws its fresh noise from ``generators[i]``.
        ``project`` maps every x0 estimate onto the set the caller trusts
        (for super-resolution: volumes consistent with the LR scan).
        ``refine_from``: see :meth:`ddim_timesteps`.
        """
        x_t = noise * self.noise_std
        schedule = self.ddim_timesteps(steps, refine_from)
        x0 = first_x0 = x_t
        for index, t in enumerate(schedule):
            t_batch = torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device)
            x0, eps = self.predict_x0_eps(denoise(x_t, t), x_t, t_batch)
            if project is not None:
                x0 = project(x0)
                eps = self.eps_from_x0(x0, x_t, t_batch)
            if index == 0:
                first_x0 = x0
            if index + 1 == len(schedule):
                break
            alpha_bar = float(self.alpha_bar[t])
            alpha_bar_next = float(self.alpha_bar[schedule[index + 1]])
            sigma = eta * math.sqrt(max((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next), 0))
            direction = math.sqrt(max(1 - alpha_bar_next - sigma**2, 0.0)) * self.noise_std * eps
            x_t = math.sqrt(alpha_bar_next) * x0 + direction
            if sigma > 0:
                # Drawn on the CPU (the samples' generators live there): the same noise on any device.
                fresh = torch.stack([torch.randn(x_t.shape[1:], generator=g) for g in generators]).to(x_t.device)
                x_t = x_t + sigma * self.noise_std * fresh
        return first_x0, x0

    def eps_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise (standard normal units) that takes ``x0`` to ``x_t`` at ``t``."""
        alpha_bar = self._alpha_bar_at(t, x_t)
        return (x_t - alpha_bar.sqrt() * x0) / ((1 - alpha_bar).sqrt() * self.noise_std).clamp_min(1e-8)
