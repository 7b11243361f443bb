"""From an HR clip to a training pair: the LR clip and the ControlNet hint STAR conditions on.

``lq`` is the HR clip degraded by the project's real-world chain (``star_vsr.degradations``),
or only downsampled (bicubic, antialiased) when no degradation is asked for; with ``sharpen_gt`` the HR clip
is sharpened first (unsharp masking, as Real-ESRGAN and STAR train) and both come from the sharpened one.
``hint`` is ``lq``
upsampled bilinearly back to the HR size, exactly as ``StarVSRPipeline`` prepares its input
before the VAE encodes it.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from star_vsr.degradations import PRESETS, DegradationConfig, RealWorldDegradation
from star_vsr.degradations.config import check_scale
from star_vsr.degradations.frames import quantize
from star_vsr.degradations.chain import check_hr_clip
from star_vsr.degradations.filtering import one_thread, resize_clip
from star_vsr.degradations.sharpen import unsharp_mask
from star_vsr.errors import InputError

DegradationSpec = Union[str, DegradationConfig, None]

#: Value of a ``degradation`` setting (e.g. in a YAML config) that means "bicubic downsampling only".
NO_DEGRADATION = "none"


def resolve_degradation(degradation: DegradationSpec, scale: int) -> RealWorldDegradation | None:
    """A ``RealWorldDegradation`` for a preset name or config; None for bicubic-only downsampling.

    Args:
        degradation: a preset name (``"light"``, ``"medium"``, ``"heavy"``), a ``DegradationConfig``, a
            ``RealWorldDegradation`` of this scale (returned as it is), or None / ``"none"`` for plain bicubic
            downsampling.
        scale: 2, 3 or 4.
    """
    check_scale(scale)
    if degradation is None or degradation == NO_DEGRADATION:
        return None
    if isinstance(degradation, RealWorldDegradation):
        if degradation.scale != scale:
            raise InputError(f"the degradation is made for scale {degradation.scale}, not {scale}")
        return degradation
    if isinstance(degradation, str):
        if degradation not in PRESETS:
            raise InputError(f"unknown degradation {degradation!r}: use one of {', '.join(PRESETS)} or "
                             f"{NO_DEGRADATION!r}")
        return RealWorldDegradation(DegradationConfig.preset(degradation), scale)
    if isinstance(degradation, DegradationConfig):
        return RealWorldDegradation(degradation, scale)
    raise InputError(f"degradation must be a preset name, a DegradationConfig or None, "
                     f"got {type(degradation).__name__}")


def make_pair(gt: torch.Tensor, scale: int, degradation: DegradationSpec | RealWorldDegradation | None, seed: int,
              sharpen_gt: bool = False) -> dict[str, torch.Tensor]:
    """Degrade an HR clip and build the hint.

    Args:
        gt: (n, 3, H, W) float clip in [0, 1] on the CPU, H and W divisible by ``scale``.
        scale: HR / LR size ratio.
        degradation: the chain (``RealWorldDegradation``), a preset name or ``DegradationConfig``
            (``resolve_degradation``), or None for bicubic downsampling (quantised to 8-bit levels).
        seed: seeds the degradation (the same seed gives the same LR clip).
        sharpen_gt: sharpen the HR clip first (``degradations.sharpen.unsharp_mask``) and degrade and return that,
            as Real-ESRGAN and STAR train.

    Returns:
        ``{"gt": (n, 3, H, W), "lq": (n, 3, H / scale, W / scale), "hint": (n, 3, H, W)}``, float32 in [0, 1],
        contiguous: frames decoded as (n, H, W, 3) gave channels-last strides, which a DataLoader kept without
        workers and made contiguous with them, so the same training rounded differently (train_star's weights
        differed between 0 and 2 workers).
    """
    degradation = resolve_degradation(degradation, scale)
    if sharpen_gt or degradation is None:
        # the chain checks its own input; unchecked, bicubic made misaligned pairs and all-white LR of 0..255 frames
        # (the scale: by resolve_degradation); sharpening needs it checked first (0..255 frames, NaN)
        check_hr_clip(gt, scale, name="gt", cpu_only=False)
    if sharpen_gt:
        gt = unsharp_mask(gt)  # (n, 3, H, W)
    if degradation is None:
        gt = gt.float()  # (bicubic has no float16 CPU kernel; float32 out, as documented)
        with one_thread():  # (the same whatever the DataLoader workers: `one_thread`)
            lq = F.interpolate(gt, size=(gt.shape[-2] // scale, gt.shape[-1] // scale), mode="bicubic",
                               antialias=True, align_corners=False)
        lq = quantize(lq)  # (n, 3, h / s, w / s)
    else:
        lq = degradation(gt, seed=seed)  # (n, 3, h / s, w / s)
    # bilinear on one thread: on every core (the main process; workers run on one) it differed in the last bit, and
    # a resumed run with another dataloader_num_workers trained on other hints (black-box hunt)
    hint = resize_clip(lq, tuple(gt.shape[-2:]), "bilinear")  # (n, 3, H, W)
    return {"gt": gt.float().contiguous(), "lq": lq.contiguous(), "hint": hint.contiguous()}  # float32, as documented
