"""STAR's noise schedule and sampler, expressed as a diffusers scheduler.

STAR (like I2VGen-XL/VEnhancer) trains with a "logSNR-cosine-interpolated" schedule: the cosine
schedule's log signal-to-noise ratio, shifted for two resolution scales (x2 and x4) and
interpolated linearly in time between them, then rescaled to zero terminal SNR. With
``alpha_t^2 + sigma_t^2 = 1`` (variance preserving):

    logSNR_cos(t)   = -2 log tan(a_min + t (a_max - a_min)),  t in [0, 1] from noisy (0) to clean (1);
                      training timestep k of T uses t = 1 - k / (T - 1)
                      with a_min = atan(exp(-logSNR_min / 2)), a_max = atan(exp(-logSNR_max / 2))
    logSNR_s(t)     = logSNR_cos(t) + 2 log(1 / s)                       (shift for scale s)
    logSNR(t)       = t logSNR_{s_min}(t) + (1 - t) logSNR_{s_max}(t)    (interpolation)
    sigma_t         = sqrt(sigmoid(-logSNR(t)))
    zero terminal SNR: sigma <- sigma_min + (sigma - sigma_min) (1 - sigma_min) / (sigma_max - sigma_min)

The betas that produce these sigmas are handed to diffusers' ``DPMSolverMultistepScheduler`` as
``trained_betas``; sampling is DPM-Solver++(2M) SDE on v-predictions, as STAR samples.
"""

from __future__ import annotations

import math

import numpy as np
from diffusers import DPMSolverMultistepScheduler

from .errors import InputError, can_set, named

#: logSNR range of the cosine schedule before shifting.
LOGSNR_MIN, LOGSNR_MAX = -15.0, 15.0
#: Resolution-shift scales interpolated between (t = 1 uses SHIFT_MIN, t = 0 uses SHIFT_MAX).
SHIFT_MIN, SHIFT_MAX = 2.0, 4.0
#: Number of training timesteps.
NUM_TRAIN_TIMESTEPS = 1000
#: STAR's SDEdit start: the LR latents are noised to ``DEFAULT_NOISE_LEVEL - 1`` (t = 899) and sampled from there.
DEFAULT_NOISE_LEVEL = 900
#: STAR's "fast" sampler spends 4/15 of its grid points above t = 500 and the rest below.
STAR_FAST_MID_TIMESTEP = 500
STAR_FAST_HIGH_FRACTION = 4 / 15
#: Smallest alpha_bar kept at the last training step: zero terminal SNR makes it exactly 0, which
#: diffusers' solvers cannot take a log of (diffusers' own zero-SNR rescale uses the same value).
TERMINAL_ALPHA_BAR = 2.0 ** -24


def star_sigmas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, zero_terminal_snr: bool = True) -> np.ndarray:
    """Noise level sigma_t (variance preserving) for t = 0..T-1, STAR's training schedule."""
    t = np.linspace(1.0, 0.0, num_train_timesteps)
    a_min = math.atan(math.exp(-0.5 * LOGSNR_MIN))
    a_max = math.atan(math.exp(-0.5 * LOGSNR_MAX))
    logsnr_cos = -2.0 * np.log(np.tan(a_min + t * (a_max - a_min)))
    logsnr = t * (logsnr_cos + 2 * math.log(1 / SHIFT_MIN)) + (1 - t) * (logsnr_cos + 2 * math.log(1 / SHIFT_MAX))
    sigmas = np.sqrt(1.0 / (1.0 + np.exp(logsnr)))  # sqrt(sigmoid(-logsnr))
    if zero_terminal_snr:
        lo, hi = sigmas.min(), sigmas.max()
        sigmas = lo + (sigmas - lo) * (1.0 - lo) / (hi - lo)
    return sigmas


def star_betas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """beta_t such that prod_{s<=t}(1 - beta_s) = 1 - sigma_t^2 (last alpha_bar clamped, see above)."""
    alpha_bar = np.maximum(1.0 - star_sigmas(num_train_timesteps) ** 2, TERMINAL_ALPHA_BAR)
    return 1.0 - np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])


def make_star_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++(2M) SDE on v-predictions with STAR's betas and trailing timesteps."""
    return DPMSolverMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        trained_betas=star_betas().tolist(),
        prediction_type="v_prediction",
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        lower_order_final=True,
    )


def star_timesteps(noise_level: int = DEFAULT_NOISE_LEVEL, num_inference_steps: int = 15,
                   spacing: str = "trailing") -> list[int]:
    """The timesteps at which STAR evaluates its model, starting from ``noise_level - 1``.

    STAR builds a grid of ``num_inference_steps + 1`` points from ``t_start = noise_level - 1``
    down to 0 and, as DPM-Solver++(2M) SDE does, drops the smallest non-zero point; the model is
    evaluated at the remaining ``num_inference_steps`` points and the last step jumps to t = 0.

    Args:
        noise_level: the LR latent is noised to ``noise_level - 1`` before sampling (SDEdit start).
        num_inference_steps: model evaluations.
        spacing: ``"trailing"`` (evenly spaced, STAR's "normal" mode) or ``"star_fast"`` (STAR's
            released "fast" mode: 4/15 of the points between t_start and 500, the rest below;
            ``num_inference_steps=14`` gives exactly its 14 timesteps 899, 799, ..., 90).
    """
    if not 1 <= noise_level <= NUM_TRAIN_TIMESTEPS:
        raise InputError(f"noise_level must be in [1, {NUM_TRAIN_TIMESTEPS}], got {noise_level}")
    if num_inference_steps < 1:
        raise InputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    t_start = noise_level - 1
    points = num_inference_steps + 1
    if spacing == "trailing":
        grid = np.arange(t_start, -1, -(t_start + 1) / points)[:points]
    elif spacing == "star_fast":
        if t_start <= STAR_FAST_MID_TIMESTEP:
            raise InputError(f"spacing='star_fast' needs noise_level > {STAR_FAST_MID_TIMESTEP + 1}")
        high = max(1, round(points * STAR_FAST_HIGH_FRACTION))
        low = points - high
        mid = STAR_FAST_MID_TIMESTEP
        grid_high = np.arange(t_start, mid - 1, -(t_start - mid + 1) / high)[:high]
        grid_low = np.arange(mid, -1, -(mid + 1) / low)[:low] if low else np.array([])
        grid = np.concatenate([grid_high, grid_low])
    else:
        raise InputError(f"spacing must be 'trailing' or 'star_fast', got {spacing!r}")
    grid = np.clip(grid, 0, t_start)
    kept = grid[:-1] if len(grid) > 1 else grid  # drop the smallest non-zero point
    timesteps = [int(round(t)) for t in kept]
    # rounding merges neighbours when the steps outnumber the integer timesteps below t_start; diffusers needs
    # strictly decreasing steps, and running fewer than asked without a word broke the promise of
    # num_inference_steps model evaluations
    deduplicated = sorted(set(timesteps), reverse=True)
    if len(deduplicated) < num_inference_steps:
        steps, settable = named("num_inference_steps"), can_set("noise_level")  # (demo has no --noise-level)
        level = named("noise_level") if settable else "the noise level"
        advice = f"lower {steps}" + (f" or raise {level}" if settable else "")
        raise InputError(f"{steps} {num_inference_steps} does not fit below {level} {noise_level}: only "
                         f"{len(deduplicated)} distinct integer timesteps do ({spacing} spacing); {advice}")
    return deduplicated
