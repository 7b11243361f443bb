#!/usr/bin/env python
"""Adapt StarVSR to your videos: train the ControlNet and the LIEM gates (and optionally a UNet LoRA).

    accelerate launch training/train_star.py --config configs/train_star_tiny.yaml
    accelerate launch --num_processes 8 training/train_star.py --config configs/train_star_released.yaml \\
        --pretrained_model_name_or_path ./star-light --train_data ./my_videos --output_dir runs/my_star

Any setting of the YAML file can be overridden on the command line (``--max_train_steps 4``);
``python training/train_star.py --help`` lists them all. Like diffusers' training examples, the
script has one purpose and a ``main(args)``; it runs on one GPU, many GPUs (Accelerate / DDP) or
the CPU.

What it does (STAR, Xie et al. 2025, Sec. 3):

1. Loads a StarVSR pipeline folder (``star-vsr convert-star`` writes one) or builds the tiny test
   model; freezes the VAE, the text encoder and the UNet (cast to the mixed-precision dtype) and
   trains the ControlNet, the LIEM gates of the UNet and, with ``lora_rank > 0``, a LoRA (peft) on
   the UNet's attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``.
2. Samples training clips (``star_vsr.data``): an HR clip, its real-world-degraded LR clip, and
   the LR clip upsampled to the HR size (the hint), which the VAE encodes for the ControlNet.
3. Minimises ``w_v * L_v + b(t) * L_DF`` (``star_vsr.losses.StarDiffusionLoss``): the v-prediction
   MSE plus the dynamic frequency loss on VAE-decoded clean estimates, decoded *with* gradient.
4. Saves Accelerate checkpoints every ``checkpointing_steps``, and at the end of the current step on
   Ctrl-C or SIGTERM (each written whole before it replaces anything; ``--resume_from_checkpoint
   latest`` continues exactly where a run stopped, with the settings that trained the checkpoint and the data it
   started on (``train_data.sha256``) unless ``--allow_changed_settings``; an output folder holding another run
   is refused unless ``--overwrite_output_dir``), records its settings in ``train_config.yaml`` (resumes in
   ``train_config_resumes.yaml``), validates every ``validation_steps`` (PSNR/SSIM and
   frames in TensorBoard and ``output_dir/validation``), logs every step to TensorBoard and to
   ``output_dir/train_log.jsonl``, and finally writes a complete pipeline folder to ``output_dir``:
   ``StarVSRPipeline.from_pretrained(output_dir)`` loads the trained ControlNet, the trained LIEM
   gates and the LoRA (fused into the UNet; the adapter alone is also saved in ``unet_lora/``).

Exact resumption: the data order depends only on (seed, epoch), every sample only on
(seed, epoch, index), and each micro-batch's noise, timesteps, VAE samples and decode window on
a generator seeded from (seed, process, epoch, batch index), so nothing besides the model,
optimizer, scheduler and global RNG states (all saved by Accelerate) needs restoring.
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
import json
import logging
import math
import sys
import warnings
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from star_vsr.data import EpochShuffleSampler, ImageMotionDataset, VideoClipDataset
from star_vsr.data.base import BadSampleWarning, ClipPairDataset, as_size, report_skips
from star_vsr.data.pairs import resolve_degradation
from star_vsr.data.video_clips import as_frame_interval
from star_vsr.errors import InputError, MissingWeightsError, explain_out_of_memory
from star_vsr.io.atomic import move_into_place, remove_temporary, temporary_path
from star_vsr.io.folders import IMAGE_EXTENSIONS, clips_in_folder, photos_in_folder
from star_vsr.losses import DynamicFrequencyLoss, StarDiffusionLoss, StarLossOutput
from star_vsr.losses.frequency import MAX_CUTOFF
from star_vsr.metrics import psnr_clip, ssim_clip
from star_vsr.metrics.fidelity import SSIM_WINDOW
from star_vsr.outputs import LORA_FOLDER, check_writable, give_default_mode
from star_vsr.models import (LIEM_PLACEMENTS, SpatialLIEM, StarVSRControlNetModel, StarVSRUNetModel, TemporalLIEM,
                             set_liem_placement)
from star_vsr.pipelines.pipeline_star_vsr import (MISSING_WEIGHTS_HELP, StarVSRPipeline, check_parts_fit,
                                                  missing_weights_help)
from star_vsr.progress import bar_options
from star_vsr.scheduling import NUM_TRAIN_TIMESTEPS, star_timesteps
from star_vsr.text import tokenize
from star_vsr.training_run import (CONFIG_FILE, TRAIN_LOG_FILE, SettingsParser, StepLosses, StopRequest,
                                   add_checkpoint_arguments, add_optimizer_arguments, bool_value, build_optimizer,
                                   check_batches_per_epoch, check_finite, check_number, check_run_settings,
                                   check_same_data, final_model_save, finishing_message, gradient_norm,
                                   data_worker_init, is_first_process, main_process_step,
                                   note_ignored_settings, optional_value, parse_with_config, path_or_none,
                                   prepare_output_dir, process_group_kwargs, record_data_id, record_final_step,
                                   record_run_settings,
                                   resume_checkpoint, resume_training, run_script, tensorboard_pattern,
                                   tracker_init_kwargs, train_steps, yaml_argument)
from star_vsr.upscale import accelerate_on_cpu

logger = get_logger(__name__)


def checkpoint_shape(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What of a run's ``settings`` shapes its checkpoints (the model built, the UNet parameters trained and held
    by the optimizer): a resumed run cannot change it, not even with ``--allow_changed_settings``
    (``star_vsr.training_run.check_resumed_settings``)."""
    return {name: settings.get(name) for name in ("tiny_model", "lora_rank", "train_unet_liem")}


#: UNet attention projections that get a LoRA with ``lora_rank > 0``.
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
#: File in each checkpoint with the trainable UNet parameters (LIEM gates, LoRA).
UNET_TRAINABLE_FILE = "unet_trainable.safetensors"
#: Folder of validation frame strips.
VALIDATION_FOLDER = "validation"
#: The fingerprint of the training data a run started on (``ClipPairDataset.fingerprint``), kept in its output
#: folder: a resume on a data folder with files added, removed or replaced is refused (``check_same_data``).
DATA_ID_NAME = "train_data.sha256"


# =============================================================================== configuration
def _yaml_value(value: str) -> Any:
    """A command-line value written in YAML: ``32``, ``[720, 1280]``, ``null`` / ``none``."""
    return None if value.strip().lower() in ("none", "null", "") else yaml_argument(value)


_yaml_value.takes_json = True  # type: ignore[attr-defined]  (a config's lists reach it as JSON, which YAML reads)


