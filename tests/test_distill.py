"""Distillation: loss terms, ConvLSTM freeze rule, teacher adapters, the teacher cache and its CLI, training."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from star_vsr.cli import main as cli_main
from star_vsr.distill.cache import CacheManifest, TeacherCache, build_teacher_cache, check_cache_folder
from star_vsr.distill.convlstm import ConvLSTM
from star_vsr.distill.teacher import CallableTeacher, StudentTeacher, load_teacher
from star_vsr.errors import (DeviceError, InputError, MissingWeightsError, OutputBusyError, OutputError,
                             RanOutOfMemoryError)
from star_vsr.outputs import folder_lock
from star_vsr.io import open_video
from star_vsr.losses.distillation import (
    VGG19_LAYERS,
    DistillationCriterion,
    DistillationLossConfig,
    FeatureDistillationLoss,
    TimeDistillationLoss,
    VGGPerceptualLoss,
    attention_map,
    charbonnier_loss,
    space_distillation_loss,
)
from star_vsr.models.student import STUDENT_PRESETS, StarStudentModel
from star_vsr.testing import ctrl_c_in_optimizer_step, safetensors_modes

REPO = Path(__file__).resolve().parents[1]
SCALE = 4
TEACHER_HR_CHANNELS = 12  # differs from the tiny student's width, so the feature loss needs an adapter


def tiny_student(seed: int = 0, **overrides) -> StarStudentModel:
    model = StarStudentModel.from_preset("tiny", **overrides)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


def tiny_teacher_student(seed: int = 1) -> StarStudentModel:
    return tiny_student(seed, hr_channels=TEACHER_HR_CHANNELS)


def random_clips(count: int, frames: int = 3, size: int = 8, seed: int = 0, gt: bool = True) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    clips = []
    for index in range(count):
        clip = {"lq": torch.rand(frames, 3, size, size, generator=generator), "caption": f"clip {index}"}
        if gt:
            clip["gt"] = torch.rand(frames, 3, size * SCALE, size * SCALE, generator=generator)
        clips.append(clip)
    return clips


class CountingTeacher:
    """Bicubic upscaling with features that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, lq: torch.Tensor):
        self.calls += 1
        sr = F.interpolate(lq, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return sr, {"hr_features": sr.repeat(1, 2, 1, 1)}  # (n, 6, H, W)


# --------------------------------------------------------------------------- losses


def test_charbonnier_is_smooth_l1():
    x = torch.zeros(2, 3, 4, 4)
    assert charbonnier_loss(x, x, eps=1e-3).item() == pytest.approx(1e-3)
    assert charbonnier_loss(x, x + 0.5, eps=1e-3).item() == pytest.approx((0.25 + 1e-6) ** 0.5)
    with pytest.raises(InputError, match="equal shapes"):
        charbonnier_loss(x, x[:1])


def test_attention_map_sums_squares_over_channels_and_normalises():
    features = torch.zeros(1, 2, 2, 2)
    features[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # energy 25 in one pixel
    features[0, 0, 1, 1] = 5.0  # energy 25 in another
    m = attention_map(features)
    assert m.shape == (1, 1, 2, 2)
    assert m.pow(2).mean().item() == pytest.approx(1.0)
    assert m[0, 0, 0, 0] == m[0, 0, 1, 1] and m[0, 0, 0, 1] == 0
    # invariant to the feature scale and the channel count
    assert torch.allclose(attention_map(7 * features), m)
    assert space_distillation_loss(features[None], torch.cat([features, features], 1)[None]).item() < 1e-12


def test_a_missing_tap_is_named_and_bf16_student_features_meet_an_adapter():
    """The criterion's space and time terms raised a bare KeyError for a tap missing on either side; the feature
    term's 1x1 adapter refused bfloat16 student features outside autocast ("Input type (c10::BFloat16) and bias type
    (float) should be the same"), which the other terms take (black-box hunt)."""
    criterion = DistillationCriterion(DistillationLossConfig(space=1.0), {"hr_features": 4})
    frames, taps = torch.rand(1, 2, 3, 8, 8), {"hr_features": torch.rand(1, 2, 4, 8, 8)}
    for student, teacher, side in (({"hr_feats": taps["hr_features"]}, taps, "student"),
                                   (taps, {"lr_features": taps["hr_features"]}, "teacher")):
        with pytest.raises(InputError, match=rf"need the feature taps \['hr_features'\]; the {side} features have "
                                             rf"no 'hr_features' \(they have \['"):
            criterion(frames, student, frames, teacher)
    loss = FeatureDistillationLoss({"a": 4}, {"a": 8})
    student = torch.randn(1, 2, 4, 3, 3).to(torch.bfloat16)
    teacher = torch.randn(1, 2, 8, 3, 3)
    torch.testing.assert_close(loss({"a": student}, {"a": teacher}), loss({"a": student.float()}, {"a": teacher}))


def test_loss_settings_that_would_poison_the_loss_are_refused():
    """A NaN charbonnier_eps made every loss NaN; time_hidden_channels=0 built a ConvLSTM of no width (black-box
    hunt)."""
    for field, value in (("charbonnier_eps", float("nan")), ("charbonnier_eps", 0.0),  # (0: NaN gradients)
                         ("time_freeze_threshold", -1.0), ("time_hidden_channels", 0), ("time_kernel_size", 2.5)):
        with pytest.raises(InputError, match=f"^{field} must be a "):
            DistillationLossConfig(**{field: value})


def test_all_zero_features_give_a_zero_gradient_not_nan():
    """A black frame gives a fresh student all-zero feature taps: sqrt's infinite slope at 0 made the space and time
    losses' gradients NaN (26 of 36 weights of the tiny student), which clip_grad_norm_ spread to every weight, with
    the logged loss finite (black-box hunt). Maps of features at 1e-8 or 1e10 are those of any other scale (F^4
    under- or overflowed float32)."""
    from star_vsr.student import build_student_pipeline

    features = torch.rand(1, 2, 4, 8, 8)
    for scale in (1e-8, 1e10):
        torch.testing.assert_close(attention_map(scale * features), attention_map(features))
    student = build_student_pipeline("tiny", seed=0).student
    out = student(torch.zeros(1, 2, 3, 16, 16), return_features=True)  # every feature tap exactly 0
    assert all(not tap.any() for tap in out.features.values())
    criterion = DistillationCriterion(DistillationLossConfig(teacher_charbonnier=1, space=1, time=1),
                                      student.feature_channels)
    total, _ = criterion(out.sample, out.features, teacher_sr=torch.rand_like(out.sample),
                         teacher_features={k: torch.rand_like(v) for k, v in out.features.items()})
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(grad.isfinite().all() for grad in grads)


def test_space_loss_rejects_mismatched_sizes():
    with pytest.raises(InputError, match="height and width"):
        space_distillation_loss(torch.rand(1, 2, 4, 8, 8), torch.rand(1, 2, 4, 4, 4))


def test_convlstm_final_state_depends_on_order():
    torch.manual_seed(0)
    lstm = ConvLSTM(in_channels=1, hidden_channels=4)
    sequence = torch.rand(2, 5, 1, 6, 6)
    h, c = lstm(sequence)
    assert h.shape == c.shape == (2, 4, 6, 6)
    _, c_reversed = lstm(sequence.flip(1))
    assert not torch.allclose(c, c_reversed)
    with pytest.raises(InputError):
        lstm(torch.rand(2, 5, 3, 6, 6))


def test_time_loss_freezes_below_threshold_and_stays_frozen(tmp_path):
    torch.manual_seed(0)
    loss = TimeDistillationLoss(hidden_channels=4, freeze_threshold=1e-3)
    student_features = torch.rand(1, 3, 2, 6, 6, requires_grad=True)
    value = loss(student_features, torch.rand(1, 3, 5, 6, 6))
    value.backward()
    assert all(p.grad is not None for p in loss.parameters())
    assert not loss.observe(2e-3)  # above the threshold: keeps training
    assert loss.observe(5e-4) and loss.is_frozen
    assert loss.observe(1.0)  # frozen for good
    assert not any(p.requires_grad for p in loss.parameters())
    # the student still receives gradient through the frozen ConvLSTM
    student_features.grad = None
    loss(student_features, torch.rand(1, 3, 5, 6, 6)).backward()
    assert student_features.grad.abs().sum() > 0
    # the flag survives a state-dict round trip
    restored = TimeDistillationLoss(hidden_channels=4, freeze_threshold=1e-3)
    restored.load_state_dict(loss.state_dict())
    restored(torch.rand(1, 3, 2, 6, 6), torch.rand(1, 3, 5, 6, 6))
    assert restored.is_frozen and not any(p.requires_grad for p in restored.parameters())


@pytest.mark.parametrize("term", ["teacher_charbonnier", "gt_charbonnier", "gt_log_mse", "space", "time", "feature",
                                  "perceptual"])
def test_every_loss_term_sends_gradient_to_the_student(term, vgg_weights):
    weights = dict(teacher_charbonnier=0.0, gt_charbonnier=0.0, gt_log_mse=0.0, space=0.0, time=0.0, feature=0.0,
                   perceptual=0.0)
    weights[term] = 1.0
    config = DistillationLossConfig(**weights, perceptual_weights_path=str(vgg_weights),
                                    perceptual_layers=("relu1_2", "relu2_1"))
    student = tiny_student()
    teacher = tiny_teacher_student()
    lq = torch.rand(1, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = teacher(lq, return_features=True)
    criterion = DistillationCriterion(config, student.feature_channels, teacher.feature_channels)
    output = student(lq, return_features=True)
    gt = torch.rand_like(target.sample)
    total, terms = criterion(output.sample, output.features, target.sample, target.features, gt)
    assert set(terms) == {term} and math.isfinite(total.item()) and (total.item() > 0 or term == "gt_log_mse")
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    if term == "feature":  # different widths go through a trained 1x1 adapter
        adapter = criterion.feature_loss.adapters["hr_features"]
        student_width = student.feature_channels["hr_features"]
        assert student_width != TEACHER_HR_CHANNELS
        assert adapter.weight.shape == (TEACHER_HR_CHANNELS, student_width, 1, 1) and adapter.weight.grad.abs().sum() > 0


def test_log_mse_loss_is_minus_a_tenth_of_the_mean_frame_psnr():
    from star_vsr.losses import log_mse_loss

    gt = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.tensor([0.01, 0.1, 0.03, 0.2, 0.05, 0.02])[:, None, None, None].reshape(2, 3, 1, 1, 1)
    pred = gt + noise * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))
    psnr = -10 * torch.log10(((pred - gt) ** 2).mean(dim=(2, 3, 4)))  # (b, n), peak 1
    torch.testing.assert_close(log_mse_loss(pred, gt), -psnr.mean() / 10)
    # each frame's gradient is scaled by 1 / its MSE: the cleanest frame's is the largest per unit error
    pred.requires_grad_(True)
    log_mse_loss(pred, gt).backward()
    per_error = (pred.grad / (pred - gt)).detach().mean(dim=(2, 3, 4)).flatten()
    assert per_error.argmax() == 0 and per_error.argmin() == 3
    with pytest.raises(InputError, match="equal shapes"):
        log_mse_loss(pred, gt[:, :2])


def test_criterion_explains_missing_inputs():
    student = tiny_student()
    config = DistillationLossConfig(teacher_charbonnier=0.0, space=1.0)
    criterion = DistillationCriterion(config, student.feature_channels)
    output = student(torch.rand(1, 2, 3, 8, 8), return_features=True)
    with pytest.raises(InputError, match="features"):
        criterion(output.sample, output.features, teacher_sr=output.sample)
    with pytest.raises(InputError, match="every loss weight is 0"):
        DistillationLossConfig(teacher_charbonnier=0.0)
    with pytest.raises(InputError, match="no feature tap"):
        DistillationCriterion(DistillationLossConfig(space=1.0, space_features=("nope",)), student.feature_channels)
    with pytest.raises(InputError, match=r"space_features must be a list of names, e.g. \['hr_features'\]"):
        DistillationLossConfig(space=1.0, space_features="hr_features")  # was split into taps 'h', 'r', ...
    with pytest.raises(InputError, match=r"space_features must be a list of names, e.g. \['hr_features'\], got None"):
        DistillationLossConfig(space=1.0, space_features=None)  # a YAML key without a value: was a TypeError
    with pytest.raises(InputError, match=r"space_features is empty, so its term \(weight 1\) would compare nothing"):
        DistillationLossConfig(space=1.0, space_features=[])
    assert DistillationLossConfig(space=np.float32(0.5)).space == 0.5  # a NumPy weight was refused
    # a missing tap was a bare KeyError, a tap of another width the 1x1 convolution's error
    loss = FeatureDistillationLoss({"hr_features": 4}, {"hr_features": 8})
    student_features = {"hr_features": torch.rand(1, 2, 4, 8, 8)}
    teacher_features = {"hr_features": torch.rand(1, 2, 8, 8, 8)}
    assert loss(student_features, teacher_features).ndim == 0
    with pytest.raises(InputError, match=r"the teacher features have no 'hr_features' tap \(they have \['lr'\]\)"):
        loss(student_features, {"lr": teacher_features["hr_features"]})
    with pytest.raises(InputError, match="student features have 5 channels, this loss was built for 4"):
        loss({"hr_features": torch.rand(1, 2, 5, 8, 8)}, teacher_features)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    """A random torchvision-layout VGG-19 state dict cut after relu2_1 (the real file is 548 MB)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["E"])[:VGG19_LAYERS["relu2_1"] + 1]
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_perceptual_loss_needs_a_local_file(tmp_path, vgg_weights):
    with pytest.raises(MissingWeightsError, match="never downloads"):
        VGGPerceptualLoss(tmp_path / "absent.pth")
    with pytest.raises(MissingWeightsError, match="lacks"):
        VGGPerceptualLoss(vgg_weights, layers=("relu3_1",))  # the file stops before relu3_1
    for name, content in (("garbage.pth", b"garbage\n"), ("text.safetensors", b"not a tensor file")):
        (tmp_path / name).write_bytes(content)  # a traceback advising torch.load(weights_only=False) before
        with pytest.raises(MissingWeightsError, match=f"{name} cannot be read as a VGG-19 state dict .*damaged"):
            VGGPerceptualLoss(tmp_path / name)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(MissingWeightsError, match="holds a list, not a VGG-19 state dict"):
        VGGPerceptualLoss(tmp_path / "list.pth")
    loss = VGGPerceptualLoss(vgg_weights, layers=("relu1_2", "relu2_1"))
    x = torch.rand(2, 3, 16, 16)
    assert loss(x, x).item() == 0 and loss(x, x.flip(-1)).item() > 0
    # frames the max-pools halve to nothing: the pool's RuntimeError ("Calculated output size: (64x0x2)")
    with pytest.raises(InputError, match=r"halve the frames 1 time: they need frames of at least 2x2 pixels, got "
                                         r"5x1"):
        loss(x[..., :1, :5], x[..., :1, :5])
    assert loss(x[..., :2, :2], x[..., :2, :2]).item() == 0


# --------------------------------------------------------------------------- teachers


def test_teacher_adapters_return_cpu_float_clips():
    counting = CountingTeacher()
    teacher = load_teacher(counting, scale=SCALE)
    assert isinstance(teacher, CallableTeacher)
    out = teacher(torch.rand(3, 3, 8, 8))
    assert out.sr.shape == (3, 3, 32, 32) and out.features["hr_features"].shape == (3, 6, 32, 32)
    student_teacher = load_teacher(tiny_teacher_student(), features=["hr_features", "lr_features"])
    assert isinstance(student_teacher, StudentTeacher)
    out = student_teacher(torch.rand(2, 3, 8, 8))
    assert out.sr.shape == (2, 3, 32, 32) and 0 <= out.sr.min() and out.sr.max() <= 1
    assert out.features["hr_features"].shape == (2, TEACHER_HR_CHANNELS, 32, 32)
    assert out.features["lr_features"].shape[-2:] == (8, 8)
    with pytest.raises(InputError, match="expected"):
        CallableTeacher(lambda lq: lq, scale=SCALE)(torch.rand(2, 3, 8, 8))
    with pytest.raises(InputError, match="no feature taps"):
        load_teacher(tiny_teacher_student(), features=["nope"])
    twice = load_teacher(tiny_teacher_student(), features=["hr_features", "hr_features"])  # --features a a
    assert twice.feature_names == ("hr_features",) and twice.describe()["features"] == ["hr_features"]
    built = StudentTeacher(tiny_teacher_student(), features=["hr_features", "hr_features"])  # from Python, too
    assert built.feature_names == ("hr_features",) and built.describe()["features"] == ["hr_features"]


# --------------------------------------------------------------------------- cache


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cache_round_trip(tmp_path, dtype, umask_022):
    clips = random_clips(5)
    counting = CountingTeacher()
    cache = build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path / "cache", clips_per_shard=2,
                                dtype=dtype, source={"kind": "random"})
    assert counting.calls == 5 and len(cache) == 5 and cache.manifest.complete
    assert len(list((tmp_path / "cache").glob("shard-*.safetensors"))) == 3
    assert safetensors_modes(tmp_path / "cache") == {umask_022}
    assert cache.feature_channels == {"hr_features": 6}
    reopened = TeacherCache(tmp_path / "cache")
    storage = getattr(torch, dtype)
    for index, clip in enumerate(clips):
        item = reopened[index]
        expected_sr, expected_features = counting(clip["lq"])
        pairs = ((item["lq"], clip["lq"]), (item["gt"], clip["gt"]), (item["teacher"], expected_sr.clamp(0, 1)),
                 (item["teacher_features"]["hr_features"], expected_features["hr_features"]))
        for got, want in pairs:
            assert got.dtype == torch.float32
            assert torch.equal(got, want.to(storage).float())
        assert item["caption"] == f"clip {index}" and item["index"] == index


def test_a_damaged_shard_is_named_and_computed_again(tmp_path):
    clips = random_clips(4)
    counting = CountingTeacher()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    shard = tmp_path / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])  # a bad copy
    with pytest.raises(InputError, match=r"cannot read shard-00001.safetensors .*cache-teacher. command that built "
                                         r"it: it computes missing and damaged shards again"):
        TeacherCache(tmp_path)  # when opened, not at the first batch that reads it (mid-run)
    cache = build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    assert counting.calls == 4 + 2 and torch.equal(cache[3]["lq"], clips[3]["lq"].half().float())  # float16 storage


def test_a_shard_that_cannot_be_read_now_is_not_deleted_as_damaged(tmp_path, monkeypatch):
    """A read error of a shard's header (EIO from a disk or a network share gone, no permission, no file handle
    left) was taken as damage: a rebuild deleted the shard, hours of a diffusion teacher's work, to compute it
    again (review). The error is raised and the shard stays."""
    import errno

    import star_vsr.distill.cache as cache_module

    clips = random_clips(4)
    counting = CountingTeacher()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    before = (tmp_path / "shard-00001.safetensors").read_bytes()

    def read_error(path):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(cache_module, "safetensors_shapes", read_error)
    with pytest.raises(OSError, match="Input/output error"):
        build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    assert (tmp_path / "shard-00001.safetensors").read_bytes() == before and counting.calls == 4
    # opened for training: one line, not a traceback nor "damaged" (review)
    with pytest.raises(InputError, match=r"shard-00000.safetensors cannot be read now \(Input/output error\); it "
                                         r"was left as it is"):
        TeacherCache(tmp_path)
    # a share gone fails at the stat of is_file (ESTALE), before the header is read (review)
    monkeypatch.undo()
    real_is_file = Path.is_file

    def stale(path):
        if path.name.startswith("shard-"):
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", stale)
    with pytest.raises(InputError, match=r"cannot be read now \(Stale file handle\)"):
        TeacherCache(tmp_path)
    # its message in a DataLoader worker came back wrapped in the worker's traceback (review)
    from star_vsr.training_run import script_error

    wrapped = InputError("Caught InputError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\nstar_vsr.errors.InputError: shard-00001 is missing")
    assert script_error("distill_student.py", wrapped) == "distill_student.py: error: shard-00001 is missing"


def test_a_shard_whose_values_are_damaged_is_named_and_computed_again(tmp_path):
    """Bytes damaged under a sound header (NaN where the clip was): training stopped at step 0 with "lr hold NaN or
    infinite values", naming neither the cache nor the shard (black-box hunt)."""
    from safetensors.torch import load_file, save_file

    clips = random_clips(4)
    counting = CountingTeacher()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    shard = tmp_path / "shard-00001.safetensors"
    tensors = load_file(str(shard))
    tensors["3/lq"] = torch.full_like(tensors["3/lq"], float("nan"))
    from safetensors import safe_open

    with safe_open(str(shard), framework="pt") as opened:
        metadata = opened.metadata()
    save_file(tensors, str(shard), metadata=metadata)
    cache = TeacherCache(tmp_path)
    assert torch.isfinite(cache[2]["lq"]).all()  # the shard's other clip reads
    with pytest.raises(InputError, match=r"shard-00001.safetensors is damaged: clip 3's lq hold NaN, infinite or "
                                         r"\(frames\) out-of-range values; delete it and run `star-vsr distill "
                                         r"cache-teacher` again"):
        cache[3]
    shard.unlink()  # as the message says
    cache = build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    assert counting.calls == 4 + 2 and torch.isfinite(cache[3]["lq"]).all()
    # finite but no frame the build stores: a teacher's frame at -23 (flipped bytes) trained on (black-box hunt)
    tensors = load_file(str(shard))
    tensors["2/teacher"][0, 0, 0, 0] = -23.45
    save_file(tensors, str(shard), metadata=metadata)
    with pytest.raises(InputError, match=r"shard-00001.safetensors is damaged: clip 2's teacher hold NaN, infinite "
                                         r"or \(frames\) out-of-range values"):
        TeacherCache(tmp_path)[2]
    assert torch.isfinite(TeacherCache(tmp_path)[3]["teacher"]).all()  # the shard's other clip reads
    # what a build lets in reads back: frames at the edges of the tolerance, in bfloat16 (-0.04999 reads -0.05005) ...
    edges = [{"lq": torch.full((2, 3, 8, 8), value)} for value in (1.05, -0.04999)]
    cache = build_teacher_cache(CallableTeacher(counting, SCALE), edges, tmp_path / "edges", dtype="bfloat16")
    assert cache[1]["lq"].min() < -0.05 and cache[0]["lq"].max() > 1  # (rounded past the tolerance: read all the same)

    class Signed(CallableTeacher):  # ... and a Teacher of one's own whose frames are in [-1, 1] is refused then
        def __call__(self, lq, *, index=0, caption=None):
            output = super().__call__(lq, index=index, caption=caption)
            return dataclasses.replace(output, sr=output.sr * 2 - 1)

    with pytest.raises(InputError, match=r"clip 0: the teacher's output must have values in \[0, 1\], got -1"):
        build_teacher_cache(Signed(counting, SCALE), clips, tmp_path / "signed")


