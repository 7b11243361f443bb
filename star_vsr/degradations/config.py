"""Settings of the real-world degradation chain: every range, probability and choice.

The chain is the second-order model of Real-ESRGAN (Wang et al. 2021, "Real-ESRGAN: Training
Real-World Blind Super-Resolution with Pure Synthetic Data", Sec. 3 and Fig. 2) followed by
whole-clip video-codec compression. One order is ``blur -> resize -> noise -> JPEG``; the chain
is ``order 1 -> order 2 -> {[resize to LR + sinc], JPEG} in random order -> video codec``.

`DegradationConfig()` is the `medium` preset: the paper's published settings for both orders,
plus a moderate codec stage. `DegradationConfig.preset(name)` gives `light`, `medium` or `heavy`;
`dataclasses.replace` changes any field. Every random value a config describes is drawn once per
clip (see `star_vsr.degradations.params`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from star_vsr.errors import InputError

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
"""Blur kernel families of Real-ESRGAN Sec. 3.1: Gaussian, generalized Gaussian and plateau,
each isotropic (one sigma, no rotation) or anisotropic (two sigmas and a rotation)."""

RESIZE_MODES = ("area", "bilinear", "bicubic")
"""Interpolation modes of `torch.nn.functional.interpolate` the resize stages draw from."""

RESIZE_DIRECTIONS = ("up", "down", "keep")
"""Order of the three probabilities in `OrderConfig.resize_probs`."""

DEGRADATION_CODECS = ("libx264", "mpeg4")
"""Video codecs of the whole-clip compression stage (FFmpeg encoder names, through PyAV)."""

SUPPORTED_SCALES = (2, 3, 4)
"""Down-scaling factors between the HR clip and the LR clip the chain produces."""

PRESETS = ("light", "medium", "heavy")
"""Names accepted by `DegradationConfig.preset`."""

MIN_KERNEL_SIZE = 7
"""Smallest blur / sinc kernel side in pixels (Real-ESRGAN Sec. 3.1: kernel sizes 7..21)."""

MAX_KERNEL_SIZE = 21
"""Largest blur / sinc kernel side in pixels."""

SINC_LARGE_KERNEL_SIZE = 13
"""Sinc kernels at least this wide draw their cutoff from `sinc_cutoff_range_large`."""

ALL_KERNEL_SIZES = tuple(range(MIN_KERNEL_SIZE, MAX_KERNEL_SIZE + 1, 2))
"""Every odd kernel side from 7 to 21; the default draws uniformly among them."""

MAX_JPEG_QUALITY = 100
"""Highest JPEG quality factor (libjpeg scale 1..100)."""

MAX_X264_CRF = 51
"""Highest libx264 constant rate factor for 8-bit video (51 is worst; 0 is lossless in YUV, not quite in RGB
after the 4:2:0 round trip)."""

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
"""libx264 speed presets: slower ones spend more effort per bit (fewer artefacts at a CRF)."""


def _default_kernel_probs() -> dict[str, float]:
    """Real-ESRGAN's kernel-family probabilities (Sec. 4.1), in `KERNEL_TYPES` order."""
    return {
        "iso": 0.45,
        "aniso": 0.25,
        "generalized_iso": 0.12,
        "generalized_aniso": 0.03,
        "plateau_iso": 0.12,
        "plateau_aniso": 0.03,
    }


def _default_codec_probs() -> dict[str, float]:
    """Equal odds for H.264 (libx264) and MPEG-4 Part 2."""
    return {"libx264": 0.5, "mpeg4": 0.5}