def build_parser() -> argparse.ArgumentParser:
    """Every setting of a run; a YAML ``--config`` provides defaults, flags override them."""
    parser = SettingsParser(description="Train StarVSR's ControlNet + LIEM (+ UNet LoRA) with Accelerate.",
                            path_settings=("config", "pretrained_model_name_or_path", "controlnet_model_name_or_path",
                                           "train_data", "validation_video", "output_dir"),
                            pair_settings=("crop_size", "dfl_crop_size", "frame_interval"),
                            content_settings={"train_data": DATA_ID_NAME})
    parser.add_argument("--config", type=str, default=None, help="YAML file of settings (keys = the flags below).")

    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_model_name_or_path", type=path_or_none, default=None,
                       help="StarVSR pipeline folder (model_index.json), e.g. written by `star-vsr convert-star`.")
    model.add_argument("--tiny_model", type=bool_value, nargs="?", const=True, metavar="BOOL",
                       default=False,
                       help="Build the tiny random test model (star_vsr.testing) instead of loading one.")
    model.add_argument("--controlnet_model_name_or_path", type=path_or_none, default=None,
                       help="Start from this ControlNet folder instead of the pipeline's.")
    model.add_argument("--controlnet_init", choices=("pretrained", "unet"), default="pretrained",
                       help="'pretrained': fine-tune the pipeline's ControlNet; 'unet': a fresh ControlNet copied "
                            "from the UNet encoder with zero-initialised outputs.")
    model.add_argument("--train_unet_liem", type=bool_value, nargs="?", const=True, metavar="BOOL",
                       default=True, help="Also train the UNet's LIEM gates.")
    model.add_argument("--liem_placement", choices=("pretrained", *LIEM_PLACEMENTS), default="pretrained",
                       help="Where the trained LIEM gates (the ControlNet's, and the UNet's under --train_unet_liem) "
                            "sit: 'pretrained' keeps the loaded models' placement; converted STAR checkpoints "
                            "gate before the LayerNorm, which cancels the gate (it barely trains), 'after_norm' "
                            "makes it act.")
    model.add_argument("--lora_rank", type=int, default=0, help="Rank of a LoRA on the UNet attention (0: none).")
    model.add_argument("--lora_alpha", type=optional_value(float), default=None,
                       help="LoRA alpha (default: the rank).")
    model.add_argument("--gradient_checkpointing", type=bool_value, nargs="?", const=True, metavar="BOOL",
                       default=False,
                       help="Recompute UNet / ControlNet activations in the backward pass to save memory.")
    model.add_argument("--vae_gradient_checkpointing", type=bool_value, nargs="?", const=True, metavar="BOOL",
                       default=True,
                       help="Gradient checkpointing in the VAE decoder used by the frequency loss.")
    model.add_argument("--vae_batch_size", type=int, default=8, help="Frames the VAE encodes at once.")
    model.add_argument("--vae_latents", choices=("sample", "mean"), default="sample",
                       help="Encode clips as a sample of the VAE posterior (STAR, diffusers) or its mean. Trained "
                            "VAEs have a negligible posterior spread; the random tiny VAE's is 5x its signal.")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=("video", "images"), default="video",
                      help="'video': VideoClipDataset over train_data; 'images': ImageMotionDataset over the images "
                           "in train_data (a folder) or scikit-image's bundled photos when train_data is null.")
    data.add_argument("--train_data", type=path_or_none, default=None,
                      help="Folder of videos / frame folders (captions in clip.txt beside clip.mp4), CSV clip "
                           "list (columns path,caption) or JSON one ([{\"path\": ..., \"caption\": ...}] or paths), "
                           "paths relative to the list's folder (or, --dataset images, a folder of photos).")
    data.add_argument("--num_frames", type=int, default=32, help="Frames per training clip.")
    data.add_argument("--crop_size", type=_yaml_value, default=[720, 1280], help="HR crop: int or [height, width].")
    data.add_argument("--frame_interval", type=_yaml_value, default=1,
                      help="Frame step: int or [min, max], drawn per clip and lowered for a video too short for "
                           "--num_frames frames that far apart (--dataset video; photos are filmed frame by frame).")
    data.add_argument("--scale", type=int, default=4, help="Upscaling factor (2, 3 or 4).")
    data.add_argument("--degradation", type=str, default="medium", help="'light', 'medium', 'heavy' or 'none'.")
    data.add_argument("--gt_usm", type=bool_value, nargs="?", const=True, metavar="BOOL", default=False,
                      help="Sharpen the HR clips by unsharp masking and degrade and train against those, as STAR and "
                           "Real-ESRGAN train (BasicSR's USMSharp: weight 0.5, 51x51 blur, threshold 10 levels; the "
                           "released config sets it; off by default, as runs recorded before it existed trained).")
    data.add_argument("--caption_dropout", type=float, default=0.5, help="Probability of an empty caption (CFG).")
    data.add_argument("--default_caption", type=str, default="", help="Caption of clips without one.")
    data.add_argument("--random_flip", type=bool_value, nargs="?", const=True, metavar="BOOL",
                      default=True,
                      help="Random horizontal flips (--dataset video; photos are filmed in random directions).")
    data.add_argument("--dataset_length", type=optional_value(int), default=None,
                      help="Items per epoch (default: one per source; fewer than the sources: each epoch goes "
                           "on through them where the last stopped).")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    loss = parser.add_argument_group("loss")
    loss.add_argument("--v_loss_weight", type=float, default=1.0, help="Weight w_v of the v-prediction MSE.")
    loss.add_argument("--dfl_beta", type=float, default=1.0, help="beta of b(t) = beta (1 - t/t_max); 0 turns the "
                                                                   "frequency loss (and its decode) off.")
    loss.add_argument("--dfl_alpha", type=float, default=2.0, help="alpha of c(t) = (t/t_max)^alpha.")
    loss.add_argument("--dfl_cutoff", type=optional_value(float), default=None,
                      help="Radial low-pass cutoff in cycles/pixel (default 0.5/scale, the LR Nyquist frequency).")
    loss.add_argument("--dfl_distance", choices=("l1", "l2"), default="l1", help="Distance between band images.")
    loss.add_argument("--dfl_num_frames", type=optional_value(int), default=2,
                      help="Consecutive frames per clip decoded for the frequency loss (null: all).")
    loss.add_argument("--dfl_crop_size", type=_yaml_value, default=None,
                      help="Random crop (pixels, int or [h, w], multiple of the VAE factor) decoded for the "
                           "frequency loss (null: whole frames).")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--train_batch_size", type=int, default=1, help="Clips per process per micro-batch.")
    optim.add_argument("--max_train_steps", type=train_steps, default=15000, help="Optimizer steps.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per step.")
    optim.add_argument("--learning_rate", type=float, default=5e-5, help="AdamW learning rate.")
    add_optimizer_arguments(optim, lr_scheduler="constant_with_warmup", lr_warmup_steps=0, adam_beta2=0.999,
                            adam_weight_decay=1e-2)
    optim.add_argument("--allow_tf32", type=bool_value, nargs="?", const=True, metavar="BOOL",
                       default=False, help="TF32 matmuls on Ampere+ GPUs.")
    optim.add_argument("--seed", type=int, default=0, help="Seed of everything random.")

    run = parser.add_argument_group("checkpoints, validation, logging")
    add_checkpoint_arguments(run, "runs/star", "checkpoints, settings, log, TensorBoard events, validation images, "
                                               "the model")
    run.add_argument("--validation_steps", type=int, default=500, help="Validate every N steps (0: never).")
    run.add_argument("--validation_video", type=path_or_none, default=None,
                     help="HR video for validation (degraded with a fixed seed); default: training item 0.")
    run.add_argument("--validation_prompt", type=str, default="a good video",
                     help="Prompt of the --validation_video, and of training item 0 (validated without "
                          "--validation_video) where it has no caption (--default_caption gives it one).")
    run.add_argument("--validation_num_inference_steps", type=int, default=15, help="Sampling steps of validation.")
    run.add_argument("--validation_guidance_scale", type=float, default=7.5,
                     help="Classifier-free guidance scale of validation.")
    run.add_argument("--validation_noise_level", type=int, default=900,
                     help=f"Timestep validation starts from, in [1, {NUM_TRAIN_TIMESTEPS}] (StarVSRPipeline's "
                          f"noise_level).")
    run.add_argument("--report_to", choices=("tensorboard", "all", "none"), default="tensorboard",  # (distill's)
                     help="Where scalars and validation images are logged (besides train_log.jsonl).")
    run.add_argument("--logging_dir", type=str, default="logs",
                     help="TensorBoard folder, relative to output_dir (an absolute path is used as it is).")
    run.add_argument("--tracker_project_name", type=str, default="train_star",
                     help="TensorBoard run folder inside --logging_dir.")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Settings from ``--config`` (YAML) overridden by command-line flags, checked."""
    args = parse_with_config(build_parser(), argv)
    check_args(args)
    return args


SCRIPT_WEIGHTS_HELP = missing_weights_help("pass it as --pretrained_model_name_or_path ./star-light")
"""Where to get STAR's weights, ending with this script's flag (the pipeline's own help ends with Python's)."""


def check_pretrained_folder(folder: Path) -> None:
    """``--pretrained_model_name_or_path`` checked when parsed, with this script's flag in the message: the
    pipeline's own check said where to pass weights to Python (``StarVSRPipeline.from_pretrained``) and, for a
    student folder, to load it with ``StarStudentPipeline.from_pretrained``."""
    from star_vsr.model_folder import check_pipeline_folder

    name = check_pipeline_folder(folder, "StarVSR", SCRIPT_WEIGHTS_HELP)
    if name != "StarVSRPipeline":
        raise InputError(f"--pretrained_model_name_or_path {folder} holds a {name}, not a StarVSRPipeline: this script "
                         f"trains the diffusion model (a student is trained by training/distill_student.py)")


def check_args(args: argparse.Namespace) -> None:
    """Reject contradictory or out-of-range settings with a message saying what to change."""
    if args.tiny_model == (args.pretrained_model_name_or_path is not None):
        raise InputError("give exactly one of --pretrained_model_name_or_path (a StarVSR pipeline folder) and "
                         "--tiny_model true")
    if args.pretrained_model_name_or_path is not None:
        check_pretrained_folder(Path(args.pretrained_model_name_or_path))
    if args.dataset == "video" and args.train_data is None:
        raise InputError("--dataset video needs --train_data (a folder of videos, or a CSV/JSON clip list)")
    check_writable(Path(args.output_dir) / CONFIG_FILE)  # a file where the folder should be, a read-only disk
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "num_frames", "vae_batch_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.lora_rank < 0:
        raise InputError(f"--lora_rank must be >= 0, got {args.lora_rank}")
    if args.tracker_project_name in ("", ".", "..") or Path(args.tracker_project_name).name != args.tracker_project_name:
        raise InputError(f"--tracker_project_name must be a plain folder name (it names the TensorBoard folder "
                         f"inside --logging_dir), got {args.tracker_project_name!r}")
    if args.v_loss_weight == 0 and args.dfl_beta == 0:
        raise InputError("both --v_loss_weight and --dfl_beta are 0: there would be nothing to train")
    as_size(args.crop_size, "--crop_size")
    as_frame_interval(args.frame_interval, "--frame_interval")
    # the data: here, not once the model is loaded (a full pipeline's load, on a released-size folder)
    try:
        resolve_degradation(args.degradation, args.scale)
    except InputError as error:
        raise InputError(f"--scale {args.scale} / --degradation {args.degradation}: {error}") from None
    if args.dataset == "images" and args.train_data is not None:
        training_photos(Path(args.train_data))
        nested = sorted(entry.name for entry in Path(args.train_data).iterdir()
                        if entry.is_dir() and not entry.name.startswith(".") and photos_in_folder(entry))
        if nested and is_first_process():  # (their photos were left out without a word)
            print(f"note: --train_data {args.train_data}: the photos in its subfolders are not used (only those "
                  f"directly inside it): {', '.join(nested[:3])}{' and more' if len(nested) > 3 else ''}",
                  file=sys.stderr)
    if args.dataset == "images":
        note_ignored_settings(args, build_parser(), ("frame_interval", "random_flip"),
                              "with --dataset images (photos are filmed frame by frame, in random directions)")
    if args.dataset == "video" and not Path(args.train_data).exists():
        raise InputError(f"--train_data {args.train_data} does not exist; --dataset video takes a folder of videos "
                         f"or a CSV/JSON clip list")
    if args.dfl_num_frames is not None and args.dfl_num_frames < 1:  # more than a clip has: the whole clip
        raise InputError(f"--dfl_num_frames must be >= 1 or null, got {args.dfl_num_frames}")
    if args.validation_steps and args.validation_num_inference_steps < 1:
        raise InputError(f"--validation_num_inference_steps must be >= 1, got {args.validation_num_inference_steps}")
    # the loss and the data: here, with the flags' names, not when the model is built (a negative --dfl_beta
    # turned the frequency loss off without a word; NaN weights trained on a NaN loss)
    for name in ("v_loss_weight", "dfl_beta", "dfl_alpha"):
        check_number(args, name, 0)
    check_number(args, "dfl_cutoff", 0, MAX_CUTOFF, low_open=True, optional=True)
    check_number(args, "caption_dropout", 0, 1)
    check_number(args, "dataset_length", 1, optional=True)
    check_number(args, "lora_alpha", 0, low_open=True, optional=True)
    # settings that were accepted and had no effect
    dfl_crop = None if args.dfl_crop_size is None else as_size(args.dfl_crop_size, "--dfl_crop_size")
    if dfl_crop is not None and any(d > c for d, c in zip(dfl_crop, as_size(args.crop_size))):
        raise InputError(f"--dfl_crop_size {args.dfl_crop_size} is larger than the training crop (--crop_size "
                         f"{args.crop_size}), so the loss would decode whole frames: give at most the crop, or null "
                         f"for whole frames")
    if args.lora_alpha is not None and args.lora_rank == 0:
        raise InputError(f"--lora_alpha {args.lora_alpha:g} is for a LoRA, and --lora_rank 0 trains none: give "
                         f"--lora_rank too, or leave --lora_alpha out")
    if args.controlnet_init == "unet" and args.controlnet_model_name_or_path is not None:
        raise InputError("--controlnet_init unet builds a new ControlNet from the UNet, "
                         "--controlnet_model_name_or_path loads one: give one of them (--controlnet_init pretrained "
                         "fine-tunes the loaded one)")
    if args.validation_steps:  # refused at the first validation, hours in
        check_number(args, "validation_noise_level", 1, NUM_TRAIN_TIMESTEPS)
        check_number(args, "validation_guidance_scale", 1)  # 1: no guidance; below 1 the pipeline refuses
        try:  # (the pipeline's "num_inference_steps 1000 does not fit below noise_level 900", at the first validation)
            star_timesteps(args.validation_noise_level, args.validation_num_inference_steps)
        except InputError:
            raise InputError(f"--validation_num_inference_steps {args.validation_num_inference_steps} does not fit "
                             f"below --validation_noise_level {args.validation_noise_level}: there are not as many "
                             f"distinct timesteps below it; lower the first or raise the second") from None
        if args.validation_video is not None and not Path(args.validation_video).exists():
            raise InputError(f"--validation_video {args.validation_video} does not exist")
    check_run_settings(args, build_parser(), model_folder="controlnet", checkpoint_shape=checkpoint_shape)


def run_outputs(settings: Mapping[str, Any]) -> list[str]:
    """What a run with ``settings`` writes into ``output_dir`` besides the checkpoints, settings and model of
    every training run: glob patterns relative to it, which ``--overwrite_output_dir`` deletes
    (``star_vsr.training_run.clear_old_run``)."""
    tensorboard = tensorboard_pattern(settings["logging_dir"], settings["tracker_project_name"])
    return [TRAIN_LOG_FILE, f"{VALIDATION_FOLDER}/step-*.png", LORA_FOLDER, DATA_ID_NAME, tensorboard]


def flat_config(args: argparse.Namespace) -> dict[str, Any]:
    """Settings as TensorBoard hparams accept them (numbers, strings, bools)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}


