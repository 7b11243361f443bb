"""Temporally coherent real-world degradation of a whole clip: HR (n, 3, h, w) -> LR.

The chain is Real-ESRGAN's second-order model (Wang et al. 2021, Fig. 2), run on all frames of a
clip at once with ONE draw of its random parameters per clip, followed by compression of the
whole clip with a real video codec:

1. first order:  blur -> resize (relative to the HR size) -> noise -> JPEG
2. second order: blur -> resize (relative to the LR size) -> noise
3. final stage, in random order: {[resize to (h / scale, w / scale) + sinc], JPEG}
4. video codec over the whole LR clip (libx264 or mpeg4, through PyAV)

The reference STAR code degrades each frame with its own random draws, so blur, scale and noise
level flicker from frame to frame and the codec never sees more than one frame; here only the
noise realisation changes between frames, as sensor noise does.
"""

from __future__ import annotations

import numpy as np
import torch

from star_vsr.degradations.codec import compress_clip
from star_vsr.degradations.config import DegradationConfig, check_scale
from star_vsr.degradations.filtering import filter_clip, resize_clip
from star_vsr.degradations.frames import clip_to_frames, frames_to_clip, quantize
from star_vsr.degradations.jpeg import jpeg_compress_frames
from star_vsr.degradations.noise import add_gaussian_noise, add_poisson_noise
from star_vsr.degradations.params import DegradationParams, OrderParams, sample_params
from star_vsr.errors import InputError

RANGE_TOLERANCE = 1e-4
"""How far outside [0, 1] an input clip may stray (float round-off) before it is rejected."""


