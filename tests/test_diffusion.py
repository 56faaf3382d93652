"""The noise schedules against the seed's formulas and the standard cosine, and the DDIM sampler."""
import math

import numpy as np
import pytest
import torch

from mrisr.model.diffusion import (
    GaussianDiffusion, cosine_alpha_bar, make_alpha_bar, cos2_alphas, posterior_mean_coefficients,
)
from helpers import load_config

DIFFUSION = {key: value for key, value in load_config()["diffusion"].items() if key != "residual_scale"}


def diffusion_process(schedule: str = DIFFUSION["schedule"], timesteps: int = DIFFUSION["timesteps"],
                      **settings) -> GaussianDiffusion:
    """The config's diffusion process with ``settings`` changed."""
    return GaussianDiffusion(**{**DIFFUSION, "schedule": schedule, "timesteps": timesteps, **settings})


def test_cos2_product_schedule_matches_the_seed_formula():
    T = 1000
    alphas = cos2_alphas(T)
    for t in (1, 10, 250, 500, 999):
        assert alphas[t - 1] == pytest.approx(math.cos(math.pi * t / (2 * T)) ** 2, rel=1e-12)
    alpha_bar = make_alpha_bar("cos2_product", T)
    assert alpha_bar[99] == pytest.approx(np.prod([math.cos(math.pi * t / 2000) ** 2 for t in range(1, 101)]))
    # Read literally, the seed's alpha_bar collapses early: below 0.002 by t = 200.
    assert alpha_bar[199] < 0.002


def test_cosine_schedule_matches_nichol_dhariwal():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = cosine_alpha_bar(T)
    for t in (1, 100, 500, 900):
        assert alpha_bar[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert np.all(np.diff(alpha_bar) < 0)
    assert alpha_bar[-1] < 1e-4  # last step (after beta clipping) is almost pure noise


def test_forward_process_has_the_seed_mean_and_scaled_variance():
    diffusion = diffusion_process("cosine", 1000, noise_scale=0.3)
    x0 = torch.full((20000,), 0.7)
    t = torch.full((20000,), 400)
    x_t = diffusion.q_sample(x0, t, torch.randn(20000, generator=torch.Generator().manual_seed(0)))
    alpha_bar = float(diffusion.alpha_bar[400])
    assert float(x_t.mean()) == pytest.approx(math.sqrt(alpha_bar) * 0.7, abs=0.01)
    assert float(x_t.var()) == pytest.approx(0.3 * (1 - alpha_bar), rel=0.05)


def test_posterior_coefficients_match_the_seed_reverse_step():
    alpha_bar = make_alpha_bar("cosine", 100)
    coef_x0, coef_xt, variance = posterior_mean_coefficients(alpha_bar)
    t = 50
    alpha_t = alpha_bar[t] / alpha_bar[t - 1]
    beta_t = 1 - alpha_t
    assert coef_x0[t] == pytest.approx(math.sqrt(alpha_bar[t - 1]) * beta_t / (1 - alpha_bar[t]))
    assert coef_xt[t] == pytest.approx(math.sqrt(alpha_t) * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]))
    assert variance[t] == pytest.approx((1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta_t)


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_parameterisations_invert_exactly(prediction):
    diffusion = diffusion_process("cosine", 1000, noise_scale=0.3, prediction=prediction)
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 1, 4, 4, 4, generator=generator), torch.randn(3, 1, 4, 4, 4, generator=generator)
    t = torch.tensor([5, 300, 700])
    x_t = diffusion.q_sample(x0, t, noise)
    x0_hat, eps_hat = diffusion.predict_x0_eps(diffusion.training_target(x0, t, noise), x_t, t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, noise, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("schedule", ["cosine", "cos2_product"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_an_oracle_denoiser_returns_the_target(eta, schedule):
    diffusion = diffusion_process(schedule, 1000, prediction="x0")
    target = torch.linspace(-1, 1, 64).reshape(1, 1, 4, 4, 4).expand(2, 1, 4, 4, 4)
    generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    first, result = diffusion.ddim_sample(lambda x_t, t: target, torch.randn(target.shape), steps=10, eta=eta,
                                          generators=generators)
    torch.testing.assert_close(first, target)
    torch.testing.assert_close(result, target)


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_projection_applies_to_every_estimate_and_decides_the_result(prediction):
    diffusion = diffusion_process("cosine", 1000, prediction=prediction)
    calls = []

    def project(x0):
        calls.append(x0.clone())
        return torch.zeros_like(x0) + 0.25  # the only "consistent" estimate

    noise = torch.randn(3, 1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    first, result = diffusion.ddim_sample(lambda x_t, t: torch.randn_like(x_t), noise, steps=4, project=project)
    assert len(calls) == 4
    torch.testing.assert_close(first, torch.full_like(noise, 0.25))
    torch.testing.assert_close(result, torch.full_like(noise, 0.25))


def test_ddim_timesteps_run_from_the_last_step_to_zero():
    steps = diffusion_process("cosine", 1000).ddim_timesteps(10)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 10 and steps == sorted(steps, reverse=True)
    assert diffusion_process("cosine", 1000).ddim_timesteps(1) == [999]
    assert diffusion_process("cosine", 1000).ddim_timesteps(4, refine_from=0.3) == [999, 300, 150, 0]


def test_scaled_input_hides_the_pure_noise_of_the_last_step():
    diffusion, raw = diffusion_process(scale_input=True), diffusion_process(scale_input=False)
    x_t = torch.randn(3, 1, 4, 4, 4)
    t = torch.tensor([999, 499, 0])
    seen = diffusion.network_input(x_t, t)
    assert seen[0].abs().max() < 1e-3 * x_t[0].abs().max()  # t = T: nothing of the noise reaches the network
    torch.testing.assert_close(seen[1], x_t[1] * float(diffusion.alpha_bar[499]) ** 0.5)
    torch.testing.assert_close(seen[2], x_t[2], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(raw.network_input(x_t, t), x_t)  # model files without the key: as trained