# =============================================================================== models
class StarDenoiser(nn.Module):
    """UNet + ControlNet as one module: Accelerate wraps both (DDP, autocast), one optimizer trains
    the ControlNet, the UNet's LIEM gates and its LoRA. The UNet stays in eval mode (no dropout in
    the frozen network)."""

    def __init__(self, unet: StarVSRUNetModel, controlnet: StarVSRControlNetModel) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet

    def train(self, mode: bool = True) -> "StarDenoiser":
        super().train(mode)
        self.unet.eval()
        return self

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, encoder_hidden_states: torch.Tensor,
                hint_latents: torch.Tensor) -> torch.Tensor:
        """v-prediction (b, n, c, h, w) from noisy latents and hint latents (b, n, c, h, w)."""
        residuals = self.controlnet(noisy_latents, timesteps, encoder_hidden_states, hint_latents)
        return self.unet(noisy_latents, timesteps, encoder_hidden_states,
                         down_block_additional_residuals=residuals.down_block_res_samples,
                         mid_block_additional_residual=residuals.mid_block_res_sample).sample


def load_components(args: argparse.Namespace) -> dict[str, Any]:
    """The six pipeline components: loaded from a folder or built tiny; the ControlNet per ``controlnet_init``."""
    if args.tiny_model:
        from star_vsr.testing import tiny_star_components

        # trained_controlnet=True gives the tiny UNet non-zero output convs, like a pretrained UNet
        components = tiny_star_components(seed=args.seed, trained_controlnet=True)
    else:
        try:
            components = dict(StarVSRPipeline.from_pretrained(args.pretrained_model_name_or_path).components)
        except MissingWeightsError as error:  # damaged weights, found as they load: this script's flag in the help
            raise MissingWeightsError(str(error).replace(MISSING_WEIGHTS_HELP, SCRIPT_WEIGHTS_HELP)) from error
    if args.controlnet_model_name_or_path is not None:
        components["controlnet"] = StarVSRControlNetModel.from_pretrained(args.controlnet_model_name_or_path)
    elif args.controlnet_init == "unet":
        components["controlnet"] = StarVSRControlNetModel.from_unet(components["unet"])
    # a --controlnet_model_name_or_path made for another UNet: refused here, not at step 1 with a tensor-size error
    check_parts_fit(components["vae"], components["text_encoder"], components["unet"], components["controlnet"])
    place_trained_liem_gates(components, args)
    return components