class RealWorldDegradation:
    """Degrade HR clips into LR clips with Real-ESRGAN's second-order chain plus a video codec.

    Holds no random state, so it pickles into DataLoader workers; every call takes its own seed
    or `torch.Generator`. Runs on the CPU (the JPEG and codec stages are CPU-only) with torch's
    current thread settings, except the resizes and the codec, which run on one thread so that the
    output does not depend on the thread count (torch's resize kernels round the last bit differently by
    thread count, and the encoders decide differently).

    Parameters:
        config: Ranges of every random choice (default: the `medium` preset).
        scale: HR / LR size ratio, one of `config.SUPPORTED_SCALES` (2, 3, 4).

    Example::

        degradation = RealWorldDegradation(DegradationConfig.preset("heavy"), scale=4)
        params = degradation.sample_params(generator)  # inspect or log, then
        lr = degradation.apply(hr, params, generator)  # (n, 3, h, w) -> (n, 3, h/4, w/4)
        lr = degradation(hr, seed=0)  # or both steps at once
    """

    def __init__(self, config: DegradationConfig | None = None, scale: int = 4) -> None:
        if config is None:
            config = DegradationConfig()
        if not isinstance(config, DegradationConfig):
            raise InputError(
                f"config must be a DegradationConfig, got {type(config).__name__}; use "
                "DegradationConfig.preset(name) for a named preset."
            )
        self.config = config
        self.scale = check_scale(scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, config={self.config})"

    def __call__(self, hr: torch.Tensor, seed: int | torch.Generator) -> torch.Tensor:
        """Draw parameters from `seed` and degrade `hr`; same seed -> bit-identical output (on the same kind
        of CPU, whatever the number of threads: see ``star_vsr.cli.degrade``).

        Args:
            hr: (n, 3, h, w) float clip in [0, 1] on the CPU; h and w divisible by `scale`.
            seed: An int seed, or a CPU `torch.Generator` (advanced by the call).

        Returns:
            (n, 3, h / scale, w / scale) float32 LR clip in [0, 1], on 8-bit levels.
        """
        generator = make_generator(seed)
        params = self.sample_params(generator)
        return self.apply(hr, params, generator)

    def sample_params(self, generator: torch.Generator) -> DegradationParams:
        """Draw all per-clip random parameters (kernels, factors, noise, qualities, codec)."""
        return sample_params(self.config, _checked_generator(generator, "sample_params"))

    def apply(
        self, hr: torch.Tensor, params: DegradationParams, generator: torch.Generator
    ) -> torch.Tensor:
        """Degrade `hr` with fixed `params`; `generator` draws only the per-frame noise.

        Args:
            hr: (n, 3, h, w) float clip in [0, 1] on the CPU; h and w divisible by `scale`.
            params: Per-clip parameters from `sample_params`.
            generator: CPU generator for the noise realisations.

        Returns:
            (n, 3, h / scale, w / scale) float32 LR clip in [0, 1], on 8-bit levels.
        """
        # 1. Check inputs
        check_hr_clip(hr, self.scale)
        generator = _checked_generator(generator, "apply")
        if not isinstance(params, DegradationParams):
            raise InputError(
                f"apply needs the DegradationParams that sample_params draws, got {type(params).__name__}."
            )
        h, w = hr.shape[-2:]
        lr_size = (h // self.scale, w // self.scale)
        x = hr.to(torch.float32)  # (n, 3, h, w)

        # 2. First order, resize relative to the HR size
        x = _apply_order(x, params.first_order, (h, w), generator)
        last_jpeg = params.first_order.jpeg_quality

        # 3. Second order, resize relative to the LR size; its JPEG moves to the final stage
        if params.second_order is not None:
            x = _jpeg(x, last_jpeg)
            x = _apply_order(x, params.second_order, lr_size, generator)
            last_jpeg = params.second_order.jpeg_quality

        # 4. Final stage: [resize to LR + sinc] and the last JPEG, in the drawn order
        if params.sinc_before_jpeg:
            x = _jpeg(_resize_and_sinc(x, lr_size, params), last_jpeg)
        else:
            x = _resize_and_sinc(_jpeg(x, last_jpeg), lr_size, params)
        x = quantize(x)  # (n, 3, h / scale, w / scale) on 8-bit levels

        # 5. Whole-clip video compression
        if params.codec is not None:
            compressed = compress_clip(
                clip_to_frames(x),
                params.codec.codec,
                crf=params.codec.crf,
                bits_per_pixel=params.codec.bits_per_pixel,
                x264_preset=params.codec.x264_preset,
            )
            x = frames_to_clip(compressed)
        return x


def check_hr_clip(hr: torch.Tensor, scale: int, name: str = "hr", cpu_only: bool = True) -> None:
    """``InputError`` unless ``hr`` is a float (n, 3, h, w) clip in [0, 1] with h and w divisible by ``scale``,
    on the CPU with ``cpu_only``: the input of the chain, and of bicubic downsampling (``star_vsr.data.make_pair``,
    which runs on any device)."""
    if not isinstance(hr, torch.Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor shaped (n, 3, h, w), got {type(hr).__name__}."
        )
    if hr.ndim != 4 or hr.shape[1] != 3 or hr.shape[0] < 1:
        raise InputError(f"{name} must be shaped (n, 3, h, w) with n >= 1, got {tuple(hr.shape)}.")
    if not hr.is_floating_point():
        raise InputError(
            f"{name} must be a float tensor in [0, 1], got {hr.dtype}; divide uint8 frames by 255."
        )
    if cpu_only and hr.device.type != "cpu":
        raise InputError(
            f"{name} is on {hr.device}; the degradation chain runs on the CPU (JPEG and video "
            f"codec stages), so pass {name}.cpu()."
        )
    _, _, h, w = hr.shape
    if h < scale or w < scale:
        raise InputError(f"Frame size {h}x{w} is smaller than the scale {scale}.")
    if h % scale or w % scale:
        raise InputError(
            f"Frame size {h}x{w} is not divisible by scale {scale}; crop the clip to "
            f"{h - h % scale}x{w - w % scale} first."
        )
    if not bool(hr.isfinite().all()):  # (aminmax gives NaN, and the [-1, 1] hint below would mislead)
        raise InputError(f"{name} holds NaN or infinite values; check what made it.")
    low, high = (value.item() for value in hr.aminmax())
    if not (low >= -RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE):
        hint = ("they look like 10- to 16-bit levels: divide by the largest level (1023, 4095 or 65535)"
                if high > 256 else  # not "(hr + 1) / 2" for 0..255
                "they look like 0..255 values: divide by 255" if high > 2 else
                f"for [-1, 1] tensors use ({name} + 1) / 2" if low < 0 else  # (said of [0, 2] too, which it
                "scale them into [0, 1]")  # leaves out of range: black-box hunt)
        raise InputError(f"{name} values must be in [0, 1], got [{low:.4g}, {high:.4g}]; {hint}.")


def _checked_generator(generator: torch.Generator, method: str) -> torch.Generator:
    """``generator`` when it is a CPU ``torch.Generator``; ``None`` would draw from torch's global RNG (results that
    change with ``torch.manual_seed``), so anything else is an ``InputError``."""
    if not isinstance(generator, torch.Generator):
        raise InputError(
            f"{method} needs a CPU torch.Generator, got {type(generator).__name__}: pass "
            f"torch.Generator().manual_seed(seed), or call the degradation with a seed."
        )
    return make_generator(generator)


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU `torch.Generator` from an int seed, or the given generator itself."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise InputError(
                f"The degradation chain needs a CPU torch.Generator, got one on {seed.device}."
            )
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}.")
    if not -2 ** 63 <= int(seed) < 2 ** 64:
        raise InputError(f"seed must fit in 64 bits, got {seed}.")
    return torch.Generator().manual_seed(int(seed))


