"""Aligned random patches of training pairs, cut after degradation.

Degrading a whole frame and then cutting a patch keeps the degradation realistic: a video codec
spends its bits per frame and blurs/noises relative to the frame, so degrading a tiny crop
directly is much harsher than degrading real footage of the same content. Training reads
``patch_size`` HR pixels (``patch_size / scale`` LR pixels) from clips degraded at full size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from star_vsr.data.base import check_seed
from star_vsr.errors import InputError, check_whole_number


class RandomPatchDataset(Dataset):
    """Wraps a dataset of ``{"gt", "lq", "hint", ...}`` items and cuts one aligned patch per item.

    The patch position depends only on (seed, epoch, index), like the wrapped datasets' items.

    Args:
        dataset: items with ``gt``/``hint`` (n, 3, H, W) and ``lq`` (n, 3, H/scale, W/scale).
        patch_size: HR side of the patch (a multiple of ``scale``).
        scale: HR / LR size ratio.
        seed: seeds the patch positions.
    """

    def __init__(self, dataset: Any, patch_size: int, scale: int, seed: int = 0) -> None:
        check_whole_number("patch_size", patch_size, 1)
        check_whole_number("scale", scale, 1)  # (0: a ZeroDivisionError)
        check_seed(seed)
        if patch_size < scale or patch_size % scale:
            raise InputError(f"patch_size must be a positive multiple of the scale {scale}, got {patch_size}")
        if getattr(dataset, "scale", scale) != scale:  # (its pairs were cut out of line)
            raise InputError(f"scale {scale} is not the scale of the dataset's pairs ({dataset.scale})")
        patch_size, seed = int(patch_size), int(seed)
        self.dataset, self.patch_size, self.scale, self.seed = dataset, patch_size, scale, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        lq = item["lq"]  # (n, 3, h, w)
        p = self.patch_size // self.scale
        h, w = lq.shape[-2:]
        if h < p or w < p:
            raise InputError(f"LR clips of {w}x{h} are smaller than the {p}x{p} LR patch")
        epoch = getattr(self.dataset, "epoch", 0)
        rng = np.random.default_rng([self.seed, epoch, index])
        y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        s = self.scale
        item["lq"] = lq[..., y:y + p, x:x + p].contiguous()
        for key in ("gt", "hint"):
            if key in item:
                item[key] = item[key][..., y * s:(y + p) * s, x * s:(x + p) * s].contiguous()
        return item
