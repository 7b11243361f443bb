"""Tests of star_vsr.metrics: PSNR/SSIM against scikit-image, E*warp on clips with known motion,
evaluate_clip, and the offline loading of learned metrics (pyiqa) from local weight files.

The learned-metric tests never touch the network: weight files are generated here (random or
constant tensors with the right shapes) and sockets are disabled while metrics are built.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from star_vsr.errors import InputError, MissingWeightsError
from star_vsr.frames import FileFrameSource
from star_vsr.metrics import (
    LEARNED_METRICS,
    evaluate_clip,
    load_learned_metric,
    psnr,
    psnr_clip,
    resolve_weight_files,
    rgb_to_y,
    ssim,
    ssim_clip,
    warping_error,
)
from star_vsr.metrics import learned as learned_module
from star_vsr.metrics.warping import estimate_flow, non_occlusion_mask

# Agreement with scikit-image: both compute in float64 with the same Gaussian window, so the
# only differences are floating-point summation order (measured: < 1e-14).
SKIMAGE_TOLERANCE = 1e-8


# ----------------------------------------------------------------------------------------------
# Fixtures: real photos from skimage.data with synthetic degradations
# ----------------------------------------------------------------------------------------------


def _degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """SR-like degradations of a uint8 RGB image, returned as uint8 of the same shape."""
    if kind == "blur_noise":
        blurred = cv2.GaussianBlur(image, (0, 0), 1.2).astype(np.float64)
        return np.clip(blurred + rng.normal(0.0, 6.0, image.shape), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 30])
        assert ok
        return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if kind == "bicubic_x4":
        h, w = image.shape[:2]
        small = cv2.resize(image, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    raise AssertionError(kind)


PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}
DEGRADATIONS = {"astronaut": "blur_noise", "chelsea": "jpeg", "coffee": "bicubic_x4"}


@pytest.fixture(scope="module")
def photo_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (degraded, original), uint8 (h, w, 3)."""
    rng = np.random.default_rng(0)
    pairs = {}
    for name, load in PHOTOS.items():
        gt = load()
        pairs[name] = (_degrade(gt, DEGRADATIONS[name], rng), gt)
    return pairs


def _reference_metrics(pred: np.ndarray, gt: np.ndarray, crop: int, channel: str) -> tuple[float, float]:
    """scikit-image PSNR and SSIM with the SR conventions, on our own Y conversion."""
    inner = slice(crop, -crop) if crop else slice(None)
    if channel == "y":
        a, b, channel_axis = rgb_to_y(gt)[inner, inner], rgb_to_y(pred)[inner, inner], None
    else:
        a, b = gt[inner, inner].astype(np.float64), pred[inner, inner].astype(np.float64)
        channel_axis = -1
    reference_psnr = peak_signal_noise_ratio(a, b, data_range=255)
    reference_ssim = structural_similarity(
        a,
        b,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=channel_axis,
    )
    return reference_psnr, reference_ssim


# ----------------------------------------------------------------------------------------------
# PSNR / SSIM
# ----------------------------------------------------------------------------------------------


def test_rgb_to_y_is_matlab_bt601_studio_swing():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(pixels)  # (1, 5)
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(pixels.astype(np.float32) / 255), y, atol=1e-4)
    # float frames in [0, 255] gave luma up to 55861; a list or a grayscale frame was numpy's traceback
    with pytest.raises(InputError, match=r"frame is float with values in \[0, 255\]; float frames must lie in"):
        rgb_to_y(pixels.astype(np.float64))
    with pytest.raises(InputError, match="frame must be a numpy array shaped"):
        rgb_to_y([[0.5, 0.5, 0.5]])
    with pytest.raises(InputError, match=r"frame must be RGB shaped \(h, w, 3\), got shape \(1, 5, 4\)"):
        rgb_to_y(np.zeros((1, 5, 4), np.uint8))


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("channel", ["y", "rgb"])
@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_ssim_match_scikit_image(photo_pairs, name, channel, crop):
    pred, gt = photo_pairs[name]
    reference_psnr, reference_ssim = _reference_metrics(pred, gt, crop, channel)
    ours_psnr = psnr(pred, gt, crop_border=crop, channel=channel)
    ours_ssim = ssim(pred, gt, crop_border=crop, channel=channel)
    assert abs(ours_psnr - reference_psnr) < SKIMAGE_TOLERANCE
    assert abs(ours_ssim - reference_ssim) < SKIMAGE_TOLERANCE
    # the degradations are real ones: far from identical, far from garbage
    assert 20.0 < ours_psnr < 40.0
    assert 0.5 < ours_ssim < 0.99


