"""Cost of one StarVSR training step (training/train_star.py), on this CPU and at released size.

1. Tiny config on the CPU (``configs/train_star_tiny.yaml``: 4 frames of 32x32, x4, batch 1):
   optimizer steps per second and peak resident memory, with the dynamic frequency loss on
   (``dfl_beta 1``: 2 frames decoded with gradient) and off (``dfl_beta 0``: no decode). Each
   setting runs in a fresh process; the batches are built beforehand, so the numbers are the
   model step alone (data loading runs in DataLoader workers during training; its cost per clip
   is printed too).
2. Released size on the meta device (no memory, no weights): FLOPs of one training step of the
   real ``training_losses`` + backward with the settings of ``configs/train_star_released.yaml``
   (gradient checkpointing on, so recomputed forwards are counted), split by component, for a
   batch of one clip of ``--frames`` frames of ``--height`` x ``--width``. The released UNet
   needs latent heights of 2 (mod 8), so 320x512 frames run at the next valid size, 336x512,
   as the pipeline pads them. The FFTs of the frequency loss and element-wise ops are not
   counted (they are far below 1 % of the total).

    python benchmarks/train_step.py [--steps 8 --repeats 3] [--frames 8 --height 320 --width 512]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from star_vsr.benchmarking import refuse_below
from star_vsr.data.base import as_size

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "train_star_tiny.yaml"
RELEASED_CONFIG = ROOT / "configs" / "train_star_released.yaml"
#: Spatial downsampling of Stable Video Diffusion's VAE.
SVD_VAE_FACTOR = 8
#: Steps run before timing starts (first-call allocations, oneDNN kernel selection).
WARMUP_STEPS = 2
#: Sustained dense bf16 throughput assumed for the GPU-time estimate (an H100 SXM reaches
#: ~990 TFLOP/s peak; well-tuned convolution-heavy training sustains roughly 30-40 % of it).
ASSUMED_GPU_TFLOPS = 350.0


def load_train_star():
    spec = importlib.util.spec_from_file_location("train_star", ROOT / "training" / "train_star.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --------------------------------------------------------------------------------- 1. tiny, CPU
def tiny_child(steps: int, repeats: int, dfl: bool) -> dict:
    """Time ``steps`` optimizer steps of the tiny config ``repeats`` times in this (fresh) process; keep the fastest."""
    from torch.utils.data import default_collate

    ts = load_train_star()
    args = ts.parse_args(["--config", str(TINY_CONFIG), "--dfl_beta", "1.0" if dfl else "0.0",
                          "--dataset_length", str(steps + WARMUP_STEPS)])
    components = ts.load_components(args)
    denoiser, _ = ts.prepare_models(args, components, torch.device("cpu"), torch.float32)
    vae_factor = 2 ** (len(components["vae"].config.block_out_channels) - 1)
    objective = ts.build_objective(args, components["scheduler"].alphas_cumprod, vae_factor)
    params = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    dataset = ts.build_dataset(args)
    start = time.perf_counter()
    batches = [default_collate([dataset[i]]) for i in range(len(dataset))]
    data_seconds = (time.perf_counter() - start) / len(dataset)
    rss_before = peak_rss_mib()

    def step(i: int) -> None:
        out = ts.training_losses(denoiser, components["vae"], components["text_encoder"], components["tokenizer"],
                                 objective, batches[i], ts.batch_generator(args.seed, 0, 0, i), torch.float32,
                                 args.vae_batch_size, args.vae_latents == "sample")
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(WARMUP_STEPS):
        step(i)
    seconds = float("inf")
    for _ in range(repeats):  # the fastest repeat is the one least disturbed by other work on the machine
        start = time.perf_counter()
        for i in range(WARMUP_STEPS, WARMUP_STEPS + steps):
            step(i)
        seconds = min(seconds, time.perf_counter() - start)
    return {"dfl": dfl, "steps_per_s": steps / seconds, "rss_models_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
            "data_s_per_clip": data_seconds, "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------- 2. released, meta
def released_step_flops(frames: int, height: int, width: int) -> tuple[dict[str, float], tuple[int, int], dict]:
    """FLOPs of one released-size training step by component, the latent size, and the DFL settings."""
    from diffusers import AutoencoderKLTemporalDecoder
    from diffusers.utils import logging as diffusers_logging
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextModel

    from star_vsr.conversion.star_checkpoint import released_unet_config
    from star_vsr.models import StarVSRControlNetModel, StarVSRUNetModel, valid_latent_size
    from star_vsr.scheduling import make_star_scheduler
    from star_vsr.text import build_openclip_tokenizer, openclip_vit_h14_text_config

    diffusers_logging.set_verbosity_error()
    ts = load_train_star()
    args = ts.parse_args(["--config", str(RELEASED_CONFIG), "--pretrained_model_name_or_path", "meta",
                          "--train_data", "meta", "--num_frames", str(frames), "--mixed_precision", "no"])
    meta = torch.device("meta")
    with meta:
        unet = StarVSRUNetModel.from_config(released_unet_config(liem_placement="after_norm"))
        controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False)
        vae = AutoencoderKLTemporalDecoder(block_out_channels=(128, 256, 512, 512),  # Stable Video Diffusion's
                                           down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2)
        text_encoder = CLIPTextModel(openclip_vit_h14_text_config())
    vae.to(meta)  # its AlphaBlender builds mix_factor with torch.Tensor([...]), which ignores the device context
    components = {"unet": unet, "controlnet": controlnet, "vae": vae, "text_encoder": text_encoder,
                  "tokenizer": build_openclip_tokenizer(), "scheduler": make_star_scheduler()}
    denoiser, _ = ts.prepare_models(args, components, meta, torch.float32)
    objective = ts.build_objective(args, components["scheduler"].alphas_cumprod, SVD_VAE_FACTOR).to(meta)
    latent = valid_latent_size(-(-height // SVD_VAE_FACTOR), -(-width // SVD_VAE_FACTOR), unet.num_downsamples)
    pixels = (latent[0] * SVD_VAE_FACTOR, latent[1] * SVD_VAE_FACTOR)
    clip = torch.rand(1, frames, 3, *pixels, device=meta)  # (b, n, 3, H, W)
    batch = {"gt": clip, "hint": clip.clone(), "caption": ["a video"]}

    # one counter per component, by wrapping the component calls the step makes
    counts: dict[str, float] = {}
    counter = FlopCounterMode(display=False)

    def counted(name, fn):
        def wrapper(*a, **k):
            before = counter.get_total_flops()
            result = fn(*a, **k)
            counts[name] = counts.get(name, 0.0) + counter.get_total_flops() - before
            return result
        return wrapper

    vae.encode = counted("VAE encode (clip + hint)", vae.encode)
    vae.decode = counted("VAE decode for the DFL (forward)", vae.decode)
    text_encoder.forward = counted("text encoder", text_encoder.forward)
    denoiser.forward = counted("ControlNet + UNet (forward)", denoiser.forward)
    with counter:
        out = ts.training_losses(denoiser, vae, text_encoder, components["tokenizer"], objective, batch,
                                 torch.Generator().manual_seed(0), torch.float32, args.vae_batch_size,
                                 sample_latents=False)
        forward_total = counter.get_total_flops()
        out.loss.backward()
    counts["backward (ControlNet, UNet input grads, VAE decoder input grads; checkpointed forwards)"] = (
        counter.get_total_flops() - forward_total)
    # what the step decodes (a clip has no more frames, no larger frames)
    decoded = frames if args.dfl_num_frames is None else min(args.dfl_num_frames, frames)
    crop = None if args.dfl_crop_size is None else [min(c, p) for c, p in zip(as_size(args.dfl_crop_size), pixels)]
    settings = {"dfl_num_frames": decoded, "dfl_crop_size": crop or "whole frames",
                "gradient_checkpointing": args.gradient_checkpointing}
    return counts, latent, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps of the tiny config (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the tiny steps; the fastest counts")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--child", choices=("dfl", "no-dfl"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    refuse_below(parser, args, {"steps": 1, "repeats": 1, "frames": 1, "height": 1, "width": 1})
    if args.child:
        print(json.dumps(tiny_child(args.steps, args.repeats, args.child == "dfl")))
        return

    rows = []
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}  # what the training scripts set unless it is set
    for mode in ("no-dfl", "dfl"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps),
                              "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"tiny config ({TINY_CONFIG.relative_to(ROOT)}), CPU with {rows[0]['threads']} threads, "
          f"OMP_WAIT_POLICY {env['OMP_WAIT_POLICY']}, fastest of {args.repeats} x {args.steps} timed steps after "
          f"{WARMUP_STEPS} warm-up steps, one process per row")
    print(f"{'DFL term':>9}  {'steps/s':>8}  {'RSS before steps (MiB)':>23}  {'peak RSS (MiB)':>15}  "
          f"{'data (s/clip)':>14}")
    for r in rows:
        print(f"{'on' if r['dfl'] else 'off':>9}  {r['steps_per_s']:>8.2f}  {r['rss_models_mib']:>23.0f}  "
              f"{r['peak_rss_mib']:>15.0f}  {r['data_s_per_clip']:>14.3f}")

    counts, latent, settings = released_step_flops(args.frames, args.height, args.width)
    h, w = latent[0] * SVD_VAE_FACTOR, latent[1] * SVD_VAE_FACTOR
    print(f"\nreleased size ({RELEASED_CONFIG.relative_to(ROOT)}), one training step, batch 1, {args.frames} frames "
          f"of {args.height}x{args.width} run at {h}x{w} (latent {latent[0]}x{latent[1]}); DFL decodes "
          f"{settings['dfl_num_frames']} frames, crop {settings['dfl_crop_size']}; gradient checkpointing "
          f"{'on' if settings['gradient_checkpointing'] else 'off'}:")
    total = sum(counts.values())
    for name, flops in counts.items():
        print(f"  {name:<90} {flops / 1e12:8.2f} TFLOP")
    print(f"  {'total':<90} {total / 1e12:8.2f} TFLOP")
    print(f"  ~{total / 1e12 / ASSUMED_GPU_TFLOPS:.2f} s per step at an assumed {ASSUMED_GPU_TFLOPS:.0f} TFLOP/s "
          f"sustained (bf16/fp16, H100-class GPU)")


if __name__ == "__main__":
    main()
