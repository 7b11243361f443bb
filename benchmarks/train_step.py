"""Cost of one StarVSR training step.

1. Tiny config on this CPU (``configs/train_star_tiny.yaml``: 4 frames of 32x32, x4): optimizer
   steps per second and peak resident memory, with and without the dynamic frequency loss
   (each in a fresh process; the DFL term decodes ``dfl_num_frames`` frames with gradient).
2. Released size on the meta device (no memory, no weights): FLOPs of one training step
   (ControlNet + UNet forward and backward, the VAE decode of the DFL frames forward and
   backward) for 8 frames of 320x512, so GPU time can be estimated.

    python benchmarks/train_step.py [--steps 10] [--frames 8 --height 320 --width 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

VAE_SCALE = 8  # SVD VAE


def tiny_child(steps: int, dfl: bool) -> dict:
    import train_star

    args = train_star.parse_args(["--config", str(ROOT / "configs" / "train_star_tiny.yaml"), "--output_dir",
                                  "/nonexistent", "--dfl_beta", "1.0" if dfl else "0.0", "--dataset_length", "64"])
    torch.manual_seed(0)
    components = train_star.load_components(args)
    device = torch.device("cpu")
    denoiser, _ = train_star.prepare_models(args, components, device, torch.float32)
    objective = train_star.build_objective(args, components["scheduler"].alphas_cumprod,
                                           2 ** (len(components["vae"].config.block_out_channels) - 1))
    params = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    dataset = train_star.build_dataset(args)
    batches = [dataset[i] for i in range(steps + 2)]

    def step(i: int) -> None:
        item = batches[i]
        batch = {"gt": item["gt"][None], "hint": item["hint"][None], "caption": [item["caption"]]}
        out = train_star.training_losses(denoiser, components["vae"], components["text_encoder"],
                                         components["tokenizer"], objective, batch,
                                         torch.Generator().manual_seed(i), torch.float32, args.vae_batch_size)
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()

    for i in range(2):  # warm-up
        step(i)
    start = time.perf_counter()
    for i in range(2, steps + 2):
        step(i)
    seconds = time.perf_counter() - start
    return {"dfl": dfl, "steps_per_s": steps / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def released_training_flops(frames: int, height: int, width: int, dfl_frames: int) -> dict[str, float]:
    from diffusers import AutoencoderKLTemporalDecoder
    from diffusers.utils import logging as diffusers_logging
    from torch.utils.flop_counter import FlopCounterMode

    from star_vsr.conversion import released_unet_config
    from star_vsr.models import StarVSRControlNetModel, StarVSRUNetModel, valid_latent_size

    diffusers_logging.set_verbosity_error()
    with torch.device("meta"):
        unet = StarVSRUNetModel.from_config(released_unet_config(liem_placement="after_norm"))
        controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False)
        lh, lw = valid_latent_size(-(-height // VAE_SCALE), -(-width // VAE_SCALE), unet.num_downsamples)
        x = torch.randn(1, frames, 4, lh, lw)
        hint = torch.randn_like(x)
        text = torch.randn(1, 77, 1024)
        t = torch.tensor([500])
    unet.requires_grad_(False)
    counts = {}
    counter = FlopCounterMode(display=False)
    with counter, torch.device("meta"):  # tensors created inside the forward/backward stay on meta
        res = controlnet(x, t, text, hint)
        v = unet(x, t, text, down_block_additional_residuals=res.down_block_res_samples,
                 mid_block_additional_residual=res.mid_block_res_sample).sample
        v.float().square().mean().backward()
    counts["controlnet+unet fwd+bwd"] = counter.get_total_flops()
    # diffusers' temporal VAE decoder does not run on the meta device (its time mixer makes CPU
    # tensors), so it runs for real on the CPU with random weights: the FLOPs do not depend on them
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(128, 256, 512, 512),
                                       down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2)
    vae.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    with counter:
        z = torch.randn(dfl_frames, 4, lh, lw, requires_grad=True)
        frames_out = vae.decode(z, num_frames=dfl_frames).sample
        frames_out.square().mean().backward()
    counts[f"vae decode of {dfl_frames} DFL frames fwd+bwd"] = counter.get_total_flops()
    counts["latent"] = (lh, lw)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dfl-frames", type=int, default=2, help="frames the DFL term decodes with gradient")
    parser.add_argument("--child", choices=("dfl", "no-dfl"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(tiny_child(args.steps, args.child == "dfl")))
        return

    print(f"tiny config (configs/train_star_tiny.yaml), CPU, {torch.get_num_threads()} threads, "
          f"{args.steps} timed steps after 2 warm-up steps")
    print(f"{'DFL term':>9}  {'steps/s':>8}  {'peak RSS (MiB)':>15}")
    for mode in ("no-dfl", "dfl"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{'on' if r['dfl'] else 'off':>9}  {r['steps_per_s']:>8.2f}  {r['peak_rss_mib']:>15.1f}")

    counts = released_training_flops(args.frames, args.height, args.width, args.dfl_frames)
    lh, lw = counts.pop("latent")
    print(f"\nreleased size, one training step, batch 1, {args.frames} frames of {args.height}x{args.width} "
          f"(latent {lh}x{lw}, padded to a size the UNet accepts), fp32 FLOP count:")
    total = 0
    for name, flops in counts.items():
        total += flops
        print(f"  {name:<40} {flops / 1e12:8.1f} TFLOPs")
    print(f"  {'total':<40} {total / 1e12:8.1f} TFLOPs  (~{total / 1e12 / 300:.2f} s at 300 TFLOP/s sustained "
          f"bf16 on an H100-class GPU, before efficiency losses)")


if __name__ == "__main__":
    main()