def test_float_frames_in_unit_range_equal_uint8(photo_pairs):
    pred, gt = photo_pairs["chelsea"]
    pred_f, gt_f = pred.astype(np.float32) / 255, gt.astype(np.float64) / 255
    for channel in ("y", "rgb"):
        assert psnr(pred_f, gt_f, 4, channel) == pytest.approx(psnr(pred, gt, 4, channel), abs=1e-4)
        assert ssim(pred_f, gt_f, 4, channel) == pytest.approx(ssim(pred, gt, 4, channel), abs=1e-6)
    # mixed dtypes are fine too
    assert psnr(pred_f, gt, 4) == pytest.approx(psnr(pred, gt, 4), abs=1e-4)


def test_identical_frames_give_infinite_psnr_and_unit_ssim(photo_pairs):
    _, gt = photo_pairs["coffee"]
    assert psnr(gt, gt) == float("inf")
    assert ssim(gt, gt.copy(), channel="rgb") == pytest.approx(1.0, abs=1e-12)


def test_crop_border_removes_border_pixels(photo_pairs):
    _, gt = photo_pairs["astronaut"]
    pred = gt.copy()
    pred[:3] = 0  # damage only the top 3 rows
    pred[:, -2:] = 255  # and the 2 rightmost columns
    assert psnr(pred, gt, crop_border=0) < 30.0
    assert psnr(pred, gt, crop_border=3) == float("inf")
    assert ssim(pred, gt, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    assert ssim(pred, gt, crop_border=0) < 0.999


def test_clip_metrics_average_per_frame_values(photo_pairs):
    pred, gt = photo_pairs["astronaut"]
    gt_clip = np.stack([gt[:256, :256], gt[256:, 256:], gt[:256, 256:]])  # (3, 256, 256, 3)
    rng = np.random.default_rng(1)
    noise_levels = [2.0, 8.0, 20.0]  # very different per-frame errors
    pred_clip = np.stack(
        [
            np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)
            for frame, sigma in zip(gt_clip, noise_levels)
        ]
    )
    per_frame_psnr = [psnr(p, g, 4, "rgb") for p, g in zip(pred_clip, gt_clip)]
    per_frame_ssim = [ssim(p, g, 4, "y") for p, g in zip(pred_clip, gt_clip)]
    assert psnr_clip(pred_clip, gt_clip, 4, "rgb") == pytest.approx(np.mean(per_frame_psnr), abs=1e-12)
    assert ssim_clip(pred_clip, gt_clip, 4, "y") == pytest.approx(np.mean(per_frame_ssim), abs=1e-12)
    # per-frame averaging is not PSNR of the pooled MSE
    inner = slice(4, -4)
    pooled_mse = np.mean(
        (pred_clip[:, inner, inner].astype(np.float64) - gt_clip[:, inner, inner]) ** 2
    )
    assert abs(psnr_clip(pred_clip, gt_clip, 4, "rgb") - 10 * np.log10(255**2 / pooled_mse)) > 0.5


def test_shape_mismatch_names_both_shapes(photo_pairs):
    pred, gt = photo_pairs["chelsea"]
    cropped = pred[:-2]
    for metric in (psnr, ssim):
        with pytest.raises(InputError, match=r"\(298, 451, 3\).*\(300, 451, 3\)"):
            metric(cropped, gt)
    with pytest.raises(InputError, match=r"\(2, 300, 451, 3\).*\(3, 300, 451, 3\)"):
        psnr_clip(np.stack([pred] * 2), np.stack([gt] * 3))
    with pytest.raises(InputError, match=r"\(2, 298, 451, 3\).*\(2, 300, 451, 3\)"):
        evaluate_clip(np.stack([cropped] * 2), np.stack([gt] * 2))


def test_bad_inputs_raise_input_error(photo_pairs):
    pred, gt = photo_pairs["coffee"]
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        psnr(pred.astype(np.float32), gt)  # float frames on the 0..255 scale
    with pytest.raises(InputError, match="int32"):
        ssim(pred.astype(np.int32), gt)
    with pytest.raises(InputError, match="RGB"):
        psnr(pred[..., 0], gt[..., 0])
    with pytest.raises(InputError, match="crop_border"):
        psnr(pred, gt, crop_border=200)
    with pytest.raises(InputError, match="crop_border must be an integer >= 0, got True"):  # was a 1-pixel crop
        psnr(pred, gt, crop_border=True)
    with pytest.raises(InputError, match="11x11"):
        ssim(pred[:24, :24], gt[:24, :24], crop_border=8)
    with pytest.raises(InputError, match="channel"):
        psnr(pred, gt, channel="ycbcr")


# ----------------------------------------------------------------------------------------------
# Warping error
# ----------------------------------------------------------------------------------------------

CLIP_HEIGHT, CLIP_WIDTH, CLIP_FRAMES = 96, 128, 5
CROP_TOP, CROP_LEFT = 100, 150