def place_trained_liem_gates(components: dict[str, Any], args: argparse.Namespace) -> None:
    """``--liem_placement`` on the gates that train: the ControlNet's, and the UNet's under ``--train_unet_liem``
    (the frozen UNet's gates keep the placement they were trained with). A warning when trained gates sit before
    the LayerNorm, which cancels them (STAR's release, kept by ``--liem_placement pretrained``)."""
    trained = {"controlnet": components["controlnet"]}
    if args.train_unet_liem:
        trained["unet"] = components["unet"]
    if args.liem_placement != "pretrained":
        for model in trained.values():
            set_liem_placement(model, args.liem_placement)
    cancelled = [name for name, model in trained.items() if model.config.liem_placement == "before_norm"]
    if cancelled:
        logger.warning(f"the {' and '.join(cancelled)} LIEM gates sit before the LayerNorm (STAR's released "
                       f"placement), which cancels them: they barely train; --liem_placement after_norm makes them "
                       f"act")


def liem_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters of every LIEM gate (``SpatialLIEM`` / ``TemporalLIEM``) inside ``module``."""
    return [p for m in module.modules() if isinstance(m, (SpatialLIEM, TemporalLIEM)) for p in m.parameters()]


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices of every peft LoRA layer inside ``module`` (none without LoRA)."""
    from peft.tuners.lora import LoraLayer

    return [p for m in module.modules() if isinstance(m, LoraLayer)
            for p in [*m.lora_A.parameters(), *m.lora_B.parameters()]]


