"""StarVSRPipeline: STAR real-world video super-resolution on diffusers.

The LR video is upsampled bilinearly to the output size and VAE-encoded (the "hint"). Sampling
starts SDEdit-style from the hint latents noised to ``noise_level - 1`` and runs DPM-Solver++(2M)
SDE on the v-predictions of a text-to-video UNet steered by a video ControlNet that sees the
hint. Long clips are split into overlapping temporal chunks and large frames into overlapping
latent tiles; their predictions are blended with smooth weights that sum to one at every
denoising step, so there are no seams or hard cuts. Whole-clip latents live in host memory;
only one chunk/tile at a time visits the accelerator, and decoded frames can be streamed out.

Load with ``StarVSRPipeline.from_pretrained(folder)`` (``DiffusionPipeline.from_pretrained`` cannot
find this out-of-tree class).
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, CLIPTokenizer

from star_vsr.color_fix import COLOR_FIX_MODES, color_fix as apply_color_fix
from star_vsr.errors import (DeviceError, InputError, MissingWeightsError, explain_out_of_memory_of_call, named,
                             one_generator, option, restart_note)
from star_vsr.fingerprints import tensor_digest
from star_vsr.frames import FrameSource, SequentialFrames, VideoInput, as_frame_source, frames_to_output
from star_vsr.model_folder import (CheckedPipeline, check_components, check_pipeline_folder,
                                   check_weight_format, check_weights_fit, load_checked, local_load_kwargs)
from star_vsr.models import StarVSRControlNetModel, StarVSRUNetModel, valid_latent_size
from star_vsr.models.loading import without_misleading_load_logs
from star_vsr.scheduling import DEFAULT_NOISE_LEVEL, NUM_TRAIN_TIMESTEPS, star_timesteps
from star_vsr.text import MAX_TOKENS, STAR_NEGATIVE_PROMPT, STAR_POSITIVE_PROMPT, tokenize, words_left_out
from star_vsr.tiling import blend_weights, default_overlap
from star_vsr.user_warnings import warn_user
from star_vsr.window_sampler import FrameNoise, SamplerState, WindowedSampler

#: Scales the pipeline accepts; STAR was trained at x4 and works best there.
MIN_UPSCALE, MAX_UPSCALE = 1.0, 8.0
#: LR frames upsampled and VAE-encoded at once when building the hint.
HINT_ENCODE_BATCH = 4
#: Frames shared by temporal chunks and output pixels shared by spatial tiles when the call gives none, for
#: chunks and tiles of at least twice that; smaller ones share half their size (``resolve_overlaps``).
DEFAULT_CHUNK_OVERLAP, DEFAULT_TILE_OVERLAP = 8, 128
#: STAR's classifier-free guidance scale.
DEFAULT_GUIDANCE_SCALE = 7.5
#: The smallest tile (output pixels) and temporal chunk that out-of-memory advice goes down to.
MIN_ADVISED_TILE, MIN_ADVISED_CHUNK = 128, 4
#: The tile out-of-memory advice proposes first, for an untiled call on frames larger than it.
ADVISED_TILE = 512
def missing_weights_help(use: str = "pass `./star-light` to StarVSRPipeline.from_pretrained / `star-vsr upscale "
                                    "--model`") -> str:
    """Where to download STAR's weights and how to convert them, then ``use`` (what to do with the folder)."""
    return ("To get STAR weights:\n"
            "  1. download the STAR checkpoint `light_deg.pt` (or `heavy_deg.pt`) from the Hugging Face repo "
            "SherryX/STAR\n     (folder I2VGen-XL-based),\n"
            "  2. the OpenCLIP ViT-H-14 text encoder `open_clip_pytorch_model.bin` "
            "(laion/CLIP-ViT-H-14-laion2B-s32B-b79K),\n"
            "  3. the Stable Video Diffusion VAE folder (stabilityai/stable-video-diffusion-img2vid, subfolder "
            "`vae`),\nthen run:\n"
            "  star-vsr convert-star --checkpoint light_deg.pt --openclip open_clip_pytorch_model.bin --vae <vae "
            f"folder> -o ./star-light\nand {use}.")


MISSING_WEIGHTS_HELP = missing_weights_help()


def resolve_overlaps(chunk_frames: int, chunk_overlap: Optional[int], tile_size: Optional[int],
                     tile_overlap: Optional[int]) -> tuple[int, int]:
    """(chunk_overlap, tile_overlap) that a call uses: each one given, or for None one that fits its size
    (``star_vsr.tiling.default_overlap`` of ``DEFAULT_CHUNK_OVERLAP`` / ``DEFAULT_TILE_OVERLAP``), so that a
    small ``chunk_frames`` or ``tile_size`` works alone. An overlap given is kept, fitting or not (checked by
    ``check_sampling_arguments``)."""
    if chunk_overlap is None:
        chunk_overlap = default_overlap(chunk_frames, DEFAULT_CHUNK_OVERLAP)
    if tile_overlap is None:
        tile_overlap = DEFAULT_TILE_OVERLAP if tile_size is None else default_overlap(tile_size, DEFAULT_TILE_OVERLAP)
    return chunk_overlap, tile_overlap