@dataclass(frozen=True)
class OrderConfig:
    """Ranges of one degradation order: blur -> resize -> noise -> JPEG.

    The defaults are Real-ESRGAN's first order (paper Sec. 4.1).

    Parameters:
        blur_prob: Probability (0..1) that the order blurs at all.
        kernel_sizes: Odd kernel sides in pixels (each in 7..21), drawn uniformly.
        kernel_probs: Relative weights (>= 0, any sum > 0) of the families in `KERNEL_TYPES`;
            families left out have weight 0.
        sinc_prob: Probability (0..1) that the blur is a 2-D sinc (ringing / overshoot) kernel
            instead of one of the `kernel_probs` families.
        blur_sigma_range: (min, max) standard deviation of the Gaussian-like kernels, in pixels
            (> 0). Anisotropic kernels draw the two axes independently.
        rotation_range: (min, max) rotation of anisotropic kernels, in radians.
        generalized_beta_range: (min, max) shape exponent beta (> 0) of generalized Gaussian
            kernels; beta < 1 gives heavier tails, beta > 1 a flatter top.
        plateau_beta_range: (min, max) shape exponent beta (> 0) of plateau kernels.
        sinc_cutoff_range_small: (min, max) cutoff frequency omega_c of sinc kernels smaller
            than `SINC_LARGE_KERNEL_SIZE`, in radians per pixel (0 < omega_c <= pi).
        sinc_cutoff_range_large: (min, max) cutoff omega_c of larger sinc kernels, radians per
            pixel; a large support can hold a lower cutoff without truncating the kernel.
        resize_probs: Probabilities (up, down, keep), each >= 0, sum > 0.
        resize_range: (min, max) resize factor (> 0): "up" draws in [1, max], "down" in [min, 1].
            The factor is relative to the order's reference size: the HR size for the first
            order and the final LR size for the second (as in Real-ESRGAN).
        resize_modes: Interpolation modes (subset of `RESIZE_MODES`), drawn uniformly.
        noise_prob: Probability (0..1) that the order adds noise at all.
        gaussian_noise_prob: Probability (0..1) that the noise is Gaussian rather than Poisson.
        gaussian_sigma_range: (min, max) Gaussian noise standard deviation, in 8-bit levels
            (0..255 scale; 10 means 10/255 on [0, 1] frames).
        poisson_scale_range: (min, max) multiplier (>= 0; 0: none) of Poisson (shot) noise whose photon
            count is the intensity times `noise.POISSON_COUNTS_AT_WHITE`.
        gray_noise_prob: Probability (0..1) that the noise is the same in all three channels
            (luminance noise) instead of independent per channel (colour noise).
        jpeg_prob: Probability (0..1) that the order ends with JPEG compression.
        jpeg_quality_range: (min, max) JPEG quality factor, integers in 1..100.
    """

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, ...] = ALL_KERNEL_SIZES
    kernel_probs: dict[str, float] = field(default_factory=_default_kernel_probs)
    sinc_prob: float = 0.1
    blur_sigma_range: tuple[float, float] = (0.2, 3.0)
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    generalized_beta_range: tuple[float, float] = (0.5, 4.0)
    plateau_beta_range: tuple[float, float] = (1.0, 2.0)
    sinc_cutoff_range_small: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_cutoff_range_large: tuple[float, float] = (math.pi / 5, math.pi)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    gaussian_sigma_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_quality_range: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        # Own copies, so a dict shared with the caller cannot change a frozen config later.
        _as_dict(self, "kernel_probs")
        _as_tuple(self, "kernel_sizes")
        _as_tuple(self, "resize_modes")
        for name in (
            "blur_prob",
            "sinc_prob",
            "noise_prob",
            "gaussian_noise_prob",
            "gray_noise_prob",
            "jpeg_prob",
        ):
            _check_probability(self, name)
        _check_kernel_sizes(self, "kernel_sizes")
        _check_weights(self, "kernel_probs", KERNEL_TYPES)
        _check_range(self, "blur_sigma_range", minimum=0.0, strict=True)
        _check_range(self, "rotation_range")
        _check_range(self, "generalized_beta_range", minimum=0.0, strict=True)
        _check_range(self, "plateau_beta_range", minimum=0.0, strict=True)
        _check_range(self, "sinc_cutoff_range_small", minimum=0.0, maximum=math.pi, strict=True)
        _check_range(self, "sinc_cutoff_range_large", minimum=0.0, maximum=math.pi, strict=True)
        _check_weights(self, "resize_probs", RESIZE_DIRECTIONS)
        _check_range(self, "resize_range", minimum=0.0, strict=True)
        low, high = self.resize_range
        if low > 1.0 or high < 1.0:
            raise InputError(
                f"OrderConfig.resize_range={self.resize_range!r} must contain 1.0: 'down' draws "
                "in [min, 1] and 'up' in [1, max]. Use resize_probs to turn a direction off."
            )
        _check_choices(self, "resize_modes", RESIZE_MODES)
        _check_range(self, "gaussian_sigma_range", minimum=0.0)
        _check_range(self, "poisson_scale_range", minimum=0.0)
        _check_range(self, "jpeg_quality_range", minimum=1, maximum=MAX_JPEG_QUALITY, integer=True)


