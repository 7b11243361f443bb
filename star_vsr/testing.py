"""Tiny random pipelines for tests, benchmarks and smoke tests: no files, no downloads, seconds on a CPU.

The components have the real classes and wiring of a full ``StarVSRPipeline`` (OpenCLIP
tokenizer, CLIP text encoder, SVD temporal VAE, STAR UNet + ControlNet, STAR scheduler) at toy
widths: 2 attention heads x 8 dims, two levels, a 2x VAE. Their outputs are noise-like, so use
them to exercise code paths, shapes, memory and speed, never quality.

A few helpers of the tests live here too: ``ctrl_c_in_optimizer_step``, ``safetensors_modes`` and
``code_running_pickle``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch
from diffusers import AutoencoderKLTemporalDecoder
from transformers import CLIPTextModel

from .models import StarVSRControlNetModel, StarVSRUNetModel
from .scheduling import make_star_scheduler
from .text import build_openclip_tokenizer, openclip_vit_h14_text_config

if TYPE_CHECKING:
    from star_vsr.pipelines.pipeline_star_vsr import StarVSRPipeline

#: Width of the tiny text encoder (= cross-attention width of the tiny UNet).
TINY_TEXT_WIDTH = 16

TINY_UNET_CONFIG: dict[str, Any] = dict(
    block_out_channels=(16, 32), layers_per_block=1, attention_levels=(True, False), attention_head_dim=8,
    temporal_in_heads=2, cross_attention_dim=TINY_TEXT_WIDTH, norm_num_groups=4, dropout=0.0,
    liem_placement="after_norm",
)


def tiny_vae() -> AutoencoderKLTemporalDecoder:
    """SVD's temporal-decoder VAE at toy size: 2x spatial downsampling, 4 latent channels."""
    return AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        layers_per_block=1, latent_channels=4)


def tiny_text_encoder() -> CLIPTextModel:
    """OpenCLIP-style text tower with 2 layers x 2 heads x 8 dims (full 49,408-token vocabulary)."""
    config = openclip_vit_h14_text_config(hidden_size=TINY_TEXT_WIDTH, intermediate_size=4 * TINY_TEXT_WIDTH,
                                          num_hidden_layers=2, num_attention_heads=2,
                                          projection_dim=TINY_TEXT_WIDTH)
    return CLIPTextModel(config)


def _randomize_zero_parameters(model: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    """Give zero-initialised parameters small random values so every path carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)


def tiny_star_components(seed: int = 0, trained_controlnet: bool = True) -> dict[str, Any]:
    """The six components of a tiny ``StarVSRPipeline``, seeded.

    Args:
        seed: seeds every random weight.
        trained_controlnet: give the ControlNet's zero-initialised convs (and every other zero
            parameter) small random values, as training would; False leaves a fresh ControlNet.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = StarVSRUNetModel(**TINY_UNET_CONFIG)
        controlnet = StarVSRControlNetModel.from_unet(unet)
        vae = tiny_vae()
        text_encoder = tiny_text_encoder()
    if trained_controlnet:
        _randomize_zero_parameters(unet, generator, scale=0.05)
        _randomize_zero_parameters(controlnet, generator, scale=0.05)
    return {
        "vae": vae.eval(), "text_encoder": text_encoder.eval(), "tokenizer": build_openclip_tokenizer(),
        "unet": unet.eval(), "controlnet": controlnet.eval(), "scheduler": make_star_scheduler(),
    }


def tiny_star_pipeline(seed: int = 0, trained_controlnet: bool = True) -> "StarVSRPipeline":
    """A complete ``StarVSRPipeline`` from tiny random components (no files, no network)."""
    from star_vsr.pipelines.pipeline_star_vsr import StarVSRPipeline

    pipe = StarVSRPipeline(**tiny_star_components(seed, trained_controlnet))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ctrl_c_in_optimizer_step(monkeypatch: Any, step: int) -> None:
    """Make the ``step``-th ``torch.optim.AdamW.step`` call raise a real SIGINT before it updates, as a
    Ctrl-C in the middle of that training step would (``monkeypatch``: pytest's fixture)."""
    import signal

    real_step, calls = torch.optim.AdamW.step, []

    def step_then_ctrl_c(self: torch.optim.AdamW, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == step:
            signal.raise_signal(signal.SIGINT)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_ctrl_c)


def safetensors_modes(folder: Union[str, Path]) -> set[int]:
    """The permission bits of every ``.safetensors`` file under ``folder`` (an empty set: none there)."""
    return {path.stat().st_mode & 0o777 for path in Path(folder).rglob("*.safetensors")}


class _CreatesFile:
    """Unpickled, it creates the file ``path`` (``open(path, "w")``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


class _RunsShell:
    """Unpickled, it runs the shell command ``true`` (``os.system``: the usual payload, which torch's safe unpickler
    refuses with another message than other objects)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("true",))


def code_running_pickle(marker: Union[str, Path, None] = None) -> bytes:
    """A pickle (protocol 2, torch.load's) that runs code when unpickled whole: it creates ``marker`` (which a test
    then checks is absent), or without one runs a shell command, as a malicious weight file would."""
    import pickle

    return pickle.dumps(_CreatesFile(str(marker)) if marker is not None else _RunsShell(), protocol=2)