def add_unet_lora(unet: StarVSRUNetModel, rank: int, alpha: Optional[float]) -> Any:
    """Inject a peft LoRA (B initialised to zero) into the UNet's attention projections; returns its config."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha,
                        target_modules=list(LORA_TARGET_MODULES), init_lora_weights=True)
    inject_adapter_in_model(config, unet)
    return config


def merge_unet_lora(unet: StarVSRUNetModel) -> StarVSRUNetModel:
    """Fuse every LoRA into its base layer (W <- W + scale * B A) and drop the adapters, in place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(unet.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, child = name.rsplit(".", 1)
            setattr(unet.get_submodule(parent), child, module.get_base_layer())
    return unet


def unet_trainable_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The UNet parameters being trained (LIEM gates, LoRA), by name, on the CPU."""
    return {name: p.detach().float().cpu().contiguous() for name, p in unet.named_parameters() if p.requires_grad}


def _move(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``module.to(device)``, and to ``dtype`` only when it differs (diffusers warns on every dtype cast)."""
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)
    return module


def prepare_models(args: argparse.Namespace, components: dict[str, Any], device: torch.device,
                   weight_dtype: torch.dtype) -> tuple[StarDenoiser, Any]:
    """Freeze, cast, add LoRA and choose the trainable parameters. Returns (denoiser, LoRA config or None)."""
    vae, text_encoder, unet, controlnet = (components[k] for k in ("vae", "text_encoder", "unet", "controlnet"))
    for frozen in (vae, text_encoder, unet):
        frozen.requires_grad_(False)
        _move(frozen, device, weight_dtype)
    vae.eval()
    text_encoder.eval()
    lora_config = add_unet_lora(unet, args.lora_rank, args.lora_alpha) if args.lora_rank > 0 else None
    trainable_unet = lora_parameters(unet)  # inject_adapter_in_model froze everything else
    if args.train_unet_liem:
        trainable_unet += liem_parameters(unet)
    for p in trainable_unet:
        p.data = p.data.float()  # trained weights stay in float32 (mixed precision casts per op)
        p.requires_grad_(True)
    _move(controlnet, device, torch.float32).train().requires_grad_(True)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        controlnet.enable_gradient_checkpointing()
    if args.vae_gradient_checkpointing and args.dfl_beta > 0:
        vae.enable_gradient_checkpointing()
    return StarDenoiser(unet, controlnet).train(), lora_config


# =============================================================================== data
def build_dataset(args: argparse.Namespace) -> ClipPairDataset:
    """The training dataset the settings describe."""
    common = dict(num_frames=args.num_frames, crop_size=args.crop_size, scale=args.scale,
                  degradation=args.degradation, caption_dropout=args.caption_dropout, seed=args.seed,
                  length=args.dataset_length, sharpen_gt=args.gt_usm)
    if args.dataset == "images":
        images = None if args.train_data is None else training_photos(Path(args.train_data))
        return ImageMotionDataset(images, caption=args.default_caption, **common)
    return VideoClipDataset(args.train_data, frame_interval=args.frame_interval, random_flip=args.random_flip,
                            default_caption=args.default_caption, **common)


def training_photos(folder: Path) -> list[Path]:
    """The photos of ``--train_data`` for ``--dataset images``; ``InputError`` when it is no folder of photos."""
    if not folder.is_dir():
        raise InputError(f"--train_data {folder} is not a folder; --dataset images takes a folder of photos")
    images = photos_in_folder(folder)
    if not images:
        clips = clips_in_folder(folder)  # the usual mix-up: a folder of training videos
        raise InputError(f"no photos ({'/'.join(sorted(IMAGE_EXTENSIONS))}) in {folder}" + (
            f"; it holds {len(clips)} clip{'s' if len(clips) != 1 else ''} (videos or frame folders): "
            f"train on them with --dataset video" if clips else ""))
    return images


def validation_sample(args: argparse.Namespace, dataset: ClipPairDataset) -> dict[str, Any]:
    """The fixed validation clip: ``validation_video`` degraded with the run's seed, or training item 0 of epoch 0."""
    if args.validation_video is not None:
        clips = VideoClipDataset([args.validation_video], num_frames=args.num_frames, crop_size=args.crop_size,
                                 scale=args.scale, degradation=args.degradation, random_flip=False,
                                 seed=args.seed, sharpen_gt=args.gt_usm)
        # (no --default_caption: --validation_prompt is this clip's)
        with warnings.catch_warnings():  # the one source is not a training sample to skip: said below
            warnings.simplefilter("ignore", BadSampleWarning)
            try:
                return clips[0]
            except InputError:
                reason = next(iter(clips.bad_sources.values()), "unreadable")
                raise InputError(f"--validation_video {args.validation_video} cannot give a validation clip: "
                                 f"{reason}") from None
    dataset.set_epoch(0)
    return dataset[0]