def second_order_defaults() -> OrderConfig:
    """Real-ESRGAN's second order (paper Sec. 4.1): milder blur, LR-relative resize."""
    return OrderConfig(
        blur_prob=0.8,
        blur_sigma_range=(0.2, 1.5),
        resize_probs=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        gaussian_sigma_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )


@dataclass(frozen=True)
class CodecConfig:
    """Whole-clip video compression, encoded and decoded in memory through PyAV.

    Differs from STAR's ``degrade_video.py`` on purpose, beyond compressing the whole clip (STAR encodes each
    frame as its own one-frame video, so no inter-frame artefacts) and once, at the end of the chain (STAR also
    compresses after the first order's JPEG, at the intermediate size, near the HR one: a second, harder pass at
    a fraction of a bit per pixel there, which this chain leaves out): STAR draws libx264, h264 or mpeg4 uniformly
    at a bitrate of 1e4-1e5 bits per frame (about 0.17-1.7 bits per pixel on a 180x320 LR frame, and less per
    pixel on larger frames). Here libx264 (the FFmpeg h264 encoder is the same library) is rate-controlled by
    CRF and mpeg4 by bits per pixel, so the strength does not depend on the frame size; the ``medium`` preset's
    mpeg4 range (0.08-0.4) compresses harder than STAR's. Except at the low end: MPEG-4's coarsest quantiser (31)
    bounds how hard it can compress, and small frames reach that bound first. On 64x64 LR frames (a 256 crop at x4)
    every target from 0.02 to 0.1 bits per pixel (``heavy``'s whole range) gives the same output; on 128x128 frames
    the bound is below 0.05. libx264's CRF has no such floor.

    Parameters:
        prob: Probability (0..1) that the clip is compressed with a video codec at all.
        codec_probs: Relative weights (>= 0, sum > 0) of the encoders in `DEGRADATION_CODECS`.
        x264_crf_range: (min, max) libx264 constant rate factor, integers in 0..51; higher is
            stronger compression (23 is FFmpeg's default).
        x264_preset: libx264 speed preset (one of `X264_PRESETS`).
        mpeg4_bits_per_pixel_range: (min, max) MPEG-4 Part 2 target bitrate in bits per pixel
            per frame (> 0); the encoder's bitrate is this times width x height x
            `codec.CODEC_FRAME_RATE`, so the strength does not depend on the frame size (down to the floor
            above).
    """

    prob: float = 1.0
    codec_probs: dict[str, float] = field(default_factory=_default_codec_probs)
    x264_crf_range: tuple[int, int] = (23, 32)
    x264_preset: str = "medium"
    mpeg4_bits_per_pixel_range: tuple[float, float] = (0.08, 0.4)

    def __post_init__(self) -> None:
        _as_dict(self, "codec_probs")
        _check_probability(self, "prob")
        _check_weights(self, "codec_probs", DEGRADATION_CODECS)
        _check_range(self, "x264_crf_range", minimum=0, maximum=MAX_X264_CRF, integer=True)
        if self.x264_preset not in X264_PRESETS:
            raise InputError(
                f"CodecConfig.x264_preset={self.x264_preset!r} is not a libx264 preset; "
                f"choose one of {', '.join(X264_PRESETS)}."
            )
        _check_range(self, "mpeg4_bits_per_pixel_range", minimum=0.0, strict=True)


