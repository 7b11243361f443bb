"""The random parameters of one clip's degradation, and how they are drawn from a config.

Everything here is drawn ONCE per clip from an explicit `torch.Generator` and then applied to
every frame alike (temporal coherence); only the noise realisation is drawn per frame, later,
when the parameters are applied. The dataclasses are small and printable for logging.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from star_vsr.degradations.config import (
    DEGRADATION_CODECS,
    KERNEL_TYPES,
    MAX_JPEG_QUALITY,
    RESIZE_DIRECTIONS,
    RESIZE_MODES,
    SINC_LARGE_KERNEL_SIZE,
    CodecConfig,
    DegradationConfig,
    OrderConfig,
)
from star_vsr.degradations.kernels import SINC_KIND, KernelSpec
from star_vsr.errors import InputError

T = TypeVar("T")

#: The noise families an order draws from (`NoiseParams.kind`).
NOISE_KINDS = ("gaussian", "poisson")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


@dataclass(frozen=True)
class NoiseParams:
    """Noise of one order.

    Parameters:
        kind: "gaussian" or "poisson".
        gray: True for the same noise in all channels, False for colour noise.
        level: Gaussian sigma in 8-bit levels, or the Poisson noise multiplier.
    """

    kind: str
    gray: bool
    level: float

    def __post_init__(self) -> None:
        # hand-built params (from --print-params JSON, say): a NaN level gave a black clip, without an error
        _check(self.kind in NOISE_KINDS, f"NoiseParams.kind must be one of {', '.join(NOISE_KINDS)}, got "
                                         f"{self.kind!r}")
        _check(_is_number(self.level) and 0 <= self.level < math.inf,
               f"NoiseParams.level must be a finite number >= 0, got {self.level!r}")
        _check(isinstance(self.gray, bool), f"NoiseParams.gray must be True or False, got {self.gray!r}")


@dataclass(frozen=True)
class OrderParams:
    """One order's draws: blur -> resize -> noise -> JPEG.

    Parameters:
        kernel: Blur kernel, or None when this order does not blur.
        resize_direction: "up", "down" or "keep".
        resize_factor: Target size / reference size (HR size for order 1, LR size for order 2).
        resize_mode: Interpolation mode of the resize.
        noise: Noise of this order, or None for none.
        jpeg_quality: JPEG quality factor 1..100, or None for no JPEG.
    """

    kernel: KernelSpec | None
    resize_direction: str
    resize_factor: float
    resize_mode: str
    noise: NoiseParams | None
    jpeg_quality: int | None

    def __post_init__(self) -> None:
        # a negative or NaN factor resized to one pixel without an error
        _check(_is_number(self.resize_factor) and 0 < self.resize_factor < math.inf,
               f"OrderParams.resize_factor must be a finite number > 0, got {self.resize_factor!r}")
        _check(self.kernel is None or isinstance(self.kernel, KernelSpec),
               f"OrderParams.kernel must be a KernelSpec or None, got {type(self.kernel).__name__}")
        _check(self.noise is None or isinstance(self.noise, NoiseParams),
               f"OrderParams.noise must be a NoiseParams or None, got {type(self.noise).__name__}")
        # (a mode or direction of no meaning was taken while the resize kept the size; a quality of 50.7 was cut to
        # 50, True read as 1)
        _check(self.resize_direction in RESIZE_DIRECTIONS, f"OrderParams.resize_direction must be one of "
               f"{', '.join(RESIZE_DIRECTIONS)}, got {self.resize_direction!r}")
        _check(self.resize_mode in RESIZE_MODES,
               f"OrderParams.resize_mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}")
        _check(self.jpeg_quality is None or (isinstance(self.jpeg_quality, numbers.Integral)
                                             and not isinstance(self.jpeg_quality, bool)
                                             and 1 <= self.jpeg_quality <= MAX_JPEG_QUALITY),
               f"OrderParams.jpeg_quality must be a whole number in 1..{MAX_JPEG_QUALITY} or None, got "
               f"{self.jpeg_quality!r}")


@dataclass(frozen=True)
class CodecParams:
    """Whole-clip video compression.

    Parameters:
        codec: FFmpeg encoder, "libx264" or "mpeg4".
        crf: libx264 constant rate factor (None for mpeg4).
        bits_per_pixel: mpeg4 target bits per pixel per frame (None for libx264).
        x264_preset: libx264 speed preset (None for mpeg4).
    """

    codec: str
    crf: int | None
    bits_per_pixel: float | None
    x264_preset: str | None


@dataclass(frozen=True)
class DegradationParams:
    """All random choices of one clip's degradation.

    Parameters:
        first_order: Draws of the first order.
        second_order: Draws of the second order, or None when it is skipped.
        final_resize_mode: Interpolation mode of the resize to (h / scale, w / scale).
        final_sinc: Final sinc kernel, or None for none.
        sinc_before_jpeg: True: [resize + sinc] then the last JPEG; False: JPEG first.
        codec: Whole-clip video compression, or None for none.
    """

    first_order: OrderParams
    second_order: OrderParams | None
    final_resize_mode: str
    final_sinc: KernelSpec | None
    sinc_before_jpeg: bool
    codec: CodecParams | None

    def __post_init__(self) -> None:
        _check(isinstance(self.first_order, OrderParams),
               f"DegradationParams.first_order must be an OrderParams, got {type(self.first_order).__name__}")
        _check(self.second_order is None or isinstance(self.second_order, OrderParams),
               f"DegradationParams.second_order must be an OrderParams or None, got "
               f"{type(self.second_order).__name__}")
        _check(isinstance(self.sinc_before_jpeg, bool),  # "no" was taken as True
               f"DegradationParams.sinc_before_jpeg must be True or False, got {self.sinc_before_jpeg!r}")
        _check(self.codec is None or isinstance(self.codec, CodecParams),
               f"DegradationParams.codec must be a CodecParams or None, got {type(self.codec).__name__}")


# --- drawing from a torch.Generator ----------------------------------------------------------

STREAM_SEED_BOUND = 2**62
"""Exclusive upper bound of the seeds of per-stage random streams."""


def spawn_streams(generator: torch.Generator, count: int) -> list[torch.Generator]:
    """`count` independent CPU generators seeded from `generator` (which advances by a fixed
    amount). Each stage draws from its own stream, so turning one stage off or changing its
    ranges never changes what the other stages draw."""
    seeds = torch.randint(0, STREAM_SEED_BOUND, (count,), generator=generator)  # (count,) int64
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A float uniform in [low, high)."""
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return low + (high - low) * u