def test_teacher_values_past_the_storage_range_are_refused_when_the_cache_is_built(tmp_path):
    """Features above float16's 65504 passed the teacher's finiteness check, were stored as inf, and reading the
    cache then called the shard damaged, advising a rebuild that stored the same inf (review)."""
    def loud(lq):
        sr = F.interpolate(lq, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return sr, {"hr_features": sr * 1e5}

    with pytest.raises(InputError, match=r"clip 0: features/hr_features exceed the range of float16 storage \(they "
                                         r"become infinite\); build the cache with dtype=\"float32\""):
        build_teacher_cache(CallableTeacher(loud, SCALE), random_clips(2), tmp_path / "cache")
    cache = build_teacher_cache(CallableTeacher(loud, SCALE), random_clips(2), tmp_path / "cache32", dtype="float32")
    assert torch.isfinite(cache[1]["teacher_features"]["hr_features"]).all()


def test_a_full_disk_while_a_shard_is_saved_is_one_line_naming_it(tmp_path, monkeypatch):
    """safetensors' own error ("Error while serializing: I/O error: File too large (os error 27)") came through as a
    traceback after hours of a teacher's work: an OutputError naming the shard, with the errno (exit status 1)."""
    import errno

    from safetensors import SafetensorError

    import star_vsr.distill.cache

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")

    monkeypatch.setattr(star_vsr.distill.cache, "save_file", full)
    with pytest.raises(OutputError, match=r"^cannot write .*shard-00000\.safetensors: Error while serializing: I/O "
                                          r"error: File too large") as refused:
        build_teacher_cache(StudentTeacher(tiny_teacher_student(1), SCALE), random_clips(2), tmp_path / "cache")
    assert refused.value.errno == errno.EFBIG and not (tmp_path / "cache").exists()  # nothing half-written left


def test_a_full_disk_between_a_shard_and_the_manifest_leaves_a_cache_that_resumes(tmp_path, monkeypatch):
    """The disk full (or a kill) after a shard was in place and before the manifest was saved left a manifest that
    knew none of the teacher's features: every rerun refused the teacher, "returned features {...}, earlier clips
    none", and only --overwrite got past it (black-box hunt)."""
    import errno

    from star_vsr.errors import cannot_write

    teacher = load_teacher(tiny_teacher_student(), features=["hr_features"])
    clips, save = random_clips(4), CacheManifest.save

    def full_once_a_shard_is_written(manifest, folder):
        if (folder / "shard-00000.safetensors").exists():
            raise cannot_write(folder / "manifest.json", OSError(errno.ENOSPC, "No space left on device"))
        save(manifest, folder)

    monkeypatch.setattr(CacheManifest, "save", full_once_a_shard_is_written)
    with pytest.raises(OutputError, match="No space left on device.*; 2 of 4 clips saved: free some space and call "
                       "again to go on from there$") as refused:  # (it said nothing of a rerun)
        build_teacher_cache(teacher, clips, tmp_path / "cache", clips_per_shard=2)
    assert refused.value.errno == errno.ENOSPC
    monkeypatch.undo()
    build_teacher_cache(teacher, clips, tmp_path / "cache", clips_per_shard=2)  # the same command, disk freed
    build_teacher_cache(teacher, clips, tmp_path / "fresh", clips_per_shard=2)
    for name in ("shard-00000.safetensors", "shard-00001.safetensors"):
        assert (tmp_path / "cache" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def test_memory_running_out_in_a_diffusion_teacher_is_advised_with_cache_teacher_s_flags(tmp_path, monkeypatch,
                                                                                          capsys):
    """cache-teacher passed on the diffusion pipeline's advice, which names its call's arguments: "try spatial
    tiles (tile_size=512) ... (restart=True)" on a command without such flags (black-box hunt). It names the clip
    and this command's own; in Python the pipeline's advice stays, after the clip."""
    from star_vsr.models import StarVSRUNetModel
    from star_vsr.testing import tiny_star_pipeline

    tiny_star_pipeline(seed=0).save_pretrained(tmp_path / "tiny")

    def allocate_too_much(*args, **kwargs):
        return torch.empty(2 ** 46, dtype=torch.uint8)  # 64 TiB: the allocator refuses

    monkeypatch.setattr(StarVSRUNetModel, "forward", allocate_too_much)
    argv = ["distill", "cache-teacher", "--teacher", str(tmp_path / "tiny"), "--motion-clips", "1", "--num-frames",
            "2", "--crop-size", "32", "--steps", "1", "-o", str(tmp_path / "cache")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "error: clip 0: out of memory in the teacher (allocating 64.00 TiB failed); free some memory and run " \
           "the same command again (it goes on after the last saved shard), or build a cache of fewer frames per " \
           "clip (--num-frames 1) or smaller clips in another folder" in err, err
    assert "tile_size" not in err and not (tmp_path / "cache").exists()
    # a student teacher's said "try a shorter or smaller input", naming no clip (review)
    student = save_student_folder(tiny_teacher_student(), tmp_path / "student")
    monkeypatch.setattr(StarStudentModel, "forward", allocate_too_much)
    assert cli_main([*argv[:3], str(student), *argv[4:-4], "-o", str(tmp_path / "cache")]) == 2  # (no --steps)
    assert "error: clip 0: out of memory in the teacher (allocating 64.00 TiB failed); free some memory" in \
        capsys.readouterr().err
    teacher = load_teacher(str(tmp_path / "tiny"), num_inference_steps=1)
    with pytest.raises(RanOutOfMemoryError, match=r"^clip 0: out of memory while upscaling with the StarVSR "
                                                  r"pipeline .*tile_size="):
        build_teacher_cache(teacher, random_clips(1, size=16), tmp_path / "python")


def test_what_shapes_a_distillation_checkpoint(tmp_path):
    """The settings whose change a checkpoint cannot be resumed through (review): the perceptual loss's VGG is
    saved with the loss once the loss has weights of its own (time or feature distillation); --trainable's order
    is not its shape."""
    script, args = training_args(None, tmp_path / "run")
    base = {**vars(args), "loss_time": 0.1, "loss_feature": 0.0, "loss_perceptual": 0.0, "trainable": ["a", "b"]}

    def differs(**change):
        before, after = script.checkpoint_shape(base), script.checkpoint_shape({**base, **change})
        return sorted(key for key in after if after[key] != before[key])

    assert differs(loss_perceptual=0.1) == ["loss_perceptual", "perceptual_layers"]
    assert differs(perceptual_layers=["relu1_2"]) == []  # no perceptual loss: no VGG saved
    assert differs(loss_time=0.0, loss_perceptual=0.1) == ["loss_time", "time_hidden_channels"]  # no loss saved
    assert differs(trainable=["b", "a"]) == [] and differs(trainable=["a"]) == ["trainable"]
    assert differs(ema_decay=0.0 if base["ema_decay"] else 0.9) == ["ema_decay"]
    # the student's layers, not how they were spelt: overrides that repeat the preset's values shape nothing (they
    # were a change not even --allow_changed_settings passed)
    blocks = STUDENT_PRESETS[base["student_preset"]]["num_blocks"]
    assert differs(student_overrides={"num_blocks": blocks, "upsample_scales": [4, 2, 3]}) == []  # JSON: a list
    assert differs(student_overrides={"flow_window": 9}) == []  # holds no weights
    assert differs(student_overrides={"num_blocks": blocks + 1}) == ["student_overrides", "student_preset"]
    assert differs(student_preset="base") == ["student_overrides", "student_preset"]


def test_a_missing_shard_a_damaged_manifest_and_mixed_sizes_are_found_when_the_cache_is_opened(tmp_path):
    """A complete cache missing a shard (an incomplete copy) trained silently on the rest; a damaged manifest.json
    was a JSONDecodeError traceback in both tools, which --overwrite did not get past (black-box review)."""
    clips = random_clips(4) + random_clips(2, size=12, seed=1)
    counting = CountingTeacher()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    assert TeacherCache(tmp_path).lr_sizes == {(8, 8), (12, 12)}
    (tmp_path / "shard-00001.safetensors").unlink()
    with pytest.raises(InputError, match=r"missing or cannot read shard-00001.safetensors \(an incomplete copy\?\)"):
        TeacherCache(tmp_path)
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)  # the same command
    assert counting.calls == 6 + 2 and len(TeacherCache(tmp_path)) == 6
    # clips of two sizes cannot share a batch: refused before training, not at the first mixed batch (hours in)
    distill_student, args = training_args(tmp_path, tmp_path / "run")
    with pytest.raises(InputError, match=r"holds clips of 2 sizes \(8x8, 12x12 LR\), which cannot share a batch; pass "
                                         r"--train_batch_size 1, or build the cache from clips of one size"):
        distill_student.build_dataset(args, DistillationLossConfig(teacher_charbonnier=1.0))
    good = json.loads((tmp_path / "manifest.json").read_text())
    # (hand edits: a ZeroDivisionError, a TypeError, or a cache of no clips; black-box hunt)
    for damage in ('{"num_clips": 4,', json.dumps({**good, "x": 1}), json.dumps({**good, "clips_per_shard": 0}),
                   json.dumps({**good, "num_clips": "5"}), json.dumps({**good, "clips_per_shard": -1})):
        (tmp_path / "manifest.json").write_text(damage)
        for open_it in (lambda: TeacherCache(tmp_path),
                        lambda: build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path,
                                                    clips_per_shard=2)):
            with pytest.raises(InputError, match=r"manifest.json is damaged .*; delete it and rerun the `star-vsr "
                                                 r"distill cache-teacher` command that built the cache, which "
                                                 r"restores it from the copies its shards carry without computing"):
                open_it()
    # the advice holds: deleted, the manifest comes back from the shards' copies (--overwrite computed all again)
    (tmp_path / "manifest.json").unlink()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    assert counting.calls == 6 + 2 and len(TeacherCache(tmp_path)) == 6
    (tmp_path / "manifest.json").write_text('{"num_clips": 4,')
    for shard in tmp_path.glob("shard-*.safetensors"):
        shard.unlink()  # no copies left to restore it from: rebuilt
    with pytest.raises(InputError, match=r"manifest.json is damaged .*; rebuild the cache: .*--overwrite"):
        TeacherCache(tmp_path)
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2, overwrite=True)
    assert len(TeacherCache(tmp_path)) == 6


def test_a_manifest_that_does_not_match_its_shards_is_refused_when_the_cache_is_opened(tmp_path):
    """Counts in range but not those of the shards (a manifest edited by hand, or another build's) opened: clips
    were left out without a word, or training failed mid-run with ``KeyError: 'lq'``."""
    clips = random_clips(6, gt=False)
    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), clips, tmp_path, clips_per_shard=4)
    good = json.loads((tmp_path / "manifest.json").read_text())
    for change, found in (({"num_clips": 5}, "shard-00001.safetensors holds clips 4..5, where the manifest puts "
                                             "clip 4 with lq, teacher"),
                          ({"num_clips": 8}, "shard-00001.safetensors holds clips 4..5, where the manifest puts "
                                             "clips 4..7"),
                          ({"clips_per_shard": 8}, "shard-00000.safetensors holds clips 0..3, where the manifest "
                                                   "puts clips 0..5"),
                          ({"has_gt": True}, "shard-00000.safetensors lacks gt, where the manifest puts clips 0..3 "
                                             "with lq, teacher, gt")):
        (tmp_path / "manifest.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(InputError, match=re.escape(f"does not match its manifest.json: {found}")):
            TeacherCache(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(good))
    assert len(TeacherCache(tmp_path)) == 6 and TeacherCache(tmp_path)[5]["lq"].shape == clips[5]["lq"].shape


def test_a_manifest_counting_more_shards_than_the_folder_could_hold_is_refused_at_once(tmp_path):
    """A manifest edited to 10**12 clips hung: opening the cache looked for each of their 5 * 10**11 shards to list
    the missing ones. They are counted, and the first few named."""
    import signal

    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(4), tmp_path, clips_per_shard=2)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "num_clips": 10 ** 12}))

    def hung(signum, frame):
        raise TimeoutError("opening the cache hung over the shards its manifest counts")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(InputError, match=r"missing or cannot read shard-00002.safetensors, shard-00003."
                                             r"safetensors, shard-00004.safetensors and 499999999995 more \(an "
                                             r"incomplete copy\?\)"):
            TeacherCache(tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("change, message", [
    ({"feature_channels": [1, 2]}, "feature_channels [1, 2] is not an object of whole numbers >= 1"),
    ({"feature_channels": {"hr_features": "6"}}, "feature_channels {'hr_features': '6'} is not an object of whole"),
    ({"teacher": "x"}, "teacher 'x' is not an object or null"),
    ({"source": ["x"]}, "source ['x'] is not an object"),
    ({"has_gt": "yes"}, "has_gt 'yes' is not true or false"),
    ({"dtype": ["float16"]}, "dtype ['float16'] is not one of float16, float32, bfloat16"),
])
def test_a_manifest_field_of_another_type_is_named_as_damage(tmp_path, capsys, change, message):
    """Fields edited to another type were a TypeError (feature_channels a list) or an AttributeError (teacher a
    string) in whatever read them first, the training script's check of the cache's scale among them."""
    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(2), tmp_path / "cache")
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    (tmp_path / "cache" / "manifest.json").write_text(json.dumps({**manifest, **change}))
    damaged = re.escape(f"manifest.json is damaged ({message}") + r".*; delete it and rerun the `star-vsr distill"
    with pytest.raises(SystemExit) as refused:
        training_args(tmp_path / "cache", tmp_path / "run")
    err = capsys.readouterr().err
    assert refused.value.code == 2 and re.search(damaged, err), err
    with pytest.raises(InputError, match=damaged):
        TeacherCache(tmp_path / "cache")


def test_a_manifest_nested_thousands_deep_is_named_as_damage(tmp_path):
    """JSON arrays nested 100,000 deep were a RecursionError traceback (black-box hunt)."""
    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(2), tmp_path / "cache")
    (tmp_path / "cache" / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"manifest.json is damaged \(nested too deep to read.*; delete it and "
                                         r"rerun the `star-vsr distill cache-teacher` command"):
        TeacherCache(tmp_path / "cache")


def rewrite_shard_header(shard: Path, key: Optional[str] = None, shape: Optional[list[int]] = None,
                         captions: Optional[str] = None) -> None:
    """Give tensor ``key`` of the safetensors file ``shard`` another ``shape`` (as many values: the file stays valid),
    or its metadata other ``captions``, keeping the data bytes."""
    data = shard.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    if key is not None:
        assert math.prod(shape) == math.prod(header[key]["shape"])
        header[key]["shape"] = shape
    if captions is not None:
        header["__metadata__"]["captions"] = captions
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    shard.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])


