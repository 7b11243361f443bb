#!/usr/bin/env python
"""Distil a video SR teacher into a ``StarStudentModel`` (or train the student on ground truth alone).

    accelerate launch training/distill_student.py --config configs/distill_student.yaml [--key value ...]

Every setting is a command-line flag; ``--config`` names a YAML file whose keys (the flag names
without dashes) become the defaults, and flags given on the command line override them (``none`` clears an
optional setting: ``--init_from none``).

Data comes from a teacher cache (``star-vsr distill cache-teacher``: LR clips, the teacher's
outputs and features, optionally ground truth) or, for ground-truth-only training, from motion
clips made on the fly from photographs (``star_vsr.data.ImageMotionDataset`` over the training
photos of ``star_vsr.evalset``). The loss is a weighted sum of the terms of
``star_vsr.losses.distillation`` (Charbonnier to teacher / ground truth, log-MSE to the ground truth, space,
time and feature distillation, VGG perceptual); a weight of 0 switches a term off.

The run records its settings in ``train_config.yaml``, writes ``checkpoint-<step>/`` folders every
``--checkpointing_steps`` (resume exactly with ``--resume_from_checkpoint latest``; a resume that changes what
is trained is refused unless ``--allow_changed_settings``, and each resume is recorded in
``train_config_resumes.yaml``), validates on the evaluation clips of ``star_vsr.evalset``
every ``--validation_steps`` (the student's PSNR-Y / SSIM-Y and a bicubic | student | ground-truth
image go to the tracker; bicubic's scores, computed once, to the log and the summary), and finally
saves a ``StarStudentPipeline`` in ``--output_dir`` with a ``training_summary.json``.
"""

from __future__ import annotations

import os
import signal

# Ctrl-C while the libraries below load (seconds): exit 130 without a traceback (a Ctrl-C ignored, as in a shell's
# background job, stays ignored)
if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # os._exit, not sys.exit: a SystemExit raised while the handler runs inside a callback (importlib's module-lock
    # weakref) is printed as "Exception ignored" and the run went on
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))
if __name__ == "__main__":  # OpenMP threads spin while they wait by default: on a shared or busy CPU (and with
    # several CPU processes) steps ran many times slower; as `star-vsr` does, before torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from star_vsr.errors import working_directory_gone  # (loads no torch, which cannot load in a deleted folder)

    if working_directory_gone() is not None:
        raise SystemExit(f"{os.path.basename(__file__)}: error: {working_directory_gone()}")  # (status 1)

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from star_vsr.data.base import report_skips
from star_vsr.data.pairs import resolve_degradation
from star_vsr.distill.cache import MANIFEST_NAME, CacheManifest, TeacherCache
from star_vsr.losses.distillation import DistillationCriterion, DistillationLossConfig
from star_vsr.evalset import bicubic_upscale, evaluation_clips, rescaled_reference, score_clip, training_photos
from star_vsr.errors import InputError, OutputError, explain_out_of_memory, first_line
from star_vsr.degradations.config import SUPPORTED_SCALES
from star_vsr.model_folder import saved_config
from star_vsr.models.student import (FEATURE_TAPS, STUDENT_PRESETS, StarStudentModel, student_architecture,
                                     student_setting_names)
from star_vsr.outputs import TRAINING_SUMMARY_FILE, check_writable
from star_vsr.progress import bar_options
from star_vsr.training_run import (SettingsParser, StepLosses, StopRequest, add_checkpoint_arguments,
                                   add_optimizer_arguments, bool_value, build_optimizer, check_batches_per_epoch,
                                   check_finite, gradient_norm,
                                   check_number, check_run_settings, check_same_data, final_model_save,
                                   finishing_message, data_worker_init, is_first_process, note_ignored_settings,
                                   main_process_step, optional_value, parse_with_config, path_or_none,
                                   prepare_output_dir, process_group_kwargs, record_data_id,
                                   record_final_step, record_run_settings, resume_checkpoint, resume_training,
                                   run_script, tensorboard_pattern, tracker_init_kwargs, train_steps)
from star_vsr.upscale import accelerate_on_cpu
from star_vsr.json_files import loads_json

logger = get_logger(__name__)

SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
"""Precisions the final pipeline can be saved in."""

SUMMARY_NAME = TRAINING_SUMMARY_FILE  # (a save replacing the model removes it: outputs.MODEL_RECORDS)
#: The SHA-256 of the --train_cache manifest a run started on, kept in its output folder: a resume on a cache
#: rebuilt in place (same path, other teacher or clips) is refused, as one on another path is.
CACHE_ID_NAME = "train_cache.sha256"
#: File in each checkpoint holding the losses of its step, for the summary of a run finished from it.
LAST_LOSSES_NAME = "last_losses.json"
#: The TensorBoard run (folder inside --logging_dir).
TRACKER_PROJECT = "distill_student"


# --------------------------------------------------------------------------- arguments