def _translating_clip(dx: float, dy: float) -> np.ndarray:
    """(n, h, w, 3) uint8 crops of the astronaut photo, content moving by (dx, dy) px per frame."""
    photo = data.astronaut()
    frames = []
    for t in range(CLIP_FRAMES):
        shift = np.float32([[1, 0, dx * t], [0, 1, dy * t]])
        moved = cv2.warpAffine(photo, shift, photo.shape[1::-1], flags=cv2.INTER_LINEAR)
        frames.append(moved[CROP_TOP : CROP_TOP + CLIP_HEIGHT, CROP_LEFT : CROP_LEFT + CLIP_WIDTH])
    return np.stack(frames)


@pytest.fixture(scope="module")
def moving_clips() -> dict[str, np.ndarray]:
    return {
        "integer": _translating_clip(2.0, 1.0),
        "subpixel": _translating_clip(1.5, 0.5),
    }


def test_dis_flow_recovers_integer_translation(moving_clips):
    clip = moving_clips["integer"]
    flow = estimate_flow(clip[0], clip[1])  # (h, w, 2)
    assert flow.shape == (CLIP_HEIGHT, CLIP_WIDTH, 2) and flow.dtype == np.float32
    interior = flow[16:-16, 16:-16].reshape(-1, 2)
    # content moves right/down, so frame t(x) = frame t+1(x + (2, 1))
    np.testing.assert_allclose(np.median(interior, axis=0), [2.0, 1.0], atol=0.1)


