"""Size and cost of the released-size StarVSR model, computed on the meta device (no weights, no memory).

Prints parameters per component, FLOPs per denoising step (UNet + ControlNet, classifier-free
guidance = batch 2) for one 32-frame window of 180x320 -> 720x1280, and the peak activation
memory of one window under several chunk / tile settings, measured by tracking every tensor the
forward pass creates and frees (meta tensors carry sizes, so nothing is allocated). Attention is
counted as a fused kernel (flash / memory-efficient attention on GPUs, which never materialise
the softmax matrix): only its output is allocated.

    python benchmarks/pipeline_cost.py [--frames 32] [--height 720 --width 1280] [--dtype fp16]
"""

from __future__ import annotations

import argparse
import contextlib
import weakref
from typing import Iterable
from unittest import mock

import torch
import torch.nn.functional as F
from diffusers.utils import logging as diffusers_logging
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from star_vsr.benchmarking import refuse_below
from star_vsr.conversion import released_unet_config
from star_vsr.models import StarVSRControlNetModel, StarVSRUNetModel, valid_latent_size
from star_vsr.text import openclip_vit_h14_text_config

VAE_SCALE = 8  # SVD VAE downsampling
TEXT_TOKENS = 77


class PeakLiveBytes(TorchDispatchMode):
    """Tracks bytes of live tensor storages created inside the mode; ``peak`` is the high-water mark. Storages
    of the ``weights`` (the models' parameters and buffers) are not counted: a view of one (``aten.t`` of a
    linear layer's weight) shares its storage, which the tracker counted as new, live to the end (1.6 GiB of a
    "weights excluded" peak, a black-box check found)."""

    def __init__(self, weights: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()
        self._weights = {weight.untyped_storage()._cdata for weight in weights}  # the storages' C identities

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage._cdata in self._weights:
            return
        key = id(storage)
        if key in self._seen:
            return
        self._seen.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(key=key, size=size) -> None:
            self.live -= size
            self._seen.discard(key)

        weakref.finalize(storage, release)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


@contextlib.contextmanager
def fused_attention():
    """Replace SDPA by its output allocation, as a fused GPU kernel behaves memory-wise."""

    def sdpa(q, k, v, *args, **kwargs):
        return torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)

    with mock.patch.object(F, "scaled_dot_product_attention", sdpa):
        yield


def build_models(dtype: torch.dtype):
    with torch.device("meta"):
        unet = StarVSRUNetModel.from_config(released_unet_config()).to(dtype).eval()
        controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False).to(dtype).eval()
    return unet, controlnet


def component_parameters() -> dict[str, int]:
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPTextModel

    unet, controlnet = build_models(torch.float32)
    with torch.device("meta"):
        text = CLIPTextModel(openclip_vit_h14_text_config())
        vae = AutoencoderKLTemporalDecoder(  # Stable Video Diffusion's VAE config
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            layers_per_block=2, latent_channels=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"unet": count(unet), "controlnet": count(controlnet), "text_encoder (OpenCLIP ViT-H-14, 23 layers)":
            count(text), "vae (SVD temporal decoder)": count(vae)}


def window_forward(unet, controlnet, frames: int, latent_h: int, latent_w: int, dtype: torch.dtype) -> None:
    batch = 2  # classifier-free guidance: negative + positive prompt
    with torch.device("meta"):
        x = torch.randn(batch, frames, 4, latent_h, latent_w, dtype=dtype)
        hint = torch.randn_like(x)
        text = torch.randn(batch, TEXT_TOKENS, 1024, dtype=dtype)
        t = torch.tensor([500] * batch)
    with torch.no_grad():
        res = controlnet(x, t, text, hint)
        unet(x, t, text, down_block_additional_residuals=res.down_block_res_samples,
             mid_block_additional_residual=res.mid_block_res_sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--height", type=int, default=720, help="output height")
    parser.add_argument("--width", type=int, default=1280, help="output width")
    parser.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    args = parser.parse_args()
    refuse_below(parser, args, {"frames": 1, "height": 1, "width": 1})
    diffusers_logging.set_verbosity_error()  # silence the "cast with to()" notice for meta models
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]

    print("parameters")
    total = 0
    for name, n in component_parameters().items():
        total += n
        print(f"  {name:<45} {n / 1e6:10.1f} M")
    print(f"  {'total':<45} {total / 1e6:10.1f} M")

    unet, controlnet = build_models(dtype)
    lh, lw = valid_latent_size(-(-args.height // VAE_SCALE), -(-args.width // VAE_SCALE), unet.num_downsamples)
    counter = FlopCounterMode(display=False)
    with counter:
        window_forward(unet, controlnet, args.frames, lh, lw, dtype)
    flops = counter.get_total_flops()
    print(f"\nFLOPs per denoising step, {args.frames} frames of {args.height}x{args.width} (latent {lh}x{lw}), "
          f"CFG batch 2, UNet + ControlNet: {flops / 1e12:.1f} TFLOPs ({flops / 2e12:.1f} TMACs)")
    print(f"  15 steps: {15 * flops / 1e15:.2f} PFLOPs for {args.frames} frames")

    print(f"\npeak activation memory of one window ({args.dtype}, CFG batch 2, no grad; weights excluded)")
    settings = [
        ("chunk 32, whole frame", 32, None),
        ("chunk 16, whole frame", 16, None),
        ("chunk 32, tile 512 px", 32, 512),
        ("chunk 16, tile 512 px", 16, 512),
        ("chunk 8, tile 384 px", 8, 384),
    ]
    for label, chunk, tile in settings:
        frames = min(chunk, args.frames)
        th, tw = (lh, lw) if tile is None else valid_latent_size(tile // VAE_SCALE, tile // VAE_SCALE,
                                                                   unet.num_downsamples)
        th, tw = min(th, lh), min(tw, lw)
        tracker = PeakLiveBytes(t for m in (unet, controlnet) for t in (*m.parameters(), *m.buffers()))
        with fused_attention(), tracker:
            window_forward(unet, controlnet, frames, th, tw, dtype)
        print(f"  {label:<24} latent window {frames}x{th}x{tw}: {tracker.peak / 2 ** 30:7.2f} GiB")
    weights = sum(p.numel() * p.element_size() for m in (unet, controlnet) for p in m.parameters())
    print(f"  (+ UNet + ControlNet weights: {weights / 2 ** 30:.2f} GiB in {args.dtype})")


if __name__ == "__main__":
    main()