def _bernoulli(generator: torch.Generator, p: float) -> bool:
    """True with probability p (never for p = 0, always for p = 1)."""
    return torch.rand((), generator=generator, dtype=torch.float64).item() < p


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer uniform in [low, high], both inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


def _choice(
    generator: torch.Generator, options: Sequence[T], weights: Sequence[float] | None = None
) -> T:
    """One of `options`, uniformly or with relative `weights`."""
    if weights is None:
        return options[_randint(generator, 0, len(options) - 1)]
    probs = torch.tensor(list(weights), dtype=torch.float64)
    return options[int(torch.multinomial(probs, 1, generator=generator).item())]


def _weighted_choice(
    generator: torch.Generator, weights: Mapping[str, float], names: Sequence[str]
) -> str:
    """One of `names` with weights from a (possibly partial) mapping; missing names weigh 0."""
    return _choice(generator, names, [float(weights.get(name, 0.0)) for name in names])


def _shape_beta(generator: torch.Generator, beta_range: tuple[float, float]) -> float:
    """Shape exponent beta, as BasicSR's ``random_bivariate_(generalized_gaussian|plateau)`` draw it: a range
    that holds 1 is split there and each side drawn half the time, so heavy-tailed (beta < 1) and flat-topped
    (beta > 1) shapes are equally likely. With the plateau's (1, 2), half the plateau kernels have beta exactly 1,
    the widest (this drew (1, 2) whole, and never beta 1). A range without 1 is drawn whole (BasicSR's draw would
    leave it)."""
    low, high = beta_range
    if not low <= 1.0 <= high:
        return _uniform(generator, low, high)
    below = _bernoulli(generator, 0.5)
    return _uniform(generator, low, 1.0) if below else _uniform(generator, 1.0, high)


# --- sampling ---------------------------------------------------------------------------------


def sample_sinc_kernel(
    generator: torch.Generator, sizes: Sequence[int], cutoff_range: tuple[float, float]
) -> KernelSpec:
    """A sinc kernel with a size from `sizes` and a cutoff (rad/pixel) from `cutoff_range`."""
    size = _choice(generator, sizes)
    return KernelSpec(kind=SINC_KIND, size=size, cutoff=_uniform(generator, *cutoff_range))


