"""Tests of the temporally coherent real-world degradation chain (star_vsr.degradations)."""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from star_vsr.degradations import (
    KERNEL_TYPES,
    PRESETS,
    DegradationConfig,
    DegradationParams,
    KernelSpec,
    OrderConfig,
    RealWorldDegradation,
    degrade_clip,
    degrade_frames,
)
from star_vsr.degradations.codec import compress_clip
from star_vsr.degradations.filtering import filter_clip
from star_vsr.degradations.frames import clip_to_frames, frames_to_clip
from star_vsr.degradations.jpeg import jpeg_compress_frames
from star_vsr.degradations.noise import add_gaussian_noise, add_poisson_noise
from star_vsr.errors import InputError
from star_vsr.io.synthetic import synthetic_frames

HR_SIZE = 48  # divisible by 2, 3 and 4
FRAMES = 4


# --- fixtures and helpers ---------------------------------------------------------------------


def _photo() -> torch.Tensor:
    """scikit-image's bundled astronaut photo, (3, 512, 512) float in [0, 1]."""
    return torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255


def panning_clip(frames: int = FRAMES, size: int = HR_SIZE, step: int = 2) -> torch.Tensor:
    """(frames, 3, size, size) windows of a photo moving `step` pixels per frame."""
    photo = _photo()
    return torch.stack(
        [
            photo[:, 180 + step * i : 180 + step * i + size, 200 + step * i : 200 + step * i + size]
            for i in range(frames)
        ]
    )


