"""Dynamic frequency loss and STAR's training objective (star_vsr.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from star_vsr.errors import InputError
from star_vsr.losses import DynamicFrequencyLoss, StarDiffusionLoss, radial_low_pass_mask
from star_vsr.scheduling import make_star_scheduler
from star_vsr.testing import tiny_star_components

T_MAX = 999
SIZE = 32  # frame side of the synthetic images


def cosine(fy: float, fx: float, size: int = SIZE) -> torch.Tensor:
    """cos(2 pi (fy y + fx x)), (size, size); frequencies in cycles per pixel (multiples of 1/size)."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    return torch.cos(2 * math.pi * (fy * y + fx * x)).float()


def energy(x: torch.Tensor) -> float:
    return float(x.double().square().sum())


# --- schedules ----------------------------------------------------------------------------------


def test_c_and_b_at_zero_half_and_t_max():
    loss = DynamicFrequencyLoss()  # alpha = 2, beta = 1, t_max = 999
    t = torch.tensor([0.0, T_MAX / 2, T_MAX])
    torch.testing.assert_close(loss.c_t(t), torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(loss.b_t(t), torch.tensor([1.0, 0.5, 0.0]))
    other = DynamicFrequencyLoss(alpha=1.0, beta=0.5)
    torch.testing.assert_close(other.c_t(t), torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(other.b_t(t), torch.tensor([0.5, 0.25, 0.0]))


# --- bands --------------------------------------------------------------------------------------


def test_low_frequency_image_has_no_high_band():
    loss = DynamicFrequencyLoss(cutoff=0.125)
    # DC + 1/16 and 3/32 cycles/pixel, all below the cutoff
    image = 0.5 + 0.3 * cosine(2 / SIZE, 0) + 0.2 * cosine(1 / SIZE, 3 / SIZE)
    low, high = loss.bands(image[None, None, None])  # (1, 1, 1, h, w)
    assert energy(high) < 1e-9 * energy(image)
    torch.testing.assert_close(low[0, 0, 0], image, atol=1e-5, rtol=0)


def test_high_frequency_image_has_no_low_band():
    loss = DynamicFrequencyLoss(cutoff=0.125)
    checkerboard = cosine(0.5, 0.5)  # the highest frequency
    image = 0.4 * checkerboard + 0.3 * cosine(0.25, 0) + 0.2 * cosine(3 / SIZE, 6 / SIZE)  # radii >= 0.21
    low, high = loss.bands(image[None, None, None])
    assert energy(low) < 1e-9 * energy(image)
    torch.testing.assert_close(high[0, 0, 0], image, atol=1e-5, rtol=0)


def test_mask_is_radial_not_square():
    """(0.1, 0) and (0, 0.1) cycles/pixel are inside a 0.125 circle; (0.1, 0.1) (radius 0.141) is not."""
    loss = DynamicFrequencyLoss(cutoff=0.125)
    f = 3 / SIZE  # 0.094 cycles / pixel
    for image, in_low_band in ((cosine(f, 0), True), (cosine(0, f), True), (cosine(f, f), False)):
        low, high = loss.bands(image)
        assert energy(low if in_low_band else high) == pytest.approx(energy(image), rel=1e-5)
    mask = radial_low_pass_mask(SIZE, SIZE, 0.125)
    assert mask.shape == (SIZE, SIZE // 2 + 1)
    assert mask[0, 0] == 1 and mask[3, 3] == 0 and mask[3, 0] == 1 and mask[-3, 0] == 1  # -3 is f_y = -3/32


def test_bands_sum_to_input_and_split_natural_images_by_frequency():
    """On a photo the low band carries most of the energy; STAR's magnitude-based mask got this backwards."""
    loss = DynamicFrequencyLoss(cutoff=0.125)
    photo = torch.from_numpy(skimage.data.astronaut()[100:164, 200:264]).permute(2, 0, 1).float() / 255
    low, high = loss.bands(photo)  # (3, 64, 64) each
    torch.testing.assert_close(low + high, photo, atol=1e-5, rtol=0)
    centred = photo - photo.mean(dim=(-2, -1), keepdim=True)
    low_ac, high_ac = loss.bands(centred)
    assert energy(low_ac) > 2 * energy(high_ac)
    # what a x4 bicubic down/up-sampling loses lies mostly in the high band
    down_up = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(photo[None], scale_factor=0.25, mode="bicubic", antialias=True),
        size=photo.shape[-2:], mode="bicubic")[0]
    low_lost, high_lost = loss.bands(photo - down_up)
    assert energy(high_lost) > 3 * energy(low_lost)


# --- the weighted term ---------------------------------------------------------------------------


def test_forward_weights_low_and_high_bands_exactly_by_b_and_c():
    """pred - target = low pattern (mean |.| = A) + high pattern (mean |.| = B): loss = b (c A + (1 - c) B)."""
    loss = DynamicFrequencyLoss()  # l1 distance
    low_pattern = 0.2 * cosine(2 / SIZE, 0)
    high_pattern = 0.1 * cosine(0.5, 0.5)  # +-0.1 everywhere: mean |.| = 0.1
    a, b = float(low_pattern.abs().mean()), 0.1  # the l1 distances of the two patterns
    target = torch.rand(3, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    pred = target.clone()
    pred[0] += low_pattern  # sample 0: only a low-band error
    pred[1] += high_pattern  # sample 1: only a high-band error
    pred[2] += low_pattern + high_pattern
    t = torch.tensor([T_MAX / 2, T_MAX / 2, 0.0])
    terms = loss.terms(pred, target, t)
    torch.testing.assert_close(terms.loss_low, torch.tensor([a, 0.0, a]), atol=2e-4, rtol=0)
    torch.testing.assert_close(terms.loss_high, torch.tensor([0.0, b, b]), atol=2e-4, rtol=0)
    expected = (0.5 * 0.25 * a + 0.5 * 0.75 * b + 1.0 * (0 * a + 1 * b)) / 3  # b(t) c(t) weights, no hidden factor
    assert float(loss(pred, target, t)) == pytest.approx(expected, abs=2e-4)
    assert float(loss(pred, target, torch.full((3,), float(T_MAX)))) == 0.0  # b(t_max) = 0


def test_l2_distance_and_argument_checks():
    loss = DynamicFrequencyLoss(distance="l2")
    target = torch.zeros(1, 1, 1, SIZE, SIZE)
    pred = target + 0.1 * cosine(0.5, 0.5)
    assert float(loss.terms(pred, target, torch.zeros(1)).loss_high[0]) == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(InputError, match="cutoff"):
        DynamicFrequencyLoss(cutoff=0.0)
    with pytest.raises(InputError, match="distance"):
        DynamicFrequencyLoss(distance="l3")
    with pytest.raises(InputError, match="same shape"):
        loss(pred, target[..., :-1], torch.zeros(1))
    with pytest.raises(InputError, match="timesteps"):
        loss(pred, target, torch.zeros(2))
    # NaN made every loss NaN, t_max=1.9 was truncated to 1, a list of timesteps was an AttributeError
    for kwargs, match in (({"alpha": float("nan")}, "alpha must be a finite number >= 0, got nan"),
                          ({"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
                          ({"t_max": 1.9}, "t_max must be a whole number >= 1, got 1.9")):
        with pytest.raises(InputError, match=match):
            DynamicFrequencyLoss(**kwargs)
    assert DynamicFrequencyLoss(alpha=np.float32(2), t_max=np.int64(999)).t_max == 999
    assert DynamicFrequencyLoss(t_max=999.0).t_max == 999  # a whole float, accepted as before
    with pytest.raises(InputError, match="cutoff must be a number of cycles per pixel, got '0.1'"):
        DynamicFrequencyLoss(cutoff="0.1")
    with pytest.raises(InputError, match=r"timesteps must be a torch.Tensor shaped \(1,\), got list"):
        loss(pred, target, [0])


# --- the whole objective -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alphas_cumprod() -> torch.Tensor:
    return make_star_scheduler().alphas_cumprod


def test_timesteps_outside_the_schedule_and_shapes_that_differ_are_refused(alphas_cumprod):
    """t = -1 took the noisiest step's alpha by Python's indexing (the frequency term clamped it to the cleanest),
    t = 1000 or float steps raised a bare IndexError, and with the frequency term off a v_pred of another batch size
    broadcast against the latents with only torch's warning (black-box hunt)."""
    objective = StarDiffusionLoss(alphas_cumprod)
    x0 = torch.zeros(2, 2, 4, 6, 6)
    for t in (torch.tensor([-1, 3]), torch.tensor([0, 1000])):
        with pytest.raises(InputError, match=r"timesteps must be in \[0, 1000\) \(the schedule's steps\), got"):
            objective.add_noise(x0, x0, t)
    for t in (torch.tensor([1.0, 2.0]), torch.tensor([[1, 2]])):
        with pytest.raises(InputError, match=r"timesteps must be a \(b,\) tensor of integer steps"):
            objective.add_noise(x0, x0, t)
    t = torch.tensor([0, 999])
    with pytest.raises(InputError, match=r"must be \(b, n, c, h, w\) of one shape and timesteps \(b,\), got "
                                         r"\{'v_pred': \(1, 2, 4, 6, 6\)"):
        objective(x0[:1], x0, x0, x0, t)
    with pytest.raises(InputError, match="timesteps \\(1,\\)"):
        objective(x0, x0, x0, x0, t[:1])
    assert float(objective(objective.velocity(x0, x0, t), x0, x0, x0, t).loss) == 0.0


def test_settings_that_would_fail_later_or_poison_the_loss_are_refused_when_built(alphas_cumprod):
    """A NaN v_weight made every loss NaN; decode_frames=2.5 or decode_crop=(2,) failed in the first step with
    torch.randint's or an IndexError (black-box hunt)."""
    for kwargs, said in (({"v_weight": float("nan")}, "v_weight must be a finite number"),
                         ({"v_weight": float("inf")}, "v_weight must be a finite number"),
                         ({"decode_frames": 2.5}, "decode_frames must be a whole number"),
                         ({"decode_crop": (2,)}, "decode_crop must be \\(height, width\\)"),
                         ({"decode_crop": (1.5, 2)}, "decode_crop's sides must be a whole number")):
        with pytest.raises(InputError, match=said):
            StarDiffusionLoss(alphas_cumprod, **kwargs)
    loss = StarDiffusionLoss(alphas_cumprod, v_weight=0, decode_frames=2.0, decode_crop=[4, 4])  # (YAML's too)
    assert (loss.decode_frames, loss.decode_crop) == (2, (4, 4))


def test_v_target_and_x0_estimate_are_consistent(alphas_cumprod):
    objective = StarDiffusionLoss(alphas_cumprod)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 6, 6, generator=g), torch.randn(3, 2, 4, 6, 6, generator=g)
    t = torch.tensor([0, 500, 998])
    x_t = objective.add_noise(x0, eps, t)
    v = objective.velocity(x0, eps, t)
    torch.testing.assert_close(objective.predict_x0(x_t, v, t), x0, atol=1e-5, rtol=0)
    # the same noising and v as diffusers' own (the sampler's v_prediction): consistency alone would also hold
    # with both signs of v flipped
    from diffusers import DDPMScheduler

    reference = DDPMScheduler.from_config(make_star_scheduler().config)
    torch.testing.assert_close(x_t, reference.add_noise(x0, eps, t), atol=1e-5, rtol=0)
    torch.testing.assert_close(v, reference.get_velocity(x0, eps, t), atol=1e-5, rtol=0)
    out = objective(v, x0, eps, x_t, t)  # the exact v: zero loss, no frequency term configured
    assert float(out.loss) == pytest.approx(0.0, abs=1e-10) and float(out.loss_dfl) == 0.0


def test_decode_window_is_consecutive_frames_and_a_crop(alphas_cumprod):
    objective = StarDiffusionLoss(alphas_cumprod, frequency_loss=DynamicFrequencyLoss(), decode_frames=3,
                                  decode_crop=(4, 6))
    starts = set()
    for seed in range(20):
        frames, rows, cols = objective.decode_window(8, (10, 12), torch.Generator().manual_seed(seed))
        assert frames.stop - frames.start == 3 and 0 <= frames.start <= 5
        assert rows.stop - rows.start == 4 and rows.stop <= 10
        assert cols.stop - cols.start == 6 and cols.stop <= 12
        starts.add(frames.start)
    assert len(starts) > 2  # random windows
    whole = StarDiffusionLoss(alphas_cumprod, decode_frames=None)
    assert whole.decode_window(8, (10, 12), None) == (slice(0, 8), slice(0, 10), slice(0, 12))


def test_frequency_term_alone_trains_the_controlnet(alphas_cumprod):
    """v-loss weight 0: the gradient reaches the ControlNet only through decode(x0_hat), with a frozen VAE."""
    components = tiny_star_components(seed=0)
    vae, unet, controlnet = components["vae"], components["unet"], components["controlnet"]
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    objective = StarDiffusionLoss(alphas_cumprod, v_weight=0.0, frequency_loss=DynamicFrequencyLoss(),
                                  decode_frames=2, decode_crop=(4, 4))
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 3, 16, 16, generator=g) * 2 - 1  # (b, n, 3, H, W) in [-1, 1]
    latents = torch.randn(1, 3, 4, 8, 8, generator=g) * 0.2
    hint = torch.randn(1, 3, 4, 8, 8, generator=g) * 0.2
    noise = torch.randn(1, 3, 4, 8, 8, generator=g)
    t = torch.tensor([300])
    noisy = objective.add_noise(latents, noise, t)
    text = torch.randn(1, 77, 16, generator=g)
    residuals = controlnet(noisy, t, text, hint)
    v_pred = unet(noisy, t, text, down_block_additional_residuals=residuals.down_block_res_samples,
                  mid_block_additional_residual=residuals.mid_block_res_sample).sample
    out = objective(v_pred, latents, noise, noisy, t, target_frames=gt, vae=vae, generator=g)
    assert out.loss_v.item() > 0 and torch.equal(out.loss, out.loss_dfl)  # the v-loss is computed, weighted 0
    out.loss.backward()
    grads = {name: p.grad for name, p in controlnet.named_parameters()}
    assert all(p.grad is None for p in vae.parameters())
    for name in ("hint_conv.weight", "mid_zero_conv.weight", "zero_convs.0.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    with_grad = sum(1 for grad in grads.values() if grad is not None and grad.abs().sum() > 0)
    assert with_grad > 0.9 * len(grads)