@pytest.mark.parametrize("key, shape, found", [
    ("1/lq", [3 * 3 * 8 * 8], "holds 1/lq of shape (576,), not (n, 3, h, w)"),  # (a ValueError in the first batch)
    ("1/lq", [9, 1, 8, 8], "holds 1/lq of shape (9, 1, 8, 8), not (n, 3, h, w)"),  # (torch.stack's RuntimeError)
    ("1/teacher", [1, 3, 96, 32], "holds 1/teacher of shape (1, 3, 96, 32), not (3, 3, H, W)"),
    ("1/gt", [3, 1, 96, 32], "holds 1/gt of shape (3, 1, 96, 32), not (3, 3, H, W)"),
    ("1/features/hr_features", [3, 2, 96, 32], "holds 1/features/hr_features of shape (3, 2, 96, 32), not "
                                               "(3, 6, h_f, w_f)"),
])
def test_a_shard_tensor_of_another_rank_width_or_length_is_refused_when_the_cache_is_opened(tmp_path, key, shape,
                                                                                            found):
    """A shard's header naming a clip's tensor in another layout (rank, channels, frames) opened, and the run then
    failed in its first batch with a ValueError or torch.stack's RuntimeError, naming neither the cache nor the
    shard."""
    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(2), tmp_path, clips_per_shard=2)
    rewrite_shard_header(tmp_path / "shard-00000.safetensors", key, shape)
    with pytest.raises(InputError, match=re.escape(f"does not match its manifest.json: shard-00000.safetensors "
                                                   f"{found}, where the manifest puts clips 0..1 with lq, teacher, gt, "
                                                   f"features/hr_features; rebuild it")):
        TeacherCache(tmp_path)


def test_feature_widths_in_the_manifest_other_than_the_shards_are_refused_when_the_cache_is_opened(tmp_path):
    """A manifest saying 10**9 feature channels where the shards hold 6 opened, and training then tried to allocate
    a 15 GiB feature adapter ("out of memory ... lower --train_batch_size")."""
    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(2), tmp_path, clips_per_shard=2)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "feature_channels": {"hr_features": 10 ** 9}}))
    with pytest.raises(InputError, match=re.escape("does not match its manifest.json: shard-00000.safetensors holds "
                                                   "0/features/hr_features of shape (3, 6, 32, 32), not "
                                                   "(3, 1000000000, h_f, w_f)")):
        TeacherCache(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "feature_channels": {"lr_features": 6}}))
    with pytest.raises(InputError, match=r"shard-00000.safetensors lacks features/lr_features, where the manifest "):
        TeacherCache(tmp_path)


@pytest.mark.parametrize("captions", ["[1, 2]", "[" * 100_000 + "]" * 100_000])
def test_shard_captions_that_are_no_json_object_are_a_damaged_shard_computed_again(tmp_path, captions):
    """Captions in a shard's metadata that were a JSON list opened, and the first clip read then failed mid-run with
    ``AttributeError: 'list' object has no attribute 'get'``; nested 100,000 deep, a RecursionError (review)."""
    clips = random_clips(4)
    counting = CountingTeacher()
    build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)
    rewrite_shard_header(tmp_path / "shard-00001.safetensors", captions=captions)
    with pytest.raises(InputError, match=r"cannot read shard-00001.safetensors \(an incomplete copy\?\); rerun the "
                                         r"`star-vsr distill cache-teacher` command that built it: it computes "
                                         r"missing and damaged shards again"):
        TeacherCache(tmp_path)
    cache = build_teacher_cache(CallableTeacher(counting, SCALE), clips, tmp_path, clips_per_shard=2)  # as it says
    assert counting.calls == 4 + 2 and cache[3]["caption"] == "clip 3"


def test_a_source_or_teacher_description_the_manifest_would_not_read_back_is_refused_before_any_work(tmp_path):
    """A source scale of "4x" (free-form source descriptions are allowed) ran the teacher over every clip and wrote
    every shard, then the finished cache refused its own manifest, and --overwrite did the same again (review); an
    empty teacher feature likewise built a cache whose shards were then refused."""
    counting = CountingTeacher()
    for source in ({"scale": "4x"}, {"scale": [4]}):
        with pytest.raises(InputError, match=r"the cache's manifest would not read back: source.scale .* is not a "
                                             r"number \(the source and the teacher's describe\(\) are stored in it\)"):
            build_teacher_cache(CallableTeacher(counting, SCALE), random_clips(2), tmp_path / "c", source=source)
        assert counting.calls == 0 and not (tmp_path / "c").exists()
    build_teacher_cache(CallableTeacher(counting, SCALE), random_clips(2), tmp_path / "c", source={"name": "x y"})

    def empty_feature(lq):
        return counting(lq)[0], {"f": torch.zeros(len(lq), 1, 0, 0)}

    with pytest.raises(InputError, match=r"teacher feature 'f' must be \(n, c, h, w\) with n = 3 and no side 0, got "
                                         r"\(3, 1, 0, 0\)"):
        build_teacher_cache(CallableTeacher(empty_feature, SCALE), random_clips(2), tmp_path / "e")


def test_a_cache_folder_that_cannot_be_listed_now_is_not_called_incomplete(tmp_path, monkeypatch):
    """The shards are found by listing the folder: a listing that fails (a share gone, no permission) is said as
    that, not as shards missing from "an incomplete copy" (review)."""
    import errno

    import star_vsr.distill.cache as cache_module

    build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE), random_clips(2), tmp_path, clips_per_shard=1)

    def broken_listing(path):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(cache_module.os, "listdir", broken_listing)
    with pytest.raises(InputError, match=r"cannot be read now \(Input/output error\); it was left as it is"):
        TeacherCache(tmp_path)
    assert (tmp_path / "manifest.json").is_file()


def test_the_order_of_the_teacher_s_features_is_no_other_setting():
    """The same --features in another order was refused as "teacher.features (--features) differ" (black-box
    hunt): the taps are a set."""
    manifest = CacheManifest(num_clips=2, clips_per_shard=1, dtype="float16", source={"clips": 2},
                             teacher={"kind": "student", "features": ["lr_features", "hr_features"]})
    reordered = dataclasses.replace(manifest, teacher={**manifest.teacher, "features": ["hr_features", "lr_features"]})
    fewer = dataclasses.replace(manifest, teacher={**manifest.teacher, "features": ["hr_features"]})
    assert reordered.settings() == manifest.settings() != fewer.settings()


def test_cache_resumes_without_recomputing_finished_shards(tmp_path):
    clips = random_clips(6, gt=False)

    class Interrupt(Exception):
        pass

    class FailingTeacher(CountingTeacher):
        def __call__(self, lq):
            if self.calls == 3:  # dies on the 4th clip, inside shard 1
                raise Interrupt
            return super().__call__(lq)

    failing = FailingTeacher()
    with pytest.raises(Interrupt):
        build_teacher_cache(CallableTeacher(failing, SCALE, name="teacher"), clips, tmp_path, clips_per_shard=2)
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000.safetensors"]
    assert not list(tmp_path.glob(".*tmp"))  # the interrupted shard left nothing behind
    with pytest.raises(InputError, match="incomplete"):
        TeacherCache(tmp_path)
    assert len(TeacherCache(tmp_path, allow_incomplete=True)) == 2

    resumed = CountingTeacher()
    cache = build_teacher_cache(CallableTeacher(resumed, SCALE, name="teacher"), clips, tmp_path, clips_per_shard=2)
    assert resumed.calls == 4  # clips 2..5 only
    assert len(cache) == 6 and "gt" not in cache[0]
    # a run that fails before its first shard leaves no cache (and no folder it made)
    dead = FailingTeacher()
    dead.calls = 3  # fails on its first clip
    with pytest.raises(Interrupt):
        build_teacher_cache(CallableTeacher(dead, SCALE, name="teacher"), clips, tmp_path / "new", clips_per_shard=2)
    assert not (tmp_path / "new").exists()
    # other settings in the same folder are refused unless overwritten
    with pytest.raises(InputError, match="other settings"):
        build_teacher_cache(CallableTeacher(resumed, SCALE, name="teacher"), clips, tmp_path, clips_per_shard=3)
    again = CountingTeacher()
    build_teacher_cache(CallableTeacher(again, SCALE, name="teacher"), clips, tmp_path, clips_per_shard=3,
                        overwrite=True)
    assert again.calls == 6 and len(list(tmp_path.glob("shard-*"))) == 2


def test_a_lost_manifest_is_restored_from_its_shards_by_the_command_that_built_the_cache(tmp_path, capsys):
    """A cache whose manifest.json was lost (deleted, left out of a copy) could only be rebuilt with --overwrite,
    calling the teacher again for every clip: each shard now carries the manifest as it stood."""
    clips = random_clips(6, gt=False)

    class Interrupt(Exception):
        pass

    class FailingTeacher(CountingTeacher):
        def __call__(self, lq):
            if self.calls == 4:  # dies in shard 2
                raise Interrupt
            return super().__call__(lq)

    teacher = CallableTeacher(FailingTeacher(), SCALE, name="teacher")
    with pytest.raises(Interrupt):
        build_teacher_cache(teacher, clips, tmp_path / "part", clips_per_shard=2)
    (tmp_path / "part" / "manifest.json").unlink()
    with pytest.raises(InputError, match=r"holds teacher-cache shards but no manifest.json; rerun the `star-vsr "
                                         r"distill cache-teacher` command that built it"):
        TeacherCache(tmp_path / "part", allow_incomplete=True)
    with pytest.raises(InputError, match=r"other settings \(clips_per_shard differ\)"):
        build_teacher_cache(CallableTeacher(CountingTeacher(), SCALE, name="teacher"), clips, tmp_path / "part",
                            clips_per_shard=3)
    assert not (tmp_path / "part" / "manifest.json").exists()  # (nothing restored by a refused run)
    resumed = CountingTeacher()
    cache = build_teacher_cache(CallableTeacher(resumed, SCALE, name="teacher"), clips, tmp_path / "part",
                                clips_per_shard=2)
    assert resumed.calls == 2 and len(cache) == 6 and cache.feature_channels == {"hr_features": 6}
    assert "manifest.json was missing; restored from the copy its shards carry" in capsys.readouterr().err
    # a finished cache's manifest comes back as it was but for the seconds spent
    written = CacheManifest.load(tmp_path / "part")
    (tmp_path / "part" / "manifest.json").unlink()
    again = CountingTeacher()
    build_teacher_cache(CallableTeacher(again, SCALE, name="teacher"), clips, tmp_path / "part", clips_per_shard=2)
    restored = CacheManifest.load(tmp_path / "part")
    assert again.calls == 0 and written.wall_time_s > 0 and restored.complete
    assert restored == dataclasses.replace(written, wall_time_s=0.0)
    # shards without the copy (written before it was stored) are replaced only with --overwrite, as before
    from safetensors import safe_open
    from safetensors.torch import save_file

    for path in sorted((tmp_path / "part").glob("shard-*.safetensors")):
        with safe_open(str(path), framework="pt") as shard:
            tensors = {key: shard.get_tensor(key) for key in shard.keys() if key != "manifest"}
            metadata = shard.metadata()
        save_file(tensors, str(path), metadata=metadata)
    (tmp_path / "part" / "manifest.json").unlink()
    with pytest.raises(InputError, match="no manifest.json, and they carry no copy of it that agrees; rebuild"):
        TeacherCache(tmp_path / "part")  # (not "rerun ... which restores the manifest": review)
    with pytest.raises(InputError, match="holds shard files but no manifest.json; choose another folder, or pass "
                                         "overwrite=True"):
        build_teacher_cache(CallableTeacher(again, SCALE, name="teacher"), clips, tmp_path / "part",
                            clips_per_shard=2)
    build_teacher_cache(CallableTeacher(again, SCALE, name="teacher"), clips, tmp_path / "part", clips_per_shard=2,
                        overwrite=True)
    assert again.calls == 6


def test_a_callable_teacher_is_known_by_what_it_computes_and_what_it_returns_is_checked(tmp_path):
    """Two lambdas were one teacher ("<lambda>"): a cache went on, or reopened complete, with another function; a
    teacher whose features came from its third clip on made a cache whose manifest listed them for every clip; NaN
    features were cached; a numpy array or a 3-tuple failed with an AttributeError or "too many values to unpack"
    (black-box API test)."""
    clips = random_clips(4, gt=False)
    bicubic = lambda lq: F.interpolate(lq, scale_factor=SCALE, mode="bicubic").clamp(0, 1)  # noqa: E731
    black = lambda lq: torch.zeros(lq.shape[0], 3, lq.shape[2] * SCALE, lq.shape[3] * SCALE)  # noqa: E731
    build_teacher_cache(CallableTeacher(bicubic, SCALE), clips, tmp_path / "a", clips_per_shard=2)
    with pytest.raises(InputError, match=r"other settings \(teacher.code differ\)"):
        build_teacher_cache(CallableTeacher(black, SCALE), clips, tmp_path / "a", clips_per_shard=2)
    build_teacher_cache(CallableTeacher(bicubic, SCALE), clips, tmp_path / "a", clips_per_shard=2)  # the same one
    # the same in every process (a set literal's order follows Python's string hashing: a cache stopped in one
    # run was "other settings (teacher.code differ)" in the next); default arguments and bfloat16 closures count
    script = ("from star_vsr.distill.teacher import _callable_fingerprint\n"
              "def up(x, mode='bicubic'):\n    assert mode in {'bicubic', 'bilinear', 'nearest', 'area'}\n"
              "    return x\nprint(_callable_fingerprint(up))")
    prints = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(prints) == 1, prints
    from star_vsr.distill.teacher import _callable_fingerprint

    weights = torch.rand(3, dtype=torch.bfloat16)
    assert _callable_fingerprint(lambda x, s=2: x * s) != _callable_fingerprint(lambda x, s=3: x * s)
    assert _callable_fingerprint(lambda x: x * weights[0]) != _callable_fingerprint(lambda x: x * weights[0] * 1)
    calls = []

    def late(lq):
        calls.append(1)
        return (bicubic(lq), {"f": torch.rand(lq.shape[0], 5, 8, 8)}) if len(calls) > 2 else bicubic(lq)

    with pytest.raises(InputError, match="clip 2: the teacher returned features {'f': 5}, earlier clips none"):
        build_teacher_cache(CallableTeacher(late, SCALE), clips, tmp_path / "b", clips_per_shard=1)
    nan = lambda lq: (bicubic(lq), {"f": torch.full((lq.shape[0], 2, 4, 4), float("nan"))})  # noqa: E731
    for teacher, message in ((nan, "clip 0: the teacher's feature 'f' holds NaN or infinite values"),
                             (lambda lq: bicubic(lq).numpy(), "returns sr as a torch.Tensor .* got ndarray"),
                             (lambda lq: (1, 2, 3), r"returns sr or \(sr, dict of features\); got a tuple of 3")):
        with pytest.raises(InputError, match=message):
            build_teacher_cache(CallableTeacher(teacher, SCALE), clips, tmp_path / "c", clips_per_shard=1)
        assert not (tmp_path / "c").exists()