def test_non_occlusion_mask_forward_backward_check():
    height, width = 20, 30
    forward = np.zeros((height, width, 2), np.float32)
    forward[..., 0] = 3.0
    consistent = non_occlusion_mask(forward, -forward)
    assert consistent[:, : width - 3].all()  # matches inside frame t+1
    assert not consistent[:, width - 2 :].any()  # x + 3 leaves the frame
    assert not non_occlusion_mask(forward, forward).any()  # backward flow disagrees everywhere
    # a motion boundary: left half static, right half moving
    split = np.zeros((height, width, 2), np.float32)
    split[:, width // 2 :, 0] = 2.0
    backward = np.zeros_like(split)
    backward[:, width // 2 + 2 :, 0] = -2.0
    mask = non_occlusion_mask(split, backward)
    assert not mask[:, width // 2 - 1].any()  # the boundary column is excluded
    assert mask[:, : width // 2 - 2].all()


def test_warping_error_of_frames_too_small_for_the_flow_is_an_input_error():
    # 11 pixels on a side was OpenCV's "(-201:Incorrect size of input array)"; 12-15 high and 40 wide killed the
    # process (segfault inside OpenCV's DIS)
    for height, width in ((11, 40), (12, 40), (15, 64), (40, 11)):
        with pytest.raises(InputError, match=f"needs frames at least 16 pixels high and 12 wide for its optical flow, "
                                             f"got {width}x{height}"):
            warping_error(np.zeros((3, height, width, 3), np.uint8))
    assert warping_error(np.zeros((3, 16, 64, 3), np.uint8)) == 0.0
    assert warping_error(np.zeros((3, 40, 12, 3), np.uint8)) == 0.0


def test_estimate_flow_checks_its_frames():
    """The public flow function checked nothing: [0, 255] floats wrapped into garbage luma, frames of two shapes and
    small frames were OpenCV tracebacks (or, 12-15 pixels high, a crash of the process)."""
    frame = data.chelsea()[:32, :48]
    assert estimate_flow(frame, frame).shape == (32, 48, 2)
    for source, target, message in ((frame.astype(np.float32), frame, "float frames must lie in"),
                                    (frame, frame[:16], "source has shape .* but target has shape"),
                                    (frame[:12], frame[:12], "needs frames at least 16 pixels high")):
        with pytest.raises(InputError, match=message):
            estimate_flow(source, target)


def test_static_clip_has_zero_warping_error():
    frame = data.chelsea()[:96, :128]
    assert warping_error(np.stack([frame] * 4)) == pytest.approx(0.0, abs=1e-9)


def test_translating_texture_has_near_zero_warping_error(moving_clips):
    # bilinear warping of a textured photo leaves a small interpolation residue for
    # sub-pixel motion (measured 0.02 integer, 0.29 sub-pixel, x 1e-3)
    assert warping_error(moving_clips["integer"]) < 0.1
    assert warping_error(moving_clips["subpixel"]) < 0.6


@pytest.mark.parametrize("motion", ["integer", "subpixel"])
def test_flicker_and_noise_raise_warping_error(moving_clips, motion):
    clip = moving_clips[motion]
    rng = np.random.default_rng(2)
    frames = clip.astype(np.float32) / 255
    clean = warping_error(clip)
    gains = np.float32([1.0, 1.12, 0.9, 1.1, 0.88]).reshape(-1, 1, 1, 1)  # per-frame brightness
    flicker = np.clip(frames * gains, 0.0, 1.0)
    noisy = np.clip(frames + rng.normal(0.0, 0.03, frames.shape).astype(np.float32), 0.0, 1.0)
    for degraded in (flicker, noisy):
        for flow_frames in (None, clip):
            error = warping_error(degraded, flow_frames=flow_frames)
            assert error > 1.0
            assert error > 4.0 * clean


def test_flow_is_estimated_on_flow_frames(moving_clips):
    clip = moving_clips["integer"]
    static = np.stack([clip[0]] * CLIP_FRAMES)  # says "nothing moves"
    assert warping_error(clip, flow_frames=clip) < 0.1
    # with zero flow the moving frames no longer line up
    assert warping_error(clip, flow_frames=static) > 5.0


def test_warping_error_input_errors(moving_clips):
    clip = moving_clips["integer"]
    with pytest.raises(InputError, match="at least 2 frames"):
        warping_error(clip[:1])
    with pytest.raises(InputError, match=r"\(5, 96, 128, 3\).*\(5, 96, 120, 3\)"):
        warping_error(clip, flow_frames=clip[:, :, :120])


# ----------------------------------------------------------------------------------------------
# evaluate_clip
# ----------------------------------------------------------------------------------------------


def test_evaluate_clip_combines_the_metrics(moving_clips):
    gt = moving_clips["subpixel"]
    rng = np.random.default_rng(3)
    pred = np.clip(gt + rng.normal(0, 5, gt.shape), 0, 255).astype(np.uint8)
    results = evaluate_clip(pred, gt, scale=4)
    assert list(results) == ["psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "ewarp"]
    assert all(type(value) is float for value in results.values())
    assert results["psnr_y"] == pytest.approx(psnr_clip(pred, gt, 4, "y"), abs=1e-12)
    assert results["ssim_y"] == pytest.approx(ssim_clip(pred, gt, 4, "y"), abs=1e-12)
    assert results["psnr_rgb"] == pytest.approx(psnr_clip(pred, gt, 4, "rgb"), abs=1e-12)
    assert results["ssim_rgb"] == pytest.approx(ssim_clip(pred, gt, 4, "rgb"), abs=1e-12)
    assert results["ewarp"] == pytest.approx(warping_error(pred, flow_frames=gt), abs=1e-12)
    assert "ewarp" not in evaluate_clip(pred, gt, scale=4, warp=False)
    with pytest.raises(InputError, match="warp=False"):
        evaluate_clip(pred[:1], gt[:1])
    single_frame = evaluate_clip(pred[:1], gt[:1], warp=False)
    assert set(single_frame) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}
    with pytest.raises(InputError, match="scale"):
        evaluate_clip(pred, gt, scale=0)


def test_evaluate_videos_max_frames_scores_the_first_frames_across_chunks(moving_clips, tmp_path):
    from star_vsr.io import VideoWriter
    from star_vsr.metrics import evaluate_videos

    gt = moving_clips["subpixel"]  # (n, h, w, 3)
    pred = np.clip(gt + np.random.default_rng(4).normal(0, 5, gt.shape), 0, 255).astype(np.uint8)
    for name, frames in (("gt.mkv", gt), ("pred.mkv", pred)):
        with VideoWriter(tmp_path / name, 24, codec="ffv1") as writer:
            for frame in frames:
                writer.write(frame)
    first = CLIP_FRAMES - 2  # 3 of 5, with chunks of 2: the second chunk is cut
    scores = evaluate_videos(str(tmp_path / "pred.mkv"), str(tmp_path / "gt.mkv"), chunk_size=2, max_frames=first)
    expected = evaluate_clip(pred[:first], gt[:first], scale=4)
    assert scores["frames"] == first
    assert all(scores[key] == pytest.approx(value, abs=1e-9) for key, value in expected.items())
    with pytest.raises(InputError, match="max_frames must be a whole number"):
        evaluate_videos(str(tmp_path / "pred.mkv"), str(tmp_path / "gt.mkv"), max_frames=0)
    # a NumPy integer, as crf, chunk_size and upscale take it ("must be a whole number ..., got np.int64(3)")
    assert evaluate_videos(str(tmp_path / "pred.mkv"), str(tmp_path / "gt.mkv"), max_frames=np.int64(first)) == scores
    source = FileFrameSource(tmp_path / "pred.mkv", max_frames=np.int64(2))
    assert source.num_frames == 2 and type(source.max_frames) is int
    # chunk_size too (it was "chunk_size must be a positive integer, got np.int64(2)"), and a bad one is refused
    # before the files are read
    for chunk_size in (np.int64(2), 2.0):
        assert evaluate_videos(str(tmp_path / "pred.mkv"), str(tmp_path / "gt.mkv"), chunk_size=chunk_size,
                               max_frames=first) == scores
    with pytest.raises(InputError, match="chunk_size must be a whole number >= 1"):
        evaluate_videos(str(tmp_path / "missing.mkv"), str(tmp_path / "gt.mkv"), chunk_size=0)


# ----------------------------------------------------------------------------------------------
# Learned metrics: local weights only
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _weight_path(root: Path, name: str, filename: str) -> Path:
    [weight] = [w for w in LEARNED_METRICS[name].files if w.filename == filename]
    path = weight.path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _constant_state_dict(module: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    """A state dict of the module's shapes holding ``value``, stored with stride 0 (tiny files)."""
    return {key: torch.tensor(value).expand(tensor.shape) for key, tensor in module.state_dict().items()}


LPIPS_ALEX_CHANNELS = (64, 192, 384, 256, 256)


@pytest.fixture(scope="module")
def lpips_weights(tmp_path_factory) -> dict[str, object]:
    """A weights dir with a random AlexNet backbone and random LPIPS heads, in pyiqa's layout."""
    from torchvision.models import alexnet

    root = tmp_path_factory.mktemp("weights")
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        backbone = alexnet()
    # LPIPS uses only the convolutional features; the classifier is stored as stride-0 zeros
    backbone_state = {
        key: (
            torch.randn(tensor.shape, generator=generator) * 0.05
            if key.startswith("features")
            else torch.tensor(0.0).expand(tensor.shape)
        )
        for key, tensor in backbone.state_dict().items()
    }
    torch.save(backbone_state, _weight_path(root, "lpips", "alexnet-owt-7be5be79.pth"))
    heads = {
        f"lin{i}.model.1.weight": torch.rand(1, channels, 1, 1, generator=generator)
        for i, channels in enumerate(LPIPS_ALEX_CHANNELS)
    }
    torch.save(heads, _weight_path(root, "lpips", "LPIPS_v0.1_alex-df73285e.pth"))
    return {"root": root, "backbone": backbone_state, "heads": heads}


@pytest.mark.parametrize("name", sorted(LEARNED_METRICS))
def test_missing_weights_error_names_files_urls_and_destination(tmp_path, monkeypatch, no_network, name):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # files must be checked before pyiqa is used
    with pytest.raises(MissingWeightsError) as raised:
        load_learned_metric(name, weights_dir=tmp_path)
    message = str(raised.value)
    for weight in LEARNED_METRICS[name].files:
        assert weight.filename in message
        assert weight.url in message
        assert str(weight.path(tmp_path.resolve())) in message


def test_missing_weights_lists_only_the_absent_file(tmp_path):
    present = _weight_path(tmp_path, "dists", "vgg16-397923af.pth")
    present.write_bytes(b"placeholder")
    with pytest.raises(MissingWeightsError) as raised:
        resolve_weight_files("dists", tmp_path)
    message = str(raised.value)
    assert "DISTS_weights-f5e65c96.pth" in message
    pyiqa_hub = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
    assert f"{pyiqa_hub}/DISTS_weights-f5e65c96.pth" in message
    assert "vgg16-397923af.pth" not in message


def test_default_weights_dir_is_the_torch_hub_dir():
    with pytest.raises(MissingWeightsError) as raised:
        resolve_weight_files("musiq", weights_dir=Path(torch.hub.get_dir()) / "no-such-subdir")
    assert "musiq_koniq_ckpt-e95806b9.pth" in str(raised.value)
    assert learned_module.default_weights_dir() == Path(torch.hub.get_dir())


def test_missing_files_in_the_default_folder_say_it_is_the_default(tmp_path, monkeypatch):
    """The message said "<hub folder> does not exist: a typo, or make that folder" of a folder never typed."""
    monkeypatch.setattr(learned_module, "default_weights_dir", lambda: tmp_path / "hub")
    with pytest.raises(MissingWeightsError, match=r"^The musiq metric needs weight files that are not in .*hub \(the "
                                                  r"default, torch's hub folder, which does not exist; or pass"):
        resolve_weight_files("musiq")
    with pytest.raises(MissingWeightsError, match=r"\(.*typed does not exist: a typo, or make that folder\)"):
        resolve_weight_files("musiq", tmp_path / "typed")


def test_weight_urls_match_torchvision():
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    urls = {w.filename: w.url for spec in LEARNED_METRICS.values() for w in spec.files}
    assert urls["alexnet-owt-7be5be79.pth"] == AlexNet_Weights.IMAGENET1K_V1.url
    assert urls["vgg16-397923af.pth"] == VGG16_Weights.IMAGENET1K_V1.url


def test_unknown_and_unavailable_metrics():
    with pytest.raises(InputError, match="lpips"):
        load_learned_metric("niqe-but-not-really")
    with pytest.raises(InputError, match="DOVER is not part of pyiqa"):
        load_learned_metric("DOVER")


def test_missing_pyiqa_says_how_to_install(lpips_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    with pytest.raises(InputError, match=r"pip install --no-deps pyiqa"):
        load_learned_metric("lpips", weights_dir=lpips_weights["root"])


def test_a_package_missing_behind_pyiqa_is_named_without_asking_to_install_pyiqa(lpips_weights, monkeypatch):
    """pyiqa installed, a package one metric needs missing (openai-clip for CLIP-IQA): the error said "Install pyiqa"
    (README walkthrough)."""
    import pyiqa

    def missing_clip(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'clip'", name="clip")

    monkeypatch.setattr(pyiqa, "create_metric", missing_clip)
    with pytest.raises(InputError) as caught:
        load_learned_metric("lpips", weights_dir=lpips_weights["root"])
    message = str(caught.value)
    assert message.startswith("pyiqa could not import clip, which the lpips metric needs") and "pyiqa (" not in message
    assert "`pip install openai-clip` provides CLIP" in message


@pytest.mark.parametrize("content", [b"junk text", b"", b"garbage\n"])
def test_damaged_weight_file_is_one_clear_error(lpips_weights, no_network, tmp_path, content):
    """A junk or empty file under the expected name raised pyiqa's UnpicklingError as a traceback; one that starts
    with "g" (a pickle GET opcode) a ValueError from inside torch.load."""
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(lpips_weights["root"], root)
    _weight_path(root, "lpips", "LPIPS_v0.1_alex-df73285e.pth").write_bytes(content)
    with pytest.raises(InputError, match=r"cannot load the lpips weights: .*LPIPS_v0\.1_alex-df73285e\.pth cannot be "
                                         r"read as plain weights \(.+\): it is damaged, or holds Python objects, "
                                         r"which loading would run\. Download it again: https://"):
        load_learned_metric("lpips", weights_dir=root)


def test_a_weight_file_that_would_run_code_is_refused_and_an_older_format_one_loads(lpips_weights, no_network,
                                                                                   tmp_path):
    """pyiqa and torchvision load the files with weights_only=False, so a crafted backbone file ran the code it named
    when the check before them could not read it (security review); torch's older format (torchvision's own
    downloads) cannot be memory-mapped, and is read whole."""
    import shutil

    from star_vsr.testing import code_running_pickle

    root = tmp_path / "weights"
    shutil.copytree(lpips_weights["root"], root)
    backbone = _weight_path(root, "lpips", "alexnet-owt-7be5be79.pth")
    torch.save(lpips_weights["backbone"], backbone, _use_new_zipfile_serialization=False)
    assert load_learned_metric("lpips", weights_dir=root) is not None
    backbone.write_bytes(code_running_pickle(tmp_path / "ran"))
    with pytest.raises(InputError, match=r"alexnet-owt-7be5be79\.pth cannot be read as plain weights \(Unsupported "
                                         r"global: .*\): it is damaged, or holds Python objects"):
        load_learned_metric("lpips", weights_dir=root)
    assert not (tmp_path / "ran").exists()


def test_a_weight_file_without_the_metric_s_tensors_is_refused(lpips_weights, tmp_path):
    """pyiqa loads LPIPS' and DISTS' own files with strict=False: a file of other tensors loaded nothing, and LPIPS
    scored 0.0000 with its untrained head, exit status 0 (black-box hunt)."""
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(lpips_weights["root"], root)
    heads = dict(lpips_weights["heads"])
    del heads["lin3.model.1.weight"]
    heads = {"module." + key: value for key, value in heads.items()}  # (the prefix parallel training adds: fine)
    torch.save(heads, _weight_path(root, "lpips", "LPIPS_v0.1_alex-df73285e.pth"))
    with pytest.raises(InputError, match=r"cannot load the lpips weights: .*LPIPS_v0\.1_alex-df73285e\.pth holds no "
                                         r"lin3\.model\.1\.weight, so it is no LPIPS v0\.1 linear layers for AlexNet "
                                         r"file \(damaged, or another download\). Download it again: https://"):
        load_learned_metric("lpips", weights_dir=root)


@pytest.mark.parametrize("content", [torch.zeros(3), [1, 2]])
def test_a_weight_file_holding_no_state_dict_is_one_clear_error(lpips_weights, no_network, tmp_path, content):
    """A backbone file that loads but holds a tensor or a list was a traceback ("Expected state_dict to be
    dict-like"; MUSIQ's "'Tensor' object has no attribute 'items'") with exit status 1 (black-box hunt)."""
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(lpips_weights["root"], root)
    torch.save(content, _weight_path(root, "lpips", "alexnet-owt-7be5be79.pth"))
    kind = type(content).__name__
    with pytest.raises(InputError, match=rf"^cannot load the lpips weights: .*alexnet-owt-7be5be79\.pth holds a "
                                         rf"{kind}, not a network's tensors, so it is no torchvision AlexNet ImageNet "
                                         r"weights \(LPIPS backbone\) file \(damaged, or another download\)\. "
                                         r"Download it again: https://download\.pytorch\.org/models/"
                                         r"alexnet-owt-7be5be79\.pth$"):
        load_learned_metric("lpips", weights_dir=root)
    torch.save(content, _weight_path(tmp_path / "musiq", "musiq", "musiq_koniq_ckpt-e95806b9.pth"))
    with pytest.raises(InputError, match=rf"^cannot load the musiq weights: .* holds a {kind}, not a network's"):
        load_learned_metric("musiq", weights_dir=tmp_path / "musiq")


def test_a_state_dict_that_does_not_fit_says_why(lpips_weights, no_network, tmp_path):
    """The reason was "Error(s) in loading state_dict for AlexNet:", the line saying which tensor left out."""
    import shutil

    root = tmp_path / "weights"
    shutil.copytree(lpips_weights["root"], root)
    backbone = dict(lpips_weights["backbone"])
    backbone["features.0.weight"] = backbone["features.0.weight"][:1]
    torch.save(backbone, _weight_path(root, "lpips", "alexnet-owt-7be5be79.pth"))
    with pytest.raises(InputError, match=r"^cannot load the lpips weights \(Error\(s\) in loading state_dict for \w+: "
                                         r"size mismatch for .*features\.0\.weight"):
        load_learned_metric("lpips", weights_dir=root)


def test_first_line_joins_a_line_ending_in_a_colon_with_the_start_of_the_next():
    from star_vsr.errors import FIRST_LINE_REASON, first_line

    joined = first_line(RuntimeError("Error(s) in loading:\n\tsize mismatch\nmore"))
    assert joined == "Error(s) in loading: size mismatch"
    long = first_line(RuntimeError("Error(s):\n" + "x" * 1000))  # (every missing key: thousands of characters)
    assert len(long) == len("Error(s): ") + FIRST_LINE_REASON and long.endswith("...")
    assert first_line(RuntimeError("one: two")) == "one: two" and first_line(EOFError()) == "EOFError"


def test_a_device_the_metric_cannot_use_is_one_clear_error(lpips_weights):
    """torch's own RuntimeErrors ("Expected one of cpu, cuda, ..." / "Found no NVIDIA driver") came raw."""
    from star_vsr.errors import DeviceError

    with pytest.raises(InputError, match=r"^unknown device 'foo': use auto, cpu, cuda or cuda:N$"):
        load_learned_metric("lpips", weights_dir=lpips_weights["root"], device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"needs a CUDA GPU, and none is available"):
            load_learned_metric("lpips", weights_dir=lpips_weights["root"], device="cuda")
    from star_vsr.upscale import resolve_device  # other devices torch knows are the caller's (pyiqa runs on MPS)

    assert resolve_device("MPS", other_types=True) == torch.device("mps")
    with pytest.raises(InputError, match=r"^unknown device 'mps'"):
        resolve_device("mps")


def test_out_of_memory_while_a_metric_loads_is_not_called_a_damaged_file(lpips_weights, no_network, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(torch.nn.Module, "to", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        load_learned_metric("lpips", weights_dir=lpips_weights["root"])


def test_lpips_loads_local_weights_offline(lpips_weights, no_network):
    hub_dir_before = torch.hub.get_dir()
    metric = load_learned_metric("lpips", weights_dir=lpips_weights["root"])
    assert torch.hub.get_dir() == hub_dir_before  # the hub dir is put back
    lpips_net = metric.network.net
    heads, backbone = lpips_weights["heads"], lpips_weights["backbone"]
    torch.testing.assert_close(lpips_net.lin2.model[1].weight, heads["lin2.model.1.weight"])
    torch.testing.assert_close(lpips_net.net.slice1[0].weight, backbone["features.0.weight"])
    assert metric.full_reference and metric.lower_better

    gt = data.astronaut()[:64, :64]
    brighter = np.clip(gt.astype(np.int16) + 40, 0, 255).astype(np.uint8)
    assert metric.score_frame(gt, gt) == pytest.approx(0.0, abs=1e-6)
    distance = metric.score_frame(brighter, gt)
    assert distance > 1e-3
    assert metric.score_frame(brighter.astype(np.float32) / 255, gt) == pytest.approx(distance, rel=1e-4)
    clip_score = metric.score_clip(np.stack([gt, brighter]), np.stack([gt, gt]))
    assert clip_score == pytest.approx(distance / 2, rel=1e-5)
    with pytest.raises(InputError, match="full-reference"):
        metric.score_frame(gt)
    # AlexNet's pooling needs 31 pixels a side: a traceback ("Output size is too small") mid-run
    with pytest.raises(InputError, match="lpips cannot score frames of 30x30: they are too small for its network"):
        metric.score_frame(gt[:30, :30], gt[:30, :30])
    # under 11 px AlexNet's first convolution refuses them (a raw RuntimeError: "Kernel size can't be greater")
    with pytest.raises(InputError, match="lpips cannot score frames of 5x5: they are too small for its network"):
        metric.check_frame_size(5, 5)


def test_a_clip_too_small_for_a_learned_metric_is_refused_before_any_clip_is_scored(lpips_weights, tmp_path,
                                                                                       capsys):
    """``evaluate --metrics lpips`` on a folder stopped at the first clip too small for AlexNet, after scoring the
    clips before it (minutes of work on real videos); the sizes are checked with the others, before scoring."""
    from star_vsr.cli import main
    from star_vsr.io.synthetic import write_test_video

    metric = load_learned_metric("lpips", weights_dir=lpips_weights["root"])
    tried = []
    score_frame = metric.score_frame
    metric.score_frame = lambda *frames: tried.append(frames[0].shape) or score_frame(*frames)
    metric.check_frame_size(31, 31)
    metric.check_frame_size(31, 31)  # a size once: not per clip
    metric.check_frame_size(2000, 1000)  # not tried: large enough for any metric
    assert tried == [(31, 31, 3)]
    with pytest.raises(InputError, match="lpips cannot score frames of 30x40: they are too small"):
        metric.check_frame_size(40, 30)
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
        write_test_video(tmp_path / folder / "a.mkv", num_frames=2, size=(32, 32), codec="ffv1")
        write_test_video(tmp_path / folder / "b.mkv", num_frames=2, size=(24, 24), codec="ffv1")
    report = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "lpips",
                 "--weights-dir", str(lpips_weights["root"]), "--json", str(report)]) == 2
    captured = capsys.readouterr()
    assert f"error: {tmp_path / 'pred' / 'b.mkv'}: lpips cannot score frames of 24x24: they are too small" \
        in captured.err
    assert "a.mkv" not in captured.err and not captured.out and not report.exists()


def test_dists_and_musiq_load_the_given_files(tmp_path, no_network):
    from pyiqa.archs.musiq_arch import MUSIQ
    from torchvision.models import vgg16

    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        backbone, musiq = vgg16(), MUSIQ(pretrained=False)
    backbone_file = _weight_path(tmp_path, "dists", "vgg16-397923af.pth")
    torch.save(_constant_state_dict(backbone, 0.01), backbone_file)
    dists_channels = 3 + 64 + 128 + 256 + 512 + 512
    dists_state = {
        "alpha": torch.rand(1, dists_channels, 1, 1, generator=generator),
        "beta": torch.rand(1, dists_channels, 1, 1, generator=generator),
    }
    torch.save(dists_state, _weight_path(tmp_path, "dists", "DISTS_weights-f5e65c96.pth"))
    musiq_file = _weight_path(tmp_path, "musiq", "musiq_koniq_ckpt-e95806b9.pth")
    torch.save(_constant_state_dict(musiq, 0.02), musiq_file)

    dists = load_learned_metric("dists", weights_dir=tmp_path)
    torch.testing.assert_close(dists.network.net.alpha, dists_state["alpha"])
    first_conv = dists.network.net.stage1[0].weight
    torch.testing.assert_close(first_conv, torch.full_like(first_conv, 0.01))
    musiq_metric = load_learned_metric("musiq", weights_dir=tmp_path)
    assert not musiq_metric.full_reference and not musiq_metric.lower_better
    head = musiq_metric.network.net.head.weight
    torch.testing.assert_close(head, torch.full_like(head, 0.02))


def test_an_unexpected_download_raises_instead_of_reaching_the_network(
    lpips_weights, monkeypatch, no_network
):
    # Pretend star-vsr forgot that LPIPS needs the AlexNet backbone: torchvision then tries to
    # download it, and the guard turns that into a MissingWeightsError naming the URL.
    spec = LEARNED_METRICS["lpips"]
    forgetful = dataclasses.replace(spec, files=(spec.local_path_file,))
    monkeypatch.setitem(learned_module.LEARNED_METRICS, "lpips", forgetful)
    empty_hub = lpips_weights["root"].parent / "hub-without-backbone"
    heads = _weight_path(empty_hub, "lpips", "LPIPS_v0.1_alex-df73285e.pth")
    heads.write_bytes(lpips_weights["root"].joinpath("pyiqa", heads.name).read_bytes())
    download_before = torch.hub.download_url_to_file
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        load_learned_metric("lpips", weights_dir=empty_hub)
    assert torch.hub.download_url_to_file is download_before  # the guard is lifted again