def check_crop_size(args: argparse.Namespace, unet: StarVSRUNetModel, vae_scale_factor: int) -> None:
    """The HR crop must give latents the UNet accepts (see ``StarVSRUNetModel.valid_latent_size``)."""
    crop_h, crop_w = as_size(args.crop_size, "--crop_size")
    if crop_h % vae_scale_factor or crop_w % vae_scale_factor:
        raise InputError(f"--crop_size {args.crop_size} must be a multiple of the VAE factor {vae_scale_factor}")
    latent = (crop_h // vae_scale_factor, crop_w // vae_scale_factor)
    valid = unet.valid_latent_size(*latent)
    if valid != latent:
        suggestion = []
        for axis in (0, 1):  # the next size the UNet takes whose pixels are divisible by the SR scale too
            size = list(valid)
            while unet.valid_latent_size(*size)[axis] != size[axis] or size[axis] * vae_scale_factor % args.scale:
                size[axis] += 1
            suggestion.append(size[axis] * vae_scale_factor)
        raise InputError(f"--crop_size {args.crop_size} gives {latent[0]}x{latent[1]} latents, which the UNet cannot "
                         f"take (it needs {valid[0]}x{valid[1]}); use a crop such as {suggestion}")


def batch_generator(seed: int, process_index: int, epoch: int, batch_index: int) -> torch.Generator:
    """CPU generator of one micro-batch, seeded from (seed, process, epoch, batch index) only."""
    state = np.random.SeedSequence([seed, process_index, epoch, batch_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


# =============================================================================== one step
@torch.no_grad()
def encode_frames(vae: nn.Module, frames: torch.Tensor, generator: torch.Generator, batch_size: int,
                  sample: bool = True) -> torch.Tensor:
    """VAE latents (b, n, c, h, w), scaled, of frames (b, n, 3, H, W) in [0, 1]; float32.

    ``sample``: draw from the posterior with ``generator``; False takes its mean.
    """
    b, n = frames.shape[:2]
    flat = frames.flatten(0, 1) * 2 - 1  # (b*n, 3, H, W) in [-1, 1]
    posteriors = [vae.encode(chunk.to(vae.dtype)).latent_dist for chunk in flat.split(batch_size)]
    latents = [p.sample(generator) if sample else p.mode() for p in posteriors]
    latents = torch.cat(latents).float() * vae.config.scaling_factor  # (b*n, c, h, w)
    return latents.reshape(b, n, *latents.shape[1:])


@torch.no_grad()
def encode_captions(text_encoder: nn.Module, tokenizer: Any, captions: Sequence[str],
                    device: torch.device) -> torch.Tensor:
    """OpenCLIP text embeddings (b, 77, d) of the captions."""
    return text_encoder(tokenize(tokenizer, list(captions)).to(device)).last_hidden_state


def training_losses(denoiser: nn.Module, vae: nn.Module, text_encoder: nn.Module, tokenizer: Any,
                    objective: StarDiffusionLoss, batch: dict[str, Any], generator: torch.Generator,
                    weight_dtype: torch.dtype, vae_batch_size: int, sample_latents: bool = True) -> StarLossOutput:
    """Losses of one micro-batch: encode clip and hint, noise, predict v, ``StarDiffusionLoss``.

    Args:
        batch: ``"gt"`` and ``"hint"`` (b, n, 3, H, W) in [0, 1] on the device, ``"caption"`` list of str.
        generator: CPU generator for the VAE samples, timesteps, noise and the decode window.
        sample_latents: encode with posterior samples (True) or posterior means.
    """
    gt, hint = batch["gt"], batch["hint"]
    device = gt.device
    latents = encode_frames(vae, gt, generator, vae_batch_size, sample_latents)  # (b, n, c, h, w)
    hint_latents = encode_frames(vae, hint, generator, vae_batch_size, sample_latents)  # (b, n, c, h, w)
    text = encode_captions(text_encoder, tokenizer, batch["caption"], device)  # (b, 77, d)
    timesteps = torch.randint(0, objective.num_train_timesteps, (latents.shape[0],), generator=generator).to(device)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)
    noisy = objective.add_noise(latents, noise, timesteps)  # x_t, (b, n, c, h, w)
    v_pred = denoiser(noisy.to(weight_dtype), timesteps, text.to(weight_dtype), hint_latents.to(weight_dtype))
    return objective(v_pred, latents, noise, noisy, timesteps, target_frames=gt * 2 - 1, vae=vae,
                     generator=generator)


def build_objective(args: argparse.Namespace, alphas_cumprod: torch.Tensor, vae_scale_factor: int) -> StarDiffusionLoss:
    """``StarDiffusionLoss`` from the loss settings (the frequency term off when ``dfl_beta`` is 0)."""
    frequency = None
    crop = None
    if args.dfl_beta > 0:
        frequency = DynamicFrequencyLoss(alpha=args.dfl_alpha, beta=args.dfl_beta, t_max=len(alphas_cumprod) - 1,
                                         cutoff=args.dfl_cutoff if args.dfl_cutoff is not None else 0.5 / args.scale,
                                         distance=args.dfl_distance)
        if args.dfl_crop_size is not None:
            size = (args.dfl_crop_size,) * 2 if isinstance(args.dfl_crop_size, int) else tuple(args.dfl_crop_size)
            if any(s % vae_scale_factor for s in size):
                raise InputError(f"--dfl_crop_size {args.dfl_crop_size} must be a multiple of the VAE factor "
                                 f"{vae_scale_factor}")
            crop = (size[0] // vae_scale_factor, size[1] // vae_scale_factor)
    return StarDiffusionLoss(alphas_cumprod, v_weight=args.v_loss_weight, frequency_loss=frequency,
                             decode_frames=args.dfl_num_frames, decode_crop=crop)


# =============================================================================== validation
#: The PSNR logged for a validation clip whose frames equal the ground truth (dB): a finite number in the step log
#: and TensorBoard, far above any real score.
LOGGED_PSNR_CAP = 100.0


def run_validation(args: argparse.Namespace, accelerator: Accelerator, components: dict[str, Any],
                   denoiser: StarDenoiser, sample: dict[str, Any], step: int) -> dict[str, float]:
    """Upscale the validation clip with the current weights; log PSNR/SSIM and a frame strip."""
    model = accelerator.unwrap_model(denoiser)
    pipe = StarVSRPipeline(vae=components["vae"], text_encoder=components["text_encoder"],
                           tokenizer=components["tokenizer"], unet=model.unet, controlnet=model.controlnet,
                           scheduler=components["scheduler"])
    pipe.set_progress_bar_config(disable=True)
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    model.eval()
    with torch.random.fork_rng(devices=devices), accelerator.autocast():
        frames = pipe(sample["lq"], prompt=sample["caption"] or args.validation_prompt, upscale=args.scale,
                      num_inference_steps=args.validation_num_inference_steps,
                      guidance_scale=args.validation_guidance_scale, noise_level=args.validation_noise_level,
                      generator=torch.Generator().manual_seed(args.seed), output_type="pt").frames[0]
    model.train()
    gt, hint = sample["gt"], sample["hint"]  # (n, 3, H, W)
    frames = frames[:, :, : gt.shape[-2], : gt.shape[-1]].float().cpu()
    to_np = lambda clip: clip.permute(0, 2, 3, 1).numpy()  # noqa: E731  (n, H, W, 3)
    pred_np, gt_np, border = to_np(frames), to_np(gt), args.scale  # borders of `scale` pixels are not scored
    # a frame equal to its ground truth (a flat clip: the bilinear hint of a white one) has an infinite PSNR, which
    # the step log wrote as JSON's non-standard Infinity and TensorBoard plotted as nothing (black-box hunt)
    metrics = {"val/psnr_y": min(psnr_clip(pred_np, gt_np, border, "y"), LOGGED_PSNR_CAP),
               "val/psnr_rgb": min(psnr_clip(pred_np, gt_np, border, "rgb"), LOGGED_PSNR_CAP),
               "val/psnr_y_bilinear": min(psnr_clip(to_np(hint), gt_np, border, "y"), LOGGED_PSNR_CAP)}
    if min(gt.shape[-2:]) - 2 * border >= SSIM_WINDOW:  # SSIM needs its 11x11 window inside the frame
        metrics["val/ssim_y"] = ssim_clip(pred_np, gt_np, border, "y")
    # frame strip: rows = hint, output, ground truth; columns = frames
    strip = torch.cat([torch.cat(list(clip), dim=2) for clip in (hint, frames, gt)], dim=1)  # (3, 3H, nW)
    strip = (strip.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    folder = Path(args.output_dir) / VALIDATION_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(folder / f"step-{step:06d}.png")
    if any(tracker.name == "tensorboard" for tracker in accelerator.trackers):  # (--report_to tensorboard or all)
        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        writer.add_images("validation/hint_output_gt", strip[None], step, dataformats="NHWC")
    accelerator.log(metrics, step=step)
    return metrics


# =============================================================================== saving
def save_final_pipeline(args: argparse.Namespace, components: dict[str, Any], denoiser: StarDenoiser,
                        lora_config: Any) -> None:
    """Write the trained pipeline (float32, LoRA fused into the UNet) to ``output_dir``.

    With a LoRA, the adapter alone (peft format, relative to the untrained UNet) then goes to ``unet_lora/``, which
    appears whole (a temporary folder renamed). The pipeline's save removes an earlier run's adapter when it starts
    replacing that run's model (``outputs.MODEL_RECORDS``): a run stopped in between leaves no adapter of
    another model beside this one.
    """
    output_dir = Path(args.output_dir)
    unet, controlnet = denoiser.unet, denoiser.controlnet
    adapter = None
    if lora_config is not None:
        from peft import get_peft_model_state_dict

        adapter = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
        unet = merge_unet_lora(unet.float())
    pipe = StarVSRPipeline(vae=components["vae"].float(), text_encoder=components["text_encoder"].float(),
                           tokenizer=components["tokenizer"], unet=unet.float(), controlnet=controlnet.float(),
                           scheduler=components["scheduler"])
    pipe.save_pretrained(str(output_dir))
    if adapter is not None:
        lora_dir = output_dir / LORA_FOLDER
        temp = temporary_path(lora_dir)
        try:
            temp.mkdir()
            lora_config.save_pretrained(str(temp))
            save_file(adapter, str(temp / "adapter_model.safetensors"))
            give_default_mode(temp)
            if lora_dir.is_symlink():  # (a folder saved over is replaced, a link to one is not followed)
                lora_dir.unlink()
            move_into_place(temp, lora_dir)  # in one step where it can: a kill between the rmtree and the
        finally:  # rename it was left with no adapter (review)
            remove_temporary(temp)


def register_checkpoint_hooks(accelerator: Accelerator) -> None:
    """Save the ControlNet in diffusers format and the trainable UNet parameters in each checkpoint."""

    def save_model_hook(models: list[nn.Module], weights: list[dict], output_dir: str) -> None:
        for model in models:
            model = accelerator.unwrap_model(model)
            if accelerator.is_main_process:
                model.controlnet.save_pretrained(str(Path(output_dir) / "controlnet"))
                save_file(unet_trainable_state_dict(model.unet), str(Path(output_dir) / UNET_TRAINABLE_FILE))
            if weights:
                weights.pop()  # saved above; Accelerate must not save it again

    def load_model_hook(models: list[nn.Module], input_dir: str) -> None:
        while models:
            model = accelerator.unwrap_model(models.pop())
            saved = StarVSRControlNetModel.from_pretrained(str(Path(input_dir) / "controlnet"))
            model.controlnet.load_state_dict(saved.state_dict())
            state = load_file(str(Path(input_dir) / UNET_TRAINABLE_FILE))
            result = model.unet.load_state_dict(state, strict=False)
            if result.unexpected_keys:
                raise InputError(f"{input_dir}: UNet parameters {result.unexpected_keys[:3]} do not exist in this "
                                 "model; resume with the same lora_rank / train_unet_liem settings")
            trained = {n for n, p in model.unet.named_parameters() if p.requires_grad}
            if trained != set(state):
                lacking, extra = sorted(trained - set(state)), sorted(set(state) - trained)
                what = (f"lacks trained UNet parameters {lacking[:3]}" if lacking else
                        f"trained UNet parameters {extra[:3]} that this run keeps frozen")
                raise InputError(f"{input_dir} {what}; resume with the same lora_rank / train_unet_liem settings")

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


# =============================================================================== main
@explain_out_of_memory("training", "lower --train_batch_size, --num_frames or --crop_size, turn on "
                       "--gradient_checkpointing, or train with --mixed_precision fp16 / bf16 on a GPU")
def main(args: argparse.Namespace) -> None:
    """Train the ControlNet and the UNet's LIEM gates (with ``lora_rank > 0`` also a LoRA) on
    ``w_v * L_v + b(t) * L_DF`` (steps 1-4 of the module docstring): checkpoints, the per-step log and validation
    strips go to ``args.output_dir``, and at the end the complete pipeline folder."""
    with ExitStack() as held:  # the lock on the output folder (prepare_output_dir), until the run ends
        _train(args, held)


def _train(args: argparse.Namespace, held: ExitStack) -> None:
    output_dir = Path(args.output_dir)
    resume_path = resume_checkpoint(output_dir, args.resume_from_checkpoint)  # None: a new run
    accelerator = Accelerator(
        cpu=accelerate_on_cpu(),  # several processes on a machine without a GPU: one gloo group, not lone runs
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir),
                                            logging_dir=str(output_dir / args.logging_dir)),
        kwargs_handlers=[process_group_kwargs()])  # (the others wait while the main process validates)
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":  # accelerate launch --cpu on a
        # machine with a GPU, which check_run_settings' fp16 check lets through
        raise InputError("mixed precision fp16 needs a CUDA GPU, and this run is on the CPU; pass "
                         "--mixed_precision bf16 or no on the CPU")
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    set_seed(args.seed)  # global RNGs: LoRA initialisation, dropout
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True

    # 1. Models: frozen VAE / text encoder / UNet in the mixed-precision dtype; trainable parts in float32
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    components = load_components(args)
    denoiser, lora_config = prepare_models(args, components, accelerator.device, weight_dtype)
    vae, text_encoder, tokenizer = components["vae"], components["text_encoder"], components["tokenizer"]
    vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    check_crop_size(args, components["unet"], vae_scale_factor)
    objective = build_objective(args, components["scheduler"].alphas_cumprod, vae_scale_factor).to(accelerator.device)
    register_checkpoint_hooks(accelerator)

    # 2. Data: order fixed by (seed, epoch), samples by (seed, epoch, index)
    dataset = build_dataset(args)
    data_id = dataset.fingerprint()
    check_same_data(resume_path, DATA_ID_NAME, data_id, f"--train_data {args.train_data} changed since this run "
                    f"started (files added, removed or replaced; a copy with new modification times counts)",
                    args.allow_changed_settings, also=[dataset.fingerprint(as_given=True)] if resume_path else [])
    check_batches_per_epoch(len(dataset), args, accelerator.num_processes)
    validation: list[Any] = [None]  # the validation clip, the main process's

    def check_data_then_prepare_output() -> None:
        validation[0] = validation_sample(args, dataset) if args.validation_steps else None
        if validation[0] is None or args.validation_video is not None:
            dataset[0]  # a dataset without one usable clip fails here, not in the first step
        # only now: a run refused above leaves no folder behind
        prepare_output_dir(args, resume_path, run_outputs, held)

    main_process_step(accelerator, check_data_then_prepare_output)  # (each step's failure stops every process)
    val_sample = validation[0]
    sampler = EpochShuffleSampler(len(dataset), seed=args.seed)
    dataloader = DataLoader(dataset, batch_size=args.train_batch_size, sampler=sampler, drop_last=True,
                            num_workers=args.dataloader_num_workers, worker_init_fn=data_worker_init,
                            generator=torch.Generator().manual_seed(args.seed))

    # 3. Optimizer and schedule
    params = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer, lr_scheduler = build_optimizer(params, args, accelerator.num_processes)
    denoiser, optimizer, dataloader, lr_scheduler = accelerator.prepare(denoiser, optimizer, dataloader, lr_scheduler)
    updates_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(args.max_train_steps / updates_per_epoch)

    # 4. Resume
    global_step = resume_training(accelerator, resume_path, optimizer, lr_scheduler, args)
    if accelerator.is_main_process:  # after the checkpoint loads: one that does not leaves no tracker run behind
        accelerator.init_trackers(args.tracker_project_name, config=flat_config(args),
                                  init_kwargs=tracker_init_kwargs(resume_path))
        record_run_settings(args, build_parser(), resume_path,
                            data_ids={"train_data": (data_id, dataset.fingerprint(as_given=True))})
        record_data_id(output_dir, resume_path, DATA_ID_NAME, data_id)
    first_epoch = global_step // updates_per_epoch
    if global_step >= args.max_train_steps:  # stopped after its last checkpoint, before the final model was written
        accelerator.print(finishing_message(resume_path, args.max_train_steps))
        num_epochs = first_epoch  # no epoch left to run
    batches_done = (global_step - first_epoch * updates_per_epoch) * args.gradient_accumulation_steps

    log_file = output_dir / TRAIN_LOG_FILE
    if accelerator.is_main_process:
        truncate_log(log_file, global_step)

    logger.info(f"{len(dataset)} clips, {num_epochs} epochs, {args.max_train_steps} steps, "
                f"{sum(p.numel() for p in params):,} trainable parameters")
    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="Steps",
                    disable=not accelerator.is_local_main_process, **bar_options())
    step_losses = StepLosses(summed=("num_skipped",))
    skips_said: set[str] = set()  # training sources the DataLoader workers skipped, warned of once

    # 5. Training loop
    with StopRequest(announce=accelerator.is_main_process) as stop:
        for epoch in range(first_epoch, num_epochs):
            dataset.set_epoch(epoch)
            dataloader.set_epoch(epoch)
            skip = batches_done if epoch == first_epoch else 0
            loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            loader.set_epoch(epoch)
            for batch_index, batch in enumerate(loader, start=skip):
                report_skips(batch["unreported_skips"], skips_said)
                generator = batch_generator(args.seed, accelerator.process_index, epoch, batch_index)
                with accelerator.accumulate(denoiser):
                    out = training_losses(denoiser, vae, text_encoder, tokenizer, objective, batch, generator,
                                          weight_dtype, args.vae_batch_size, args.vae_latents == "sample")
                    diverged = partial(check_finite, accelerator, step=global_step + 1,
                                       checkpointing=args.checkpointing_steps is not None)
                    diverged(out.loss, "loss")
                    accelerator.backward(out.loss)
                    if accelerator.sync_gradients:
                        diverged(gradient_norm(accelerator, params, args.max_grad_norm), "gradient norm")
                    step_lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (logged: the scheduler's
                    optimizer.step()  # get_last_lr() after its step below is the next step's)
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                step_losses.add({"loss": out.loss, "loss_v": out.loss_v, "loss_dfl": out.loss_dfl,
                                 "loss_low": out.loss_low, "loss_high": out.loss_high,
                                 "num_skipped": batch["num_skipped"].sum().float().to(out.loss.device)})
                if not accelerator.sync_gradients:
                    continue

                # one optimizer step done
                global_step += 1
                progress.update(1)
                logs = step_losses.means(accelerator)
                logs["lr"] = step_lr
                progress.set_postfix(loss=f"{logs['loss']:.4f}")
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    with log_file.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps({"step": global_step, **logs}) + "\n")
                # validation first: a run stopped at this step (which a resume goes on after) still validates it
                if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
                    metrics = run_validation(args, accelerator, components, denoiser, val_sample, global_step)
                    logger.info(f"step {global_step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
                stop.checkpoint_or_stop(accelerator, output_dir, global_step, args.max_train_steps,
                                        args.checkpointing_steps, args.checkpoints_total_limit, progress)
                if global_step >= args.max_train_steps:
                    break
            if global_step >= args.max_train_steps:
                break
    progress.close()

    # 6. Final weights: a complete pipeline folder
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with final_model_save():
            save_final_pipeline(args, components, accelerator.unwrap_model(denoiser), lora_config)
        record_final_step(output_dir, global_step)
        logger.info(f"Saved the trained pipeline to {output_dir}; load it with StarVSRPipeline.from_pretrained")
    accelerator.end_training()


def truncate_log(log_file: Path, global_step: int) -> None:
    """Keep only the log lines of steps up to ``global_step`` (a resumed run re-logs the steps after it), and none
    that cannot be read: a line cut short by a kill or a full disk made every resume stop on a JSONDecodeError."""
    if not log_file.is_file():
        return
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [line for line in lines if (step := _logged_step(line)) is not None and step <= global_step]
    log_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _logged_step(line: str) -> Optional[int]:
    """The step of a ``train_log.jsonl`` line; None for a line that is not a whole log entry."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError, OverflowError):  # (JSONDecodeError is a ValueError; step Infinity)
        return None


if __name__ == "__main__":
    run_script(Path(__file__).name, lambda: main(parse_args()))