def test_a_cache_is_not_built_among_other_files(tmp_path):
    """-o of a folder of the user's files put the shards and manifest among them (black-box review)."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".hidden").write_text("")  # a hidden file (.DS_Store) is no reason to refuse
    teacher = CallableTeacher(CountingTeacher(), SCALE, name="teacher")
    for overwrite in (False, True):
        with pytest.raises(InputError, match=r"holds other files \(notes.txt\) and no teacher cache; a cache goes in "
                                             r"a new or empty folder"):
            build_teacher_cache(teacher, random_clips(2, gt=False), tmp_path, overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "notes.txt"]
    (tmp_path / "notes.txt").unlink()
    build_teacher_cache(teacher, random_clips(2, gt=False), tmp_path)  # only hidden files: taken


def test_a_cache_another_run_is_writing_is_refused_and_a_bad_place_is_one_error(tmp_path, monkeypatch):
    """Two runs on one folder both wrote shards under one manifest: a cache marked complete whose shards mixed
    crop sizes or dtypes (interruption review); a read-only place or a file in the path was mkdir's bare error."""
    teacher = CallableTeacher(CountingTeacher(), SCALE, name="teacher")
    folder = tmp_path / "cache"
    folder.mkdir()
    with folder_lock(folder, folder):  # as a running build holds it
        with pytest.raises(OutputBusyError, match=f"another star-vsr run is writing {folder}; let it finish"):
            build_teacher_cache(teacher, random_clips(2, gt=False), folder)
    assert list(folder.iterdir()) == []
    assert len(build_teacher_cache(teacher, random_clips(2, gt=False), folder)) == 2  # once it is let go
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*a-file/cache.*: .*a-file is a file, not a folder"):
        build_teacher_cache(teacher, random_clips(2, gt=False), tmp_path / "a-file" / "cache")
    # a writable cache folder under a read-only parent resumes (the write check tried the parent)
    import star_vsr.outputs

    mkstemp = star_vsr.outputs.tempfile.mkstemp

    def read_only_parent(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(star_vsr.outputs.tempfile, "mkstemp", read_only_parent)
    assert len(build_teacher_cache(teacher, random_clips(2, gt=False), folder)) == 2


def test_a_cache_is_not_resumed_with_another_teachers_weights_or_precision(tmp_path):
    """The manifest named the teacher by its path only: new weights (or another --dtype) at the same path went on
    into the same cache and mixed two teachers. The refusal names the teacher's entries that differ."""
    clips = random_clips(2)
    build_teacher_cache(StudentTeacher(tiny_teacher_student(1), SCALE, source="teacher"), clips, tmp_path)
    # another --dtype of the same teacher: named by its dtype alone (it named --teacher too, the cast weights'
    # fingerprint differing); other weights in another dtype: both (it named the dtype alone)
    for model, changed in ((tiny_teacher_student(2), "teacher.weights"),
                           (tiny_teacher_student(1).to(torch.bfloat16), "teacher.dtype"),
                           (tiny_teacher_student(1).to(torch.float16), "teacher.dtype"),
                           (tiny_teacher_student(2).to(torch.bfloat16), "teacher.dtype, teacher.weights")):
        with pytest.raises(InputError, match=f"other settings \\({changed} differ\\)"):
            build_teacher_cache(StudentTeacher(model, SCALE, source="teacher"), clips, tmp_path)
    # the other way round: a float32 teacher after a bfloat16 one
    half = tmp_path / "half"
    build_teacher_cache(StudentTeacher(tiny_teacher_student(1).to(torch.bfloat16), SCALE), clips, half)
    for seed, changed in ((1, "teacher.dtype"), (2, "teacher.dtype, teacher.weights")):
        with pytest.raises(InputError, match=f"other settings \\({changed} differ\\)"):
            build_teacher_cache(StudentTeacher(tiny_teacher_student(seed), SCALE), clips, half)
    build_teacher_cache(StudentTeacher(tiny_teacher_student(1), SCALE, source="teacher"), clips, tmp_path)  # same
    # the same weights by another path (teacher/, absolute) are the same teacher: they were "other settings"
    build_teacher_cache(StudentTeacher(tiny_teacher_student(1), SCALE, source="/abs/teacher/"), clips, tmp_path)
    # another kind of teacher: named by its kind (it listed each of its settings, "teacher.seed (--seed)" among
    # them, though no --seed was given)
    bicubic = CallableTeacher(lambda lq: F.interpolate(lq, scale_factor=SCALE, mode="bicubic"), SCALE)
    with pytest.raises(InputError, match=r"other settings \(teacher.kind differ\)"):
        build_teacher_cache(bicubic, clips, tmp_path)


def test_clips_that_are_not_float_frames_of_the_right_size_are_refused_by_index_and_nothing_is_cached(tmp_path):
    def with_clip(index: int, **changes) -> list[dict]:
        clips = random_clips(3)
        clips[index] = {**clips[index], **changes}
        return clips

    good = random_clips(1)[0]
    cases = [  # (clips, teacher or None, source, message)
        (with_clip(2, lq=good["lq"] * 255), None, None, r"clip 2: 'lq' must have values in \[0, 1\].*divide by 255"),
        (with_clip(1, lq=good["lq"].clone().fill_(float("nan"))), None, None, "clip 1: 'lq' hold NaN"),
        (with_clip(0, lq=(good["lq"] * 255).byte()), None, None, "clip 0: 'lq' must be float.*divide uint8"),
        (with_clip(1, lq=good["lq"][:0], gt=good["gt"][:0]), None, None, r"clip 1: 'lq' is empty \(shape \(0, 3"),
        (with_clip(1, gt=good["gt"].numpy()), None, None, r"clip 1: 'gt' must be a \(n, 3, H, W\) tensor, got ndarray"),
        (with_clip(2, gt=good["gt"][:, :, :-1]), None, None,
         r"clip 2: 'gt' is 3 frames of 32x31; it must be 3 frames \(as 'lq'\) of 32x32 \(x4 of 8x8\)"),
        (with_clip(1, gt=good["gt"][:2]), None, None, "clip 1: 'gt' is 2 frames .* must be 3 frames"),
        # the scale comes from the teacher, the source, or else the first clip
        (with_clip(0, gt=torch.rand(3, 3, 16, 16)), None, {"scale": SCALE}, r"clip 0: .* of 32x32 \(x4 of 8x8\)"),
        (with_clip(0, gt=torch.rand(3, 3, 16, 16)), CallableTeacher(CountingTeacher(), SCALE), None,
         r"clip 0: .* of 32x32 \(x4 of 8x8\)"),
        (with_clip(0, gt=torch.rand(3, 3, 16, 15)), None, None, r"clip 0: 'gt' .* of a multiple of 8x8"),
        (with_clip(2, gt=torch.rand(3, 3, 16, 16)), None, None, r"clip 2: .* of 32x32 \(x4 of 8x8\)"),
        (random_clips(3), CallableTeacher(lambda lq: torch.full((3, 3, 32, 32), float("nan")), SCALE), None,
         "clip 0: the teacher's output holds NaN"),
    ]
    for clips, teacher, source, message in cases:
        with pytest.raises(InputError, match=message):
            build_teacher_cache(teacher, clips, tmp_path / "cache", clips_per_shard=8, source=source)
        assert not (tmp_path / "cache").exists()
    with pytest.raises(InputError, match=r"clips_per_shard must be a whole number >= 1, got 2.5"):
        build_teacher_cache(None, random_clips(3), tmp_path / "cache", clips_per_shard=2.5)
    # a ground truth at another whole scale than x4 is taken when nothing says x4
    cache = build_teacher_cache(None, [{"lq": good["lq"], "gt": torch.rand(3, 3, 16, 16)}], tmp_path / "cache")
    assert cache[0]["gt"].shape == (3, 3, 16, 16)


# --------------------------------------------------------------------------- CLI


def save_student_folder(model: StarStudentModel, folder: Path) -> Path:
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    StarStudentPipeline(student=model).save_pretrained(folder)
    return folder


def test_cli_cache_teacher_refuses_a_running_builds_folder_before_loading_the_teacher(tmp_path, capsys,
                                                                                      monkeypatch):
    import star_vsr.distill.teacher

    folder = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    cache = tmp_path / "cache"
    cache.mkdir()
    loads = []
    monkeypatch.setattr(star_vsr.distill.teacher, "load_teacher", lambda *a, **k: loads.append(a))
    with folder_lock(cache, cache):  # a build running there
        assert cli_main(["distill", "cache-teacher", "--teacher", str(folder), "--motion-clips", "2", "--num-frames",
                         "2", "--crop-size", "16", "-o", str(cache)]) == 2
    assert f"another star-vsr run is writing {cache}" in capsys.readouterr().err
    assert loads == []  # (a diffusion teacher takes minutes and GPU memory to load)
    # nor is it loaded for a folder of other files or a cache of other clips, refused after it had loaded
    args = ["distill", "cache-teacher", "--teacher", str(folder), "--num-frames", "2", "--crop-size", "16"]
    (cache / "mine.txt").write_text("mine")
    assert cli_main(args + ["--motion-clips", "2", "-o", str(cache)]) == 2
    assert "holds other files (mine.txt) and no teacher cache" in capsys.readouterr().err
    (cache / "mine.txt").unlink()
    monkeypatch.undo()
    assert cli_main(args + ["--motion-clips", "2", "-o", str(cache)]) == 0
    monkeypatch.setattr(star_vsr.distill.teacher, "load_teacher", lambda *a, **k: loads.append(a))
    assert cli_main(args + ["--motion-clips", "3", "-o", str(cache)]) == 2
    # each setting named with the flag that sets it (was source.clips, source.seed alone: the manifest's keys)
    assert "built with other settings (num_clips, source.clips (--motion-clips) differ)" in capsys.readouterr().err
    assert cli_main(args + ["--motion-clips", "2", "--seed", "5", "-o", str(cache)]) == 2
    assert "built with other settings (source.seed (--seed) differ)" in capsys.readouterr().err
    assert loads == []
    # a crop the scale does not divide: named by the flags (was "crop_size (33, 33) must be divisible by scale 4")
    assert cli_main([*args[:-1], "33", "--motion-clips", "2", "-o", str(tmp_path / "other")]) == 2
    assert "--crop-size 33 must be a positive multiple of --upscale 4" in capsys.readouterr().err


def test_cli_cache_teacher_restores_a_lost_manifest_and_says_what_it_computed(tmp_path, capsys):
    """The rerun that restored a lost manifest said "wrote CACHE ... (under 0.1 s of teacher time)" having computed
    nothing, and its checks named the restore where the shards carried no agreeing copy (review)."""
    folder = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    cache = tmp_path / "cache"
    args = ["distill", "cache-teacher", "--teacher", str(folder), "--motion-clips", "4", "--num-frames", "2",
            "--crop-size", "16", "--clips-per-shard", "2", "-o", str(cache)]
    assert cli_main(args) == 0
    (cache / "manifest.json").unlink()
    capsys.readouterr()
    assert cli_main(args) == 0
    assert (f"{cache} was already complete, nothing computed: 4 clips in 2 shards (teacher time not known: its "
            f"manifest was restored)") in capsys.readouterr().out
    (cache / "manifest.json").unlink()
    (cache / "shard-00001.safetensors").unlink()
    assert cli_main(args) == 0
    assert "of teacher time in this run, that of the shards before not known" in capsys.readouterr().out
    assert len(TeacherCache(cache)) == 4


def test_cache_teacher_default_crop_fits_every_scale():
    """--upscale 3 without --crop-size was refused: '--crop-size 64 must be a positive multiple of --upscale 3',
    a flag the user had not given."""
    import argparse

    from star_vsr.cli.distill import clip_source

    for scale, crop in ((2, 64), (3, 63), (4, 64)):
        args = argparse.Namespace(num_frames=2, upscale=scale, clips_per_shard=1, data=None, gt=None, motion_clips=1,
                                  crop_size=None, degradation=None, seed=0)
        clips, description = clip_source(args)
        assert description["crop_size"] == crop, scale
        assert tuple(clips[0]["gt"].shape[-2:]) == (crop, crop) and clips[0]["lq"].shape[-1] == crop // scale


def test_clips_too_small_for_a_teacher_or_crops_too_large_for_the_photos_are_refused_before_it_runs(tmp_path,
                                                                                                   capsys):
    """A 1-pixel-wide clip failed the diffusion teacher mid-run with "frames of 1x1 are too small to upscale", naming
    no clip (the shards before it written: removing the clip then made the cache one of other clips), and a student
    teacher cached it; `--crop-size 1000` gave a warning for each training photo, then "ImageMotionDataset: no usable
    source ... Check the training data"."""
    import argparse

    from star_vsr.cli.distill import clip_source
    from star_vsr.evalset import training_photos
    from star_vsr.io.synthetic import write_test_video

    folder = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    lr_dir = tmp_path / "lr"
    (lr_dir / "line").mkdir(parents=True)
    write_test_video(lr_dir / "a.mp4", num_frames=2, size=(16, 16))
    for index in range(2):
        Image.fromarray(np.zeros((1, 3, 3), np.uint8)).save(lr_dir / "line" / f"{index}.png")
    base = ["distill", "cache-teacher", "--teacher", str(folder), "-o", str(tmp_path / "cache"), "--num-frames", "2"]
    assert cli_main([*base, "--data", str(lr_dir)]) == 2
    assert (f"1 clip in {lr_dir} has frames under 2 pixels a side, too small to upscale: line (3x1); remove it"
            in capsys.readouterr().err)
    shutil.copytree(lr_dir / "line", lr_dir / "line2")
    assert cli_main([*base, "--data", str(lr_dir)]) == 2
    assert (f"2 clips in {lr_dir} have frames under 2 pixels a side, too small to upscale: line (3x1), line2 (3x1); "
            f"remove them" in capsys.readouterr().err)
    for crop, message in (("4", "--crop-size 4 at --upscale 4 makes LR clips of 1 pixel a side, too small to "
                                "upscale; use at least 8"),
                          ("1000", "--crop-size 1000 is too large for the training photographs: moving crops of 1000 "
                                   "pixels need a photo whose shorter side is at least 1572 pixels, and the largest "
                                   "photo's is")):
        assert cli_main([*base, "--motion-clips", "1", "--crop-size", crop]) == 2
        err = capsys.readouterr().err
        assert message in err and "warning" not in err
    assert not (tmp_path / "cache").exists()
    every, largest = map(int, re.search(r"use at most --crop-size (\d+) \(every photo\) or (\d+) \(the largest", err)
                         .groups())  # the advice: crops that work
    sides = [min(photo.shape[:2]) for photo in training_photos()]
    for crop, fitting in ((every, len(sides)), (largest, sides.count(max(sides)))):
        args = argparse.Namespace(num_frames=1, upscale=4, clips_per_shard=1, data=None, gt=None, motion_clips=1,
                                  crop_size=crop, degradation=None, seed=0)
        reach = clip_source(args)[0].crop_reach()
        assert crop % 4 == 0 and sum(side >= reach for side in sides) == fitting
    # too large for some photos: one note (it was a warning for each of them), the others make the clips
    assert cli_main([*base, "--motion-clips", "1", "--crop-size", "200"]) == 0
    err = capsys.readouterr().err
    assert (f"note: --crop-size 200 is too large for {sum(side < 315 for side in sides)} of the {len(sides)} training "
            f"photographs" in err and f"--crop-size {every} or less uses them all" in err and "warning" not in err)


def test_an_error_a_teacher_raises_for_one_clip_names_the_clip(tmp_path):
    """The diffusion teacher's own checks of a clip ("frames of 1x1 are too small to upscale") named no clip among
    hundreds."""
    def teacher(lq, **kwargs):
        if lq.shape[-1] < 4:
            raise InputError(f"frames of {lq.shape[-1]}x{lq.shape[-2]} are too small to upscale")
        return torch.nn.functional.interpolate(lq, scale_factor=2)

    clips = [{"lq": torch.rand(2, 3, 8, 8), "name": "a.mp4:0"}, {"lq": torch.rand(2, 3, 2, 2), "name": "z.mkv:0"}]
    with pytest.raises(InputError, match=r"^clip 1 \(z\.mkv:0\): frames of 2x2 are too small to upscale$"):
        build_teacher_cache(CallableTeacher(teacher, 2), clips, tmp_path / "cache", clips_per_shard=1)


def test_cli_cache_teacher_from_a_student_folder_and_video_folder(tmp_path, capsys):
    from star_vsr.io.synthetic import write_test_video

    teacher = tiny_teacher_student()
    folder = save_student_folder(teacher, tmp_path / "teacher")
    lr_dir, gt_dir = tmp_path / "lr", tmp_path / "gt"
    lr_dir.mkdir(), gt_dir.mkdir()
    for name, seed in (("a.mp4", 0), ("b.mp4", 1)):
        write_test_video(lr_dir / name, num_frames=6, size=(16, 16), seed=seed)
        write_test_video(gt_dir / name, num_frames=6, size=(64, 64), seed=seed)
    (lr_dir / ".thumbnails").mkdir(), (lr_dir / "notes").mkdir()  # not clips: skipped, not an error
    (lr_dir / "notes" / "readme.txt").write_text("shot on a phone")
    cache_dir = tmp_path / "cache"
    # motion-clip options with --data were ignored without a word; a file as -o was "File exists" (exit 1)
    base = ["distill", "cache-teacher", "--teacher", str(folder), "--data", str(lr_dir), "--device", "cpu"]
    assert cli_main([*base, "-o", str(cache_dir), "--crop-size", "16", "--degradation", "heavy"]) == 2
    assert "--crop-size and --degradation go with --motion-clips" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert cli_main([*base, "-o", str(tmp_path / "afile")]) == 2
    assert "is a file; the cache is a folder" in capsys.readouterr().err and not cache_dir.exists()
    # a missing --data folder was "is not a folder of videos"; messages named only "star-vsr distill"
    assert cli_main([*base[:5], str(tmp_path / "no-data"), *base[6:], "-o", str(cache_dir)]) == 2
    assert f"star-vsr distill cache-teacher: error: {tmp_path / 'no-data'} does not exist; it should be a folder of " \
           f"videos or frame folders" in capsys.readouterr().err and not cache_dir.exists()  # (as --help says)
    # a folder that is no teacher: said for --teacher, not with upscale's help about --model
    assert cli_main([*base[:3], str(tmp_path / "nope"), *base[4:], "-o", str(cache_dir)]) == 2
    err = capsys.readouterr().err
    assert "no teacher (StarVSR or student) pipeline there" in err and "--teacher is a StarVSR pipeline folder" in err
    assert "--model" not in err and not cache_dir.exists()
    # options that cannot apply are refused before the progress bar starts, not ignored or failed at the first clip
    for flags, message in ((["--steps", "3"], "--steps sets the diffusion teacher's sampling; "),
                           (["--seed", "3"], "--seed sets the diffusion teacher's sampling; "),  # draws no clips
                           (["--upscale", "5"], "--upscale 5: training/distill_student.py trains students at 2, 3, 4"),
                           (["--upscale", "1"], "--upscale 1: training/distill_student.py trains"),  # (training refused
                           # a x1 cache, advising --scale 1, which it refuses too)
                           (["--clips-per-shard", "0"], "--clips-per-shard must be >= 1")):
        assert cli_main([*base, "-o", str(cache_dir), *flags]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "teacher cache" not in captured.err and not cache_dir.exists()
    argv = ["distill", "cache-teacher", "--teacher", str(folder), "--data", str(lr_dir), "--gt", str(gt_dir),
            "-o", str(cache_dir), "--num-frames", "3", "--features", "hr_features", "--storage-dtype", "float32",
            "--clips-per-shard", "1", "--device", "cpu"]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert "4 clips in 4 shards" in captured.out  # two 3-frame windows per video (one shard: "1 shard")
    wall_time = json.loads((cache_dir / "manifest.json").read_text())["wall_time_s"]  # "under 0.1 s", not "0.0 s"
    seconds = f"{wall_time:.1f} s" if wall_time >= 0.05 else "under 0.1 s"
    assert f"({seconds} of teacher time)" in captured.out and "(0.0 s" not in captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: subfolders of {lr_dir} without frame images are left out (notes); the videos inside a "
                     f"subfolder are not searched: give that subfolder itself"]  # 6 frames cut into 3-frame windows
    assert cli_main([*base, "-o", str(tmp_path / "cache8"), "--num-frames", "8"]) == 0
    assert "note: 2 of the clips are shorter than --num-frames 8" in capsys.readouterr().err
    cache = TeacherCache(cache_dir)
    assert cache.feature_channels == {"hr_features": TEACHER_HR_CHANNELS} and cache.manifest.has_gt
    item = cache[1]  # a.mp4, frames 3..5
    assert item["lq"].shape == (3, 3, 16, 16) and item["gt"].shape == (3, 3, 64, 64)
    with torch.no_grad():
        expected = teacher(item["lq"][None], return_features=True)
    torch.testing.assert_close(item["teacher"], expected.sample[0].clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(item["teacher_features"]["hr_features"], expected.features["hr_features"][0],
                               atol=1e-5, rtol=0)
    # a rerun finds every shard done and rewrites none of them
    stamps = {p: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*")}
    capsys.readouterr()
    assert cli_main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in cache_dir.glob("shard-*")} == stamps
    assert f"{cache_dir} was already complete, nothing computed: 4 clips in 4 shards" in capsys.readouterr().out
    # other windows of --data: its number of clips is the folder's, not --motion-clips (which was named)
    other = [*argv]
    other[other.index("--num-frames") + 1] = "2"
    assert cli_main(other) == 2
    assert "(num_clips, source.clips (--data), source.num_frames (--num-frames) differ)" in capsys.readouterr().err
    # without --gt: the ground truth's files are in the clips' fingerprint, but no file changed
    no_gt = [flag for i, flag in enumerate(argv) if "--gt" not in argv[max(i - 1, 0):i + 1]]
    assert cli_main(no_gt) == 2
    err = capsys.readouterr().err
    assert "(source.files, source.gt (--gt) differ)" in err and "the clips' files changed" not in err
    # ground truth pairs by name, as in evaluate: lossless a.mkv / a frame folder for the LR a.mp4 / b.mp4
    from star_vsr.distill.sources import VideoFolderClips

    write_test_video(gt_dir / "a.mkv", num_frames=6, size=(64, 64), seed=0, codec="ffv1")
    (gt_dir / "a.mp4").unlink()
    (gt_dir / "b").mkdir()
    for index, frame in enumerate(open_video(gt_dir / "b.mp4")):
        Image.fromarray(frame).save(gt_dir / "b" / f"{index:08d}.png")
    (gt_dir / "b.mp4").unlink()
    clips = VideoFolderClips(lr_dir, num_frames=3, gt_folder=gt_dir)
    assert {lr.name: gt.name for lr, gt in clips.gt.items()} == {"a.mp4": "a.mkv", "b.mp4": "b"}
    assert clips[3]["gt"].shape == (3, 3, 64, 64)
    for suffix in (".mp4", ".mkv"):  # two ground truths of a name no LR clip has: not refused
        write_test_video(gt_dir / f"z{suffix}", num_frames=2, size=(64, 64))
    assert len(VideoFolderClips(lr_dir, num_frames=3, gt_folder=gt_dir)) == len(clips)
    write_test_video(gt_dir / "a.mp4", num_frames=6, size=(64, 64))
    with pytest.raises(InputError, match=r"gt_folder .* holds clips of the same name .*: a.mkv, a.mp4"):
        VideoFolderClips(lr_dir, num_frames=3, gt_folder=gt_dir)
    for name in ("z.mp4", "z.mkv", "a.mp4"):
        (gt_dir / name).unlink()
    shutil.rmtree(gt_dir / "b")
    with pytest.raises(InputError, match=r"no ground truth in .* for 1 of the 2 clips in .*: b\.mp4"):
        VideoFolderClips(lr_dir, num_frames=3, gt_folder=gt_dir)
    shutil.rmtree(lr_dir / "notes")  # (its own note, checked above)
    # what the cut into windows drops is said, not silent: 6-frame videos in 4-frame windows, or shorter than 8
    assert VideoFolderClips(lr_dir, num_frames=4).notes() == ["4 frames after the last whole 4-frame window of each "
                                                              "video are left out (counted over the videos)"]
    short = VideoFolderClips(lr_dir, num_frames=8)  # from Python: the argument's name, not the command's flag
    assert [stop - start for _, start, stop in short.windows] == [6, 6] and short.notes() == [
        "2 of the clips are shorter than num_frames=8 and give one shorter clip each: a.mp4 (6 frames), "
        "b.mp4 (6 frames)"]
    assert VideoFolderClips(lr_dir).notes() == []  # whole videos
    (gt_dir / "c").mkdir()
    Image.new("RGB", (16, 16)).save(gt_dir / "c" / "0.png")
    with pytest.raises(InputError, match=rf"{gt_dir / 'c'} is a frame folder, one clip; folder takes the folder "
                                         rf"that holds clips \({gt_dir}\)"):  # ("no videos or frame folders in")
        VideoFolderClips(gt_dir / "c")
    with pytest.raises(InputError, match=rf"gt_folder {gt_dir / 'c'} is a frame folder, one clip; gt_folder takes "
                                         rf"the folder that holds the ground-truth clips \({gt_dir}\)"):
        VideoFolderClips(lr_dir, gt_folder=gt_dir / "c")  # ("no ground truth in")
    # the command names its flags (from Python, the messages named --data and --gt: audit)
    assert cli_main([*argv, "--data", str(gt_dir / "c")]) == 2
    assert f"{gt_dir / 'c'} is a frame folder, one clip; --data takes the folder" in capsys.readouterr().err
    assert cli_main([*argv, "--gt", str(gt_dir / "c")]) == 2
    assert f"--gt {gt_dir / 'c'} is a frame folder, one clip; --gt takes the folder" in capsys.readouterr().err
    # a subfolder of videos and a picture beside the clips are left out with a note (they were left out silently)
    (lr_dir / "more").mkdir()
    write_test_video(lr_dir / "more" / "c.mp4", num_frames=6, size=(16, 16))
    Image.new("RGB", (16, 16)).save(lr_dir / "poster.png")
    nested = VideoFolderClips(lr_dir)
    assert len(nested) == 2 and nested.notes() == [
        f"{lr_dir} holds videos, so the picture beside them is left out (poster.png); the frames of a video go in a "
        f"folder of their own, one per video",
        f"subfolders of {lr_dir} without frame images are left out (more); the videos inside a subfolder are not "
        f"searched: give that subfolder itself"]
    # the ground truth and the cache being written, inside --data, are no clips left out: not listed with `more`
    (lr_dir / "hr").mkdir()
    for name, seed in (("a.mp4", 0), ("b.mp4", 1)):
        write_test_video(lr_dir / "hr" / name, num_frames=6, size=(64, 64), seed=seed)
    capsys.readouterr()
    assert cli_main([*base, "-o", str(lr_dir / "cache"), "--gt", str(lr_dir / "hr"), "--num-frames", "3"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: subfolders")]
    assert notes == [f"note: subfolders of {lr_dir} without frame images are left out (more); the videos inside a "
                     f"subfolder are not searched: give that subfolder itself"]


def test_a_cache_is_not_resumed_over_videos_replaced_under_the_same_names(tmp_path, capsys):
    """A video of --data replaced (re-exported, another take) between a stopped build and its rerun was resumed
    into the same cache, mixing the clips of two sets of files; a cache made before the files were fingerprinted
    still resumes."""
    from star_vsr.io.synthetic import write_test_video

    folder = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for name, seed in (("a.mp4", 0), ("b.mp4", 1)):
        write_test_video(lr_dir / name, num_frames=4, size=(16, 16), seed=seed)
    argv = ["distill", "cache-teacher", "--teacher", str(folder), "--data", str(lr_dir), "-o", str(tmp_path / "cache"),
            "--clips-per-shard", "1", "--device", "cpu"]
    assert cli_main(argv) == 0
    shard = tmp_path / "cache" / "shard-00001.safetensors"
    shard.unlink()  # as if stopped after the first clip
    manifest_path = tmp_path / "cache" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["complete"] = False
    manifest_path.write_text(json.dumps(manifest))
    write_test_video(lr_dir / "b.mp4", num_frames=4, size=(16, 16), seed=7)  # replaced under its name
    assert cli_main(argv) == 2
    assert "built with other settings (source.files differ (the clips' files changed since it was started))" \
        in capsys.readouterr().err and not shard.exists()
    before = manifest["source"].pop("files")  # written by an earlier star-vsr: resumed as before
    manifest_path.write_text(json.dumps(manifest))
    assert cli_main(argv) == 0 and shard.exists() and len(before) == 16
    # ... and is fingerprinted from then on: stopped again, a file replaced, the next resume is refused
    assert json.loads(manifest_path.read_text())["source"]["files"] != before
    shard.unlink()
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "complete": False}))
    write_test_video(lr_dir / "b.mp4", num_frames=4, size=(16, 16), seed=8)
    assert cli_main(argv) == 2 and "source.files differ" in capsys.readouterr().err


def test_a_cache_moved_with_its_clips_resumes_and_frames_swapped_by_name_are_noticed(tmp_path, capsys):
    """A cache and its data moved (or restored) together were "built with other settings" (their folders' paths),
    so the only way on was --overwrite, all the teacher work again; frames of a frame folder swapped by renaming
    them (sizes, count and latest time unchanged) resumed, the recomputed shard mixing old and new clips
    (black-box hunt)."""
    from PIL import Image

    teacher = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    clip = tmp_path / "data" / "lr" / "a"
    clip.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(clip / f"{index:04d}.png")

    def build(root: Path) -> int:
        return cli_main(["distill", "cache-teacher", "--teacher", str(teacher), "--data", str(root / "lr"), "-o",
                         str(root / "cache"), "--num-frames", "2", "--clips-per-shard", "1", "--device", "cpu"])

    def stop_after_the_first_shard(root: Path) -> Path:
        shard = root / "cache" / "shard-00001.safetensors"
        shard.unlink()
        manifest = json.loads((root / "cache" / "manifest.json").read_text())
        (root / "cache" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
        return shard

    assert build(tmp_path / "data") == 0
    shutil.copytree(tmp_path / "data", tmp_path / "moved")  # (copy2: the files' times kept, as cp -rp / rsync -a)
    shard = stop_after_the_first_shard(tmp_path / "moved")
    assert build(tmp_path / "moved") == 0 and shard.exists()  # resumed where it is now
    shard = stop_after_the_first_shard(tmp_path / "moved")
    moved = tmp_path / "moved" / "lr" / "a"
    (moved / "0000.png").rename(moved / "swap.png")
    (moved / "0001.png").rename(moved / "0000.png")
    (moved / "swap.png").rename(moved / "0001.png")
    capsys.readouterr()
    assert build(tmp_path / "moved") == 2 and not shard.exists()
    assert "(source.frames differ (the clips' files changed since it was started))" in capsys.readouterr().err


def test_clips_damaged_inside_their_data_are_named_before_the_teacher_runs(tmp_path, capsys):
    """A video of --data damaged inside its frame data (its index intact) failed hours into a run, after the shards
    before it were written under a fingerprint of the files: repaired, it made the cache one of other clips. Every
    damaged file is now named at the start, and nothing is cached."""
    from star_vsr.io.synthetic import damage_packet, write_test_video

    folder = save_student_folder(tiny_teacher_student(), tmp_path / "teacher")
    lr_dir, gt_dir = tmp_path / "lr", tmp_path / "gt"
    lr_dir.mkdir(), gt_dir.mkdir()
    for name, seed in (("a.mp4", 0), ("b.mp4", 1), ("c.mp4", 2)):
        write_test_video(lr_dir / name, num_frames=10, size=(16, 16), seed=seed, gop_size=5)
        write_test_video(gt_dir / name, num_frames=10, size=(32, 32), seed=seed, gop_size=5)
    damage_packet(lr_dir / "b.mp4", 7)
    damage_packet(gt_dir / "c.mp4", 7)
    argv = ["distill", "cache-teacher", "--teacher", str(folder), "--data", str(lr_dir), "--gt", str(gt_dir),
            "--upscale", "2", "--num-frames", "5", "-o", str(tmp_path / "cache"), "--clips-per-shard", "1",
            "--device", "cpu"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "2 clip files of --data or --gt cannot be decoded; repair or remove them (this run cached nothing)" in err
    assert f"{lr_dir / 'b.mp4'}: decoding failed after" in err and f"{gt_dir / 'c.mp4'}: decoding failed" in err
    assert not (tmp_path / "cache").exists()
    wrong_teacher = [tmp_path / "teachr" if part == str(folder) else part for part in argv]
    assert cli_main([str(part) for part in wrong_teacher]) == 2  # the teacher's own checks first, not after decoding
    err = capsys.readouterr().err
    assert "teachr does not exist" in err and "cannot be decoded" not in err
    write_test_video(lr_dir / "b.mp4", num_frames=10, size=(16, 16), seed=1)
    write_test_video(gt_dir / "c.mp4", num_frames=10, size=(32, 32), seed=2)
    assert cli_main(argv) == 0 and TeacherCache(tmp_path / "cache").manifest.num_clips == 6
    # a resumed build decodes the clips it has still to compute: b.mp4's second window (frames 5-9, damaged on disk
    # since, which the fingerprint of names, sizes and times does not see) when its shard is missing ...
    stamp = (lr_dir / "b.mp4").stat().st_mtime_ns
    damage_packet(lr_dir / "b.mp4", 7)
    os.utime(lr_dir / "b.mp4", ns=(stamp, stamp))
    (tmp_path / "cache" / "shard-00003.safetensors").unlink()
    assert cli_main(argv) == 2
    assert "1 clip file of --data or --gt cannot be decoded; repair or remove it (this run cached nothing)" in \
        capsys.readouterr().err
    # ... or when its shard's header is damaged (the run computes that shard again: it was decoded unchecked)
    (tmp_path / "cache" / "shard-00003.safetensors").write_bytes(b"\xff" * 64)
    assert cli_main(argv) == 2
    assert "1 clip file of --data or --gt cannot be decoded" in capsys.readouterr().err
    # ... not the windows already cached (a finished cache reruns without decoding anything)
    shutil.rmtree(tmp_path / "cache")
    write_test_video(lr_dir / "b.mp4", num_frames=10, size=(16, 16), seed=1)
    assert cli_main(argv) == 0
    stamp = (lr_dir / "b.mp4").stat().st_mtime_ns
    damage_packet(lr_dir / "b.mp4", 7)
    os.utime(lr_dir / "b.mp4", ns=(stamp, stamp))
    assert cli_main(argv) == 0 and "was already complete, nothing computed" in capsys.readouterr().out


def test_cli_cache_teacher_from_a_diffusion_pipeline_folder(tmp_path, capsys):
    from star_vsr.testing import tiny_star_pipeline

    folder = tmp_path / "tiny-star"
    tiny_star_pipeline(seed=0).save_pretrained(folder)
    argv = ["distill", "cache-teacher", "--teacher", str(folder), "--motion-clips", "2", "--num-frames", "2",
            "--crop-size", "32", "-o", str(tmp_path / "cache"), "--steps", "2", "--device", "cpu"]
    assert cli_main(argv + ["--features", "lr_features"]) == 2
    assert "has no feature taps ['lr_features']; it has ['hr_features']" in capsys.readouterr().err
    assert cli_main(argv[:-4] + ["--steps", "0", "--device", "cpu"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # a refused run leaves no cache that would block the corrected one
    assert cli_main(argv) == 0
    capsys.readouterr()
    assert cli_main(argv + ["--guidance-scale", "3"]) == 2  # named by its flag (was "teacher.call_kwargs differ")
    assert "(teacher.call_kwargs.guidance_scale (--guidance-scale) differ)" in capsys.readouterr().err
    # --features added: "already complete, nothing computed ... features: none", and a stopped cache went on with
    # them, its first clips without them and its manifest listing them for every clip
    assert cli_main(argv + ["--features", "hr_features"]) == 2
    assert "(teacher.features (--features) differ)" in capsys.readouterr().err
    manifest_path = tmp_path / "cache" / "manifest.json"  # as written before the teacher's taps were recorded
    manifest = json.loads(manifest_path.read_text())
    del manifest["teacher"]["features"]
    manifest_path.write_text(json.dumps(manifest))
    assert cli_main(argv + ["--features", "hr_features"]) == 2  # its clips' taps (none) stand for them
    assert "(teacher.features (--features) differ)" in capsys.readouterr().err
    assert cli_main(argv) == 0 and "2 clips in 1 shard" in capsys.readouterr().out
    cache = TeacherCache(tmp_path / "cache")
    assert len(cache) == 2 and cache.manifest.teacher["kind"] == "star_vsr"
    item = cache[1]
    assert item["teacher"].shape == item["gt"].shape == (2, 3, 32, 32) and item["teacher_features"] == {}
    assert 0 <= item["teacher"].min() and item["teacher"].max() <= 1

    # the README's STAR recipe: configs/distill_student.yaml trains on this cache as it is
    sys.path.insert(0, str(REPO / "training"))
    try:
        import distill_student
    finally:
        sys.path.pop(0)
    args = distill_student.parse_args([
        "--config", str(REPO / "configs" / "distill_student.yaml"), "--train_cache", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / "student"), "--student_preset", "tiny", "--max_train_steps", "2",
        "--validation_steps", "0", "--report_to", "none", "--dataloader_num_workers", "0"])
    summary = distill_student.main(args)
    assert summary["steps"] == 2 and set(summary["last_losses"]) >= {"loss/teacher_charbonnier", "loss/gt_charbonnier"}

    # its feature tap (the VAE decoder's last up-block output at HR, hooked in decode order) feeds the
    # space, time and feature terms
    argv = [*argv[:argv.index("-o")], "-o", str(tmp_path / "cache-features"), *argv[argv.index("-o") + 2:]]
    assert cli_main(argv + ["--features", "hr_features"]) == 0
    featured = TeacherCache(tmp_path / "cache-features")
    taps = featured[1]["teacher_features"]["hr_features"]  # (n, c, H, W)
    assert taps.shape[0] == 2 and taps.shape[-2:] == (32, 32) and taps.shape[1] == featured.feature_channels["hr_features"]
    assert torch.equal(featured[1]["teacher"], item["teacher"])  # the hook does not change the output
    args = distill_student.parse_args([
        "--config", str(REPO / "configs" / "distill_student.yaml"), "--train_cache", str(tmp_path / "cache-features"),
        "--output_dir", str(tmp_path / "student-features"), "--student_preset", "tiny", "--max_train_steps", "2",
        "--validation_steps", "0", "--report_to", "none", "--dataloader_num_workers", "0",
        "--loss_space", "0.05", "--loss_time", "0.05", "--loss_feature", "0.05", "--feature_names", "hr_features"])
    summary = distill_student.main(args)
    assert {"loss/space", "loss/time", "loss/feature"} <= set(summary["last_losses"])


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def train_cache(tmp_path_factory) -> Path:
    """8 random 3-frame clips (8 x 8 LR) with ground truth, the outputs and hr_features of a tiny teacher."""
    folder = tmp_path_factory.mktemp("distill") / "cache"
    teacher = load_teacher(tiny_teacher_student(), features=["hr_features"])
    build_teacher_cache(teacher, random_clips(8, frames=3, size=8), folder)
    return folder


def training_args(cache: Optional[Path], output_dir: Path, *extra: str):
    """The tiny config's arguments; ``cache`` None trains on motion clips made on the fly."""
    sys.path.insert(0, str(REPO / "training"))
    try:
        import distill_student
    finally:
        sys.path.pop(0)
    data = [] if cache is None else ["--train_cache", str(cache)]
    args = distill_student.parse_args(["--config", str(REPO / "configs" / "distill_student_tiny.yaml"), *data,
                                       "--output_dir", str(output_dir), *extra])
    return distill_student, args


def test_both_training_scripts_give_the_other_processes_time_to_wait_for_a_validation(tmp_path, monkeypatch):
    """Under several processes the others wait in their next collective while the main process validates or saves
    the final model; Accelerate's default process-group timeout (10 minutes under NCCL) ended a run whose
    validation took longer (open item). Both scripts build their Accelerator with COLLECTIVE_TIMEOUT."""
    from accelerate.utils import InitProcessGroupKwargs

    from star_vsr.training_run import COLLECTIVE_TIMEOUT

    class Built(Exception):
        pass

    def accelerator(**kwargs):
        handlers = [h for h in kwargs.get("kwargs_handlers", []) if isinstance(h, InitProcessGroupKwargs)]
        raise Built([handler.timeout for handler in handlers])

    sys.path.insert(0, str(REPO / "training"))
    try:
        import train_star
    finally:
        sys.path.pop(0)
    distill_student, args = training_args(None, tmp_path / "student", "--report_to", "none")
    star_args = train_star.parse_args(["--config", str(REPO / "configs" / "train_star_tiny.yaml"), "--output_dir",
                                       str(tmp_path / "star")])
    assert COLLECTIVE_TIMEOUT.total_seconds() >= 3600
    for script, script_args in ((distill_student, args), (train_star, star_args)):
        monkeypatch.setattr(script, "Accelerator", accelerator)
        with pytest.raises(Built) as built:
            script.main(script_args)
        assert built.value.args[0] == [COLLECTIVE_TIMEOUT]


def test_a_diverging_run_stops_before_a_nan_step_is_applied_or_saved(tmp_path, train_cache):
    """A learning rate far too high: the loss went inf, then NaN; the run saved NaN checkpoints and crashed with a
    segmentation fault (grid_sample's backward on a NaN flow), and a resume crashed again (black-box hunt). It stops
    at the step whose loss (or gradient) is not finite, before applying it, with a line that says so; every
    checkpoint it saved before is finite."""
    from safetensors.torch import load_file

    from star_vsr.errors import TrainingDivergedError, exit_status

    script, args = training_args(train_cache, tmp_path / "run", "--learning_rate", "1e6", "--max_train_steps", "40",
                                 "--checkpointing_steps", "1", "--validation_steps", "0", "--report_to", "none",
                                 "--dataloader_num_workers", "0")
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at step \d+: its (loss|gradient norm) is "
                                                     r"(nan|inf) \(a learning rate too high\?\); nothing of the step "
                                                     r"was applied or saved\. Lower --learning_rate and resume from "
                                                     r"the last checkpoint saved before it, if one was") as stopped:
        script.main(args)
    assert exit_status(stopped.value) == 1
    # None (a norm a plugin does not give) and a plain float pass; a tensor of several values names one not finite;
    # under fp16's loss scaler, which skips a step whose scaled gradients overflowed, the gradient norm is not
    # checked (review)
    from types import SimpleNamespace

    from star_vsr.training_run import check_finite

    plain, scaled = SimpleNamespace(scaler=None), SimpleNamespace(scaler=object())
    check_finite(plain, None, "gradient norm", 1, False)
    check_finite(plain, 0.5, "loss", 1, False)
    check_finite(scaled, float("inf"), "gradient norm", 1, False)
    with pytest.raises(TrainingDivergedError, match="its loss is inf"):  # (the loss is unscaled: review)
        check_finite(scaled, float("inf"), "loss", 1, False)
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at step 7: its loss is -inf \(a learning "
                                                     r"rate too high\?\); nothing of the step was applied or saved\. "
                                                     r"Lower --learning_rate$"):
        check_finite(plain, torch.tensor([1.0, -float("inf"), float("nan")]), "loss", 7, False)
    # without clipping (--max_grad_norm 0) the gradients' norm was not computed: NaN gradients of a finite loss
    # went into the weights (review)
    from star_vsr.training_run import gradient_norm

    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(TrainingDivergedError, match="its gradient norm is nan"):
        check_finite(plain, gradient_norm(plain, [weight], 0), "gradient norm", 2, False)
    weights = list((tmp_path / "run").glob("checkpoint-*/**/*.safetensors"))
    assert weights and all(tensor.isfinite().all() for file in weights for tensor in load_file(file).values())


def test_a_cache_without_what_the_loss_terms_compare_with_names_their_flags(tmp_path):
    """"holds no ground truth, but the ground-truth loss terms are on" named no flag to turn off (black-box test;
    the config file, not the command line, had set them)."""
    no_gt, no_teacher = tmp_path / "no_gt", tmp_path / "no_teacher"
    build_teacher_cache(load_teacher(tiny_teacher_student()), random_clips(2, gt=False), no_gt)
    build_teacher_cache(None, random_clips(2), no_teacher)
    script, args = training_args(no_gt, tmp_path / "run", "--loss_gt_charbonnier", "0.5", "--loss_perceptual", "1")
    with pytest.raises(InputError, match=r"no_gt holds no ground truth, but ground-truth loss terms are on: "
                                         r"--loss_gt_charbonnier 0\.5 --loss_perceptual 1; set them to 0, or build"
                                         r".*\)\. It also holds teacher features \[\], not \['hr_features'\]"):
        script.main(args)  # (both at once: the features' error came only in the next run, once this was mended)
    script, args = training_args(no_teacher, tmp_path / "run", "--loss_time", "0.1")
    with pytest.raises(InputError, match=r"no_teacher holds no teacher outputs, but teacher loss terms are on: "
                                         r"--loss_teacher_charbonnier 1 --loss_space 0\.1 --loss_time 0\.1 "
                                         r"--loss_feature 0\.1; set them to 0"):
        script.main(args)
    # a cache built without teacher features: the cheaper way out was not named (black-box hunt)
    script, args = training_args(no_gt, tmp_path / "run", "--loss_gt_charbonnier", "0")
    with pytest.raises(InputError, match=r"no_gt holds teacher features \[\], not \['hr_features'\]; rebuild it with "
                                         r"--features hr_features, or train without the feature terms \(--loss_space 0 "
                                         r"--loss_time 0 --loss_feature 0\)"):
        script.main(args)
    # no cache at all (motion clips made on the fly): "the teacher loss terms need --train_cache" named none
    script, args = training_args(None, tmp_path / "run")
    with pytest.raises(InputError, match=r"^the teacher loss terms \(--loss_teacher_charbonnier 1 --loss_space 0\.1 "
                                         r"--loss_time 0\.1 --loss_feature 0\.1\) need --train_cache"):
        script.main(args)
    assert not (tmp_path / "run").exists()


def teacher_distance(student: StarStudentModel, cache: TeacherCache) -> float:
    with torch.no_grad():
        return sum(charbonnier_loss(student(item["lq"][None]).sample[0], item["teacher"]).item()
                   for item in cache) / len(cache)


def test_short_distillation_run_reduces_the_student_teacher_distance(tmp_path, train_cache):
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    # (none: no scheduled checkpoints, which could not be switched off: black-box hunt)
    script, args = training_args(train_cache, tmp_path / "run", "--max_train_steps", "20", "--validation_steps", "0",
                                 "--checkpointing_steps", "none", "--report_to", "none")
    cache = TeacherCache(train_cache)
    before = teacher_distance(tiny_student(seed=args.seed), cache)  # the script's seeded initialisation
    summary = script.main(args)
    after = teacher_distance(StarStudentPipeline.from_pretrained(tmp_path / "run").student, cache)
    terms = {"loss/teacher_charbonnier", "loss/gt_charbonnier", "loss/space", "loss/time", "loss/feature"}
    assert summary["steps"] == 20 and set(summary["last_losses"]) >= terms
    assert after < 0.5 * before
    assert args.checkpointing_steps is None and not list((tmp_path / "run").glob("checkpoint-*"))


def test_bf16_mixed_precision_trains(tmp_path, train_cache):
    """--mixed_precision bf16 (what the out-of-memory advice suggests) stopped at its first step: the student's
    recurrent state came out of autocast in bfloat16 and its second frame was refused."""
    script, args = training_args(train_cache, tmp_path / "run", "--max_train_steps", "2", "--validation_steps", "0",
                                 "--checkpointing_steps", "1000", "--report_to", "none", "--mixed_precision", "bf16")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # the in-process runs before were in float32, and the
    try:  # state (one per process) refuses another precision
        summary = script.main(args)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # (and the runs after are in float32 again)
    assert summary["steps"] == 2
    assert all(math.isfinite(value) for value in summary["last_losses"].values())


def test_a_stopped_cache_build_says_what_is_saved_and_how_to_go_on(tmp_path, capsys):
    class CtrlCTeacher(CountingTeacher):
        def __call__(self, lq):
            if self.calls == 3:  # Ctrl-C on the 4th clip, inside shard 1
                raise KeyboardInterrupt
            return super().__call__(lq)

    with pytest.raises(KeyboardInterrupt) as stopped:
        build_teacher_cache(CallableTeacher(CtrlCTeacher(), SCALE, name="teacher"), random_clips(6, gt=False),
                            tmp_path, clips_per_shard=2, progress=True)
    del stopped  # the traceback held the unclosed bar, which drew its last line again when collected: after the
    gc.collect()  # CLI's "interrupted"
    err = capsys.readouterr().err
    assert "stopped; 2 of 6 clips saved. Call again to go on" in err  # not "0 of 1 clip are" (Python)
    assert "teacher cache" in err and "teacher cache" not in err.split("stopped; 2 of 6")[1]


def test_accelerate_launch_checkpoints_and_resumes_exactly(tmp_path, train_cache, umask_022):
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    # the reference: 6 uninterrupted steps, in-process
    script, args = training_args(train_cache, tmp_path / "straight", "--report_to", "none")
    script.main(args)
    # the same run "interrupted" after 3 steps (a real `accelerate launch`), then resumed from its checkpoint
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "training" / "distill_student.py"),
               "--config", str(REPO / "configs" / "distill_student_tiny.yaml"), "--train_cache", str(train_cache),
               "--output_dir", str(interrupted), "--max_train_steps", "3"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (interrupted / "checkpoint-3" / "student" / "config.json").is_file()
    assert list((interrupted / "logs").rglob("events.out.tfevents.*"))  # TensorBoard logging
    summary = json.loads((interrupted / "training_summary.json").read_text())
    assert summary["steps"] == 3 and "psnr_y" in summary["validation"]
    _, resume = training_args(train_cache, interrupted, "--resume_from_checkpoint", "latest", "--report_to", "none")
    assert script.main(resume)["steps"] == 6
    # the run's settings as it started; the resume's (more steps, no TensorBoard: accepted) recorded apart
    assert yaml.safe_load((interrupted / "train_config.yaml").read_text())["max_train_steps"] == 3
    [entry] = yaml.safe_load_all((interrupted / "train_config_resumes.yaml").read_text())
    assert entry["step"] == 3 and entry["changed"] == {"max_train_steps": [3, 6], "report_to": ["tensorboard", "none"]}
    straight = StarStudentPipeline.from_pretrained(tmp_path / "straight").student.state_dict()
    resumed = StarStudentPipeline.from_pretrained(interrupted).student.state_dict()
    for name, value in straight.items():
        # 1e-5: float32 sums are ordered differently in the launched process (up to ~1e-6 apart after 6 steps
        # once the student's Lucas-Kanade solve, which divides by small determinants, amplifies them)
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-5, msg=name)
    assert sorted(p.name for p in interrupted.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    # stopped after checkpoint-6 but before the final student was written: a resume only writes it (was
    # refused: "nothing to train")
    shutil.rmtree(interrupted / "student")
    losses = json.loads((interrupted / "training_summary.json").read_text())["last_losses"]
    for name in ("model_index.json", "training_summary.json"):
        (interrupted / name).unlink()
    _, finish = training_args(train_cache, interrupted, "--resume_from_checkpoint", "latest", "--report_to", "none")
    finished_summary = script.main(finish)
    # the summary keeps the last step's losses (the checkpoint holds them; no step ran in this process)
    assert finished_summary["steps"] == 6 and finished_summary["last_losses"] == losses and losses
    finished = StarStudentPipeline.from_pretrained(interrupted).student.state_dict()
    assert finished.keys() == resumed.keys() and all(torch.equal(finished[k], resumed[k]) for k in resumed)
    # its last_losses.json damaged: the summary's losses left empty (a JSONDecodeError left no model; black-box hunt)
    shutil.rmtree(interrupted / "student")
    (interrupted / "model_index.json").unlink()
    (interrupted / "checkpoint-6" / "last_losses.json").write_text("")
    _, finish = training_args(train_cache, interrupted, "--resume_from_checkpoint", "latest", "--report_to", "none")
    assert script.main(finish)["last_losses"] == {}
    assert StarStudentPipeline.from_pretrained(interrupted).student.state_dict().keys() == resumed.keys()
    # checkpoints (Accelerate's and the hook's weights) and the final student, launched and in-process
    assert safetensors_modes(interrupted / "checkpoint-3") == {umask_022}
    assert safetensors_modes(interrupted) == safetensors_modes(tmp_path / "straight") == {umask_022}


def test_two_launched_processes_on_a_machine_without_a_gpu_train_one_run_together(tmp_path, train_cache):
    """`accelerate launch --multi_gpu --num_processes 2` without a GPU: Accelerate set up no process group, so each
    process trained the whole run alone into the same output folder, and one crashed (a checkpoint folder gone
    from under it) or both wrote it. Now they are one gloo group: half of every step's batches each."""
    output = tmp_path / "run"

    def launch(*flags: str) -> str:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(REPO / "training" / "distill_student.py"), "--config",
                   str(REPO / "configs" / "distill_student_tiny.yaml"), "--train_cache", str(train_cache),
                   "--output_dir", str(output), "--report_to", "none", *flags]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    log = launch("--max_train_steps", "3")
    assert log.count("DistributedType.MULTI_CPU  Backend: gloo") == 2 and log.count("Num processes: 2") == 2
    assert json.loads((output / "training_summary.json").read_text())["steps"] == 3
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-3"]
    launch("--resume_from_checkpoint", "latest")  # both processes go on from it, to the config's 6 steps
    assert json.loads((output / "training_summary.json").read_text())["steps"] == 6
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]