def static_clip(frames: int = FRAMES, size: int = HR_SIZE) -> torch.Tensor:
    """(frames, 3, size, size) copies of one photo window."""
    return panning_clip(1, size).expand(frames, -1, -1, -1).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of [0, 1] tensors."""
    return 10 * math.log10(1.0 / F.mse_loss(a.float(), b.float()).item())


def without_codec(config: DegradationConfig) -> DegradationConfig:
    return dataclasses.replace(config, codec=dataclasses.replace(config.codec, prob=0.0))


def without_noise(config: DegradationConfig) -> DegradationConfig:
    return dataclasses.replace(
        config,
        first_order=dataclasses.replace(config.first_order, noise_prob=0.0),
        second_order=dataclasses.replace(config.second_order, noise_prob=0.0),
    )


def sample_with_seed(config: DegradationConfig, seed: int) -> DegradationParams:
    return RealWorldDegradation(config, scale=4).sample_params(torch.Generator().manual_seed(seed))


def bicubic_reference(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Clean anti-aliased bicubic down-sizing: the LR clip without any degradation."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(0, 1)


# --- shapes and determinism -------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_range_and_levels_for_each_scale(scale: int) -> None:
    hr = panning_clip()
    for seed in range(3):
        lr = degrade_clip(hr, scale=scale, config="medium", seed=seed)
        assert lr.shape == (FRAMES, 3, HR_SIZE // scale, HR_SIZE // scale)
        assert lr.dtype == torch.float32
        assert lr.min() >= 0 and lr.max() <= 1
        # Output lies on 8-bit levels, like a decoded video.
        assert torch.equal(lr * 255, (lr * 255).round())


def test_degrade_frames_uint8_round_trip_matches_degrade_clip() -> None:
    hr = panning_clip()
    frames = clip_to_frames(hr)  # (n, h, w, 3) uint8
    lr_frames = degrade_frames(frames, scale=4, config="light", seed=3)
    assert lr_frames.dtype == np.uint8
    assert lr_frames.shape == (FRAMES, HR_SIZE // 4, HR_SIZE // 4, 3)
    expected = degrade_clip(frames_to_clip(frames), 4, DegradationConfig.preset("light"), seed=3)
    np.testing.assert_array_equal(lr_frames, clip_to_frames(expected))


def test_same_seed_is_bit_identical_and_generator_equals_int_seed() -> None:
    hr = panning_clip()
    for preset in PRESETS:
        a = degrade_clip(hr, 4, preset, seed=11)
        b = degrade_clip(hr, 4, preset, seed=11)
        assert torch.equal(a, b)
        degradation = RealWorldDegradation(DegradationConfig.preset(preset), scale=4)
        assert torch.equal(a, degradation(hr, torch.Generator().manual_seed(11)))
    with pytest.raises(InputError, match="seed must fit in 64 bits"):
        degrade_clip(hr, 4, "light", seed=2 ** 70)


def test_different_seeds_give_different_outputs() -> None:
    hr = panning_clip()
    outputs = [degrade_clip(hr, 4, "medium", seed=seed) for seed in range(4)]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.equal(outputs[i], outputs[j])


def test_call_is_sample_params_then_apply_and_params_are_loggable() -> None:
    hr = panning_clip()
    degradation = RealWorldDegradation(DegradationConfig.preset("heavy"), scale=4)
    generator = torch.Generator().manual_seed(5)
    params = degradation.sample_params(generator)
    assert isinstance(params, DegradationParams)
    assert params.second_order is not None  # heavy always runs both orders
    assert "KernelSpec" in repr(params) and "jpeg_quality" in repr(params)
    lr = degradation.apply(hr, params, generator)
    assert torch.equal(lr, degradation(hr, 5))
    # Parameters are a pure function of the generator state.
    assert params == degradation.sample_params(torch.Generator().manual_seed(5))
    # no generator: the noise came from torch's global RNG (changing with torch.manual_seed), an int a TypeError
    for bad in (None, 5):
        with pytest.raises(InputError, match="apply needs a CPU torch.Generator"):
            degradation.apply(hr, params, bad)
        with pytest.raises(InputError, match="sample_params needs a CPU torch.Generator"):
            degradation.sample_params(bad)
    with pytest.raises(InputError, match="apply needs the DegradationParams that sample_params draws, got dict"):
        degradation.apply(hr, dataclasses.asdict(params), generator)


def test_turning_a_stage_off_leaves_the_other_draws_unchanged() -> None:
    config = DegradationConfig.preset("heavy")
    quiet = without_codec(without_noise(config))
    for seed in range(5):
        params = sample_with_seed(config, seed)
        quiet_params = sample_with_seed(quiet, seed)
        expected = dataclasses.replace(
            params,
            first_order=dataclasses.replace(params.first_order, noise=None),
            second_order=dataclasses.replace(params.second_order, noise=None),
            codec=None,
        )
        assert quiet_params == expected


def test_input_clip_is_not_modified() -> None:
    hr = panning_clip()
    before = hr.clone()
    for seed in range(4):
        degrade_clip(hr, 2, "light", seed=seed)
    assert torch.equal(hr, before)


# --- temporal coherence -----------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_static_clip_without_noise_gives_identical_frames(preset: str) -> None:
    config = without_codec(without_noise(DegradationConfig.preset(preset)))
    for seed in range(4):
        lr = degrade_clip(static_clip(), 4, config, seed=seed)
        for frame in lr[1:]:
            assert torch.equal(frame, lr[0])


def test_static_clip_without_noise_through_codec_is_nearly_identical() -> None:
    config = without_noise(DegradationConfig.preset("heavy"))
    for seed in range(4):
        lr = degrade_clip(static_clip(), 4, config, seed=seed)
        assert (lr[1:] - lr[:1]).abs().mean() * 255 < 0.5  # under half an 8-bit level


def test_noise_realisation_differs_per_frame_but_not_its_level() -> None:
    config = without_codec(DegradationConfig())
    degradation = RealWorldDegradation(config, scale=2)
    generator = torch.Generator().manual_seed(0)
    params = degradation.sample_params(generator)
    assert params.first_order.noise is not None  # medium always adds noise in order 1
    lr = degradation.apply(static_clip(), params, generator)
    assert not torch.equal(lr[0], lr[1])


def test_static_clip_flickers_far_less_than_per_frame_degradation() -> None:
    """STAR's reference degrades each frame with its own draws; ours draws once per clip.

    Noise is on, so frames differ; after averaging out fine noise with 4x4 pooling the
    remaining frame-to-frame change is compared with that of independently degraded frames.
    """
    config = without_codec(DegradationConfig())
    static = static_clip(frames=6, size=64)

    def low_frequency_change(lr: torch.Tensor) -> float:
        pooled = F.avg_pool2d(lr, 4)  # (n, 3, 4, 4)
        return (pooled[1:] - pooled[:1]).abs().mean().item()

    coherent, per_frame = [], []
    for seed in range(6):
        coherent.append(low_frequency_change(degrade_clip(static, 4, config, seed=seed)))
        independent = torch.cat(
            [degrade_clip(static[:1], 4, config, seed=1000 * (seed + 1) + i) for i in range(6)]
        )
        per_frame.append(low_frequency_change(independent))
    assert np.mean(coherent) < 0.7 * np.mean(per_frame)


def test_blur_applies_one_kernel_to_every_frame_and_channel() -> None:
    spec = KernelSpec(kind="aniso", size=9, sigma_x=2.5, sigma_y=0.8, theta=0.6)
    kernel = spec.build()
    impulses = torch.zeros(3, 3, 31, 31)
    centres = [(15, 15), (10, 20), (20, 8)]  # a different position in every frame
    for frame, (y, x) in enumerate(centres):
        impulses[frame, :, y, x] = 1.0
    response = filter_clip(impulses, kernel)
    for frame, (y, x) in enumerate(centres):
        for channel in range(3):
            patch = response[frame, channel, y - 4 : y + 5, x - 4 : x + 5]
            torch.testing.assert_close(patch, kernel, atol=1e-6, rtol=0)


# --- kernels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*KERNEL_TYPES, "sinc"])
@pytest.mark.parametrize("size", [7, 13, 21])
def test_every_kernel_type_sums_to_one_has_its_size_and_is_symmetric(kind: str, size: int) -> None:
    if kind == "sinc":
        spec = KernelSpec(kind, size, cutoff=math.pi / 4)
    else:
        iso = kind == "iso" or kind.endswith("_iso")
        beta = 1.5 if kind.startswith(("generalized", "plateau")) else None
        spec = KernelSpec(
            kind,
            size,
            sigma_x=2.0,
            sigma_y=2.0 if iso else 0.7,
            theta=0.0 if iso else 0.4,
            beta=beta,
        )
    kernel = spec.build()
    assert kernel.shape == (size, size)
    assert kernel.dtype == torch.float32
    assert abs(kernel.sum().item() - 1.0) < 1e-5
    torch.testing.assert_close(kernel, torch.flip(kernel, dims=(0, 1)))  # point-symmetric
    assert kernel.argmax().item() == (size * size) // 2  # peak at the centre


def test_sampled_kernels_use_configured_sizes_and_families() -> None:
    config = DegradationConfig()
    degradation = RealWorldDegradation(config, scale=4)
    seen = set()
    for seed in range(60):
        params = degradation.sample_params(torch.Generator().manual_seed(seed))
        for spec in (params.first_order.kernel, params.final_sinc):
            if spec is not None:
                seen.add(spec.kind)
                kernel = spec.build()
                assert spec.size in config.first_order.kernel_sizes
                assert kernel.shape == (spec.size, spec.size)
                assert abs(kernel.sum().item() - 1.0) < 1e-5
    assert {"iso", "aniso", "sinc"} <= seen


def test_shape_exponents_are_drawn_as_basicsr_draws_them() -> None:
    """BasicSR draws beta from [low, 1] or [1, high], half the time each: with the plateau's (1, 2), half the plateau
    kernels have beta 1, the widest; this drew (1, 2) whole, never 1 (review against BasicSR's degradations.py). The
    generalized Gaussian's (0.5, 4) is split at 1 both ways."""
    from star_vsr.degradations.params import _shape_beta

    generator = torch.Generator().manual_seed(0)
    plateau = np.array([_shape_beta(generator, (1.0, 2.0)) for _ in range(2000)])
    assert 0.45 < (plateau == 1.0).mean() < 0.55 and plateau.min() == 1.0 and plateau.max() < 2.0
    assert 0.15 < (plateau > 1.5).mean() < 0.35  # the other half uniform over (1, 2)
    generalized = np.array([_shape_beta(generator, (0.5, 4.0)) for _ in range(2000)])
    assert 0.45 < (generalized < 1.0).mean() < 0.55 and generalized.min() >= 0.5 and generalized.max() < 4.0
    beyond = np.array([_shape_beta(generator, (2.0, 3.0)) for _ in range(200)])  # a range without 1: whole
    assert (beyond == 2.0).mean() == 0 and beyond.min() >= 2.0 and beyond.max() < 3.0 and beyond.std() > 0.2


def test_unsharp_mask_is_basicsr_s_usm_sharp() -> None:
    """BasicSR's USMSharp, written out with OpenCV (its blur: cv2.getGaussianKernel(51, 0), filter2D's default
    border, reflect-101): the same to float32 rounding; a flat clip stays as it is, small frames work."""
    import cv2

    from star_vsr.degradations.sharpen import unsharp_mask

    image = skimage.data.astronaut()[:96, :128].astype(np.float32) / 255  # (h, w, 3)
    kernel = cv2.getGaussianKernel(51, 0)
    kernel = kernel @ kernel.T
    blurred = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    residual = image - blurred
    soft_mask = cv2.filter2D((np.abs(residual) * 255 > 10).astype(np.float32), -1, kernel,
                             borderType=cv2.BORDER_REFLECT_101)
    expected = soft_mask * np.clip(image + 0.5 * residual, 0, 1) + (1 - soft_mask) * image
    sharpened = unsharp_mask(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(sharpened, expected, atol=1e-6)
    assert np.abs(sharpened - image).mean() > 2 / 255
    flat = torch.full((2, 3, 16, 16), 0.4)  # (smaller than the blur's pad of 25: replicate padding)
    torch.testing.assert_close(unsharp_mask(flat), flat)
    clip = torch.rand(6, 3, 20, 24, generator=torch.Generator().manual_seed(0))  # sharpened a few frames at a time
    torch.testing.assert_close(unsharp_mask(clip), torch.cat([unsharp_mask(frame[None]) for frame in clip]),
                               rtol=0, atol=0)


def test_anisotropic_kernel_spreads_along_its_rotated_axis() -> None:
    def spread(kernel: torch.Tensor) -> tuple[float, float]:
        axis = torch.arange(kernel.shape[0], dtype=torch.float32) - kernel.shape[0] // 2
        var_x = (kernel.sum(0) * axis**2).sum().item()
        var_y = (kernel.sum(1) * axis**2).sum().item()
        return var_x, var_y

    var_x, var_y = spread(KernelSpec("aniso", 21, sigma_x=3.0, sigma_y=0.7, theta=0.0).build())
    assert var_x > 5 * var_y and abs(var_x - 9.0) < 0.5  # sigma_x^2 = 9 along x
    var_x, var_y = spread(
        KernelSpec("aniso", 21, sigma_x=3.0, sigma_y=0.7, theta=math.pi / 2).build()
    )
    assert var_y > 5 * var_x


def test_sinc_kernel_is_a_low_pass_filter() -> None:
    checkerboard = (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float()  # Nyquist
    flat = torch.full((32, 32), 0.5)
    clip = torch.stack([checkerboard, flat]).view(2, 1, 32, 32)
    filtered = filter_clip(clip, KernelSpec("sinc", 21, cutoff=math.pi / 3).build())
    inner = (slice(10, 22), slice(10, 22))
    assert (filtered[0, 0][inner] - 0.5).abs().max() < 0.05  # the highest frequency is removed
    torch.testing.assert_close(filtered[1, 0], flat)  # constant images pass unchanged


def test_sinc_kernel_with_a_tiny_cutoff_is_a_box_not_nan() -> None:
    # omega_c^2 underflowed to 0 in float64 and the kernel was 0 / 0 = NaN everywhere.
    kernel = KernelSpec("sinc", 7, cutoff=1e-200).build()
    torch.testing.assert_close(kernel, torch.full((7, 7), 1 / 49))


# --- noise ------------------------------------------------------------------------------------


def test_gaussian_noise_level_and_gray_noise() -> None:
    grey = torch.full((2, 3, 64, 64), 0.5)
    generator = torch.Generator().manual_seed(0)
    colour = add_gaussian_noise(grey, sigma=10.0, gray=False, generator=generator)
    assert abs((colour - 0.5).std().item() * 255 - 10.0) < 0.5
    assert not torch.equal(colour[:, 0], colour[:, 1])
    luminance = add_gaussian_noise(grey, sigma=10.0, gray=True, generator=generator)
    assert torch.equal(luminance[:, 0], luminance[:, 1])
    assert not torch.equal(luminance[0], luminance[1])  # per-frame realisations


def test_poisson_noise_grows_with_intensity() -> None:
    generator = torch.Generator().manual_seed(0)
    dark = add_poisson_noise(
        torch.full((1, 3, 64, 64), 0.1), scale=1.0, gray=False, generator=generator
    )
    bright = add_poisson_noise(
        torch.full((1, 3, 64, 64), 0.8), scale=1.0, gray=False, generator=generator
    )
    # Shot noise std is sqrt(x * 255) / 255: about 0.0198 at 0.1 and 0.056 at 0.8.
    assert abs(dark.std().item() - math.sqrt(0.1 * 255) / 255) < 0.003
    assert abs(bright.std().item() - math.sqrt(0.8 * 255) / 255) < 0.005


# --- JPEG and video codec ---------------------------------------------------------------------


def test_low_jpeg_quality_visibly_degrades_frames() -> None:
    frames = clip_to_frames(panning_clip())
    reference = frames_to_clip(frames)
    high = psnr(frames_to_clip(jpeg_compress_frames(frames, 95)), reference)
    low = psnr(frames_to_clip(jpeg_compress_frames(frames, 10)), reference)
    assert low < high - 10  # about 42 dB at quality 95, 30 dB at 10


@pytest.mark.parametrize(
    "codec, weak, strong",
    [
        ("libx264", {"crf": 15}, {"crf": 45}),
        ("mpeg4", {"bits_per_pixel": 4.0}, {"bits_per_pixel": 0.03}),
    ],
)
def test_strong_codec_setting_degrades_more(codec: str, weak: dict, strong: dict) -> None:
    frames = clip_to_frames(panning_clip(frames=8))
    reference = frames_to_clip(frames)
    weak_psnr = psnr(frames_to_clip(compress_clip(frames, codec, **weak)), reference)
    strong_psnr = psnr(frames_to_clip(compress_clip(frames, codec, **strong)), reference)
    assert strong_psnr < weak_psnr - 8


@pytest.mark.parametrize(
    "codec, setting", [("libx264", {"crf": 30}), ("mpeg4", {"bits_per_pixel": 0.3})]
)
def test_whole_clip_codec_has_inter_frame_dependency(codec: str, setting: dict) -> None:
    frames = clip_to_frames(panning_clip(frames=6))
    whole = compress_clip(frames, codec, **setting)
    per_frame = np.concatenate(
        [compress_clip(frames[i : i + 1], codec, **setting) for i in range(6)]
    )
    # Later frames are predicted from earlier ones, unlike six separate one-frame videos.
    assert not np.array_equal(whole[1:], per_frame[1:])
    # Changing only the first frame changes how the following, unchanged frames decode.
    altered = frames.copy()
    altered[0] = 255 - altered[0]
    altered_whole = compress_clip(altered, codec, **setting)
    assert not np.array_equal(altered_whole[1:], whole[1:])


def test_codec_round_trip_does_not_shift_colours() -> None:
    """FFmpeg's default YUV -> RGB conversion rounded down: every compressed clip came back 1 to 1.5 levels darker,
    more in green, which the chain's other stages do not do and real codecs do not do (review). Lossless H.264
    leaves only the 4:2:0 chroma subsampling."""
    frames = synthetic_frames(3, (64, 64))  # (3, 64, 64, 3) uint8, smooth colours
    out = compress_clip(frames, "libx264", crf=0)
    shift = (out.astype(np.float64) - frames).mean(axis=(0, 1, 2))  # per RGB channel, in levels
    assert np.abs(shift).max() < 0.3, shift


def test_codec_settings_that_encode_nothing_sensible_are_refused() -> None:
    """crf=23.7 was taken as 23 without a word, bits_per_pixel=nan a ValueError from int() (black-box hunt)."""
    frames = synthetic_frames(1, (16, 16))
    for crf in (23.7, None, True, 52):
        with pytest.raises(InputError, match=r"^libx264 needs a whole-number CRF in 0\.\.51, got "):
            compress_clip(frames, "libx264", crf=crf)
    for bits in (float("nan"), float("inf"), 0, "1", True):
        with pytest.raises(InputError, match=r"^mpeg4 needs bits_per_pixel > 0, got "):
            compress_clip(frames, "mpeg4", bits_per_pixel=bits)
    for crf in (23.0, np.float32(23.0), np.int64(23)):  # (a YAML or NumPy number)
        assert compress_clip(frames, "libx264", crf=crf).shape == frames.shape


@pytest.mark.parametrize(
    "codec, setting", [("libx264", {"crf": 30}), ("mpeg4", {"bits_per_pixel": 0.1})]
)
def test_codec_round_trip_is_deterministic(codec: str, setting: dict) -> None:
    # x264's default (AVX-512) code gave a different stream every few runs on such clips.
    frames = clip_to_frames(panning_clip(frames=16, size=64, step=1))
    first = compress_clip(frames, codec, **setting)
    for _ in range(7):
        np.testing.assert_array_equal(compress_clip(frames, codec, **setting), first)


@pytest.mark.parametrize(
    "codec, setting", [("libx264", {"crf": 23}), ("mpeg4", {"bits_per_pixel": 1.0})]
)
def test_codec_handles_odd_frame_sizes(codec: str, setting: dict) -> None:
    frames = clip_to_frames(panning_clip(frames=3, size=23))[:, :, :17]  # (3, 23, 17, 3)
    out = compress_clip(np.ascontiguousarray(frames), codec, **setting)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert psnr(frames_to_clip(out), frames_to_clip(frames)) > 25  # cropped back, not shifted


def test_degradation_with_odd_lr_size() -> None:
    hr = panning_clip(frames=3, size=36)  # LR 9x9 at x4: odd sides through the codec
    assert DegradationConfig().codec.prob == 1.0
    for seed in range(3):
        assert degrade_clip(hr, 4, "medium", seed=seed).shape == (3, 3, 9, 9)


# --- presets and configuration ----------------------------------------------------------------


def test_heavy_preset_degrades_more_than_light() -> None:
    hr = panning_clip(frames=4, size=64)
    reference = bicubic_reference(hr, 4)
    mean_psnr = {
        preset: np.mean(
            [psnr(degrade_clip(hr, 4, preset, seed=seed), reference) for seed in range(5)]
        )
        for preset in PRESETS
    }
    assert mean_psnr["light"] > mean_psnr["heavy"] + 3
    assert mean_psnr["light"] > mean_psnr["medium"]


def test_presets_differ_and_medium_is_the_default() -> None:
    light, medium, heavy = (DegradationConfig.preset(name) for name in PRESETS)
    assert medium == DegradationConfig()
    assert light != medium and medium != heavy
    assert light.second_order_prob == 0.0 and heavy.second_order_prob == 1.0


def test_configs_hash_and_their_weights_cannot_change_after_validation() -> None:
    """hash(DegradationConfig()) was a TypeError (its weight dicts), and those dicts could be changed after
    validation (config.first_order.kernel_probs["iso"] = -1 passed, and the chain drew from it)."""
    import copy
    import json

    light, medium, heavy = (DegradationConfig.preset(name) for name in PRESETS)
    assert hash(medium) == hash(DegradationConfig()) and len({light, medium, heavy, DegradationConfig()}) == 3
    for weights in (medium.first_order.kernel_probs, medium.codec.codec_probs):
        for change in (lambda w: w.__setitem__("iso", -1.0), lambda w: w.update(iso=-1.0), lambda w: w.pop("iso"),
                       lambda w: w.clear()):
            with pytest.raises(TypeError, match="read-only; make another config with dataclasses.replace"):
                change(weights)
    assert medium == DegradationConfig()
    # still a dict for JSON, copies, pickling and dataclasses' own helpers
    assert json.loads(json.dumps(dataclasses.asdict(medium)))["codec"]["codec_probs"] == {"libx264": 0.5, "mpeg4": 0.5}
    assert copy.deepcopy(medium) == pickle.loads(pickle.dumps(medium)) == medium
    changed = dataclasses.replace(medium.codec, codec_probs={"libx264": 1.0})
    assert changed.codec_probs == {"libx264": 1.0} and medium.codec.codec_probs == {"libx264": 0.5, "mpeg4": 0.5}


def test_resizing_and_degrading_do_not_depend_on_the_number_of_threads() -> None:
    """torch's float32 resize kernels differ in the last bit with the thread count, and the noise and JPEG after a
    resize made whole levels of it: `star-vsr degrade` gave another clip on 1 thread than on 2."""
    from star_vsr.degradations.filtering import resize_clip

    clip = torch.rand(4, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255  # (1, 3, 512, 512)
    degradation = RealWorldDegradation(DegradationConfig.preset("medium"), 4)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            resized = [resize_clip(clip, (621, 621), mode) for mode in ("bilinear", "bicubic", "area")]
            results.append((resized, degradation(photo.expand(2, -1, -1, -1), seed=5)))
    finally:
        torch.set_num_threads(threads)
    (one, lr_one), (two, lr_two) = results
    assert all(torch.equal(a, b) for a, b in zip(one, two)) and torch.equal(lr_one, lr_two)


def test_hand_built_params_are_checked_when_made() -> None:
    """Params built by hand (from --print-params JSON, say) with a NaN noise level gave a black clip, a negative
    resize factor a 1-pixel one and sinc_before_jpeg="no" the True branch, all without an error."""
    from star_vsr.degradations.params import NoiseParams

    params = sample_with_seed(DegradationConfig.preset("heavy"), 0)
    noise = NoiseParams("gaussian", False, 5.0)
    for make, message in (
            (lambda: dataclasses.replace(noise, level=float("nan")), r"NoiseParams.level must be a finite number >= 0"),
            (lambda: dataclasses.replace(noise, kind="salt"), "NoiseParams.kind must be one of gaussian, poisson"),
            (lambda: dataclasses.replace(noise, gray=1), "NoiseParams.gray must be True or False"),
            (lambda: dataclasses.replace(params.first_order, resize_factor=-1.0),
             "OrderParams.resize_factor must be a finite number > 0, got -1.0"),
            (lambda: dataclasses.replace(params.first_order, noise={"kind": "gaussian"}),
             "OrderParams.noise must be a NoiseParams or None, got dict"),
            # a quality of 50.7 was cut to 50 and True read as 1; a mode or direction of no meaning was taken while
            # the resize kept the size (black-box hunt)
            (lambda: dataclasses.replace(params.first_order, jpeg_quality=50.7),
             "OrderParams.jpeg_quality must be a whole number in 1..100 or None, got 50.7"),
            (lambda: dataclasses.replace(params.first_order, jpeg_quality=True), "jpeg_quality must be a whole"),
            (lambda: dataclasses.replace(params.first_order, resize_mode="nearest", resize_factor=1.0),
             "OrderParams.resize_mode must be one of area, bilinear, bicubic, got 'nearest'"),
            (lambda: dataclasses.replace(params.first_order, resize_direction="sideways"),
             "OrderParams.resize_direction must be one of up, down, keep"),
            (lambda: dataclasses.replace(params, sinc_before_jpeg="no"),
             "DegradationParams.sinc_before_jpeg must be True or False, got 'no'"),
            (lambda: dataclasses.replace(params, second_order={}), "second_order must be an OrderParams or None")):
        with pytest.raises(InputError, match=message):
            make()
    assert dataclasses.replace(params, sinc_before_jpeg=not params.sinc_before_jpeg) != params  # valid ones pass


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(InputError, match="light, medium, heavy"):
        DegradationConfig.preset("extreme")
    with pytest.raises(InputError, match="light, medium, heavy"):
        degrade_clip(panning_clip(), 4, "extreme")


@pytest.mark.parametrize("scale", [1, 5, 8, 2.0])
def test_unsupported_scale_lists_the_choices(scale: object) -> None:
    with pytest.raises(InputError, match="2, 3, 4"):
        RealWorldDegradation(DegradationConfig(), scale=scale)
    with pytest.raises(InputError, match="2, 3, 4"):
        degrade_frames(clip_to_frames(panning_clip()), scale=scale, seed=0)


@pytest.mark.parametrize(
    "bad_input, message",
    [
        (torch.rand(4, 3, 50, 48), "not divisible by scale 4"),
        (torch.rand(4, 1, 48, 48), r"\(n, 3, h, w\)"),
        (torch.rand(3, 48, 48), r"\(n, 3, h, w\)"),
        (torch.rand(4, 3, 48, 48) * 2 - 1, r"\[0, 1\].*for \[-1, 1\] tensors use \(hr \+ 1\) / 2"),
        (torch.rand(4, 3, 48, 48) * 255, r"\[0, 1\].*look like 0\.\.255 values: divide by 255"),  # not (hr + 1) / 2
        (torch.rand(4, 3, 48, 48) * 2, r"got \[\S+, \S+\]; scale them into \[0, 1\]\.$"),  # not (hr + 1) / 2 either
        ((torch.rand(4, 3, 48, 48) * 255).to(torch.uint8), "float"),
        (torch.full((4, 3, 48, 48), float("nan")), "holds NaN or infinite values"),  # not the [-1, 1] hint
        (torch.rand(4, 3, 2, 2), "smaller than the scale 4"),
    ],
)
def test_bad_clips_are_rejected_with_a_clear_error(bad_input: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        degrade_clip(bad_input, 4, "medium", seed=0)


def test_degrade_frames_rejects_float_frames() -> None:
    with pytest.raises(InputError, match="uint8"):
        degrade_frames(np.zeros((2, 16, 16, 3), dtype=np.float32), 4, "light", 0)


@pytest.mark.parametrize("spec, message", [
    (dict(kind="iso", size=7, sigma_x=float("nan"), sigma_y=float("nan"), theta=0.0), r"sigma_x of an iso kernel must "
                                                                                     r"be a finite number, got nan"),
    (dict(kind="aniso", size=7, sigma_x=1.0, sigma_y=1.0, theta=float("nan")), "theta of an aniso kernel"),
    (dict(kind="plateau_iso", size=7, sigma_x=1.0, sigma_y=1.0, theta=0.0), "beta of a plateau_iso kernel .* None"),
    (dict(kind="iso", size=7), "sigma_x of an iso kernel must be a finite number, got None"),  # (a TypeError)
    (dict(kind="sinc", size=7, cutoff="1"), "cutoff of a sinc kernel"),
    (dict(kind="iso", size=7.5, sigma_x=1.0, sigma_y=1.0, theta=0.0), "size must be a whole number"),
    (dict(kind="gauss", size=7), "Unknown kernel kind 'gauss'"),
])
def test_a_kernel_spec_that_makes_no_kernel_is_refused_naming_the_field(spec: dict, message: str) -> None:
    """A NaN sigma, theta or beta (hand-edited --print-params values) degraded a clip to flat near-black frames
    without an error (black-box hunt)."""
    with pytest.raises(InputError, match=r"^(KernelSpec\.)?" + message):
        KernelSpec(**spec)


@pytest.mark.parametrize(
    "change, field_name",
    [
        ({"kernel_sizes": (7, 8)}, "kernel_sizes"),
        ({"kernel_sizes": (23,)}, "kernel_sizes"),
        ({"blur_prob": 1.5}, "blur_prob"),
        ({"blur_sigma_range": (3.0, 1.0)}, "blur_sigma_range"),
        ({"jpeg_quality_range": (0, 90)}, "jpeg_quality_range"),
        ({"kernel_probs": {"gaussian": 1.0}}, "kernel_probs"),
        ({"resize_modes": ("nearest",)}, "resize_modes"),
        ({"resize_range": (1.2, 1.5)}, "resize_range"),
        ({"kernel_sizes": 7}, r"kernel_sizes=7 must be a tuple of values, e\.g\. \(7,\)"),  # was a TypeError
        ({"resize_modes": "area"}, r"resize_modes='area' must be a tuple"),  # was split into 'a', 'r', 'e', 'a'
        ({"blur_prob": True}, "blur_prob=True must be a probability"),  # was taken as 1.0
        ({"kernel_probs": [1, 0, 0, 0, 0, 0]}, r"kernel_probs=\[1, 0, 0, 0, 0, 0\] must be a dict with keys among "
                                               r"iso, aniso, generalized_iso"),  # the valid keys, not an example
        ({"kernel_sizes": {7, 9}}, r"kernel_sizes=\{.*\} must be a tuple or list of values \(ordered\), not a set"),
        ({"resize_modes": frozenset({"area"})}, r"resize_modes=.* not a frozenset"),  # order from PYTHONHASHSEED
    ],
)
def test_invalid_order_settings_name_the_field(change: dict, field_name: str) -> None:
    with pytest.raises(InputError, match=f"OrderConfig.{field_name}"):
        OrderConfig(**change)


def test_ranges_from_yaml_lists_and_numpy_numbers_are_accepted() -> None:
    # a YAML list and NumPy scalars were refused ("must be a (min, max) tuple of numbers")
    config = OrderConfig(blur_sigma_range=[0.2, 1.5], jpeg_quality_range=(np.int64(40), 90))
    assert config.blur_sigma_range == (0.2, 1.5) and config.jpeg_quality_range == (40, 90)
    assert all(type(v) is int for v in config.jpeg_quality_range)
    assert RealWorldDegradation(DegradationConfig(), scale=np.int64(4)).scale == 4
    # the other fields too: NumPy probabilities, weights and kernel sides, a list of resize_probs
    config = OrderConfig(blur_prob=np.float32(0.5), kernel_sizes=[np.int64(7), 9], resize_probs=[0.2, 0.7, 0.1],
                         kernel_probs={k: np.float32(v) for k, v in OrderConfig().kernel_probs.items()})
    assert config.blur_prob == 0.5 and config.kernel_sizes == (7, 9) and config.resize_probs == (0.2, 0.7, 0.1)
    assert all(type(v) is float for v in config.kernel_probs.values())
    # NaN / inf ranges failed (or saturated the clip) only when a degradation drew them
    for change in ({"blur_sigma_range": (float("nan"), 3.0)}, {"resize_range": (0.5, float("inf"))}):
        with pytest.raises(InputError, match="values must be finite"):
            OrderConfig(**change)
    with pytest.raises(InputError, match="weights must be numbers"):  # was "must be >= 0 with a positive sum"
        OrderConfig(kernel_probs={"iso": "1"})
    with pytest.raises(InputError, match=r"kernel_probs has unknown keys \['1', 'isoo'\]"):  # YAML's `1:` is an int:
        OrderConfig(kernel_probs={1: 1, "isoo": 1})  # a TypeError sorting it with the strings
    with pytest.raises(InputError, match=r"second_order must be an OrderConfig, got NoneType \(to leave the second "
                                         r"order out: second_order_prob=0\)"):
        DegradationConfig(second_order=None)
    with pytest.raises(InputError, match=r"codec must be a CodecConfig, got dict"):
        DegradationConfig(codec={})


def test_disabled_stages_are_not_drawn() -> None:
    config = DegradationConfig(
        first_order=OrderConfig(
            blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, resize_probs=(0, 0, 1)
        ),
        second_order_prob=0.0,
        final_sinc_prob=0.0,
        codec=dataclasses.replace(DegradationConfig().codec, prob=0.0),
    )
    hr = panning_clip()
    lr = degrade_clip(hr, 2, config, seed=0)
    params = RealWorldDegradation(config, 2).sample_params(torch.Generator().manual_seed(0))
    assert params.first_order.kernel is None and params.first_order.noise is None
    assert params.second_order is None and params.final_sinc is None and params.codec is None
    # Only the final resize remains: the result is a plain 8-bit resize of the input.
    mode = params.final_resize_mode
    options = {} if mode == "area" else {"align_corners": False}
    expected = F.interpolate(hr, size=(HR_SIZE // 2, HR_SIZE // 2), mode=mode, **options)
    assert torch.equal(lr, (expected * 255).round().clamp(0, 255) / 255)


# --- DataLoader workers -----------------------------------------------------------------------


class _DegradedClips(Dataset):
    """Sample i: a panning clip degraded with seed 100 + i (per-sample seeds)."""

    def __init__(self, degradation: RealWorldDegradation, length: int) -> None:
        self.degradation = degradation
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.degradation(panning_clip(step=index + 1), seed=100 + index)


def test_picklable_and_deterministic_in_dataloader_workers() -> None:
    degradation = RealWorldDegradation(DegradationConfig.preset("medium"), scale=4)
    restored = pickle.loads(pickle.dumps(degradation))
    assert restored.config == degradation.config and restored.scale == 4

    dataset = _DegradedClips(degradation, length=4)
    runs = [torch.cat(list(DataLoader(dataset, batch_size=1, num_workers=2))) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])

    # Workers run torch with one thread; the same in this process gives the same bits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = torch.stack([dataset[i] for i in range(len(dataset))])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0], expected)
    assert not torch.equal(runs[0][0], runs[0][1])
