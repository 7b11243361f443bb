"""STAR's noise schedule and timesteps as a diffusers scheduler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from star_vsr.errors import InputError
from star_vsr.scheduling import make_star_scheduler, star_betas, star_sigmas, star_timesteps


def test_schedule_endpoints_and_zero_terminal_snr():
    sigmas = star_sigmas()
    assert sigmas.shape == (1000,)
    assert np.all(np.diff(sigmas) > 0)  # monotone in t
    assert sigmas[-1] == pytest.approx(1.0)  # zero terminal SNR
    assert sigmas[0] == pytest.approx(0.0011062, abs=1e-6)  # value of STAR's schedule at t = 0
    assert sigmas[899] == pytest.approx(0.999094, abs=1e-6)  # STAR's start point (noise level 900)


def test_betas_reproduce_sigmas():
    alpha_bar = np.cumprod(1 - star_betas())
    np.testing.assert_allclose(np.sqrt(1 - alpha_bar[:-1]), star_sigmas()[:-1], rtol=1e-9, atol=1e-12)
    scheduler = make_star_scheduler()
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy()[:-1], alpha_bar[:-1], rtol=1e-5)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.algorithm_type == "sde-dpmsolver++"


def test_star_fast_schedule_matches_released_sampler():
    # STAR's inference_sr.py ("fast" mode, noise level 900): 4 steps to t = 500, 11 below, and the
    # DPM-Solver++ 2M SDE drops the smallest: 14 model evaluations.
    assert star_timesteps(900, 14, "star_fast") == [899, 799, 699, 599, 500, 454, 409, 363, 318, 272, 227, 181,
                                                    136, 90]


@pytest.mark.parametrize("steps, spacing", [(14, "star_fast"), (4, "trailing"), (15, "trailing")])
def test_the_sampler_is_second_order_but_at_the_first_and_last_step(steps, spacing, monkeypatch):
    """STAR's sample_dpmpp_2m_sde: first order at the first step (no history) and the last (to sigma 0), second
    order in between, also under 15 steps (STAR's own "fast" grid has 14), where diffusers' lower_order_final
    lowers only a third-order step (a review suspected it dropped the second-to-last step to first order)."""
    scheduler = make_star_scheduler()
    scheduler.set_timesteps(timesteps=star_timesteps(900, steps, spacing))
    orders = []
    for name, order in (("dpm_solver_first_order_update", 1), ("multistep_dpm_solver_second_order_update", 2)):
        update = getattr(scheduler, name)
        monkeypatch.setattr(scheduler, name, lambda *a, _u=update, _o=order, **k: orders.append(_o) or _u(*a, **k))
    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for t in scheduler.timesteps:
        latents = scheduler.step(0.1 * latents, t, latents, generator=g).prev_sample
    assert orders == [1] + [2] * (steps - 2) + [1]


def test_trailing_schedule():
    steps = star_timesteps(900, 15)
    assert len(steps) == 15 and steps[0] == 899 and steps == sorted(steps, reverse=True)
    assert star_timesteps(500, 1) == [499]


def test_scheduler_runs_from_the_start_point_to_clean():
    scheduler = make_star_scheduler()
    scheduler.set_timesteps(timesteps=star_timesteps(900, 4))
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    latents = scheduler.add_noise(x0, noise, scheduler.timesteps[:1])
    g = torch.Generator().manual_seed(2)
    for t in scheduler.timesteps:
        alpha_bar = scheduler.alphas_cumprod[int(t)]
        # the v an oracle that knows x0 would predict: x0 = alpha x_t - sigma v
        v_oracle = (alpha_bar.sqrt() * latents - x0) / (1 - alpha_bar).sqrt()
        latents = scheduler.step(v_oracle, t, latents, generator=g).prev_sample
    torch.testing.assert_close(latents, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("args", [(0, 15), (900, 0), (1001, 5)])
def test_bad_schedule_arguments(args):
    with pytest.raises(InputError):
        star_timesteps(*args)


def test_more_steps_than_timesteps_below_the_noise_level_is_refused():
    """5 steps from noise_level 3 ran 3 (rounding merged them) without a word (black-box API test)."""
    assert len(star_timesteps(900, 899)) == 899 and len(star_timesteps(3, 3)) == 3
    for args in ((3, 5), (900, 900), (900, 800, "star_fast")):
        with pytest.raises(InputError, match=rf"num_inference_steps {args[1]} does not fit below noise_level "
                                             rf"{args[0]}: only \d+ distinct integer timesteps do"):
            star_timesteps(*args)