def test_ctrl_c_saves_a_checkpoint_at_the_end_of_the_step_and_a_rerun_refuses_the_folder(tmp_path, train_cache,
                                                                                       monkeypatch, capsys):
    """A real SIGINT in the middle of step 2 (from inside the optimizer step): the run finishes that step,
    saves checkpoint-2 (no periodic checkpoint is due) and exits 130; resuming gives the uninterrupted run."""
    import signal

    from star_vsr.errors import InputError
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    script, args = training_args(train_cache, tmp_path / "straight", "--report_to", "none", "--validation_steps", "0",
                                 "--checkpointing_steps", "1000", "--max_train_steps", "4")
    script.main(args)
    handler = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN under a shell's background job
    ctrl_c_in_optimizer_step(monkeypatch, 2)  # Ctrl-C while the optimizer works on step 2
    _, args = training_args(train_cache, tmp_path / "run", "--report_to", "none", "--validation_steps", "0",
                            "--checkpointing_steps", "1000", "--max_train_steps", "4")
    with pytest.raises(SystemExit) as stop:
        script.main(args)
    monkeypatch.undo()
    assert stop.value.code == 130 and signal.getsignal(signal.SIGINT) is handler  # put back
    assert "stopped at step 2" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "run").glob("checkpoint-*")] == ["checkpoint-2"]
    assert not list((tmp_path / "run").glob(".checkpoint-*"))
    with pytest.raises(InputError, match="holds a run.*--resume_from_checkpoint latest.*--overwrite_output_dir"):
        script.check_run_settings(args, script.build_parser())  # the same command again, without resuming
    resume_flags = ["--report_to", "none", "--validation_steps", "0", "--checkpointing_steps", "1000",
                    "--max_train_steps", "4", "--resume_from_checkpoint", "latest"]
    # going on with settings that change what is trained: an argparse error naming each of them
    with pytest.raises(SystemExit) as refused:
        training_args(train_cache, tmp_path / "run", *resume_flags, "--learning_rate", "2e-3", "--loss_space", "0")
    message = capsys.readouterr().err
    assert refused.value.code == 2 and "checkpoint-2 was trained with other settings: learning_rate: 0.001 -> " \
        "0.002, loss_space: 0.1 -> 0.0. " in message and "--allow_changed_settings" in message
    # one that shapes the checkpoint: not even with --allow_changed_settings (the run then failed to load it: "size
    # mismatch for time_loss.convlstm.cell.gates.weight", "Unexpected key(s) in state_dict: feature_loss.adapters...",
    # a RuntimeError "Number of custom checkpoints ... does not match the number of registered objects")
    for flag, change in (("--time_hidden_channels", "time_hidden_channels: 8 -> 4"),
                         ("--loss_time", "loss_time: 0.1 -> 0.0"), ("--loss_feature", "loss_feature: 0.1 -> 0.0"),
                         ("--ema_decay", "ema_decay: 0.9 -> 0.0")):
        with pytest.raises(SystemExit) as refused:
            training_args(train_cache, tmp_path / "run", *resume_flags, flag, "4" if "channels" in flag else "0",
                          "--allow_changed_settings")
        message = capsys.readouterr().err
        assert refused.value.code == 2 and "checkpoint-2 was trained with other settings that shape its weights: " \
            f"{change}. A checkpoint cannot be resumed in another shape" in message, message
    # the other changes named too, so that putting the shape back is not refused again for them
    with pytest.raises(SystemExit):
        training_args(train_cache, tmp_path / "run", *resume_flags, "--loss_time", "0", "--learning_rate", "2e-3")
    assert "(its other changed settings, learning_rate: 0.001 -> 0.002, need --allow_changed_settings)" in \
        capsys.readouterr().err
    _, resume = training_args(train_cache, tmp_path / "run", *resume_flags)
    assert script.main(resume)["steps"] == 4
    straight = StarStudentPipeline.from_pretrained(tmp_path / "straight").student.state_dict()
    resumed = StarStudentPipeline.from_pretrained(tmp_path / "run").student.state_dict()
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("size, message", [
    ("16", "--validation_size 16 is too small to score at x4: SSIM needs 11 pixels after a 4-pixel border crop; use "
           "at least 20"),  # was "SSIM needs frames of at least 11x11 pixels ...; got 8x8" at the first validation
    ("22", "--validation_size must be a multiple of --scale 4, got 22"),  # was "crop_size (22, 22) must be ..."
])
def test_a_validation_size_that_cannot_be_scored_names_the_flag(tmp_path, capsys, size, message):
    with pytest.raises(SystemExit) as refused:
        training_args(None, tmp_path / "run", "--validation_size", size)
    assert refused.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--checkpointing_steps", "0"], "--checkpointing_steps must be a finite number >= 1 or null, got 0"),  # was a
    # ZeroDivisionError after the first step, losing the run
    (["--validation_steps", "-1"], "--validation_steps must be a finite number >= 0, got -1"),
    (["--ema_decay", "1.5"], "--ema_decay must be in [0, 1), got 1.5"),  # trained with an extrapolated average
    (["--ema_decay", "-0.1"], "--ema_decay must be in [0, 1), got -0.1"),  # was taken as off
    (["--validation_steps", "1", "--num_validation_clips", "0"], "--num_validation_clips must be a finite number >= 1"),
    (["--validation_steps", "1", "--validation_frames", "0"], "--validation_frames must be a finite number >= 1"),
    (["--init_from", "some-student", "--student_overrides", '{"num_blocks": 3}'],
     "--init_from some-student brings its own: drop one of them"),  # the overrides were ignored
    # from a black-box test of the configs: the dataset's and the loss's own names, a traceback, a silent run
    (["--motion_num_frames", "0"], "--motion_num_frames must be a finite number >= 1, got 0"),  # "num_frames"
    (["--motion_crop_size", "0"], "--motion_crop_size must be a finite number >= 1, got 0"),  # "crop_size"
    (["--motion_length", "0"], "--motion_length must be a finite number >= 1, got 0"),  # "length"
    (["--motion_patch_size", "0"], "--motion_patch_size must be a finite number >= 1 or null, got 0"),
    (["--charbonnier_eps", "-1"], "--charbonnier_eps must be a finite number > 0, got -1.0"),  # trained on it
    # "loss weight teacher_charbonnier must be ...", the loss's name, not the flag's (black-box hunt)
    (["--loss_teacher_charbonnier", "-1"], "--loss_teacher_charbonnier must be a finite number >= 0, got -1.0"),
    (["--loss_space", "nan"], "--loss_space must be a finite number >= 0, got nan"),
    (["--student_overrides", "null"], "--student_overrides must be a JSON object"),  # a TypeError traceback
    # after Accelerate's banner: "StarStudentModel.__init__() got an unexpected keyword argument" (black-box hunt)
    (["--student_overrides", '{"num_block": 3}'], "--student_overrides: num_block is no StarStudentModel setting; "
                                                  "it has clean_channels, num_clean_blocks, "),
    (["--student_preset", "huge"], "argument --student_preset: invalid choice: 'huge' (choose from 'tiny', 'small', "
                                   "'base')"),
    (["--max_train_steps", "100000000000000000000000"], "must be a whole number of steps from 1 to 1,000,000,000"),
    (["--report_to", "tensorbord"], "invalid choice: 'tensorbord'"),  # Accelerate's ValueError traceback
    (["--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),  # Accelerate's ValueError traceback
    (["--trainable", "upsamplers.2"], "--trainable upsamplers.2 trains part of a student with the rest frozen, so "
                                      "the rest must be trained already: pass --init_from"),  # a random student
    (["--scale_range", "1"], "--scale_range takes two numbers, LO and HI (or none), got 1"),
    (["--init_from", "no-such-student"], "--init_from no-such-student does not exist"),  # found after Accelerate
    # started, in 7 lines of how-to; then "is no student pipeline folder (it holds no student/)"
    (["--lr_scheduler", "piecewise_constant"], "invalid choice: 'piecewise_constant'"),  # no flag sets its rules:
    # a traceback when the schedule was made
    (["--lr_scheduler", "constant", "--lr_warmup_steps", "50"], "--lr_scheduler constant has no warm-up"),  # ignored
])
def test_settings_that_cannot_run_are_refused_with_their_flag_before_anything_is_made(tmp_path, capsys, flags,
                                                                                     message):
    with pytest.raises(SystemExit) as refused:
        training_args(None, tmp_path / "run", *flags)
    assert refused.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_logging_dir_that_is_a_file_is_refused_before_anything_is_made(tmp_path, capsys):
    """A traceback from init_trackers (NotADirectoryError), from every process of a launch (black-box hunt)."""
    (tmp_path / "afile").write_text("")
    for logging_dir in (tmp_path / "afile", tmp_path / "afile" / "logs"):
        with pytest.raises(SystemExit) as refused:
            training_args(None, tmp_path / "run", "--logging_dir", str(logging_dir), "--report_to", "tensorboard")
        assert refused.value.code == 2
        assert f"--logging_dir {logging_dir}: {tmp_path / 'afile'} is a file, where the TensorBoard folder would go" \
            in capsys.readouterr().err
    training_args(None, tmp_path / "run", "--logging_dir", str(tmp_path / "afile"), "--report_to", "none")  # unused
    assert not (tmp_path / "run").exists()