def sample_blur_kernel(generator: torch.Generator, config: OrderConfig) -> KernelSpec:
    """A blur kernel of one order (Real-ESRGAN Sec. 3.1): a sinc with `sinc_prob`, else one of
    the Gaussian / generalized Gaussian / plateau families, isotropic or anisotropic."""
    size = _choice(generator, config.kernel_sizes)
    if _bernoulli(generator, config.sinc_prob):
        cutoff_range = (
            config.sinc_cutoff_range_small
            if size < SINC_LARGE_KERNEL_SIZE
            else config.sinc_cutoff_range_large
        )
        return KernelSpec(kind=SINC_KIND, size=size, cutoff=_uniform(generator, *cutoff_range))

    kind = _weighted_choice(generator, config.kernel_probs, KERNEL_TYPES)
    sigma_x = _uniform(generator, *config.blur_sigma_range)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = _uniform(generator, *config.blur_sigma_range)
        theta = _uniform(generator, *config.rotation_range)
    beta = None
    if kind.startswith("generalized"):
        beta = _shape_beta(generator, config.generalized_beta_range)
    elif kind.startswith("plateau"):
        beta = _shape_beta(generator, config.plateau_beta_range)
    return KernelSpec(kind, size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)


def sample_resize(generator: torch.Generator, config: OrderConfig) -> tuple[str, float, str]:
    """(direction, factor, mode) of one order's resize."""
    direction = _choice(generator, RESIZE_DIRECTIONS, config.resize_probs)
    low, high = config.resize_range
    if direction == "up":
        factor = _uniform(generator, 1.0, high)
    elif direction == "down":
        factor = _uniform(generator, low, 1.0)
    else:
        factor = 1.0
    return direction, factor, _choice(generator, config.resize_modes)


def sample_noise(generator: torch.Generator, config: OrderConfig) -> NoiseParams | None:
    """Noise type, colour/grey and level of one order, or None (probability 1 - noise_prob)."""
    if not _bernoulli(generator, config.noise_prob):
        return None
    gray = _bernoulli(generator, config.gray_noise_prob)
    if _bernoulli(generator, config.gaussian_noise_prob):
        return NoiseParams("gaussian", gray, _uniform(generator, *config.gaussian_sigma_range))
    return NoiseParams("poisson", gray, _uniform(generator, *config.poisson_scale_range))


def sample_order(generator: torch.Generator, config: OrderConfig) -> OrderParams:
    """All draws of one order, each stage from its own stream."""
    blur, resize, noise, jpeg = spawn_streams(generator, 4)
    kernel = sample_blur_kernel(blur, config) if _bernoulli(blur, config.blur_prob) else None
    direction, factor, mode = sample_resize(resize, config)
    quality = (
        _randint(jpeg, *config.jpeg_quality_range) if _bernoulli(jpeg, config.jpeg_prob) else None
    )
    return OrderParams(kernel, direction, factor, mode, sample_noise(noise, config), quality)


def sample_codec(generator: torch.Generator, config: CodecConfig) -> CodecParams | None:
    """The video codec and its strength, or None (with probability 1 - `config.prob`)."""
    if not _bernoulli(generator, config.prob):
        return None
    codec = _weighted_choice(generator, config.codec_probs, DEGRADATION_CODECS)
    if codec == "libx264":
        crf = _randint(generator, *config.x264_crf_range)
        return CodecParams(codec, crf, None, config.x264_preset)
    bits_per_pixel = _uniform(generator, *config.mpeg4_bits_per_pixel_range)
    return CodecParams(codec, None, bits_per_pixel, None)


def sample_params(config: DegradationConfig, generator: torch.Generator) -> DegradationParams:
    """Draw every random parameter of one clip's degradation from `generator`.

    `generator` advances by the same amount whatever the config, so whatever is drawn from it
    afterwards does not depend on which stages are on. (The noise realisations drawn while the clip is
    degraded do: the noise stages that are on take their draws from one generator in turn.)
    """
    first, second, final, codec = spawn_streams(generator, 4)
    # 1. Orders
    first_order = sample_order(first, config.first_order)
    second_order = None
    if _bernoulli(second, config.second_order_prob):
        second_order = sample_order(second, config.second_order)
    # 2. Final stage: resize mode, sinc/JPEG order, sinc kernel
    final_mode = _choice(final, config.final_resize_modes)
    sinc_before_jpeg = _bernoulli(final, config.sinc_before_jpeg_prob)
    final_sinc = None
    if _bernoulli(final, config.final_sinc_prob):
        final_sinc = sample_sinc_kernel(
            final, config.final_sinc_kernel_sizes, config.final_sinc_cutoff_range
        )
    # 3. Video codec
    return DegradationParams(
        first_order,
        second_order,
        final_mode,
        final_sinc,
        sinc_before_jpeg,
        sample_codec(codec, config.codec),
    )