def check_sampling_arguments(upscale: float = 4, num_inference_steps: int = 15, guidance_rescale: float = 0.2,
                             noise_level: Optional[int] = None, chunk_frames: int = 32,
                             chunk_overlap: Optional[int] = None,
                             tile_size: Optional[int] = None, tile_overlap: Optional[int] = None,
                             color_fix: Optional[str] = "adain", decode_chunk_size: int = 3,
                             timesteps: Optional[Sequence[int]] = None, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                             controlnet_conditioning_scale: float = 1.0, timestep_spacing: str = "trailing") -> None:
    """Raise ``InputError`` for sampling arguments that no model accepts (types, ranges, orders).

    Checks that need the model (the smallest tile) are ``StarVSRPipeline.check_inputs``'; the command
    line runs this one before loading a model, so a typo does not wait for the weights to load.
    ``noise_level`` None: ``DEFAULT_NOISE_LEVEL``, or where ``timesteps`` start.
    """
    given = {"chunk_overlap": chunk_overlap, "tile_overlap": tile_overlap, "tile_size": tile_size,
             "noise_level": noise_level}
    integers = {"num_inference_steps": num_inference_steps, "chunk_frames": chunk_frames,
                "decode_chunk_size": decode_chunk_size, **{k: v for k, v in given.items() if v is not None}}
    for name, value in integers.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InputError(f"{named(name)} must be an integer, got {value!r}")
    for name, value in (("upscale", upscale), ("guidance_rescale", guidance_rescale),
                        ("guidance_scale", guidance_scale),
                        ("controlnet_conditioning_scale", controlnet_conditioning_scale)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InputError(f"{named(name)} must be a finite number, got {value!r}")
    if not MIN_UPSCALE <= float(upscale) <= MAX_UPSCALE:
        raise InputError(f"unsupported scale {upscale}: {named('upscale')} must be between {MIN_UPSCALE:g} and "
                         f"{MAX_UPSCALE:g} (STAR was trained at 4)")
    if num_inference_steps < 1:
        raise InputError(f"{named('num_inference_steps')} must be >= 1, got {num_inference_steps}")
    if guidance_scale < 1:  # was taken as 1 (guidance off) without a word
        raise InputError(f"{named('guidance_scale')} must be >= 1 (1 turns classifier-free guidance off), got "
                         f"{guidance_scale}")
    if not 0.0 <= guidance_rescale <= 1.0:
        raise InputError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
    if noise_level is not None and not 1 <= noise_level <= NUM_TRAIN_TIMESTEPS:
        raise InputError(f"{named('noise_level')} must be in [1, {NUM_TRAIN_TIMESTEPS}], got {noise_level}")
    for name, size in (("chunk_frames", chunk_frames), ("tile_size", tile_size)):
        if size is not None and size < 1:  # before an overlap is derived from it
            raise InputError(f"{named(name)} must be >= 1, got {size}")
    chunk_overlap, tile_overlap = resolve_overlaps(chunk_frames, chunk_overlap, tile_size, tile_overlap)
    frames, overlap = named("chunk_frames"), named("chunk_overlap")  # only an overlap given can fail below
    if not 0 <= chunk_overlap < chunk_frames:
        raise InputError(f"need 0 <= {overlap} < {frames}, got {frames} {chunk_frames}, "
                         f"{overlap} {chunk_overlap}")
    tile, overlap = named("tile_size"), named("tile_overlap")
    if tile_size is None and tile_overlap != DEFAULT_TILE_OVERLAP:  # (whole frames: it was ignored without a word)
        raise InputError(f"{overlap} {tile_overlap} goes with {tile} (without it the frames are not tiled)")
    if tile_size is not None and not 0 <= tile_overlap < tile_size:
        raise InputError(f"need 0 <= {overlap} < {tile}, got {tile} {tile_size}, {overlap} {tile_overlap} "
                         f"(lower {overlap} for small tiles)")
    if color_fix is not None and color_fix not in COLOR_FIX_MODES:
        raise InputError(f"{named('color_fix')} must be one of {COLOR_FIX_MODES} or None, got {color_fix!r}")
    if decode_chunk_size < 1:
        raise InputError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")
    if timesteps is not None:
        steps = list(timesteps)
        if not steps or any(isinstance(t, bool) or not isinstance(t, numbers.Integral) for t in steps) \
                or not all(0 <= t < NUM_TRAIN_TIMESTEPS for t in steps) \
                or any(a <= b for a, b in zip(steps, steps[1:])):
            raise InputError(f"timesteps must be a non-empty, strictly decreasing list of integers in "
                             f"[0, {NUM_TRAIN_TIMESTEPS - 1}], got {steps}")
        if timestep_spacing != "trailing":  # (the default) ignored without a word, a typo too (black-box hunt)
            raise InputError(f"timestep_spacing={timestep_spacing!r} spaces the steps num_inference_steps makes; "
                             f"timesteps are the steps themselves: leave timestep_spacing out")
        if noise_level is not None and steps[0] != noise_level - 1:  # it was ignored without a word
            raise InputError(f"noise_level {noise_level} starts sampling at t = {noise_level - 1}, but the timesteps "
                             f"start at {steps[0]}: with timesteps, leave noise_level out (they start where the "
                             f"latents are noised to), or start them at noise_level - 1")
    else:  # more steps than timesteps below the noise level: refused after the model loaded
        star_timesteps(DEFAULT_NOISE_LEVEL if noise_level is None else noise_level, num_inference_steps,
                       timestep_spacing)


def check_sampling_kwargs(kwargs: dict[str, Any]) -> None:
    """``check_sampling_arguments`` on the entries of a ``pipe(...)`` keyword dict that it checks (others,
    such as ``prompt`` or ``generator``, are left to the call)."""
    checked = set(inspect.signature(check_sampling_arguments).parameters)
    check_sampling_arguments(**{k: v for k, v in kwargs.items() if k in checked})


def clip_extent(video: Any, upscale: Optional[float]) -> dict[str, int]:
    """``num_frames`` and ``output_side`` (the output frame's longer side) of a call's ``video`` for
    ``memory_advice``: of a ``FrameSource`` (what ``star-vsr upscale`` passes), whose size is known without reading
    it; other inputs would be converted again, where memory has just run out."""
    if not isinstance(video, FrameSource):
        return {}
    return {"num_frames": video.num_frames,
            "output_side": math.ceil(max(video.height, video.width) * (4 if upscale is None else upscale))}


def check_tile_size(tile_size: int, vae_blocks: int, unet_blocks: int) -> None:
    """``InputError`` unless ``tile_size`` output pixels hold two latent pixels of the UNet's coarsest level for a
    VAE and a UNet of ``vae_blocks`` and ``unet_blocks`` blocks (from their configs: ``star-vsr upscale`` checks it
    before the weights load)."""
    min_tile = 2 * 2 ** (vae_blocks - 1) * 2 ** (unet_blocks - 1)
    if tile_size < min_tile:
        raise InputError(f"{named('tile_size')} must be >= {min_tile} output pixels for this model, got {tile_size}")


def checked_latents(latents: Any, expected: tuple[int, ...], what: str) -> torch.Tensor:
    """``latents`` (``expected`` = (n, 4, h, w), or (1, n, 4, h, w)) as float32 on the CPU, where the sampler keeps
    the clip's latents; ``InputError`` naming ``what`` for another shape (only the number of values was checked:
    swapped axes were scrambled) or for NaN / infinite values (black or NaN frames, without an error)."""
    if not isinstance(latents, torch.Tensor) or tuple(latents.shape) not in (expected, (1, *expected)):
        got = f"shape {tuple(latents.shape)}" if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise InputError(f"{what} must be a tensor of shape ({', '.join(map(str, expected))}) or (1, "
                         f"{', '.join(map(str, expected))}) for this video, upscale and tile_size (the latent "
                         f"canvas: the output size in latent pixels, padded to sizes the UNet takes), got {got}")
    if not latents.is_floating_point():  # (integers were cast without a word)
        raise InputError(f"{what} must be a floating-point tensor, got {latents.dtype}")
    if not torch.isfinite(latents).all():
        raise InputError(f"{what} hold NaN or infinite values")
    return latents.reshape(expected).float().cpu()


def as_levels(frame: torch.Tensor) -> torch.Tensor:
    """A (3, h, w) frame in [0, 1] as 8-bit levels (uint8, host): a quarter of float32's size in a saved state."""
    return (frame.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def check_same_video(saved: Optional[torch.Tensor], frame: torch.Tensor, index: int) -> None:
    """``InputError`` unless ``frame`` (frame ``index`` of the video a call resumes on, ``as_levels``) is the last
    frame the state's hints were made of, ``saved``, within a level: a state of another video of the same length
    and size went on without a word, its first frames denoised from one clip and the rest from the other. A state
    saved before this was recorded (no ``saved``) is not checked."""
    if saved is None:
        return
    if saved.shape != frame.shape or int((saved.int() - frame.int()).abs().max()) > 1:
        raise InputError(f"the state was taken on another video: frame {index} of this one is not the frame it "
                         f"saw there; resume on the video state_sink gave it for, or start over without state=")


def check_parts_fit(vae: Any, text_encoder: Any, unet: Any, controlnet: Any) -> None:
    """``InputError`` naming the settings in which a StarVSRPipeline's networks do not fit together: the
    ControlNet's residuals are added to the UNet's skips (the same latent channels, widths and layers), both attend
    to the text encoder's states, the UNet denoises the VAE's latents and the ControlNet reads the VAE's latent of
    the hint. A UNet of other widths than its ControlNet was taken, and the call failed mid-denoising with "The
    size of tensor a (8) must match the size of tensor b (16)" (black-box hunt); train_star.py checks its parts too."""
    def setting(model: Any, key: str) -> Any:
        value = model.config.get(key) if isinstance(model.config, dict) else getattr(model.config, key, None)
        return list(value) if isinstance(value, (list, tuple)) else value

    latent = ("vae latent_channels", setting(vae, "latent_channels"))
    pairs = [((f"controlnet {key}", setting(controlnet, key)), (f"unet {key}", setting(unet, key)))
             for key in ("in_channels", "block_out_channels", "layers_per_block", "cross_attention_dim")]
    pairs += [(("text_encoder hidden_size", setting(text_encoder, "hidden_size")),
               ("unet cross_attention_dim", setting(unet, "cross_attention_dim"))),
              (latent, ("unet in_channels", setting(unet, "in_channels"))),
              (latent, ("unet out_channels", setting(unet, "out_channels"))),
              (latent, ("controlnet conditioning_channels", setting(controlnet, "conditioning_channels")))]
    wrong = [(first, second) for first, second in pairs if first[1] != second[1]]
    if wrong:
        pair = any(first[0].startswith("controlnet") and second[0].startswith("unet") for first, second in wrong)
        raise InputError(f"the networks given to a StarVSRPipeline do not fit together: "
                         f"{'; '.join(f'{a} {x} against {b} {y}' for (a, x), (b, y) in wrong)}"
                         + (" (a ControlNet is made for its UNet: StarVSRControlNetModel.from_unet)" if pair else ""))


@dataclass
class StarVSRPipelineOutput(BaseOutput):
    """Output of ``StarVSRPipeline``.

    Args:
        frames: the upscaled video, (1, n, 3, H, W) float in [0, 1] for ``output_type="pt"``,
            (1, n, H, W, 3) for "np", a list of lists of PIL images for "pil", the final latents
            (1, n, 4, h, w) for "latent", or None when the frames went to ``frame_sink``.
    """

    frames: Any


class StarVSRPipeline(CheckedPipeline, DiffusionPipeline):
    r"""STAR video super-resolution: OpenCLIP text, SVD temporal VAE, video UNet + ControlNet with LIEM.

    Args:
        vae: Stable Video Diffusion's temporal-decoder VAE.
        text_encoder: OpenCLIP ViT-H-14 text tower cut at its penultimate layer (``CLIPTextModel``).
        tokenizer: OpenCLIP's BPE tokenizer (``star_vsr.text.build_openclip_tokenizer``).
        unet: ``StarVSRUNetModel``.
        controlnet: ``StarVSRControlNetModel`` for ``unet``.
        scheduler: DPM-Solver++(2M) SDE with STAR's betas (``star_vsr.scheduling.make_star_scheduler``).
    """

    model_cpu_offload_seq = "text_encoder->controlnet->unet->vae"
    _callback_tensor_inputs = ["latents"]
    MEMORY_ADVICE = ("Attention runs through PyTorch's scaled_dot_product_attention (memory-efficient kernels on a "
                     "GPU; xformers after enable_xformers_memory_efficient_attention); to use less memory, pass "
                     "tile_size= (spatial tiles), a smaller chunk_frames= or decode_chunk_size=.")

    def __init__(self, vae: AutoencoderKLTemporalDecoder, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: StarVSRUNetModel, controlnet: StarVSRControlNetModel,
                 scheduler: DPMSolverMultistepScheduler) -> None:
        components = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
                          scheduler=scheduler)
        check_components(type(self), components)
        check_parts_fit(vae, text_encoder, unet, controlnet)
        super().__init__()
        self.register_modules(**components)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # ---------------------------------------------------------------- loading and devices
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs: Any) -> "StarVSRPipeline":
        """Load a pipeline folder written by ``save_pretrained`` or ``star-vsr convert-star``. Never downloads."""
        folder = Path(pretrained_model_name_or_path).expanduser()  # "~/star-light" "did not exist"
        check_pipeline_folder(folder, "StarVSR", MISSING_WEIGHTS_HELP, expected_class=cls,
                              variant=kwargs.get("variant"), passed=kwargs)
        check_weight_format(folder, kwargs.get("use_safetensors"), passed=kwargs)
        kwargs = local_load_kwargs(kwargs)
        with without_misleading_load_logs():  # the VAE's and text encoder's: refused below, in one message
            pipe = load_checked(folder, "StarVSR", MISSING_WEIGHTS_HELP,
                                lambda: super(StarVSRPipeline, cls).from_pretrained(folder, **kwargs))
        for name in ("vae", "text_encoder"):  # (the UNet and ControlNet check their own weights)
            if name not in kwargs:  # loaded from the folder, not passed in
                try:
                    check_weights_fit(getattr(pipe, name), folder / name, kwargs.get("variant"))
                except MissingWeightsError as error:
                    raise MissingWeightsError(f"{error}\n{MISSING_WEIGHTS_HELP}") from None
        if not {"dtype", "torch_dtype", "text_encoder"} & set(kwargs) and pipe.text_encoder.dtype != pipe.unet.dtype:
            # with no dtype, diffusers loads its models in float32 but transformers keeps the saved float16
            # of a converted folder's text encoder: one precision for the whole pipeline, the UNet's (a text
            # encoder passed in is the caller's and stays as it is)
            pipe.text_encoder.to(pipe.unet.dtype)
        return pipe

    def enable_xformers_memory_efficient_attention(self, attention_op: Optional[Callable] = None) -> None:
        """Switch the UNet and ControlNet to xformers' attention (GPU only; SDPA is the default)."""
        for model in (self.unet, self.controlnet):
            model.set_use_memory_efficient_attention_xformers(True, attention_op)

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the current (or last) call, as diffusers' pipelines give them to callbacks
        (``PipelineCallback``'s ``cutoff_step_ratio``)."""
        return getattr(self, "_num_timesteps", 0)

    @property
    def guidance_scale(self) -> float:
        """``guidance_scale`` of the current (or last) call, as diffusers' pipelines give it to callbacks (they
        raised AttributeError here: black-box hunt); the default before any. Read-only: the call guides with the
        value it was given (a callback that sets ``pipe._guidance_scale``, as diffusers' CFG cutoff does, changes
        nothing; that callback is refused for the prompt embeddings it needs)."""
        return getattr(self, "_guidance_scale", DEFAULT_GUIDANCE_SCALE)

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current (or last) call guides (``guidance_scale`` > 1; 1 runs no unconditional pass)."""
        return self.guidance_scale > 1

    def _check_device_dtype(self, device: torch.device) -> None:
        if device.type == "cpu" and torch.float16 in (self.unet.dtype, self.controlnet.dtype, self.vae.dtype):
            raise DeviceError("float16 weights need a GPU; on the CPU load the pipeline with "
                              "dtype=torch.bfloat16 or torch.float32.")

    # ---------------------------------------------------------------- inputs
    def check_inputs(self, source: FrameSource, upscale: float, num_inference_steps: int, guidance_rescale: float,
                     noise_level: Optional[int], chunk_frames: int, chunk_overlap: Optional[int],
                     tile_size: Optional[int],
                     tile_overlap: Optional[int], color_fix: Optional[str], output_type: str, decode_chunk_size: int,
                     callback_on_step_end_tensor_inputs: Sequence[str], timesteps: Optional[Sequence[int]] = None,
                     frame_sink: Optional[Callable] = None, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                     controlnet_conditioning_scale: float = 1.0,
                     callback_on_step_end: Optional[Callable] = None, timestep_spacing: str = "trailing") -> None:
        """Raise ``InputError`` for arguments ``__call__`` cannot run with, before any model runs."""
        if not isinstance(self.scheduler, DPMSolverMultistepScheduler):  # (a TypeError from set_timesteps mid-call)
            raise InputError(f"StarVSRPipeline samples with a DPMSolverMultistepScheduler (STAR's DPM-Solver++ 2M "
                             f"SDE; the windowed sampler keeps its multistep history per frame), not "
                             f"{type(self.scheduler).__name__}: set pipe.scheduler = "
                             f"star_vsr.scheduling.make_star_scheduler()")
        config = self.scheduler.config
        if config.prediction_type != "v_prediction":  # (ran, and gave pictures of noise, without a word)
            raise InputError(f"the scheduler's prediction_type is {config.prediction_type!r}; STAR's UNet predicts "
                             f"v: the scheduler needs prediction_type='v_prediction' (from a folder, its "
                             f"scheduler_config.json says otherwise)")
        # this pipeline hands the scheduler its timesteps, which these sigma spacings refuse mid-call
        spacings = [name for name in ("use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas",
                                      "use_beta_sigmas", "use_flow_sigmas") if config.get(name)]
        if spacings:
            raise InputError(f"the scheduler's {', '.join(spacings)} cannot be used here: StarVSRPipeline gives the "
                             f"scheduler its timesteps (STAR's trailing spacing); set "
                             f"{' and '.join(f'{name}=False' for name in spacings)}")
        alphas = self.scheduler.alphas_cumprod  # (a NaN beta_end ran every step, then blamed the colour fix)
        if not (torch.isfinite(alphas).all() and (alphas > 0).all() and (alphas <= 1).all()):
            betas = "none" if config.trained_betas is None else "given"
            raise InputError(f"the scheduler's noise schedule is no schedule (its cumulative alphas must lie in "
                             f"(0, 1]; beta_start {config.beta_start}, beta_end {config.beta_end}, beta_schedule "
                             f"{config.beta_schedule!r}, trained_betas {betas}): "
                             f"from a folder, its scheduler_config.json is damaged; copy the folder again"
                             f"{option(', or set pipe.scheduler = star_vsr.scheduling.make_star_scheduler()', '')}")
        check_sampling_arguments(upscale, num_inference_steps, guidance_rescale, noise_level, chunk_frames,
                                 chunk_overlap, tile_size, tile_overlap, color_fix, decode_chunk_size, timesteps,
                                 guidance_scale, controlnet_conditioning_scale, timestep_spacing)
        if tile_size is not None:
            check_tile_size(tile_size, len(self.vae.config.block_out_channels),
                            len(self.unet.config.block_out_channels))
        if output_type not in ("pt", "np", "pil", "latent"):
            raise InputError(f"output_type must be 'pt', 'np', 'pil' or 'latent', got {output_type!r}")
        if frame_sink is not None and not callable(frame_sink):  # else a TypeError after all the denoising
            raise InputError(f"frame_sink must be a callable taking each chunk of frames, got {frame_sink!r}")
        if callback_on_step_end is not None and not callable(callback_on_step_end):  # (after the first step)
            raise InputError(f"callback_on_step_end must be a callable fn(pipe, step, timestep, tensors) -> dict, "
                             f"got {callback_on_step_end!r}")
        if frame_sink is not None and output_type != "pt":  # ('pil' and 'np' were ignored without a word)
            raise InputError(f"frame_sink receives each chunk of decoded frames as a (k, 3, H, W) tensor in [0, 1]; "
                             f"leave output_type at 'pt' with it, got {output_type!r}")
        if isinstance(callback_on_step_end_tensor_inputs, str):  # (its letters were each "not in ['latents']")
            raise InputError(f"callback_on_step_end_tensor_inputs must be a list of names, e.g. "
                             f"[{callback_on_step_end_tensor_inputs!r}], got {callback_on_step_end_tensor_inputs!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown and isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            # (SDCFGCutoffCallback changes prompt_embeds: an AttributeError after the first step)
            raise InputError(f"{type(callback_on_step_end).__name__} works with {unknown}, which this pipeline "
                             f"does not hand to callbacks (it hands {self._callback_tensor_inputs}): it is made for "
                             f"other pipelines")
        if unknown:
            raise InputError(f"callback_on_step_end_tensor_inputs {unknown} not in {self._callback_tensor_inputs}")
        if min(source.height, source.width) < 2:
            raise InputError(f"frames of {source.width}x{source.height} are too small to upscale")

    @staticmethod
    def _check_state(state: Optional[SamplerState], start_frame: int, state_sink: Optional[Callable],
                     callback_on_step_end: Optional[Callable], output_type: str) -> bool:
        """Check the stop-and-resume arguments of a call; whether it resumes from ``state``."""
        if isinstance(start_frame, bool) or not isinstance(start_frame, numbers.Integral) or start_frame < 0:
            raise InputError(f"start_frame must be an integer >= 0, got {start_frame!r}")
        if state is None and start_frame:
            raise InputError("start_frame needs the state after those frames (state=, as state_sink gave it)")
        if state_sink is not None and not callable(state_sink):  # else a TypeError after the first chunk's work
            raise InputError(f"state_sink must be a callable, got {state_sink!r}")
        if state is None and state_sink is None:
            return False
        if callback_on_step_end is not None or output_type == "latent":
            raise InputError("state and state_sink work with decoded frames and no callback_on_step_end")
        if state is None:
            return False
        if not isinstance(state, SamplerState) or "frames_done" not in state.metadata:
            raise InputError(f"state must be a SamplerState that state_sink gave, got {type(state).__name__}")
        if state.metadata["frames_done"] != start_frame:
            raise InputError(f"the state was taken after frame {state.metadata['frames_done']}, not {start_frame}")
        return True

    def encode_prompt(self, prompt: str, negative_prompt: Optional[str], do_classifier_free_guidance: bool,
                      device: torch.device) -> torch.Tensor:
        """Text embeddings (1 or 2, 77, d): [negative, positive] when guidance is on."""
        prompts = ([negative_prompt or ""] if do_classifier_free_guidance else []) + [prompt]
        ids = tokenize(self.tokenizer, prompts).to(device)
        return self.text_encoder(ids).last_hidden_state  # (len(prompts), 77, d)

    # ---------------------------------------------------------------- geometry
    def plan_geometry(self, source: FrameSource, upscale: float, tile_size: Optional[int],
                      tile_overlap: int) -> dict[str, Any]:
        """Output size, latent canvas and tile windows (in latent pixels) for a clip."""
        f = self.vae_scale_factor
        out_h, out_w = round(source.height * upscale), round(source.width * upscale)
        need_h, need_w = -(-out_h // f), -(-out_w // f)
        levels = self.unet.num_downsamples
        if tile_size is None:
            tile_h, tile_w = valid_latent_size(need_h, need_w, levels)
        else:
            tile_h, tile_w = valid_latent_size(tile_size // f, tile_size // f, levels)
        if tile_h >= need_h:
            canvas_h = tile_h = valid_latent_size(need_h, 1, levels)[0]
        else:
            canvas_h = need_h
        if tile_w >= need_w:
            canvas_w = tile_w = valid_latent_size(1, need_w, levels)[1]
        else:
            canvas_w = need_w
        # whole latent pixels, at least one for an overlap given: under f output pixels it was none (hard seams).
        # (Not rounded up: other overlaps keep the layout that runs saved by earlier versions resume with.)
        overlap = max(tile_overlap // f, 1 if tile_overlap > 0 else 0)
        return {
            "out_size": (out_h, out_w),
            "canvas": (canvas_h, canvas_w),
            "rows": blend_weights(canvas_h, tile_h, min(overlap, tile_h - 1)),
            "cols": blend_weights(canvas_w, tile_w, min(overlap, tile_w - 1)),
        }

    # ---------------------------------------------------------------- hint
    def encode_hint(self, lr: torch.Tensor, out_size: tuple[int, int], canvas: tuple[int, int],
                    eps: torch.Tensor, device: torch.device) -> torch.Tensor:
        """VAE latents of LR frames upsampled bilinearly to ``out_size`` and edge-padded to the canvas.

        (STAR pads centred with white, value 1; edge padding at the bottom and right puts no white border into
        the VAE and the model. Outputs differ from STAR's most near the border, but every pixel can shift a little:
        the group norms and the global spatial attention see the whole padded canvas.)

        ``lr`` (k, 3, h, w) in [0, 1]; ``eps`` (k, c, canvas_h, canvas_w) is the posterior noise
        (STAR samples the VAE posterior). Returns (k, c, canvas_h, canvas_w) float32 on the host.
        """
        f = self.vae_scale_factor
        pad_h, pad_w = canvas[0] * f - out_size[0], canvas[1] * f - out_size[1]
        # a float16 VAE whose config asks for it (force_upcast, SVD's) encodes in float32, as diffusers' SVD
        # pipeline and STAR do: its encoder's activations can overflow float16. Decoding stays in float16.
        upcast = self.vae.dtype == torch.float16 and bool(self.vae.config.get("force_upcast", True))
        dtype = torch.float32 if upcast else self.vae.dtype
        upcast_modules = (self.vae.encoder, self.vae.quant_conv) if upcast else ()
        latents = []
        try:
            for module in upcast_modules:
                module.to(torch.float32)
            for i in range(0, len(lr), HINT_ENCODE_BATCH):
                x = lr[i:i + HINT_ENCODE_BATCH].to(device=device, dtype=dtype) * 2 - 1
                x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # (b, 3, canvas_h*f, canvas_w*f)
                posterior = self.vae.encode(x).latent_dist
                z = posterior.mean + posterior.std * eps[i:i + HINT_ENCODE_BATCH].to(device, posterior.mean.dtype)
                latents.append((z * self.vae.config.scaling_factor).float().cpu())
        finally:
            for module in upcast_modules:
                module.to(torch.float16)
        return torch.cat(latents)

    # ---------------------------------------------------------------- one window
    def predict_v(self, latents: torch.Tensor, hint: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor,
                  guidance_scale: float, guidance_rescale: float, controlnet_conditioning_scale: float) -> torch.Tensor:
        """Guided v-prediction for one window: latents/hint (k, 4, h, w) on the device -> (k, 4, h, w)."""
        batch = prompt_embeds.shape[0]
        x = latents[None].expand(batch, *latents.shape)  # (b, k, 4, h, w)
        cond = hint[None].expand(batch, *hint.shape)
        # each network in its own dtype (from_pretrained's torch_dtype={"unet": ..., "default": ...} loads them
        # apart: "mat1 and mat2 must have the same dtype" mid-call); no copies where they agree
        control = self.controlnet.dtype
        res = self.controlnet(x.to(control), t, prompt_embeds.to(control), cond.to(control),
                              conditioning_scale=controlnet_conditioning_scale)
        dtype = self.unet.dtype
        v = self.unet(x, t, prompt_embeds,
                      down_block_additional_residuals=[r.to(dtype) for r in res.down_block_res_samples],
                      mid_block_additional_residual=res.mid_block_res_sample.to(dtype)).sample
        if batch == 1:
            return v[0]
        v_uncond, v_text = v.chunk(2)
        guided = v_uncond + guidance_scale * (v_text - v_uncond)
        if guidance_rescale > 0:  # Lin et al. 2024, Eq. 15-16: pull the guided std back to the text branch's
            rescaled = guided * (v_text.std() / (guided.std() + 1e-12))
            guided = guidance_rescale * rescaled + (1 - guidance_rescale) * guided
        return guided[0]

    def denoise_window(self, latents: torch.Tensor, hint: torch.Tensor, t: torch.Tensor, geometry: dict[str, Any],
                       prompt_embeds: torch.Tensor, guidance_scale: float, guidance_rescale: float,
                       controlnet_conditioning_scale: float, device: torch.device) -> torch.Tensor:
        """v-prediction of one temporal window (k, c, h, w), blended over the spatial tiles."""
        v = torch.zeros_like(latents)
        dtype = self.unet.dtype
        for y0, y1, wy in geometry["rows"]:
            for x0, x1, wx in geometry["cols"]:
                tile = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
                v_tile = self.predict_v(latents[tile].to(device, dtype), hint[tile].to(device, dtype), t.to(device),
                                        prompt_embeds, guidance_scale, guidance_rescale, controlnet_conditioning_scale)
                v[tile] += v_tile.float().cpu() * (wy[:, None] * wx[None, :]).float()
        return v


    # ---------------------------------------------------------------- decoding
    def decode_frames(self, latents: torch.Tensor, lr: torch.Tensor, out_size: tuple[int, int],
                      color_fix: Optional[str], device: torch.device) -> torch.Tensor:
        """Decode (k, c, h, w) latents as one temporal-VAE chunk and colour-fix against the LR frames.

        Returns (k, 3, H, W) in [0, 1] on the host.
        """
        z = latents.to(device=device, dtype=self.vae.dtype) / self.vae.config.scaling_factor
        frames = self.vae.decode(z, num_frames=z.shape[0]).sample
        frames = ((frames.float() + 1) / 2).clamp(0, 1)[..., :out_size[0], :out_size[1]]
        return apply_color_fix(frames, lr.to(device), color_fix).cpu()

    def memory_advice(self, tile_size: Optional[int], tile_overlap: Optional[int], chunk_frames: int,
                      chunk_overlap: Optional[int], decode_chunk_size: int, upscale: Optional[float] = None,
                      num_frames: Optional[int] = None, output_side: Optional[int] = None) -> str:
        """What to change when a call with these settings ran out of memory: halve the spatial tile and the
        temporal chunk this call used (memory per setting: benchmarks/pipeline_cost.py), decode one frame
        at a time, then half precision and CPU offload where the weights are on a GPU in full precision; last, a
        smaller factor than ``upscale`` (tiles bound the denoising only: the VAE encodes and decodes whole frames
        of the output's size, and was where a 480x272 clip at x4 ran out, where smaller tiles were advised).
        ``num_frames`` and ``output_side`` (the output frame's longer side), where known, bound what the call used:
        a chunk of 32 frames on a 3-frame clip used 3, and a tile of 512 on a 96x64 output used the whole frame,
        so neither a 16-frame chunk nor 512-pixel tiles would have helped (black-box hunt)."""
        steps = []
        if tile_size is not None and output_side is not None and tile_size >= output_side:
            tile_size = None  # one tile of the whole frame: untiled
        if tile_size is None:
            tile = ADVISED_TILE if output_side is None or output_side > ADVISED_TILE else output_side // 2
            if tile >= MIN_ADVISED_TILE:
                steps.append(f"spatial tiles ({named('tile_size', tile)})")
        elif tile_size > MIN_ADVISED_TILE:
            tile = max(MIN_ADVISED_TILE, tile_size // 2)
            overlap = f", {named('tile_overlap', tile // 4)}" if (tile_overlap or 0) >= tile else ""  # None fits
            steps.append(f"smaller tiles than {tile_size} ({named('tile_size', tile)}{overlap})")
        chunk_frames = min(chunk_frames, num_frames) if num_frames is not None else chunk_frames
        if chunk_frames > MIN_ADVISED_CHUNK:
            chunk = max(MIN_ADVISED_CHUNK, chunk_frames // 2)
            overlap = f", {named('chunk_overlap', chunk // 4)}" if (chunk_overlap or 0) >= chunk else ""
            steps.append(f"fewer frames per temporal chunk than {chunk_frames} ({named('chunk_frames', chunk)}"
                         f"{overlap})")
        if decode_chunk_size > 1:  # Python only, as the offload below: the command line has no flag for it
            steps.append(option("decode_chunk_size=1", ""))
        offloaded = bool(getattr(self, "_all_hooks", None))  # enable_model_cpu_offload() is on
        on_gpu = offloaded or self.unet.device.type == "cuda"
        if on_gpu and self.unet.dtype == torch.float32:
            steps.append(f"half-precision weights ({option('dtype=torch.float16', '--dtype fp16')})")
        if on_gpu and not offloaded:
            steps.append(option("pipe.enable_model_cpu_offload()", ""))
        if upscale is not None and upscale > 2:
            steps.append(f"a smaller factor ({named('upscale', 2)})")
        steps = [step for step in steps if step]
        if not steps:
            return "even the smallest tiles and chunks do not fit: free memory or use a device with more"
        note = restart_note()
        return "try " + ", ".join(steps[:-1]) + (" or " if len(steps) > 1 else "") + steps[-1] + \
            (f" ({note})" if note else "")

    # ---------------------------------------------------------------- main
    @torch.no_grad()
    @explain_out_of_memory_of_call("upscaling with the StarVSR pipeline", lambda pipe, call: pipe.memory_advice(**{
        key: call[key] for key in ("tile_size", "tile_overlap", "chunk_frames", "chunk_overlap", "decode_chunk_size",
                                   "upscale")}, **clip_extent(call["video"], call["upscale"])))
    def __call__(
        self,
        video: Union[VideoInput, FrameSource],
        prompt: str = "a good video",
        negative_prompt: Optional[str] = STAR_NEGATIVE_PROMPT,
        positive_prompt: str = STAR_POSITIVE_PROMPT,
        upscale: Optional[float] = 4,
        num_inference_steps: int = 15,
        timesteps: Optional[list[int]] = None,
        timestep_spacing: str = "trailing",
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        guidance_rescale: float = 0.2,
        noise_level: Optional[int] = None,
        controlnet_conditioning_scale: float = 1.0,
        chunk_frames: int = 32,
        chunk_overlap: Optional[int] = None,
        tile_size: Optional[int] = None,
        tile_overlap: Optional[int] = None,
        color_fix: Optional[str] = "adain",
        decode_chunk_size: int = 3,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[["StarVSRPipeline", int, int, dict], dict]] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        frame_sink: Optional[Callable[[torch.Tensor], None]] = None,
        state: Optional[SamplerState] = None,
        start_frame: int = 0,
        state_sink: Optional[Callable[[int, SamplerState], None]] = None,
    ) -> Union[StarVSRPipelineOutput, tuple]:
        r"""Upscale a video.

        Args:
            video: a path (video file or image folder), a (n, 3, h, w) float tensor in [0, 1], a
                (n, h, w, 3) uint8 array (grey: (n, h, w, 1)), or a list of PIL images / arrays ((h, w, 3), grey
                (h, w) or (h, w, 1)). Files are read at 8 bits (a 10- or 16-bit video or image rounded, as
                ``star_vsr.io`` reads them); arrays, tensors and PIL images keep their precision (a uint16 array or
                16-bit image is scaled by 65535).
            prompt: caption of the video; STAR's ``positive_prompt`` is appended to it.
            negative_prompt: STAR's negative prompt by default; None for an empty one.
            positive_prompt: suffix appended to ``prompt`` exactly as STAR does (no separator).
            upscale: output size / input size, between 1 and 8; None: 4, the scale STAR was trained at (as
                ``StarStudentPipeline`` takes None for its student's own scale).
            num_inference_steps: model evaluations (see ``star_vsr.scheduling.star_timesteps``).
            timesteps: explicit decreasing timesteps; overrides ``num_inference_steps``.
            timestep_spacing: "trailing" or "star_fast". STAR's released script samples in "fast" mode: 14 model
                evaluations at 899, 799, ..., 500, 454, ..., 90, which ``timestep_spacing="star_fast",
                num_inference_steps=14`` reproduces exactly. The default here, 15 evenly spaced "trailing" steps
                from 899, is a different grid: pass those two arguments to compare with STAR's outputs.
            guidance_scale: classifier-free guidance weight (1 disables guidance).
            guidance_rescale: pulls the guided prediction's std towards the text branch's (0..1). The stds
                are those of the frame window being denoised and, with ``tile_size``, of the tile (STAR takes
                them over its whole untiled chunk), so tiled and untiled results differ a little more than
                padding alone explains; the blended overlaps hide it.
            noise_level: the LR latents are noised to ``noise_level - 1`` and denoised from there (None:
                ``DEFAULT_NOISE_LEVEL``, 900; with ``timesteps``, where they start: give it only to match them).
            controlnet_conditioning_scale: multiplies the ControlNet residuals.
            chunk_frames: frames per temporal chunk.
            chunk_overlap: frames shared by neighbouring chunks (blended smoothly at every step); None: 8, or
                half of ``chunk_frames`` when that is less (``resolve_overlaps``). One given must be less than
                ``chunk_frames``.
            tile_size: spatial tile in output pixels (None: whole frames), taken in whole latent pixels (the
                VAE's factor, 8 for STAR) and up to the next size the UNet's downsamplings accept (STAR: latent
                heights 2 mod 8, widths multiples of 8; 512 gives 528 x 512 output pixels).
            tile_overlap: output pixels shared by neighbouring tiles, rounded down to whole latent pixels (at least
                one for an overlap above 0); None: 128, or half of ``tile_size`` when that is less. One given must
                be less than ``tile_size``.
            color_fix: "adain" (STAR's default), "wavelet" or None.
            decode_chunk_size: frames decoded by the temporal VAE at once (STAR: 3).
            generator: ``torch.Generator`` for reproducible noise (hint sampling, start noise, SDE noise).
            latents: start latents (n, 4, h, w) or (1, n, 4, h, w) at the first timestep; default: the
                hint latents noised to it. (h, w) is the latent canvas: the output size over the VAE's factor,
                padded to sizes the UNet takes, per tile with ``tile_size`` (so it depends on ``tile_size``); a
                call with ``output_type="latent"`` returns latents of that canvas.
            output_type: "pt", "np", "pil" or "latent".
            return_dict: return a ``StarVSRPipelineOutput`` rather than a tuple.
            callback_on_step_end: ``fn(pipe, step, timestep, {"latents": ...}) -> dict`` after each step: the
                whole clip's latents (n, 4, h, w), as returned in the dict or changed in place, go on to the next
                step. A diffusers ``PipelineCallback`` gets its own ``tensor_inputs`` (one made for other pipelines,
                e.g. ``SDCFGCutoffCallback``, which changes ``prompt_embeds``, is refused). To stop the call,
                raise an exception from it (diffusers' ``pipe._interrupt = True``, from a callback or another
                thread, is refused at the next window evaluation).
            callback_on_step_end_tensor_inputs: tensors passed to the callback.
            frame_sink: if given, called with each decoded chunk (k, 3, H, W) instead of collecting frames.
            state: where an earlier call over the same video with the same arguments stood, as
                ``state_sink`` gave it, with ``start_frame`` the frame count it came with: the call goes on
                from there and returns (or sinks) frames ``start_frame`` onwards, the values the
                uninterrupted call computes. ``generator`` is not used then (the state holds the seed).
            start_frame: frames of the video done when ``state`` was taken.
            state_sink: called after every window evaluation and every chunk handed to
                ``frame_sink`` with the number of frames decoded so far and the state
                (``SamplerState``: tensors and JSON-able metadata) to go on from there, e.g. to save a
                checkpoint (``star_vsr.resume``). Its tensors are the sampler's
                own, which later steps replace rather than change; save them before the next step
                if they must outlive it.
        """
        # 1. Check inputs
        self._interrupt = False  # (`denoise`: one set for an earlier call is not this call's)
        source = as_frame_source(video)
        upscale = 4 if upscale is None else upscale
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):  # as diffusers' pipelines
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs  # take them
        if callback_on_step_end_tensor_inputs is None:  # (as the default: it was "'NoneType' is not iterable")
            callback_on_step_end_tensor_inputs = ("latents",)
        if not isinstance(prompt, str) or not (negative_prompt is None or isinstance(negative_prompt, str)):
            raise InputError(f"prompt must be a string and negative_prompt a string or None, got "
                             f"{type(prompt).__name__} and {type(negative_prompt).__name__}")
        if not isinstance(positive_prompt, str):  # (a TypeError from prompt + positive_prompt)
            raise InputError(f"positive_prompt must be a string (\"\" for none), got {type(positive_prompt).__name__}")
        if isinstance(timesteps, torch.Tensor):  # its elements are tensors: "got [tensor(899), tensor(500)]"
            timesteps = timesteps.tolist()
        self.check_inputs(source, upscale, num_inference_steps, guidance_rescale, noise_level, chunk_frames,
                          chunk_overlap, tile_size, tile_overlap, color_fix, output_type, decode_chunk_size,
                          callback_on_step_end_tensor_inputs, timesteps, frame_sink, guidance_scale,
                          controlnet_conditioning_scale, callback_on_step_end, timestep_spacing)
        self._guidance_scale = guidance_scale  # (`guidance_scale`: diffusers' callbacks read it; checked above)
        generator = one_generator(generator)
        chunk_overlap, tile_overlap = resolve_overlaps(chunk_frames, chunk_overlap, tile_size, tile_overlap)
        device = self._execution_device
        self._check_device_dtype(device)
        do_cfg = self.do_classifier_free_guidance

        # 2. Encode the prompt (+ STAR's suffix) and the negative prompt
        left_out = words_left_out(self.tokenizer, prompt + positive_prompt)
        if left_out:  # cut off without a word, STAR's quality phrases first (they take 55 of the 77 tokens)
            warn_user(f"the prompt with STAR's positive prompt appended is longer than the {MAX_TOKENS} tokens the "
                      f"text encoder reads; left out: \"{left_out}\" (shorten {named('prompt')} to about "
                      f"{max(MAX_TOKENS - len(self.tokenizer(positive_prompt).input_ids), 0)} tokens)")
        left_out = words_left_out(self.tokenizer, negative_prompt or "") if do_cfg else ""
        if left_out:
            warn_user(f"the negative prompt is longer than the {MAX_TOKENS} tokens the text encoder reads; "
                      f"left out: \"{left_out}\"")
        prompt_embeds = self.encode_prompt(prompt + positive_prompt, negative_prompt, do_cfg, device)
        prompt_embeds = prompt_embeds.to(self.unet.dtype)

        # 3. Plan output size, latent canvas, spatial tiles and temporal windows
        geometry = self.plan_geometry(source, upscale, tile_size, tile_overlap)
        windows = blend_weights(source.num_frames, chunk_frames, min(chunk_overlap, chunk_frames - 1))
        latent_shape = (self.vae.config.latent_channels, *geometry["canvas"])
        expected = (source.num_frames, *latent_shape)  # (n, 4, h, w)
        start_latents = None if latents is None else checked_latents(latents, expected, "latents")

        # 4. Timesteps; one random stream per frame, so results do not depend on windows or order
        if timesteps is None:
            timesteps = star_timesteps(DEFAULT_NOISE_LEVEL if noise_level is None else noise_level,
                                       num_inference_steps, timestep_spacing)
        self.scheduler.set_timesteps(timesteps=list(timesteps))
        self._num_timesteps = len(self.scheduler.timesteps)  # (`num_timesteps`: diffusers' callbacks read it)
        # one draw from ``generator``, or from the global RNG (so torch.manual_seed makes runs repeatable)
        resuming = self._check_state(state, start_frame, state_sink, callback_on_step_end, output_type)
        start_frame = int(start_frame)  # NumPy's integers too
        base_seed = int(state.metadata["base_seed"]) if resuming else \
            int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        noise = FrameNoise(base_seed)
        order = "synchronous" if callback_on_step_end is not None else "wavefront"
        sampler = WindowedSampler(windows, self.scheduler, noise, order=order)
        first_t = self.scheduler.timesteps[:1]
        # what the state's latents and queued frames depend on besides the windows and timesteps (WindowedSampler
        # checks those): a resume with other tiles, guidance, prompts or colour fix went on without a word, mixing
        # two computations in one video
        run_layout = {"frames": source.num_frames, "latent_shape": list(latent_shape),
                      "out_size": list(geometry["out_size"]),  # (plain numbers: the state is saved as JSON)
                      "tiles": [None if tile_size is None else int(tile_size), int(tile_overlap)],
                      "guidance": [float(guidance_scale), float(guidance_rescale),
                                   float(controlnet_conditioning_scale)],
                      "prompt": prompt, "positive_prompt": positive_prompt, "negative_prompt": negative_prompt,
                      "color_fix": color_fix, "decode_chunk_size": int(decode_chunk_size),
                      # frames not yet in the sampler start from them (a resume without them went on from the
                      # hint); states saved before this was recorded lack it and are not compared on it
                      "latents": None if start_latents is None else tensor_digest(start_latents)}
        if resuming:
            saved = state.metadata.get("run")
            if not isinstance(saved, dict):
                raise InputError("the saved state records no run this call can be compared with")
            # compared on the entries both versions record (a state from before tiles, guidance or prompts were
            # recorded, or one with entries this version does not know: "-> None" was said of those)
            differ = sorted(key for key in saved if key in run_layout and saved[key] != run_layout[key])
            if differ:  # (only these: both records in full ran to 1,650 characters with the prompts)
                details = "; ".join(f"{key} {saved[key]!r} -> {run_layout[key]!r}" for key in differ)
                raise InputError(f"the saved state does not fit this call ({', '.join(differ)} differ: {details})")
            sampler.load_state_dict(state)

        # 5. Frames entering the sampler: hint latents of the upsampled LR frames (SDEdit start:
        #    the hint noised to the first timestep), streamed from the input in order
        hinted = int(state.metadata["hint_frames"]) if resuming else 0
        hint_frames = SequentialFrames(source, start=max(hinted - 1, 0))
        last_hint = [as_levels(hint_frames.take(1)[0]) if hinted else None]  # the last LR frame hinted, (3, h, w)
        if hinted:
            check_same_video(state.tensors.get("last_hint_frame"), last_hint[0], hinted - 1)

        def prepare(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            eps = noise.draw(start, stop, latent_shape)
            lr = hint_frames.take(stop - start)  # (k, 3, h, w)
            if state_sink is not None:  # kept for the states handed out
                last_hint[0] = as_levels(lr[-1])
            hint = self.encode_hint(lr, geometry["out_size"], geometry["canvas"], eps, device)
            if start_latents is not None:
                return start_latents[start:stop].clone(), hint
            return self.scheduler.add_noise(hint, noise.draw(start, stop, latent_shape), first_t), hint

        def denoise(x: torch.Tensor, hint: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if self._interrupt:  # set by a callback, or another thread: diffusers' pipelines then skip the steps
                # left, which this sampler cannot (it was ignored, every step still ran: black-box hunt, review)
                raise InputError("StarVSRPipeline does not stop at pipe._interrupt = True (diffusers' way to skip the "
                                 "steps left): its windows are at different steps, with no partial video to decode; "
                                 "raise an exception of your own from callback_on_step_end to stop the call")
            return self.denoise_window(x, hint, t, geometry, prompt_embeds, guidance_scale, guidance_rescale,
                                       controlnet_conditioning_scale, device)

        # 6. Frames leaving the sampler: decoded a few at a time, colour-fixed, streamed or collected
        color_frames = SequentialFrames(source, start=start_frame)
        pending: list[torch.Tensor] = []  # finished latents not yet decoded
        if resuming and "decode_queue" in state.tensors:
            pending.append(state.tensors["decode_queue"])
        collected: list[torch.Tensor] = []

        def emit(chunk: torch.Tensor) -> None:
            (frame_sink if frame_sink is not None else collected.append)(chunk)
            hand_out_state()

        def finish(start: int, stop: int, final: torch.Tensor) -> None:
            if output_type == "latent":
                collected.append(final)
                return
            pending.append(final)
            decode_pending(last=stop == source.num_frames)

        def decode_pending(last: bool) -> None:  # whole decode chunks of `pending`; all of it after the `last` frame
            while sum(len(p) for p in pending) >= decode_chunk_size or (last and pending):
                queue = torch.cat(pending)
                chunk, rest = queue[:decode_chunk_size], queue[decode_chunk_size:]
                pending[:] = [rest] if len(rest) else []
                emit(self.decode_frames(chunk, color_frames.take(len(chunk)), geometry["out_size"], color_fix,
                                        device))

        def hand_out_state() -> None:  # after every window evaluation and every decoded chunk
            if state_sink is None:
                return
            snapshot = sampler.state_dict()
            if pending:
                snapshot.tensors["decode_queue"] = torch.cat(pending) if len(pending) > 1 else pending[0]
            if last_hint[0] is not None:  # what a resume checks its video against (``check_same_video``)
                snapshot.tensors["last_hint_frame"] = last_hint[0]
            snapshot.metadata.update(run=run_layout, hint_frames=hint_frames.position,
                                     frames_done=color_frames.position,
                                     evaluations=[sampler.evaluations_done(), len(windows) * len(timesteps)])
            state_sink(color_frames.position, snapshot)

        def on_step_end(i: int, t: torch.Tensor) -> None:
            available = {"latents": sampler.gather_latents()}  # a copy of the windows' latents, (n, 4, h, w)
            outputs = callback_on_step_end(self, i, t, {k: available[k] for k in callback_on_step_end_tensor_inputs})
            if outputs is not None and not isinstance(outputs, Mapping):  # (a tuple was passed over without a word)
                raise InputError(f"callback_on_step_end must return a dict of the tensors it changes (or None), not "
                                 f"{type(outputs).__name__}")
            if outputs and "latents" in outputs:  # (extra frames were dropped, too few failed inside the ControlNet)
                sampler.scatter_latents(checked_latents(outputs["latents"], expected,
                                                        "the latents callback_on_step_end returned"))
            elif "latents" in callback_on_step_end_tensor_inputs:  # changed in place, as diffusers' pipelines take
                sampler.scatter_latents(checked_latents(available["latents"], expected,  # it (the copy's changes
                                                        "the latents callback_on_step_end changed"))  # were lost)

        if resuming and sampler.finished:  # a state taken between two decoded chunks: go on decoding
            decode_pending(last=sampler.segments[sampler.finished - 1].stop == source.num_frames)

        # 7. Denoise: every window's prediction is blended into its frames at every step
        with self.progress_bar(total=len(timesteps) * len(windows) * len(geometry["rows"]) *
                               len(geometry["cols"])) as bar:
            tiles = len(geometry["rows"]) * len(geometry["cols"])
            bar.n = bar.last_print_n = sampler.evaluations_done() * tiles  # a resumed run's earlier work (no rate burst)
            sampler.run(prepare, denoise, finish, on_step_end=on_step_end if callback_on_step_end else None,
                        progress=lambda: bar.update(tiles), after_window=hand_out_state)

        if output_type == "latent":
            frames: Any = torch.cat(collected)[None]
        else:
            if color_frames.position != source.num_frames:  # a bug, not the user's: say so rather than lose frames
                raise RuntimeError(f"{color_frames.position} of {source.num_frames} frames were decoded")
            if not collected:  # resumed from a state taken after the last frame: nothing left
                collected.append(torch.empty(0, 3, *geometry["out_size"]))
            frames = frames_to_output(collected, output_type) if frame_sink is None else None
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return StarVSRPipelineOutput(frames=frames)