def test_a_folder_holding_the_other_scripts_run_is_named_so_at_once(tmp_path, capsys):
    """It said "holds a run; go on with --resume_from_checkpoint latest", and that resume was then refused as "no
    checkpoint of this script" (black-box hunt)."""
    (tmp_path / "star" / "checkpoint-2" / "controlnet").mkdir(parents=True)
    (tmp_path / "star" / "checkpoint-2" / "controlnet" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as refused:
        training_args(None, tmp_path / "star")
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "holds a run of training/train_star.py, which training/distill_student.py " \
        "cannot go on from" in err and "--resume_from_checkpoint latest" not in err


def test_a_warm_up_as_long_as_the_run_is_noted(tmp_path, capsys):
    """The learning rate never left its warm-up, without a word (black-box hunt: a cosine schedule's warm-up of 100
    over the tiny config's 6 steps); a note, not an error: a few steps of a full config are a smoke test."""
    training_args(None, tmp_path / "run", "--lr_scheduler", "cosine", "--lr_warmup_steps", "100")
    assert ("note: --lr_warmup_steps 100 is not less than --max_train_steps 6: the learning rate never leaves its "
            "warm-up") in capsys.readouterr().err
    training_args(None, tmp_path / "run", "--lr_scheduler", "cosine", "--lr_warmup_steps", "5")
    assert "warm-up" not in capsys.readouterr().err


def paused_run_on_a_copy_of(train_cache: Path, tmp_path: Path) -> tuple[Any, Path, list[str]]:
    """(the script, a copy of ``train_cache``, the flags that resume it) after one step of a run on that copy in
    ``tmp_path / "run"``."""
    cache = tmp_path / "cache"
    shutil.copytree(train_cache, cache)
    script, args = training_args(cache, tmp_path / "run", "--report_to", "none", "--validation_steps", "0",
                                 "--checkpointing_steps", "1", "--max_train_steps", "1")
    script.main(args)
    resume = ["--report_to", "none", "--validation_steps", "0", "--max_train_steps", "2", "--resume_from_checkpoint",
              "latest"]
    return script, cache, resume


def test_a_resume_on_a_cache_rebuilt_in_place_is_refused(tmp_path, train_cache, capsys):
    """Only the cache's path was recorded: rebuilt at the same path (another teacher), a resume trained on."""
    script, cache, resume = paused_run_on_a_copy_of(train_cache, tmp_path)
    training_args(cache, tmp_path / "run", *resume)  # the same cache: accepted
    shutil.copytree(cache, tmp_path / "copy")  # and a copy of it elsewhere: it was "trained with other settings:
    training_args(tmp_path / "copy", tmp_path / "run", *resume)  # train_cache: ... -> ..." (black-box hunt)
    record = tmp_path / "run" / "train_cache.sha256"
    record.rename(tmp_path / "kept")  # a run recorded without the cache's id: its path is all there is to compare
    with pytest.raises(SystemExit):
        training_args(tmp_path / "copy", tmp_path / "run", *resume)
    assert "was trained with other settings: train_cache: " in capsys.readouterr().err
    (tmp_path / "kept").rename(record)
    teacher = load_teacher(tiny_teacher_student(seed=5), features=["hr_features"])
    build_teacher_cache(teacher, random_clips(8, frames=3, size=8), cache, overwrite=True)
    with pytest.raises(SystemExit) as refused:
        training_args(cache, tmp_path / "run", *resume)
    assert refused.value.code == 2 and "is not the cache this run started on, or was rebuilt since" in \
        capsys.readouterr().err
    training_args(cache, tmp_path / "run", *resume, "--allow_changed_settings")  # asked for
    # going on from its checkpoint in a new folder: the record is the checkpoint's run's (none was found there)
    elsewhere = [*resume[:-1], str(tmp_path / "run" / "checkpoint-1")]
    with pytest.raises(SystemExit):
        training_args(cache, tmp_path / "new", *elsewhere)
    assert "is not the cache this run started on, or was rebuilt since" in capsys.readouterr().err
    _, args = training_args(cache, tmp_path / "new", *elsewhere, "--allow_changed_settings")
    script.main(args)  # the change let through: the run goes on with that cache, which the next resume compares with
    record = "train_cache.sha256"
    assert (tmp_path / "new" / record).read_text() == script.cache_id(cache) + "\n" != (tmp_path / "run" /
                                                                                         record).read_text()
    # a record in the output folder is another run's when the checkpoint comes from elsewhere: not compared, and
    # replaced by the checkpoint's run's
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / record).write_text("0" * 64 + "\n")
    (tmp_path / "run" / record).write_text(script.cache_id(cache) + "\n")  # as if the rebuilt cache were the first
    _, args = training_args(cache, tmp_path / "old", *elsewhere)  # accepted: the checkpoint's run's record fits
    script.main(args)
    assert (tmp_path / "old" / record).read_text() == script.cache_id(cache) + "\n"