def checkpoint_shape(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What of a run's ``settings`` shapes its checkpoints (the student's layers; the parameters the optimizer holds,
    in the student's order whatever the order of ``--trainable``; the loss terms with weights of their own, the time
    distillation's ConvLSTM and the feature distillation's 1x1 adapters, with which the whole loss is checkpointed,
    the perceptual loss's VGG layers too; the weight average, a checkpointed object): a resumed run cannot change
    it, not even with ``--allow_changed_settings`` (``star_vsr.training_run.check_resumed_settings``)."""
    time_on, feature_on = bool(settings.get("loss_time")), bool(settings.get("loss_feature"))
    saved_loss, perceptual_on = time_on or feature_on, bool(settings.get("loss_perceptual"))
    trainable = settings.get("trainable")
    # the student's layers as preset and overrides make them (overrides that repeat the preset change nothing)
    preset, overrides = settings.get("student_preset"), settings.get("student_overrides") or {}
    architecture = (student_architecture(preset, overrides) if isinstance(overrides, dict) else None) or {
        "preset": preset, "overrides": overrides}
    architecture.pop("flow_window", None)  # (no weights: a change of it is an ordinary changed setting)
    return {"student_preset": architecture, "student_overrides": architecture,
            "trainable": None if trainable is None else sorted(set(trainable)),
            "loss_time": time_on, "time_hidden_channels": settings.get("time_hidden_channels") if time_on else None,
            "loss_feature": feature_on, "feature_names": settings.get("feature_names") if feature_on else None,
            "loss_perceptual": perceptual_on and saved_loss,  # (its VGG saved with the loss)
            "perceptual_layers": settings.get("perceptual_layers") if saved_loss and perceptual_on else None,
            "ema_decay": bool(settings.get("ema_decay"))}


def json_argument(text: str) -> Any:
    """``--student_overrides``'s text as JSON (argparse named a text that is none "invalid loads value")."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error}); e.g. '{{\"num_blocks\": 3}}'") from None


json_argument.takes_json = True  # type: ignore[attr-defined]  (a config's mapping, ``{num_blocks: 3}``, as the run
# records it, was refused as "must be a single value")


def build_parser() -> argparse.ArgumentParser:
    parser = SettingsParser(description=__doc__.split("\n\n")[0],
                            path_settings=("config", "init_from", "train_cache", "perceptual_weights_path",
                                           "output_dir"), content_settings={"train_cache": CACHE_ID_NAME})
    parser.add_argument("--config", default=None, help="YAML file of defaults for the flags below")

    student = parser.add_argument_group("student")
    student.add_argument("--student_preset", default="small", choices=tuple(STUDENT_PRESETS),
                         help="StarStudentModel preset of a new student (not with --init_from, whose student keeps "
                              "its own)")
    student.add_argument("--student_overrides", type=json_argument, default={},
                         help="JSON dict of StarStudentModel config changes of a new student, e.g. "
                              "'{\"num_blocks\": 3}' (not with --init_from)")
    student.add_argument("--init_from", type=path_or_none, default=None,
                         help="start from the student of this pipeline folder, architecture and weights (then "
                              "--student_preset and --student_overrides do not apply)")
    student.add_argument("--scale", type=int, default=4, help="upscaling factor trained")
    student.add_argument("--scale_range", type=optional_value(float), nargs="+", default=None, metavar="BOUND",
                         help="two numbers LO HI (none: off): train at scales drawn uniformly from [LO, HI] (one per "
                              "step, LO >= 1, HI <= --scale) "
                              "on clips made at --scale, against their ground truth resized to each scale: the "
                              "scale-aware upsampler of scales without a head (with --trainable scale_modulation); "
                              "ground-truth loss terms only")
    student.add_argument("--trainable", type=optional_value(str), nargs="+", default=None,
                         help="train only these student modules (parameter-name prefixes, e.g. upsamplers.3: the x3 "
                              "head) of the --init_from student, the rest frozen; default (none): everything")

    data = parser.add_argument_group("data")
    data.add_argument("--train_cache", type=path_or_none, default=None,
                      help="teacher cache folder (star-vsr distill cache-teacher); without it, motion clips are "
                           "made on the fly from the training photos (ground-truth terms only)")
    data.add_argument("--motion_num_frames", type=int, default=8, help="frames per on-the-fly motion clip")
    data.add_argument("--motion_crop_size", type=int, default=64, help="HR crop side of on-the-fly motion clips")
    data.add_argument("--motion_patch_size", type=optional_value(int), default=None,
                      help="HR side of a random patch cut from each clip after degradation (default: the whole clip)")
    data.add_argument("--motion_degradation", default="medium", help="degradation preset of on-the-fly clips")
    data.add_argument("--motion_flip_and_rotate", type=bool_value, nargs="?", const=True, default=False, metavar="BOOL",
                      help="film each photo in a random one of its eight orientations (90-degree turns, mirror)")
    data.add_argument("--motion_length", type=int, default=1024, help="on-the-fly clips per epoch")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes")

    train = parser.add_argument_group("optimisation")
    train.add_argument("--seed", type=int, default=0, help="seed of everything random, in [0, 2^32)")
    train.add_argument("--train_batch_size", type=int, default=4, help="clips per process per micro-batch")
    train.add_argument("--max_train_steps", type=train_steps, default=1000, help="optimizer steps")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per step")
    train.add_argument("--learning_rate", type=float, default=5e-4, help="AdamW learning rate")
    add_optimizer_arguments(train, lr_scheduler="cosine", lr_warmup_steps=50, adam_beta2=0.99, adam_weight_decay=0.0)
    train.add_argument("--ema_decay", type=float, default=0.0,
                       help="exponential moving average of the student's weights (0 = off); validation and the "
                            "saved student use the averaged weights (a checkpoint-N/ folder's student/ holds the "
                            "trained ones, and the average beside them, to go on from)")

    loss = parser.add_argument_group("loss terms (weight 0 = off)")
    loss.add_argument("--loss_teacher_charbonnier", type=float, default=1.0, help="Charbonnier to the teacher")
    loss.add_argument("--loss_gt_charbonnier", type=float, default=0.0, help="Charbonnier to the ground truth")
    loss.add_argument("--loss_gt_log_mse", type=float, default=0.0,
                      help="log10 of each frame's MSE to the ground truth, averaged (minus a tenth of the mean "
                           "per-frame PSNR; star_vsr.losses.distillation.log_mse_loss)")
    loss.add_argument("--loss_space", type=float, default=0.0, help="attention-map space distillation")
    loss.add_argument("--loss_time", type=float, default=0.0, help="ConvLSTM time distillation")
    loss.add_argument("--loss_feature", type=float, default=0.0, help="feature L1 through 1x1 adapters")
    loss.add_argument("--loss_perceptual", type=float, default=0.0, help="VGG-19 perceptual loss")
    loss.add_argument("--space_features", nargs="+", default=["hr_features"],
                      help="feature taps whose attention maps --loss_space compares")
    loss.add_argument("--time_features", nargs="+", default=["hr_features"],
                      help="feature taps whose sequence the --loss_time ConvLSTM runs over")
    loss.add_argument("--feature_names", nargs="+", default=["hr_features"],
                      help="feature taps that --loss_feature compares through 1x1 adapters")
    loss.add_argument("--charbonnier_eps", type=float, default=1e-3, help="epsilon of the Charbonnier terms (> 0)")
    loss.add_argument("--time_hidden_channels", type=int, default=8, help="hidden channels of the ConvLSTM")
    loss.add_argument("--time_freeze_threshold", type=float, default=1e-8,
                      help="the ConvLSTM freezes once --loss_time falls below this")
    loss.add_argument("--perceptual_weights_path", type=path_or_none, default=None,
                      help="local torchvision VGG-19 state dict")
    loss.add_argument("--perceptual_layers", nargs="+", default=["relu2_2", "relu3_4", "relu4_4"],
                      help="VGG-19 layers the perceptual loss compares")
    loss.add_argument("--perceptual_target", default="gt", choices=("gt", "teacher"),
                      help="what the perceptual loss compares the student's output with")

    out = parser.add_argument_group("checkpoints, validation, logging")
    add_checkpoint_arguments(out, "outputs/distill-student",
                             "checkpoints, settings, TensorBoard events, summary, the model")
    out.add_argument("--validation_steps", type=int, default=250, help="0 disables validation")
    out.add_argument("--num_validation_clips", type=int, default=2, help="evaluation clips scored at validation")
    out.add_argument("--validation_frames", type=int, default=6, help="frames per validation clip")
    out.add_argument("--validation_size", type=int, default=128, help="HR side of validation clips")
    out.add_argument("--logging_dir", default="logs", help="TensorBoard folder, relative to output_dir (an "
                     "absolute path is used as it is)")
    out.add_argument("--report_to", default="tensorboard", choices=("tensorboard", "all", "none"),
                     help="where scalars and validation images are logged")
    out.add_argument("--save_dtype", default="fp32", choices=tuple(SAVE_DTYPES), help="precision of the saved student")
    return parser


def parse_args(input_args: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Flags over YAML defaults over built-in defaults."""
    parser = build_parser()
    args = parse_with_config(parser, input_args)
    if args.train_batch_size < 1 or args.max_train_steps < 1 or args.gradient_accumulation_steps < 1:
        parser.error("train_batch_size, max_train_steps and gradient_accumulation_steps must be >= 1")
    try:
        check_writable(Path(args.output_dir) / SUMMARY_NAME)
    except OutputError as error:
        parser.error(str(error))
    if args.train_cache is not None and not Path(args.train_cache, MANIFEST_NAME).is_file():
        parser.error(f"--train_cache {args.train_cache} is not a teacher cache (no manifest.json); make one with "
                     "`star-vsr distill cache-teacher`")
    if not isinstance(args.student_overrides, dict):
        parser.error(f"--student_overrides must be a JSON object ({{}} for none), got {args.student_overrides!r}")
    settings = student_setting_names()
    unknown = sorted(set(args.student_overrides) - set(settings))
    if unknown:  # (said after Accelerate's banner, as Python's "unexpected keyword argument 'num_block'")
        parser.error(f"--student_overrides: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} no "
                     f"StarStudentModel setting; it has {', '.join(settings)}{' (and --scale)' * ('scale' in unknown)}")
    architecture = student_architecture(args.student_preset, args.student_overrides)
    heads = (architecture or {}).get("upsample_scales")
    if (args.init_from is None and isinstance(heads, tuple) and heads and args.scale in SUPPORTED_SCALES
            and args.scale > max(heads)):  # (named as the model's config scale, a value the user typed as --scale)
        parser.error(f"--scale {args.scale} is above the student's largest head: upsample_scales "
                     f"{list(heads)} (--student_overrides or the preset) upscale by at most {max(heads)}")
    if args.trainable is not None and args.init_from is None:  # trained part of a random student, without a word
        parser.error(f"--trainable {' '.join(args.trainable)} trains part of a student with the rest frozen, so the "
                     f"rest must be trained already: pass --init_from (a trained student's pipeline folder)")
    if args.scale_range is not None and len(args.scale_range) != 2:
        parser.error(f"--scale_range takes two numbers, LO and HI (or none), got {len(args.scale_range)}")
    if args.init_from is not None and args.student_overrides:  # they were ignored without a word
        parser.error(f"--student_overrides {json.dumps(args.student_overrides)} changes the architecture of a new "
                     f"student, but --init_from {args.init_from} brings its own: drop one of them")
    if args.init_from is not None and not Path(args.init_from).exists():  # (said "it holds no student/")
        parser.error(f"--init_from {args.init_from} does not exist; give a distill_student.py run's output folder, "
                     f"or star_vsr/weights/student-default")
    if args.init_from is not None and not Path(args.init_from, "student").is_dir():  # (found after Accelerate's
        # start-up lines, with 6 lines of how to train a student: the one who passed --init_from has one)
        parser.error(f"--init_from {args.init_from} is no student pipeline folder (it holds no student/): give a "
                     f"distill_student.py run's output folder, or star_vsr/weights/student-default")
    if args.init_from is not None:  # its student keeps its preset: recorded as that, not as the ignored flag
        saved = saved_config(Path(args.init_from, "student"))  # ({} if unreadable: loading says)
        preset = saved.get("preset")
        if preset is not None and preset != args.student_preset:
            if is_first_process():
                print(f"note: --init_from {args.init_from} brings its own student (preset {preset}); "
                      f"--student_preset {args.student_preset} does not apply", file=sys.stderr)
            args.student_preset = preset
        default_scale = saved.get("scale")  # kept, as the x2 and x3 head runs of the model card want
        if type(default_scale) in (int, float) and default_scale != args.scale and is_first_process():
            print(f"note: this run trains the student at x{args.scale}, but it keeps the default scale of --init_from "
                  f"(x{default_scale:g}, what `star-vsr upscale` uses without --upscale); pass --upscale "
                  f"{args.scale} to use the x{args.scale} output", file=sys.stderr)
    try:
        # learning rate, fp16 without a GPU, the checkpoint to resume
        check_run_settings(args, build_parser(), model_folder="student", checkpoint_shape=checkpoint_shape)
        check_number(args, "ema_decay", 0, 1, high_open=True)  # 0: off; 1 would never move, above 1 extrapolates
        # here, with the flags' names (the dataset and the loss named their own arguments, or took -1)
        for name in ("motion_num_frames", "motion_crop_size", "motion_length", "time_hidden_channels"):
            check_number(args, name, 1)
        check_number(args, "motion_patch_size", 1, optional=True)
        check_number(args, "charbonnier_eps", 0, low_open=True)
        for name in [name for name in vars(args) if name.startswith("loss_")]:  # ("loss weight space must be ...":
            check_number(args, name, 0)  # the weight as DistillationLosses names it, not the flag or config key)
        # before the cache is opened: its checks named the cache for these ("rebuild it with --features bogus", a
        # --validation_size that is no multiple of an unsupported --scale)
        if args.scale not in SUPPORTED_SCALES:
            raise InputError(f"unsupported scale {args.scale}: --scale must be one of "
                             f"{', '.join(map(str, SUPPORTED_SCALES))} (the scales the degradation chain makes "
                             f"clips at)")
        if args.train_cache is None:  # (found after the Accelerator's setup, naming no flag)
            try:
                resolve_degradation(args.motion_degradation, args.scale)
            except InputError as error:
                raise InputError(f"--motion_degradation {args.motion_degradation}: {error}") from None
            check_motion_sizes(args)
        else:
            note_ignored_settings(args, build_parser(), [f"motion_{name}" for name in (
                "num_frames", "crop_size", "patch_size", "degradation", "flip_and_rotate", "length")],
                "with --train_cache (they make motion clips on the fly, without a cache)")
        if args.train_cache is not None:  # before --validation_size, which must be a multiple of the scale
            check_cache_scale(CacheManifest.load(args.train_cache), args)
        for flag in ("space_features", "time_features", "feature_names"):
            unknown = [name for name in getattr(args, flag) if name not in FEATURE_TAPS]
            if unknown:
                raise InputError(f"--{flag} {' '.join(unknown)}: the student has no such feature tap; its taps are "
                                 f"{', '.join(FEATURE_TAPS)}")
        if args.validation_steps > 0:  # here, with the flags' names, before anything is made
            check_number(args, "num_validation_clips", 1)
            check_number(args, "validation_frames", 1)
    except InputError as error:
        parser.error(str(error))
    if args.train_cache is not None and args.resume_from_checkpoint is not None:
        # the record of the cache the run started on: in the folder of the checkpoint it goes on from (the output
        # folder, or another one whose run goes on here; a record in the output folder then is another run's)
        try:
            check_same_data(resume_checkpoint(args.output_dir, args.resume_from_checkpoint), CACHE_ID_NAME,
                            cache_id(args.train_cache), f"--train_cache {args.train_cache} is not the cache this run "
                            f"started on, or was rebuilt since (its manifest differs)", args.allow_changed_settings,
                            also=earlier_cache_ids(args.train_cache))
        except InputError as error:
            parser.error(str(error))
    if args.scale_range is not None:
        low, high = args.scale_range
        if not 1 <= low <= high <= args.scale:
            parser.error(f"--scale_range needs 1 <= LO <= HI <= --scale ({args.scale}), got {low:g} {high:g}")
        losses = loss_config(args)
        if losses.needs_teacher or not losses.needs_gt:
            parser.error("--scale_range trains against resized ground truth; the teacher's outputs and features "
                         "exist at --scale only: set the teacher loss terms to 0 and a ground-truth term above 0")
    if args.validation_steps > 0:  # scored with SSIM after a ceil(scale)-pixel border crop (evalset.score_clip)
        from star_vsr.metrics.fidelity import SSIM_WINDOW

        scale = validation_scale(args)  # the clips are filmed at --scale, HR sides a multiple of it
        smallest = math.ceil((SSIM_WINDOW + 2 * math.ceil(scale)) / scale) * args.scale
        if args.validation_size % args.scale:
            parser.error(f"--validation_size must be a multiple of --scale {args.scale}, got {args.validation_size}")
        if args.validation_size < smallest:
            parser.error(f"--validation_size {args.validation_size} is too small to score at x{scale:g}: SSIM needs "
                         f"{SSIM_WINDOW} pixels after a {math.ceil(scale)}-pixel border crop; use at least {smallest} "
                         f"(or --validation_steps 0)")
    return args


def check_cache_scale(manifest: CacheManifest, args: argparse.Namespace) -> None:
    """``InputError`` when the teacher cache ``args.train_cache`` (its ``manifest``) holds clips of another scale
    than ``--scale``."""
    cached_scale = (manifest.teacher or {}).get("scale", manifest.source.get("scale"))
    if cached_scale is not None and float(cached_scale) != float(args.scale):
        raise InputError(f"{args.train_cache} holds x{cached_scale:g} clips, but --scale is {args.scale}; "
                         f"pass --scale {cached_scale:g}, or build a cache at x{args.scale}")


def cache_id(cache: str | Path, keep_folders: bool = False) -> str:
    """SHA-256 of what a teacher cache holds: its manifest's settings as a rebuild compares them (teacher, source,
    clips and shards; ``CacheManifest.settings``, ``keep_folders`` passed on), ground truth and feature widths. Not
    the time its build took, nor the teacher's path as typed or the order of its --features: the same cache rebuilt
    by the same command was refused as "rebuilt since this run started" (the manifest's bytes were hashed,
    ``wall_time_s`` with them)."""
    manifest = CacheManifest.load(cache)
    held = {**manifest.settings(keep_folders), "has_gt": manifest.has_gt, "feature_channels": manifest.feature_channels}
    return hashlib.sha256(json.dumps(held, sort_keys=True).encode()).hexdigest()


def earlier_cache_ids(cache: str | Path) -> tuple[str, str]:
    """``cache_id`` as runs of earlier versions recorded it: the SHA-256 of the manifest's bytes, then of its
    settings with the clips' folders (before clips were known by their files wherever they are)."""
    return hashlib.sha256(Path(cache, MANIFEST_NAME).read_bytes()).hexdigest(), cache_id(cache, keep_folders=True)


def run_outputs(settings: Mapping[str, Any]) -> list[str]:
    """What a run with ``settings`` writes into ``output_dir`` besides the checkpoints, settings and model of
    every training run: glob patterns relative to it, which ``--overwrite_output_dir`` deletes
    (``star_vsr.training_run.clear_old_run``)."""
    return [SUMMARY_NAME, CACHE_ID_NAME, tensorboard_pattern(settings["logging_dir"], TRACKER_PROJECT)]


def draw_scale(seed: int, step: int, scale_range: Sequence[float]) -> float:
    """The scale of training step ``step`` under ``--scale_range``: uniform on [LO, HI], a function of
    the seed and the step alone, so a resumed run draws the same scales."""
    low, high = scale_range
    u = torch.rand((), generator=torch.Generator().manual_seed(seed * 1_000_003 + step)).item()
    return low + (high - low) * u


def validation_scale(args: argparse.Namespace) -> float:
    """The scale validated: ``--scale``, or the middle of ``--scale_range``."""
    return args.scale if args.scale_range is None else (args.scale_range[0] + args.scale_range[1]) / 2


def loss_config(args: argparse.Namespace) -> DistillationLossConfig:
    return DistillationLossConfig(
        teacher_charbonnier=args.loss_teacher_charbonnier, gt_charbonnier=args.loss_gt_charbonnier,
        gt_log_mse=args.loss_gt_log_mse,
        space=args.loss_space, time=args.loss_time, feature=args.loss_feature, perceptual=args.loss_perceptual,
        space_features=args.space_features, time_features=args.time_features, feature_names=args.feature_names,
        charbonnier_eps=args.charbonnier_eps, time_hidden_channels=args.time_hidden_channels,
        time_freeze_threshold=args.time_freeze_threshold, perceptual_weights_path=args.perceptual_weights_path,
        perceptual_layers=args.perceptual_layers, perceptual_target=args.perceptual_target)


# --------------------------------------------------------------------------- data


#: How to make a cache whose clips can share a batch.
ONE_SIZE_HINT = ("build the cache from clips of one size (cache-teacher --data: videos of one size; --motion-clips: "
                 "one --crop-size)")


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors the losses use: lq (b, n, 3, h, w), teacher / gt (b, n, 3, H, W), features; and list the
    items' ``unreported_skips`` (on-the-fly clips: sources a DataLoader worker skipped, for ``report_skips``).

    Clips of different lengths (a cache keeps a video shorter than ``--num-frames`` as one shorter clip)
    are cut to the shortest: n is the fewest frames in the batch.
    """
    n = min(len(item["lq"]) for item in items)
    sizes = {tuple(item["lq"].shape[-2:]) for item in items}
    if len(sizes) > 1:
        raise InputError(f"clips of sizes {sorted(sizes)} cannot share a batch; use --train_batch_size 1, or "
                         f"{ONE_SIZE_HINT}")
    batch: dict[str, Any] = {"lq": torch.stack([item["lq"][:n] for item in items]),
                             "unreported_skips": [item.get("unreported_skips", "{}") for item in items]}
    for key in ("teacher", "gt"):
        if key in items[0]:
            batch[key] = torch.stack([item[key][:n] for item in items])
    names = items[0].get("teacher_features", {})
    batch["teacher_features"] = {name: torch.stack([item["teacher_features"][name][:n] for item in items])
                                 for name in names}
    return batch


def check_motion_sizes(args: argparse.Namespace) -> None:
    """``InputError`` naming the flags, in their HR pixels, for on-the-fly motion clip sizes the dataset would refuse
    after the run started ("crop_size (30, 30) must be divisible by scale 4", "LR clips of 16x16 are smaller than
    the 32x32 LR patch": its arguments' names, LR pixels, the run's folder already written; a black-box hunt)."""
    for name in ("motion_crop_size", "motion_patch_size"):
        size = getattr(args, name)
        if size is not None and size % args.scale:
            raise InputError(f"--{name} {size} must be a multiple of --scale {args.scale}")
    if args.motion_patch_size is not None and args.motion_patch_size > args.motion_crop_size:
        raise InputError(f"--motion_patch_size {args.motion_patch_size} is larger than --motion_crop_size "
                         f"{args.motion_crop_size}, the clips it is cut from")


def build_dataset(args: argparse.Namespace, losses: DistillationLossConfig) -> tuple[Any, dict[str, int]]:
    """The training clips and the teacher's feature widths."""
    def flags(target: str) -> str:  # the terms on, named with their values: the config set them, not the command line
        return " ".join(f"--loss_{name} {getattr(losses, name):g}" for name in losses.terms_on(target))

    if args.train_cache is not None:
        cache = TeacherCache(args.train_cache)
        lacking = []  # what the loss terms on need and the cache lacks, all in one error (it was one per run)
        if losses.needs_teacher and not cache.has_teacher:
            lacking.append(f"no teacher outputs, but teacher loss terms are on: {flags('teacher')}; set them to 0, "
                           f"or cache a teacher's outputs")
        if losses.needs_gt and not cache.manifest.has_gt:
            lacking.append(f"no ground truth, but ground-truth loss terms are on: {flags('gt')}; set them to 0, or "
                           f"build the cache with ground truth (star-vsr distill cache-teacher --gt, or from "
                           f"--motion-clips)")
        missing = [n for n in losses.teacher_feature_names if n not in cache.feature_channels]
        if missing and cache.has_teacher:  # (without a teacher, the first says it)
            off = " ".join(f"--loss_{name} 0" for name in ("space", "time", "feature") if getattr(losses, name))
            lacking.append(f"teacher features {sorted(cache.feature_channels)}, not {missing}; rebuild it with "
                           f"--features {' '.join(losses.teacher_feature_names)}, or train without the feature "
                           f"terms ({off})")
        if lacking:
            raise InputError(f"{args.train_cache} holds {'. It also holds '.join(lacking)}")
        check_cache_scale(cache.manifest, args)
        if args.train_batch_size > 1 and len(cache.lr_sizes) > 1:  # else refused at the first mixed batch, hours in
            raise InputError(f"{args.train_cache} holds clips of {len(cache.lr_sizes)} sizes "
                             f"({', '.join(f'{w}x{h}' for h, w in sorted(cache.lr_sizes)[:4])}"
                             f"{', ...' if len(cache.lr_sizes) > 4 else ''} LR), which cannot share a batch; pass "
                             f"--train_batch_size 1, or {ONE_SIZE_HINT}")
        return cache, cache.feature_channels
    if losses.needs_teacher:
        raise InputError(f"the teacher loss terms ({flags('teacher')}) need --train_cache (a teacher cache: make one "
                         f"with `star-vsr distill cache-teacher`), or set them to 0: on-the-fly motion clips have "
                         f"ground truth only")
    from star_vsr.data import ImageMotionDataset

    dataset = ImageMotionDataset(images=training_photos(), num_frames=args.motion_num_frames,
                                 crop_size=args.motion_crop_size, scale=args.scale,
                                 degradation=args.motion_degradation, length=args.motion_length, seed=args.seed,
                                 flip_and_rotate=args.motion_flip_and_rotate)
    if args.motion_patch_size is not None:
        from star_vsr.data.patches import RandomPatchDataset

        dataset = RandomPatchDataset(dataset, args.motion_patch_size, args.scale, seed=args.seed)
    return dataset, {}


def select_trainable(student: torch.nn.Module, prefixes: Optional[Sequence[str]]) -> list[torch.nn.Parameter]:
    """Freeze every parameter of ``student`` outside the modules named by ``prefixes`` (None: train all)
    and return the trainable ones.

    A prefix names a module or parameter by its path (``upsamplers.3`` covers ``upsamplers.3.weight`` and
    ``upsamplers.3.bias``). Training one integer-scale head of a trained student this way leaves its
    outputs at every other scale bit-for-bit unchanged.
    """
    named = dict(student.named_parameters())
    if not prefixes:
        return list(named.values())

    def covers(prefix: str, name: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unmatched = [prefix for prefix in prefixes if not any(covers(prefix, name) for name in named)]
    if unmatched:
        modules = sorted({name.rsplit(".", 1)[0] for name in named})
        raise InputError(f"--trainable {unmatched} name no student parameter; its modules: {', '.join(modules)}")
    for name, param in named.items():
        param.requires_grad_(any(covers(prefix, name) for prefix in prefixes))
    return [param for param in named.values() if param.requires_grad]


def check_trainable_used(student: StarStudentModel, prefixes: Optional[Sequence[str]], scale: float,
                         where: str) -> None:
    """``InputError`` when a module ``--trainable`` names (``prefixes``) takes no part in the output at the scale the
    training runs at (``where`` says how it was set): the x2 head at ``--scale 4``, the scale-aware upsampler
    without ``--scale_range``. Such a run failed at its first step with autograd's "element 0 of tensors does not
    require grad". Found by one backward pass of a random 2-frame clip (gradients cleared after)."""
    if not prefixes:
        return
    clip = torch.rand(1, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # (b, n, 3, h, w)
    student.zero_grad(set_to_none=True)
    output = student(clip, scale=scale).sample.sum()
    if output.requires_grad:  # (not when no trainable parameter takes part)
        output.backward()
    used = {name for name, param in student.named_parameters() if param.grad is not None}
    student.zero_grad(set_to_none=True)
    unused = [prefix for prefix in prefixes
              if not any(name == prefix or name.startswith(prefix + ".") for name in used)]
    if unused:
        heads = ", ".join(f"upsamplers.{r}: --scale {r}" for r in student.upsample_scales)
        raise InputError(f"--trainable {' '.join(unused)} takes no part in the student's output at {where}, so the "
                         f"training would update nothing: a head trains at its own scale ({heads}), the scale-aware "
                         f"upsampler (scale_modulation) with --scale_range LO HI")


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(student: StarStudentModel, clips: list[dict[str, Any]], scale: float,
             device: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """Mean PSNR-Y / SSIM-Y of the student on ``clips``, and a (3, h, 3 w) bicubic | student | GT image."""
    was_training = student.training
    student.eval()
    scores: list[dict[str, float]] = []
    preview = None
    for clip in clips:
        sr = student(clip["lq"][None].to(device, student.dtype), scale=scale).sample[0].float().clamp(0, 1).cpu()
        scores.append(score_clip(sr, clip["gt"], scale, warp=False))
        if preview is None:
            middle = len(sr) // 2
            preview = torch.cat([bicubic_upscale(clip["lq"][middle:middle + 1], scale)[0], sr[middle],
                                 clip["gt"][middle]], dim=-1)
    student.train(was_training)
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr_y", "ssim_y")}, preview


def bicubic_scores(clips: list[dict[str, Any]], scale: float) -> dict[str, float]:
    scores = [score_clip(bicubic_upscale(c["lq"], scale), c["gt"], scale, warp=False) for c in clips]
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr_y", "ssim_y")}


# --------------------------------------------------------------------------- checkpoints


class TrainingClock:
    """Wall time spent training, summed over resumed runs (saved in every checkpoint)."""

    def __init__(self) -> None:
        self.previous_s = 0.0
        self.started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return self.previous_s + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.previous_s, self.started = float(state["elapsed_s"]), time.perf_counter()


# --------------------------------------------------------------------------- main


@explain_out_of_memory("distilling", "lower --train_batch_size, --motion_num_frames or --motion_crop_size (a teacher "
                       "cache: cache shorter or smaller clips), or train with --mixed_precision bf16 on a GPU")
def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train; returns the summary also written to ``output_dir/training_summary.json``."""
    with ExitStack() as held:  # the lock on the output folder (prepare_output_dir), until the run ends
        return _distill(args, held)


def _distill(args: argparse.Namespace, held: ExitStack) -> dict[str, Any]:
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    logging_dir = Path(args.output_dir, args.logging_dir)
    path = resume_checkpoint(args.output_dir, args.resume_from_checkpoint)  # the checkpoint to go on from, or None
    accelerator = Accelerator(
        cpu=accelerate_on_cpu(),  # several processes on a machine without a GPU: one gloo group, not lone runs
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # a frozen ConvLSTM stops receiving gradients mid-run
        # (process_group_kwargs: the others wait while the main process validates)
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True), process_group_kwargs()],
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    set_seed(args.seed)

    # 1. Data and losses
    losses = loss_config(args)
    dataset, teacher_channels = build_dataset(args, losses)
    check_batches_per_epoch(len(dataset), args, accelerator.num_processes)
    train_dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        num_workers=args.dataloader_num_workers, collate_fn=collate_clips, worker_init_fn=data_worker_init,
        generator=torch.Generator().manual_seed(args.seed))

    # 2. Student (seeded initialisation, or a pretrained student) and the criterion's trainable parts
    if args.init_from is not None:
        loaded = StarStudentPipeline.from_pretrained(args.init_from).student
        # a fresh model of the folder's config and weights: the folder's path stays out of the saved config
        student = StarStudentModel.from_config({k: v for k, v in loaded.config.items() if not k.startswith("_")})
        student.load_state_dict(loaded.state_dict())
    else:
        try:
            student = StarStudentModel.from_preset(args.student_preset, scale=args.scale, **args.student_overrides)
        except TypeError as error:  # an override that is no argument of StarStudentModel
            raise InputError(f"--student_overrides {json.dumps(args.student_overrides)}: {error}") from None
        # zero output convs: training starts from exact bilinear upsampling, not from the random
        # residual a fresh network adds (which left students below bicubic in our runs)
        student.reset_parameters(torch.Generator().manual_seed(args.seed), bilinear_start=True)
    student.train()
    trainable = select_trainable(student, args.trainable)
    if args.scale_range is None:
        check_trainable_used(student, args.trainable, args.scale, f"--scale {args.scale:g}")
    else:  # (the scale of its first step: a draw from the range, not an integer scale with a head of its own)
        check_trainable_used(student, args.trainable, draw_scale(args.seed, 0, args.scale_range),
                             f"--scale_range {args.scale_range[0]:g} {args.scale_range[1]:g}")
    criterion = DistillationCriterion(losses, student.feature_channels, teacher_channels or None)
    criterion_params = [p for p in criterion.parameters() if p.requires_grad]
    needs_features = bool(losses.teacher_feature_names)

    # 3. Saving and loading hooks: the student as a diffusers folder inside each checkpoint
    def save_model_hook(models: list, weights: list, output_dir: str) -> None:
        if accelerator.is_main_process:
            for i, model in enumerate(models):
                if isinstance(accelerator.unwrap_model(model), StarStudentModel):
                    accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, "student"))
                    weights.pop(i)
                    break
            Path(output_dir, LAST_LOSSES_NAME).write_text(json.dumps(last_logs) + "\n")

    def load_model_hook(models: list, input_dir: str) -> None:
        for i, model in enumerate(models):
            if isinstance(accelerator.unwrap_model(model), StarStudentModel):
                loaded = StarStudentModel.from_pretrained(input_dir, subfolder="student")
                accelerator.unwrap_model(model).load_state_dict(loaded.state_dict())
                models.pop(i)
                break

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    # 4. Optimiser and schedule
    optimizer, lr_scheduler = build_optimizer(trainable + criterion_params, args, accelerator.num_processes)
    if criterion_params:
        student, criterion, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            student, criterion, optimizer, train_dataloader, lr_scheduler)
    else:
        student, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            student, optimizer, train_dataloader, lr_scheduler)
        criterion.to(accelerator.device)
    clock = TrainingClock()
    accelerator.register_for_checkpointing(clock)
    # averaged weights (Polyak averaging): less noisy than the last step's on small, noisy batches;
    # EMAModel copies frozen parameters as they are, so they stay bit-exact
    ema = EMAModel(accelerator.unwrap_model(student).parameters(), decay=args.ema_decay) if args.ema_decay else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    updates_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_train_epochs = math.ceil(args.max_train_steps / updates_per_epoch)
    # made only now: a bad setting caught above (data, --trainable) leaves no empty output folder
    main_process_step(accelerator, lambda: prepare_output_dir(args, path, run_outputs, held))

    validation_clips: list[dict[str, Any]] = []
    validation_bicubic: dict[str, float] = {}  # bicubic's scores on the validation clips, computed once
    if args.validation_steps > 0 and accelerator.is_main_process:
        validation_clips = evaluation_clips(num_clips=args.num_validation_clips, num_frames=args.validation_frames,
                                            size=args.validation_size, scale=args.scale)
        for clip in validation_clips:  # ground truth at the validated scale
            clip["gt"] = rescaled_reference(clip["gt"], clip["lq"].shape[-2:], validation_scale(args))
        validation_bicubic = bicubic_scores(validation_clips, validation_scale(args))
        logger.info(f"validation bicubic: {validation_bicubic}")

    # 5. Resume
    global_step = resume_training(accelerator, path, optimizer, lr_scheduler, args)
    first_epoch, resume_step = 0, 0
    if path is not None:
        first_epoch = global_step // updates_per_epoch
        resume_step = (global_step % updates_per_epoch) * args.gradient_accumulation_steps
        if global_step >= args.max_train_steps:  # stopped after its last checkpoint, before the final model
            accelerator.print(finishing_message(path, args.max_train_steps))
            num_train_epochs = first_epoch  # no epoch left to run
    if accelerator.is_main_process:  # after the checkpoint loads: one that does not leaves no tracker run behind
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(TRACKER_PROJECT, config=tracker_config, init_kwargs=tracker_init_kwargs(path))
        record_run_settings(args, build_parser(), path, data_ids={"train_cache": (
            cache_id(args.train_cache), *earlier_cache_ids(args.train_cache))} if args.train_cache is not None else {})
        record_data_id(Path(args.output_dir), path, CACHE_ID_NAME,
                       cache_id(args.train_cache) if args.train_cache is not None else None)

    logger.info(f"***** distilling: {len(dataset)} clips, {args.max_train_steps} steps of batch "
                f"{args.train_batch_size} x {accelerator.num_processes} x {args.gradient_accumulation_steps}, "
                f"losses {losses}")
    progress_bar = tqdm(range(args.max_train_steps), initial=global_step, desc="steps",
                        disable=not accelerator.is_local_main_process, **bar_options())
    time_loss = accelerator.unwrap_model(criterion).time_loss
    last_logs: dict[str, float] = {}
    if path is not None and global_step >= args.max_train_steps and (path / LAST_LOSSES_NAME).exists():
        try:  # finishing: its last step's, for the summary (checkpoints of earlier versions have none)
            last_logs = loads_json((path / LAST_LOSSES_NAME).read_text())
            if not isinstance(last_logs, dict):
                raise ValueError(f"not an object: {last_logs!r:.40}")
        except (OSError, ValueError) as error:  # (a JSONDecodeError traceback left the folder without a model)
            last_logs = {}
            logger.warning(f"{path / LAST_LOSSES_NAME} cannot be read ({first_line(error)}): the summary's "
                           f"last_losses is left empty")
    last_validation: dict[str, float] = {}
    step_losses = StepLosses()
    skips_said: set[str] = set()  # training photos the DataLoader workers skipped, warned of once

    # 6. Training loop
    with StopRequest(announce=accelerator.is_main_process) as stop:
        for epoch in range(first_epoch, num_train_epochs):
            train_dataloader.set_epoch(epoch)  # the shuffling order of this epoch
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)  # fresh camera moves and degradations for on-the-fly clips
            batches = (accelerator.skip_first_batches(train_dataloader, resume_step)
                       if epoch == first_epoch and resume_step else train_dataloader)
            for batch in batches:
                report_skips(batch["unreported_skips"], skips_said)
                with accelerator.accumulate(student):
                    step_scale, gt = args.scale, batch.get("gt")  # gt (b, n, 3, H, W)
                    if args.scale_range is not None:
                        step_scale = draw_scale(args.seed, global_step, args.scale_range)
                        gt = rescaled_reference(gt.flatten(0, 1), batch["lq"].shape[-2:], step_scale).unflatten(
                            0, gt.shape[:2])
                    output = student(batch["lq"], scale=step_scale, return_features=needs_features)
                    total, terms = criterion(output.sample, output.features, batch.get("teacher"),
                                             batch["teacher_features"], gt)
                    diverged = partial(check_finite, accelerator, step=global_step + 1,
                                       checkpointing=args.checkpointing_steps is not None)
                    diverged(total, "loss")
                    accelerator.backward(total)
                    step_losses.add({**{f"loss/{name}": value for name, value in terms.items()}, "loss/total": total})
                    if accelerator.sync_gradients:
                        diverged(gradient_norm(accelerator, trainable + criterion_params, args.max_grad_norm),
                                 "gradient norm")
                    step_lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (logged: the scheduler's
                    optimizer.step()  # get_last_lr() after its step below is the next step's)
                    lr_scheduler.step()
                    optimizer.zero_grad()

                if not accelerator.sync_gradients:
                    continue
                if ema is not None:
                    ema.step(accelerator.unwrap_model(student).parameters())
                global_step += 1
                progress_bar.update(1)
                logs = step_losses.means(accelerator)  # over the step's micro-batches, not its last one
                logs["lr"] = step_lr
                if time_loss is not None:
                    logs["time_convlstm_frozen"] = float(time_loss.observe(logs["loss/time"]))
                progress_bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
                accelerator.log(logs, step=global_step)
                last_logs = logs

                # validation first: a run stopped at this step (which a resume goes on after) still validates it
                if validation_clips and global_step % args.validation_steps == 0:
                    last_validation = run_validation(accelerator, student, validation_clips, validation_scale(args),
                                                     global_step, ema)
                stop.checkpoint_or_stop(accelerator, Path(args.output_dir), global_step, args.max_train_steps,
                                        args.checkpointing_steps, args.checkpoints_total_limit, progress_bar)
                if global_step >= args.max_train_steps:
                    break
            if global_step >= args.max_train_steps:
                break

    # 7. Save the pipeline
    accelerator.wait_for_everyone()
    summary: dict[str, Any] = {}
    if accelerator.is_main_process:
        if validation_clips and (not last_validation or global_step % args.validation_steps):
            # finishing a run from its checkpoint at a validation step (no step ran here): the stopped run logged
            # that validation before the checkpoint; scored again for the summary, it is not logged twice
            logged = not last_validation and global_step % args.validation_steps == 0
            last_validation = run_validation(accelerator, student, validation_clips, validation_scale(args),
                                             global_step, ema, log=not logged)
        final = accelerator.unwrap_model(student)
        if ema is not None:
            ema.copy_to(final.parameters())
        if SAVE_DTYPES[args.save_dtype] != torch.float32:
            final = final.to(SAVE_DTYPES[args.save_dtype])
        with final_model_save():
            StarStudentPipeline(student=final).save_pretrained(args.output_dir)
        summary = {
            "steps": global_step, "train_wall_time_s": round(clock.elapsed_s, 1),
            "processes": accelerator.num_processes, "batch_size": args.train_batch_size,
            "student_config": {k: v for k, v in dict(final.config).items() if not k.startswith("_")},
            "last_losses": last_logs, "scale_range": args.scale_range,
            "validation_scale": validation_scale(args), "validation": last_validation,
            "validation_bicubic": validation_bicubic,
            "data": {"train_cache": args.train_cache, "clips_per_epoch": len(dataset)} if args.train_cache else
                    {"motion_clips_per_epoch": len(dataset), "num_frames": args.motion_num_frames,
                     "crop_size": args.motion_crop_size, "degradation": args.motion_degradation,
                     "flip_and_rotate": args.motion_flip_and_rotate},
        }
        Path(args.output_dir, SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
        record_final_step(Path(args.output_dir), global_step)
    accelerator.end_training()
    return summary


def run_validation(accelerator: Accelerator, student: Any, clips: list[dict[str, Any]], scale: float,
                   step: int, ema: Optional[EMAModel] = None, log: bool = True) -> dict[str, float]:
    """Validate (with the averaged weights when ``ema`` is given), log scalars and a
    bicubic | student | ground-truth preview (unless not ``log``), return the scores."""
    model = accelerator.unwrap_model(student)
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    try:
        scores, preview = validate(model, clips, scale, accelerator.device)
    finally:
        if ema is not None:
            ema.restore(model.parameters())
    if log:
        accelerator.log({f"validation/{k}": v for k, v in scores.items()}, step=step)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("validation/bicubic_student_gt", preview, step)
        logger.info(f"step {step} validation: {scores}")
    return scores


if __name__ == "__main__":
    run_script(Path(__file__).name, lambda: main(parse_args()))