@dataclass(frozen=True)
class DegradationConfig:
    """The whole chain: two orders, the final resize + sinc / JPEG stage and the codec.

    The defaults are the `medium` preset: Real-ESRGAN's published settings (paper Sec. 4.1)
    and `CodecConfig()`.

    Parameters:
        first_order: Ranges of the first order; its resize is relative to the HR size.
        second_order: Ranges of the second order; its resize is relative to the LR size.
        second_order_prob: Probability (0..1) that the second order runs at all.
        final_resize_modes: Modes (subset of `RESIZE_MODES`) of the resize to the LR size
            (h / scale, w / scale), drawn uniformly.
        final_sinc_prob: Probability (0..1) of the final 2-D sinc filter (ringing and overshoot
            artefacts, Real-ESRGAN Sec. 3.3).
        final_sinc_kernel_sizes: Odd sides (each in 7..21) of the final sinc kernel, pixels.
        final_sinc_cutoff_range: (min, max) cutoff omega_c of the final sinc kernel, radians per
            pixel (0 < omega_c <= pi).
        sinc_before_jpeg_prob: Probability (0..1) that [resize to LR + sinc] comes before the
            last JPEG compression rather than after it (the paper draws 0.5).
        codec: Whole-clip video compression, applied last to the LR clip.
    """

    first_order: OrderConfig = field(default_factory=OrderConfig)
    second_order: OrderConfig = field(default_factory=second_order_defaults)
    second_order_prob: float = 1.0
    final_resize_modes: tuple[str, ...] = RESIZE_MODES
    final_sinc_prob: float = 0.8
    final_sinc_kernel_sizes: tuple[int, ...] = ALL_KERNEL_SIZES
    final_sinc_cutoff_range: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_before_jpeg_prob: float = 0.5
    codec: CodecConfig = field(default_factory=CodecConfig)

    def __post_init__(self) -> None:
        _as_tuple(self, "final_resize_modes")
        _as_tuple(self, "final_sinc_kernel_sizes")
        for name, kind in (
            ("first_order", OrderConfig),
            ("second_order", OrderConfig),
            ("codec", CodecConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                hint = " (to leave the second order out: second_order_prob=0)" if name == "second_order" else ""
                raise InputError(
                    f"DegradationConfig.{name} must be a{'n' * (kind.__name__[0] in 'AEIOU')} {kind.__name__}, "
                    f"got {type(getattr(self, name)).__name__}{hint}."
                )
        for name in ("second_order_prob", "final_sinc_prob", "sinc_before_jpeg_prob"):
            _check_probability(self, name)
        _check_choices(self, "final_resize_modes", RESIZE_MODES)
        _check_kernel_sizes(self, "final_sinc_kernel_sizes")
        _check_range(self, "final_sinc_cutoff_range", minimum=0.0, maximum=math.pi, strict=True)

    @classmethod
    def preset(cls, name: str) -> DegradationConfig:
        """Return a named preset.

        - ``light``: one order with mild blur / resize / noise and high JPEG quality, a final
          sinc half of the time, light codec compression (x264 CRF 18..26 or MPEG-4 0.25..1
          bit/pixel). Slightly soft, fairly clean footage.
        - ``medium``: Real-ESRGAN's published second-order settings and a moderate codec
          (x264 CRF 23..32 or MPEG-4 0.08..0.4 bit/pixel). Same as `DegradationConfig()`.
        - ``heavy``: both orders always run with wider blur / noise ranges and JPEG quality
          20..80, then strong codec compression (x264 CRF 30..40 or MPEG-4 0.02..0.1 bit/pixel).

        Raises:
            InputError: `name` is not one of `PRESETS`.
        """
        if name == "light":
            return cls(
                first_order=OrderConfig(
                    blur_sigma_range=(0.2, 1.5),
                    sinc_prob=0.05,
                    resize_probs=(0.2, 0.5, 0.3),
                    resize_range=(0.5, 1.2),
                    noise_prob=0.8,
                    gaussian_sigma_range=(1.0, 10.0),
                    poisson_scale_range=(0.05, 1.0),
                    jpeg_quality_range=(60, 95),
                ),
                second_order_prob=0.0,
                final_sinc_prob=0.5,
                codec=CodecConfig(x264_crf_range=(18, 26), mpeg4_bits_per_pixel_range=(0.25, 1.0)),
            )
        if name == "medium":
            return cls()
        if name == "heavy":
            return cls(
                first_order=OrderConfig(
                    blur_sigma_range=(0.5, 4.0),
                    resize_probs=(0.1, 0.8, 0.1),
                    gaussian_sigma_range=(5.0, 40.0),
                    poisson_scale_range=(0.5, 4.0),
                    jpeg_quality_range=(20, 80),
                ),
                second_order=OrderConfig(
                    blur_prob=1.0,
                    blur_sigma_range=(0.5, 2.5),
                    resize_probs=(0.2, 0.5, 0.3),
                    resize_range=(0.3, 1.2),
                    gaussian_sigma_range=(5.0, 30.0),
                    poisson_scale_range=(0.5, 3.0),
                    jpeg_quality_range=(20, 80),
                ),
                final_sinc_prob=0.9,
                codec=CodecConfig(x264_crf_range=(30, 40), mpeg4_bits_per_pixel_range=(0.02, 0.1)),
            )
        raise InputError(
            f"Unknown degradation preset {name!r}; choose one of {', '.join(PRESETS)}."
        )


def check_scale(scale: int) -> int:
    """Return `scale` (as a Python int; a NumPy integer is accepted) if the chain supports it, else raise
    `InputError` listing the choices."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale not in SUPPORTED_SCALES:
        raise InputError(
            f"Unsupported scale {scale!r}; the degradation chain supports "
            f"{', '.join(str(s) for s in SUPPORTED_SCALES)}."
        )
    return int(scale)


# --- validation helpers ----------------------------------------------------------------------


def _field_name(config: object, name: str) -> str:
    return f"{type(config).__name__}.{name}"


def _as_tuple(config: object, name: str) -> None:
    """Store the field ``name`` as a tuple; a single value (``"area"``, ``7``) is refused naming the field, where
    ``tuple()`` split a string into letters or raised a TypeError."""
    value = getattr(config, name)
    if isinstance(value, (Set, Mapping)):  # no order: a set's order changes with PYTHONHASHSEED, and with it the draws
        raise InputError(f"{_field_name(config, name)}={value!r} must be a tuple or list of values (ordered), "
                         f"not a {type(value).__name__}.")
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InputError(f"{_field_name(config, name)}={value!r} must be a tuple of values, e.g. ({value!r},).")
    object.__setattr__(config, name, tuple(value))


class ReadOnlyWeights(dict):
    """A dict that refuses changes and hashes by its items: the weights of a frozen config (a plain dict let
    ``config.kernel_probs["iso"] = -1`` through after validation, and made ``hash(DegradationConfig())`` a
    TypeError). Still a dict for ``json``, ``dataclasses.asdict`` and ``==``."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("the weights of a degradation config are read-only; make another config with "
                        "dataclasses.replace(config, ...)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple:  # pickle / copy: built from its items, not by item assignment
        return type(self), (dict(self),)

    def __deepcopy__(self, memo: dict) -> "ReadOnlyWeights":
        return self  # its keys and values are strings and numbers


def _as_dict(config: object, name: str) -> None:
    """Store the mapping in the field ``name`` as a dict of its own (a copy; ``_check_weights`` makes it read-only);
    anything else is left for ``_check_weights`` to refuse, naming the valid keys (``dict()`` raised a TypeError
    about sequence elements)."""
    value = getattr(config, name)
    if isinstance(value, Mapping):
        object.__setattr__(config, name, dict(value))


def _check_probability(config: object, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:  # NaN fails
        raise InputError(f"{_field_name(config, name)}={value!r} must be a probability in [0, 1].")
    object.__setattr__(config, name, float(value))


def _check_range(
    config: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    integer: bool = False,
) -> None:
    """Check a (min, max) pair: min <= max, both within [minimum, maximum] (> minimum if strict).

    A list (as YAML gives) and NumPy numbers are accepted and stored as a tuple of Python numbers."""
    value = getattr(config, name)
    kind = numbers.Integral if integer else numbers.Real
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    ):
        what = "integers" if integer else "numbers"
        raise InputError(
            f"{_field_name(config, name)}={value!r} must be a (min, max) tuple of {what}."
        )
    value = tuple(int(v) if isinstance(v, numbers.Integral) else float(v) for v in value)
    if not all(math.isfinite(v) for v in value):  # NaN or inf failed (or saturated the clip) only when drawn
        raise InputError(f"{_field_name(config, name)}={value!r}: values must be finite.")
    object.__setattr__(config, name, value)
    low, high = value
    if low > high:
        raise InputError(f"{_field_name(config, name)}={value!r} has min > max; swap them.")
    if minimum is not None and (low < minimum or (strict and low == minimum)):
        bound = ">" if strict else ">="
        raise InputError(
            f"{_field_name(config, name)}={value!r}: values must be {bound} {minimum}."
        )
    if maximum is not None and high > maximum:
        raise InputError(f"{_field_name(config, name)}={value!r}: values must be <= {maximum}.")


def _check_weights(config: object, name: str, valid: tuple[str, ...]) -> None:
    """Check weights: a dict keyed by `valid` names, or for `resize_probs` a tuple (or list) in that order;
    stored as Python floats."""
    value = getattr(config, name)
    keyed = name != "resize_probs"
    if keyed and isinstance(value, dict):
        unknown = sorted(map(str, set(value) - set(valid)))  # (YAML's 1: as an int: a TypeError sorting it)
        if unknown:
            raise InputError(
                f"{_field_name(config, name)} has unknown keys {unknown}; valid keys are "
                f"{', '.join(valid)}."
            )
        weights = list(value.values())
    elif not keyed and isinstance(value, (tuple, list)) and len(value) == len(valid):
        weights = list(value)
    else:
        form = "a dict with keys among" if keyed else "a tuple with one weight for each of"
        raise InputError(
            f"{_field_name(config, name)}={value!r} must be {form} {', '.join(valid)}."
        )
    if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) for w in weights):
        raise InputError(f"{_field_name(config, name)}={value!r}: weights must be numbers.")
    if any(not 0 <= w < math.inf for w in weights) or sum(weights) <= 0:  # (NaN fails 0 <= w)
        raise InputError(
            f"{_field_name(config, name)}={value!r}: weights must be finite, >= 0, with a positive sum."
        )
    normalised = ReadOnlyWeights((k, float(w)) for k, w in value.items()) if keyed else tuple(float(w) for w in weights)
    object.__setattr__(config, name, normalised)


def _check_choices(config: object, name: str, valid: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if not value or any(v not in valid for v in value):
        raise InputError(
            f"{_field_name(config, name)}={value!r} must be a non-empty subset of "
            f"{', '.join(valid)}."
        )


def _check_kernel_sizes(config: object, name: str) -> None:
    value = getattr(config, name)
    if not value or any(
        isinstance(k, bool) or not isinstance(k, numbers.Integral) or k % 2 == 0
        or not MIN_KERNEL_SIZE <= k <= MAX_KERNEL_SIZE
        for k in value
    ):
        raise InputError(
            f"{_field_name(config, name)}={value!r} must be a non-empty tuple of odd kernel sides "
            f"in {MIN_KERNEL_SIZE}..{MAX_KERNEL_SIZE}."
        )
    object.__setattr__(config, name, tuple(int(k) for k in value))