def test_clips_of_a_folder_carry_their_captions_to_the_teacher_and_the_cache(tmp_path):
    """cache-teacher --data never read clip.txt, which train_star.py reads: a prompted teacher ran every clip with
    its default prompt (black-box hunt). A caption changed since the cache began is a change of its source."""
    from star_vsr.distill.sources import VideoFolderClips
    from star_vsr.io.synthetic import write_test_video

    data = tmp_path / "lr"
    data.mkdir()
    for name in ("a", "b"):
        write_test_video(data / f"{name}.mp4", num_frames=4, size=(32, 32))
    plain = VideoFolderClips(data, num_frames=2).describe()
    assert "captions" not in plain  # (described as before: caches without captions go on)
    (data / "a.txt").write_text("a red car on a wet road\n", encoding="utf-8")
    clips = VideoFolderClips(data, num_frames=2)
    assert [clips[i]["caption"] for i in range(4)] == ["a red car on a wet road"] * 2 + [""] * 2
    seen = []

    class Prompted(CallableTeacher):
        def __call__(self, lq, *, index=0, caption=None):
            seen.append(caption)
            return super().__call__(lq, index=index, caption=caption)

    cache = build_teacher_cache(Prompted(CountingTeacher(), SCALE), clips, tmp_path / "cache", source=clips.describe())
    assert seen == ["a red car on a wet road"] * 2 + [""] * 2 and cache[1]["caption"] == "a red car on a wet road"
    described = clips.describe()
    (data / "a.txt").write_text("a blue car", encoding="utf-8")
    recaptioned = VideoFolderClips(data, num_frames=2).describe()
    assert recaptioned["captions"] != described["captions"]
    assert {k: v for k, v in described.items() if k != "captions"} == plain

    def rerun(**manifest_changes):  # the checks of a rerun over the recaptioned clips, on the manifest so changed
        manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
        for key, value in manifest_changes.items():
            manifest[key] = value(manifest[key]) if callable(value) else value
        (tmp_path / "cache" / "manifest.json").write_text(json.dumps(manifest))
        check_cache_folder(tmp_path / "cache", 4, 4, "float16", recaptioned, overwrite=False)

    rerun()  # a teacher without a prompt: the captions change nothing it computed
    diffusion = {"teacher": lambda teacher: {**teacher, "kind": "star_vsr"}}  # (as DiffusionTeacher describes itself)
    with pytest.raises(InputError, match=r"built with other settings \(source.captions differ\)"):
        rerun(**diffusion)
    # a cache of a version that did not read the captions: finished, nothing of it is computed again (it was
    # refused, and --overwrite computed it all); unfinished, the rest would run with other prompts than the first
    rerun(source=lambda source: {k: v for k, v in source.items() if k != "captions"})
    with pytest.raises(InputError, match=r"source.captions differ"):
        rerun(complete=False)


def test_a_resume_from_a_copy_of_its_cache_says_the_path_changed_not_that_it_was_forced(tmp_path, train_cache,
                                                                                          caplog):
    """The resume's warning said "(train_cache accepted with --allow_changed_settings)" of a run resumed without the
    flag, whose cache was only copied elsewhere (black-box hunt)."""
    from star_vsr.training_run import record_run_settings

    script, cache, resume = paused_run_on_a_copy_of(train_cache, tmp_path)
    shutil.copytree(cache, tmp_path / "copy")
    _, args = training_args(tmp_path / "copy", tmp_path / "run", *resume)
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        record_run_settings(args, script.build_parser(), tmp_path / "run" / "checkpoint-1")
    assert re.search(r"changed settings: train_cache: \S+cache\" -> \S+copy\", max_train_steps: 1 -> 2, .*"
                     r"\(train_cache: the same content the run started on\)", caplog.text), caplog.text
    assert "--allow_changed_settings" not in caplog.text
    # with the flag too: a cache that only moved was said to be "accepted with --allow_changed_settings" (review)
    caplog.clear()
    _, args = training_args(tmp_path / "copy", tmp_path / "run", *resume, "--allow_changed_settings")
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        script.main(args)
    assert "(train_cache: the same content the run started on)" in caplog.text, caplog.text
    assert "accepted with" not in caplog.text
    caplog.clear()  # a cache of other content, which the flag let through, is said to be
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        record_run_settings(args, script.build_parser(), tmp_path / "run" / "checkpoint-1",
                            data_ids={"train_cache": ["another cache's id"]})
    assert "(train_cache accepted with --allow_changed_settings)" in caplog.text, caplog.text


def test_a_cache_rebuilt_by_the_same_command_is_the_same_cache(tmp_path, train_cache):
    """The cache's id hashed its whole manifest, the build's wall time with it: a run paused over a rebuild of the
    same cache (byte-identical shards) was refused as "rebuilt since this run started" (black-box hunt). A run of an
    earlier version recorded that id: still accepted."""
    script, cache, resume = paused_run_on_a_copy_of(train_cache, tmp_path)
    record = tmp_path / "run" / "train_cache.sha256"
    record.write_text(script.earlier_cache_ids(cache)[0] + "\n")  # as an earlier version recorded it
    training_args(cache, tmp_path / "run", *resume)  # accepted
    # clips of --data were known by their folders' paths too: a run recorded so goes on (review)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "source": {
        "kind": "video_folder", "folder": str(tmp_path / "lr"), "gt_folder": None, "num_frames": 3, "clips": 8,
        "files": "0123456789abcdef"}}))
    record.write_text(script.earlier_cache_ids(cache)[1] + "\n")
    assert script.earlier_cache_ids(cache)[1] != script.cache_id(cache)
    training_args(cache, tmp_path / "run", *resume)  # accepted
    (cache / "manifest.json").write_text(json.dumps(manifest))
    record.write_text(script.cache_id(cache) + "\n")
    before = script.cache_id(cache)
    manifest["wall_time_s"] += 12.5  # rebuilt: another build time, nothing else
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))
    assert script.cache_id(cache) == before != script.earlier_cache_ids(cache)[0]
    record.write_text(before + "\n")
    training_args(cache, tmp_path / "run", *resume)  # accepted
    manifest["teacher"] = {"other": True}  # another teacher: another cache
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert script.cache_id(cache) != before


def test_a_checkpoint_of_the_other_training_script_is_named_so(tmp_path, train_cache, capsys):
    """train_star.py's checkpoint given to distill_student.py was "trained with other settings" (every one of
    them); one without a student/ folder failed in the loading hook."""
    star = tmp_path / "star" / "checkpoint-2"
    (star / "controlnet").mkdir(parents=True)
    (star / "train_config.yaml").write_text("learning_rate: 0.0001\npretrained_model_name_or_path: star\n")
    for checkpoint, message in ((star, "is no checkpoint of training/distill_student.py: training/train_star.py "
                                       "saved it; resume a checkpoint of this script, or start a new run"),
                                (tmp_path / "bare" / "checkpoint-2",  # its own, copied in part
                                 "checkpoint-2 is damaged and cannot be loaded (its student/ folder is missing)")):
        checkpoint.mkdir(parents=True, exist_ok=True)
        # (at --max_train_steps 1, before the step of the other script's checkpoint, it said "nothing to train")
        for steps in ([], ["--max_train_steps", "1"]):
            with pytest.raises(SystemExit):
                training_args(train_cache, tmp_path / "run", "--resume_from_checkpoint", str(checkpoint), *steps)
            assert message in capsys.readouterr().err


def test_motion_clip_settings_with_a_cache_are_noted(tmp_path, train_cache, capsys):
    """--motion_crop_size and the other on-the-fly clip settings had no effect with --train_cache, without a word."""
    training_args(train_cache, tmp_path / "run", "--motion_crop_size", "128", "--motion_num_frames", "9")
    assert "note: --motion_num_frames 9, --motion_crop_size 128 have no effect with --train_cache" in \
        capsys.readouterr().err
    training_args(train_cache, tmp_path / "run")
    assert "no effect" not in capsys.readouterr().err


def test_a_second_run_into_the_output_folder_of_a_running_one_is_refused(tmp_path):
    """Two runs into one --output_dir both finished, the folder holding one's settings record beside the other's
    model, or the second deleted the first's record as a run stopped before its first step, and the first crashed
    (black-box hunt). The first run's lock (as its main process holds it) refuses the second before it clears."""
    out = tmp_path / "run"
    gt_only = ["--loss_teacher_charbonnier", "0", "--loss_space", "0", "--loss_time", "0", "--loss_feature", "0",
               "--loss_gt_charbonnier", "1", "--motion_num_frames", "2", "--motion_crop_size", "16",
               "--motion_length", "4", "--validation_steps", "0", "--report_to", "none"]
    out.mkdir()
    (out / "train_config.yaml").write_text("seed: 0\n")  # the running one's record, before its first step
    script, args = training_args(None, out, *gt_only, "--max_train_steps", "1")
    with folder_lock(out, out):
        with pytest.raises(OutputBusyError, match=f"another star-vsr run is writing {out}; let it finish"):
            script.main(args)
        assert sorted(p.name for p in out.iterdir()) == ["train_config.yaml"]
        with pytest.raises(OutputBusyError):  # already when parsed: before it reads the checkpoints there
            training_args(None, out, *gt_only, "--max_train_steps", "1")
    script.main(args)  # once it is done (or stopped)
    assert (out / "final_step.txt").read_text() == "1\n"