def _apply_order(
    x: torch.Tensor,
    params: OrderParams,
    reference_size: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """Blur -> resize -> noise of one order (its JPEG is applied by the caller)."""
    if params.kernel is not None:
        x = filter_clip(x, params.kernel.build())
    target = (
        max(1, int(reference_size[0] * params.resize_factor)),
        max(1, int(reference_size[1] * params.resize_factor)),
    )
    x = resize_clip(x, target, params.resize_mode).clamp(0.0, 1.0)  # not in place: x may be hr
    if params.noise is not None:
        if params.noise.kind == "gaussian":
            x = add_gaussian_noise(x, params.noise.level, params.noise.gray, generator)
        else:
            x = add_poisson_noise(x, params.noise.level, params.noise.gray, generator)
    return x


def _jpeg(x: torch.Tensor, quality: int | None) -> torch.Tensor:
    """JPEG-compress every frame at `quality`, or return `x` unchanged for None."""
    if quality is None:
        return x
    return frames_to_clip(jpeg_compress_frames(clip_to_frames(x), quality))


def _resize_and_sinc(
    x: torch.Tensor, lr_size: tuple[int, int], params: DegradationParams
) -> torch.Tensor:
    """Resize to the LR size, then the final sinc filter if one was drawn."""
    x = resize_clip(x, lr_size, params.final_resize_mode)
    if params.final_sinc is not None:
        x = filter_clip(x, params.final_sinc.build())
    return x


def _resolve_config(config: str | DegradationConfig | None) -> DegradationConfig:
    """A `DegradationConfig` from a preset name, a config (as it is) or None (the default, medium)."""
    if config is None:
        return DegradationConfig()
    if isinstance(config, str):
        return DegradationConfig.preset(config)
    return config


def degrade_clip(
    hr: torch.Tensor,
    scale: int = 4,
    config: str | DegradationConfig | None = None,
    seed: int | torch.Generator = 0,
) -> torch.Tensor:
    """Degrade one HR clip into its LR counterpart, deterministically by `seed`.

    Args:
        hr: (n, 3, h, w) float clip in [0, 1] on the CPU; h and w divisible by `scale`.
        scale: 2, 3 or 4.
        config: A `DegradationConfig`, a preset name ("light", "medium", "heavy") or None for
            the default (medium).
        seed: An int seed or a CPU `torch.Generator`.

    Returns:
        (n, 3, h / scale, w / scale) float32 LR clip in [0, 1].
    """
    return RealWorldDegradation(_resolve_config(config), scale)(hr, seed)


def degrade_frames(
    frames: np.ndarray,
    scale: int = 4,
    config: str | DegradationConfig | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Degrade 8-bit frames as decoders give them: uint8 (n, h, w, 3) RGB -> uint8 LR frames.

    Args:
        frames: (n, h, w, 3) uint8 RGB frames of one clip; h and w divisible by `scale`.
        scale: 2, 3 or 4.
        config: A `DegradationConfig`, a preset name ("light", "medium", "heavy") or None for
            the default (medium), as in `degrade_clip`.
        seed: Int seed; the same seed gives identical frames.

    Returns:
        (n, h / scale, w / scale, 3) uint8 RGB frames.
    """
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise InputError(f"frames must be a uint8 array shaped (n, h, w, 3), got {dtype} {shape}.")
    lr = degrade_clip(frames_to_clip(frames), scale, config, seed)
    return clip_to_frames(lr)