def test_the_head_config_as_it_is_trains_the_x2_head_of_a_trained_student_only(tmp_path):
    """Without the flags of its header comment, configs/distill_student_head.yaml trained a new student, all of it
    (black-box hunt). As it is it now runs the first of those commands; here from the shipped student."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline
    from star_vsr.student import default_student_folder

    sys.path.insert(0, str(REPO / "training"))
    try:
        import distill_student
    finally:
        sys.path.pop(0)
    args = distill_student.parse_args(["--config", str(REPO / "configs" / "distill_student_head.yaml"),
                                       "--init_from", str(default_student_folder()), "--output_dir", str(tmp_path),
                                       "--max_train_steps", "1", "--motion_num_frames", "2", "--motion_crop_size",
                                       "24", "--validation_steps", "0", "--report_to", "none",
                                       "--dataloader_num_workers", "0", "--ema_decay", "0", "--lr_warmup_steps", "0"])
    distill_student.main(args)
    before = StarStudentPipeline.from_pretrained(default_student_folder()).student.state_dict()
    after = StarStudentPipeline.from_pretrained(tmp_path).student.state_dict()
    changed = sorted({name.split(".")[0] + "." + name.split(".")[1] for name in before
                      if not torch.equal(before[name], after[name])})
    assert changed == ["upsamplers.2"]


def test_overwrite_output_dir_starts_clean_and_keeps_the_users_files(tmp_path):
    """A run over one that saved checkpoints, TensorBoard events, a summary and a model: afterwards the folder
    holds the new run's outputs only (it saves no checkpoint and logs nothing), and the user's file."""
    out = tmp_path / "run"
    gt_only = ["--loss_teacher_charbonnier", "0", "--loss_space", "0", "--loss_time", "0", "--loss_feature", "0",
               "--loss_gt_charbonnier", "1", "--motion_num_frames", "2", "--motion_crop_size", "16",
               "--motion_length", "4"]
    script, args = training_args(None, out, *gt_only, "--max_train_steps", "2", "--checkpointing_steps", "1",
                                 "--validation_steps", "1")
    script.main(args)
    assert list(out.glob("checkpoint-*")) and list((out / "logs").rglob("events.out.tfevents.*"))
    (out / "notes.txt").write_text("mine")
    _, args = training_args(None, out, *gt_only, "--max_train_steps", "1", "--checkpointing_steps", "1000",
                            "--validation_steps", "0", "--report_to", "none", "--overwrite_output_dir")
    assert script.main(args)["steps"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["final_step.txt", "model_index.json", "notes.txt", "student",
                                                     "train_config.yaml", "training_summary.json"]
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 1


def test_a_run_stopped_while_it_saves_its_final_model_leaves_no_record_of_the_earlier_one(tmp_path, monkeypatch):
    """A resumed run killed while it moved its final student into place left the new weights beside the earlier
    run's training_summary.json and final_step.txt (black-box review). A save that fails while it writes (a full
    disk) leaves the earlier model and its records as they were; the run folder still knows the model's files."""
    import star_vsr.model_folder
    from diffusers import DiffusionPipeline

    from star_vsr.errors import OutputError
    from star_vsr.training_run import clear_old_run

    out = tmp_path / "run"
    gt_only = ["--loss_teacher_charbonnier", "0", "--loss_space", "0", "--loss_time", "0", "--loss_feature", "0",
               "--loss_gt_charbonnier", "1", "--motion_num_frames", "2", "--motion_crop_size", "16",
               "--motion_length", "4", "--lr_scheduler", "constant", "--checkpointing_steps", "1",
               "--validation_steps", "0", "--report_to", "none"]
    script, args = training_args(None, out, *gt_only, "--max_train_steps", "1")
    script.main(args)
    records = {name: (out / name).read_bytes() for name in ("training_summary.json", "final_step.txt")}
    assert records["final_step.txt"] == b"1\n"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    _, args = training_args(None, out, *gt_only, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
    monkeypatch.setattr(DiffusionPipeline, "save_pretrained", disk_full)  # the pipeline's, not a checkpoint's
    with pytest.raises(OutputError, match="the folder was left as it was"):
        script.main(args)
    assert {name: (out / name).read_bytes() for name in records} == records  # the earlier model's, kept
    monkeypatch.undo()

    def killed_after_one_move(source, target, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(star_vsr.model_folder, "move_into_place", killed_after_one_move)
    _, args = training_args(None, out, *gt_only, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
    with pytest.raises(KeyboardInterrupt):
        script.main(args)
    assert not any((out / name).exists() for name in (*records, "model_index.json"))
    monkeypatch.undo()
    _, args = training_args(None, out, *gt_only, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
    assert script.main(args)["steps"] == 2  # the same command again: the model of step 2, recorded as such
    assert (out / "final_step.txt").read_text() == "2\n" and not (out / ".model_index.json.replacing").exists()
    # a stopped save's components are still the run's: starting over clears them
    (out / "model_index.json").rename(out / ".model_index.json.replacing")
    deleted = {path.name for path in clear_old_run(args, lambda settings: ())}
    assert {"student", ".model_index.json.replacing"} <= deleted


def test_distillation_settings_that_do_not_fit_the_cache_are_one_line_errors(tmp_path, train_cache, capsys):
    from star_vsr.errors import InputError

    # flags no cache could fit are named as such, not by the cache ("rebuild it with --features bogus", or a
    # --validation_size that is not a multiple of --scale 5)
    for flags, message in ((["--space_features", "bogus"], "--space_features bogus: the student has no such feature "
                                                           "tap; its taps are clean_frame, flow, "),
                           (["--feature_names", "hr_features", "lr_featurez"], "--feature_names lr_featurez: "),
                           (["--scale", "5"], "unsupported scale 5: --scale must be one of 2, 3, 4"),
                           # (named as the model's config scale, which the user typed as --scale: review)
                           (["--student_overrides", '{"upsample_scales": [2]}'],
                            "--scale 4 is above the student's largest head: upsample_scales [2] (--student_overrides "
                            "or the preset) upscale by at most 2")):
        with pytest.raises(SystemExit) as refused:
            training_args(train_cache, tmp_path / "z", *flags)
        err = capsys.readouterr().err
        assert refused.value.code == 2 and message in err and str(train_cache) not in err, err
    with pytest.raises(SystemExit) as refused:  # (it said "invalid loads value: 'notjson'": black-box hunt)
        training_args(train_cache, tmp_path / "z", "--student_overrides", "notjson")
    assert refused.value.code == 2 and "argument --student_overrides: 'notjson' is not JSON" in capsys.readouterr().err
    # an unknown --motion_degradation was found after the Accelerator's setup, naming no flag (black-box hunt)
    with pytest.raises(SystemExit) as refused:
        training_args(None, tmp_path / "m", "--motion_degradation", "Medium")
    assert refused.value.code == 2
    assert ("--motion_degradation Medium: unknown degradation 'Medium': use one of light, medium, heavy or 'none' "
            in capsys.readouterr().err)
    # motion clip sizes the dataset refused at the first step, in LR pixels, by its arguments' names (black-box hunt)
    for flags, message in ((["--motion_patch_size", "128"], "--motion_patch_size 128 is larger than "
                                                             "--motion_crop_size 64, the clips it is cut from"),
                           (["--motion_patch_size", "30"], "--motion_patch_size 30 must be a multiple of --scale 4"),
                           (["--motion_crop_size", "30"], "--motion_crop_size 30 must be a multiple of --scale 4")):
        with pytest.raises(SystemExit) as refused:
            training_args(None, tmp_path / "m", *flags)
        assert refused.value.code == 2 and message in capsys.readouterr().err
    # the cache's scale, before a --validation_size that is no multiple of --scale 3 (fixing that led to this)
    for scale in ("2", "3"):
        with pytest.raises(SystemExit):
            training_args(train_cache, tmp_path / "a", "--scale", scale, "--report_to", "none")
        assert f"holds x4 clips, but --scale is {scale}; pass --scale 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        training_args(train_cache, tmp_path / "b", "--student_overrides", '{"num_blockz": 3}')
    assert "--student_overrides: num_blockz is no StarStudentModel setting" in capsys.readouterr().err
    script, args = training_args(train_cache, tmp_path / "c", "--train_batch_size", "100")  # (batches were the
    # cache's size)
    with pytest.raises(InputError, match=r"the dataset has \d+ clips, fewer than --train_batch_size 100"):
        script.main(args)
    assert not (tmp_path / "c" / "training_summary.json").exists()


def test_clips_of_different_lengths_share_a_batch_cut_to_the_shortest():
    sys.path.insert(0, str(REPO / "training"))
    try:
        from distill_student import collate_clips
    finally:
        sys.path.pop(0)
    items = [{"lq": torch.rand(n, 3, 4, 4), "gt": torch.rand(n, 3, 8, 8),
              "teacher_features": {"hr_features": torch.rand(n, 6, 8, 8)}} for n in (2, 4)]
    batch = collate_clips(items)
    assert batch["lq"].shape == (2, 2, 3, 4, 4) and batch["gt"].shape == (2, 2, 3, 8, 8)
    assert batch["teacher_features"]["hr_features"].shape == (2, 2, 6, 8, 8)
    assert torch.equal(batch["lq"][1], items[1]["lq"][:2])


def test_ctrl_c_in_the_last_step_finishes_the_run(tmp_path, train_cache, monkeypatch):
    """Stopping after the last step would leave a checkpoint at max_train_steps that no command finishes."""
    script, args = training_args(train_cache, tmp_path / "run", "--report_to", "none", "--validation_steps", "0",
                                 "--checkpointing_steps", "1000", "--max_train_steps", "2")
    ctrl_c_in_optimizer_step(monkeypatch, 2)  # Ctrl-C while the optimizer works on step 2
    assert script.main(args)["steps"] == 2
    assert (tmp_path / "run" / "model_index.json").is_file()


def test_saved_student_holds_the_averaged_weights(tmp_path, train_cache):
    """With ``--ema_decay`` the saved student is the moving average, not the last step's weights."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    saved = {}
    for decay in ("0", "0.5"):
        script, args = training_args(train_cache, tmp_path / decay, "--ema_decay", decay, "--validation_steps", "0",
                                     "--checkpointing_steps", "1000", "--report_to", "none")
        script.main(args)
        saved[decay] = StarStudentPipeline.from_pretrained(tmp_path / decay).student.state_dict()
    # same seed and batches: the raw weights are identical, the saved ones differ by the averaging
    assert any(not torch.equal(saved["0"][k], saved["0.5"][k]) for k in saved["0"])


def test_init_from_records_its_students_preset_not_the_ignored_flag(tmp_path, capsys):
    """--student_preset base with --init_from (a small student) trained the small one and recorded "base"."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline
    from star_vsr.student import default_student_folder

    preset = json.loads((default_student_folder() / "student" / "config.json").read_text())["preset"]
    assert preset != "base"
    _, args = training_args(None, tmp_path / "run", "--init_from", str(default_student_folder()),
                            "--student_preset", "base")
    assert args.student_preset == preset
    assert f"note: --init_from {default_student_folder()} brings its own student (preset {preset}); " \
           f"--student_preset base does not apply" in capsys.readouterr().err
    start = tmp_path / "start"
    StarStudentPipeline(student=tiny_student()).save_pretrained(start)  # the tiny config's own preset: no note
    _, args = training_args(None, tmp_path / "run2", "--init_from", str(start))
    assert args.student_preset == "tiny" and "note:" not in capsys.readouterr().err


def test_init_from_at_another_scale_says_the_student_keeps_its_default_scale(tmp_path, capsys):
    """Training the x2 head of an x4 student (the model card's second run) kept x4 as the student's default scale
    (what ``star-vsr upscale`` runs without --upscale) without a word: the note says so and how to use x2."""
    from star_vsr.student import default_student_folder

    _, args = training_args(None, tmp_path / "run", "--init_from", str(default_student_folder()), "--scale", "2")
    assert args.scale == 2
    err = capsys.readouterr().err
    assert "note: this run trains the student at x2, but it keeps the default scale of --init_from (x4, what " \
           "`star-vsr upscale` uses without --upscale); pass --upscale 2 to use the x2 output" in err
    _, args = training_args(None, tmp_path / "run2", "--init_from", str(default_student_folder()), "--scale", "4")
    assert "default scale" not in capsys.readouterr().err


def test_training_one_head_leaves_every_other_scale_unchanged(tmp_path):
    """``--trainable upsamplers.2``: the x2 head learns from x2 clips, every other weight stays bit-exact."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    start = tmp_path / "start"
    StarStudentPipeline(student=tiny_student()).save_pretrained(start)
    gt_only = ["--loss_teacher_charbonnier", "0", "--loss_space", "0", "--loss_time", "0", "--loss_feature", "0",
               "--loss_gt_charbonnier", "1", "--motion_num_frames", "3", "--motion_crop_size", "32",
               "--motion_length", "4", "--validation_steps", "0", "--checkpointing_steps", "1000", "--report_to", "none"]
    script, args = training_args(None, tmp_path / "x2", "--init_from", str(start), "--scale", "2",
                                 "--trainable", "upsamplers.2", *gt_only)
    script.main(args)
    before = StarStudentPipeline.from_pretrained(start).student.state_dict()
    after = StarStudentPipeline.from_pretrained(tmp_path / "x2").student.state_dict()
    changed = sorted(name for name in before if not torch.equal(before[name], after[name]))
    assert changed == ["upsamplers.2.bias", "upsamplers.2.weight"]
    assert "_name_or_path" not in json.loads((tmp_path / "x2" / "student" / "config.json").read_text())

    _, bad = training_args(None, tmp_path / "bad", "--init_from", str(start), "--trainable", "upsampler.2", *gt_only)
    with pytest.raises(InputError, match=r"name no student parameter; its modules: .*upsamplers\.2"):
        script.main(bad)
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    # modules that take no part at the training's scale (the README's recipes without their --scale or
    # --scale_range): autograd's "element 0 of tensors does not require grad" at the first step, a folder left
    for trainable in ("upsamplers.2", "scale_modulation"):
        _, unused = training_args(None, tmp_path / "bad", "--init_from", str(start), "--trainable", trainable, *gt_only)
        with pytest.raises(InputError, match=f"--trainable {trainable} takes no part in the student's output at "
                                             f"--scale 4, so the training would update nothing: a head trains at "
                                             f"its own scale \\(upsamplers.2: --scale 2, "):
            script.main(unused)
        assert not (tmp_path / "bad").exists()


def test_scale_range_trains_only_the_scale_modulation_against_resized_ground_truth(tmp_path, capsys):
    """``--scale_range 1.5 3.5 --trainable scale_modulation``: the FiLM of scales without a head
    learns; the pixel-shuffle heads and everything else stay bit-exact."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    start = tmp_path / "start"
    StarStudentPipeline(student=tiny_student()).save_pretrained(start)
    gt_only = ["--loss_teacher_charbonnier", "0", "--loss_space", "0", "--loss_time", "0", "--loss_feature", "0",
               "--loss_gt_charbonnier", "1", "--motion_num_frames", "3", "--motion_crop_size", "32",
               "--motion_length", "4", "--checkpointing_steps", "1000", "--report_to", "none"]
    script, args = training_args(None, tmp_path / "film", "--init_from", str(start), "--scale_range", "1.5", "3.5",
                                 "--trainable", "scale_modulation", "--validation_steps", "2",
                                 "--num_validation_clips", "1", "--validation_size", "32", *gt_only)
    summary = script.main(args)
    before = StarStudentPipeline.from_pretrained(start).student.state_dict()
    after = StarStudentPipeline.from_pretrained(tmp_path / "film").student.state_dict()
    changed = sorted(name for name in before if not torch.equal(before[name], after[name]))
    assert changed and all(name.startswith("scale_modulation.") for name in changed), changed
    assert summary["validation_scale"] == 2.5 and summary["scale_range"] == [1.5, 3.5]
    assert summary["validation"]["psnr_y"] > 0

    # each step's scale: uniform on the range, a function of seed and step (a resumed run draws the same)
    draws = [script.draw_scale(0, step, (1.5, 3.5)) for step in range(200)]
    assert all(1.5 <= s <= 3.5 for s in draws) and min(draws) < 1.7 and max(draws) > 3.3
    assert draws == [script.draw_scale(0, step, (1.5, 3.5)) for step in range(200)]
    assert draws != [script.draw_scale(1, step, (1.5, 3.5)) for step in range(200)]

    for bad, message in ((["--scale_range", "2", "5"], "--scale_range needs 1 <= LO <= HI <= --scale (4), got 2 5"),
                         (["--scale_range", "3", "2"], "--scale_range needs 1 <= LO <= HI <= --scale (4), got 3 2"),
                         (["--scale_range", "1.5", "3.5", "--loss_teacher_charbonnier", "1"],
                          "--scale_range trains against resized ground truth")):
        with pytest.raises(SystemExit) as exit_info:
            training_args(None, tmp_path / "bad", *gt_only, *bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_paths_are_argparse_errors_before_anything_is_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = {
        "config file": ["--config", str(tmp_path / "nope.yaml")],
        "is a file, not a folder": ["--output_dir", str(blocker / "out")],
        "is not a teacher cache": ["--train_cache", str(tmp_path / "no-cache")],
        "no-checkpoint does not exist; give a checkpoint-<step> folder": ["--resume_from_checkpoint",
                                                                          str(tmp_path / "no-checkpoint")],
        "a-file is not a checkpoint-<step> folder": ["--resume_from_checkpoint", str(blocker)],
    }
    for message, extra in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            training_args(None, tmp_path / "out", *extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, message
    # an empty path (an unset shell variable) was the current folder: --output_dir "" wrote the run there
    for flag in ("--output_dir", "--config", "--train_cache", "--resume_from_checkpoint", "--logging_dir"):
        with pytest.raises(SystemExit) as exit_info:
            training_args(None, tmp_path / "out", flag, " ")
        message = f"{flag} is an empty path (an unset shell variable?); name a file or folder"
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, flag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_none_on_the_command_line_clears_an_optional_setting_of_the_config(tmp_path):
    # `--init_from none` was read as a folder named "none": a config's optional setting could not be cleared
    config = tmp_path / "run.yaml"
    config.write_text((REPO / "configs" / "distill_student_tiny.yaml").read_text()
                      + f"init_from: {tmp_path / 'student'}\nperceptual_weights_path: vgg.pth\nmotion_patch_size: 32\n")
    cleared = {"--init_from": "none", "--perceptual_weights_path": "null", "--motion_patch_size": "None",
               "--checkpoints_total_limit": "none", "--resume_from_checkpoint": "none", "--train_cache": "none"}
    script, _ = training_args(None, tmp_path / "out")
    args = script.parse_args(["--config", str(config), "--output_dir", str(tmp_path / "out"),
                              *(item for pair in cleared.items() for item in pair)])
    assert all(getattr(args, flag[2:]) is None for flag in cleared)


def test_training_out_of_memory_says_what_to_lower(train_cache, tmp_path, monkeypatch):
    def allocate_too_much(*args, **kwargs):
        return torch.empty(2 ** 46, dtype=torch.uint8)  # 64 TiB: the CPU allocator refuses

    script, args = training_args(train_cache, tmp_path / "out", "--validation_steps", "0", "--report_to", "none")
    monkeypatch.setattr(StarStudentModel, "forward", allocate_too_much)
    with pytest.raises(DeviceError, match=r"out of memory while distilling \(allocating 64.00 TiB failed\); "
                                          r"lower --train_batch_size"):
        script.main(args)


def test_a_resume_drops_the_tensorboard_events_the_stopped_run_wrote_after_its_checkpoint(tmp_path, train_cache):
    """Resumed from checkpoint-2 of a run that got to step 3, TensorBoard showed two values for step 3 (the
    stopped run's and the resume's); the resume now purges the events after its checkpoint."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    flags = ["--report_to", "tensorboard", "--validation_steps", "0", "--checkpointing_steps", "2",
             "--max_train_steps", "3"]
    script, args = training_args(train_cache, run, *flags)
    script.main(args)  # as if it had been killed after step 3, before checkpoint-4 / the end
    _, resume = training_args(train_cache, run, *flags, "--resume_from_checkpoint", str(run / "checkpoint-2"))
    script.main(resume)
    events = EventAccumulator(str(run / "logs" / "distill_student"))  # the scalars' folder (hparams in subfolders)
    events.Reload()
    assert [event.step for event in events.Scalars("loss/total")] == [1, 2, 3]


def test_finishing_a_run_from_its_last_checkpoint_does_not_log_that_steps_validation_twice(tmp_path, train_cache):
    """A run stopped after its last checkpoint (a validation step), finished by a resume: the resume validated
    that step again for the summary and logged it a second time, next to the stopped run's value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    flags = ["--report_to", "tensorboard", "--validation_steps", "2", "--checkpointing_steps", "2",
             "--max_train_steps", "2"]
    script, args = training_args(train_cache, run, *flags)
    validation = script.main(args)["validation"]
    shutil.rmtree(run / "student")  # as if stopped after checkpoint-2, before the final student
    for name in ("model_index.json", "training_summary.json", "final_step.txt"):
        (run / name).unlink()
    _, finish = training_args(train_cache, run, *flags, "--resume_from_checkpoint", "latest")
    assert script.main(finish)["validation"] == validation and validation  # the summary still has the scores
    events = EventAccumulator(str(run / "logs" / "distill_student"))
    events.Reload()
    assert [event.step for event in events.Scalars("validation/psnr_y")] == [2]
    assert [event.step for event in events.Images("validation/bicubic_student_gt")] == [2]
