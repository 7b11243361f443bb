"""How much PSNR-Y over bicubic is there to win on the evaluation set? Linear reference points.

Two least-squares x4 upsamplers on the Y channel (BT.601), each predicting the 16 HR pixels of an
LR pixel (one pixel-shuffle phase each) from the ``k x k`` LR neighbourhood plus a bias:

* ``linear (trained)``: one filter bank fitted on training clips (``star_vsr.evalset``'s training
  photos, the same degradation): what any model learns for free beyond bicubic.
* ``linear (oracle)``: a filter bank fitted on each evaluation clip *against its own ground
  truth*: the best linear restoration for that clip's particular blur / noise / compression, an
  upper reference no real model can use (it sees the answer).

The gap between bicubic and the oracle shows how much of a PSNR target the degradation leaves
recoverable by filtering; a non-linear model can go beyond it, but only by inferring detail.
PSNR-Y with a ``scale``-pixel border crop, averaged over frames then clips, like
``benchmarks/student_quality.py``.

    python benchmarks/quality_headroom.py [--train-clips 150] [--kernel 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from star_vsr.benchmarking import refuse_below
from star_vsr.evalset import EVAL_SCALE, bicubic_upscale, evaluation_clips, training_motion_clips
from star_vsr.metrics import rgb_to_y

#: Tikhonov regulariser of the normal equations (the LR patches of smooth regions are nearly collinear).
RIDGE = 1e-4


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(n, 3, h, w) RGB in [0, 1] -> (n, 1, h, w) float64 BT.601 Y in [16/255, 235/255] (the metrics' luma)."""
    return torch.from_numpy(rgb_to_y(rgb.permute(0, 2, 3, 1).numpy()) / 255.0)[:, None]


def patches(lq_y: torch.Tensor, kernel: int) -> torch.Tensor:
    """(n, 1, h, w) -> (n * h * w, kernel^2 + 1) float64 LR neighbourhoods with a bias column."""
    cols = F.unfold(F.pad(lq_y, (kernel // 2,) * 4, mode="replicate"), kernel)  # (n, k^2, h w)
    cols = cols.permute(0, 2, 1).reshape(-1, kernel * kernel).double()
    return torch.cat([cols, torch.ones(len(cols), 1, dtype=torch.float64)], dim=1)


def phases(gt_y: torch.Tensor, scale: int) -> torch.Tensor:
    """(n, 1, H, W) -> (n * h * w, scale^2): the HR pixels each LR pixel covers."""
    return F.pixel_unshuffle(gt_y, scale).permute(0, 2, 3, 1).reshape(-1, scale * scale).double()


def fit(pairs: list[tuple[torch.Tensor, torch.Tensor]], kernel: int, scale: int) -> torch.Tensor:
    """Least-squares filter bank (kernel^2 + 1, scale^2) over (lq_y, gt_y) pairs."""
    dim = kernel * kernel + 1
    gram = torch.zeros(dim, dim, dtype=torch.float64)
    rhs = torch.zeros(dim, scale * scale, dtype=torch.float64)
    for lq_y, gt_y in pairs:
        x = patches(lq_y, kernel)
        gram += x.T @ x
        rhs += x.T @ phases(gt_y, scale)
    return torch.linalg.solve(gram + RIDGE * torch.eye(dim, dtype=torch.float64), rhs)


def apply(weights: torch.Tensor, lq_y: torch.Tensor, kernel: int, scale: int) -> torch.Tensor:
    n, _, h, w = lq_y.shape
    out = (patches(lq_y, kernel) @ weights).float().reshape(n, h, w, scale * scale).permute(0, 3, 1, 2)
    return F.pixel_shuffle(out, scale).clamp(0, 1)


def psnr_y(pred: torch.Tensor, gt: torch.Tensor, border: int) -> float:
    """Mean over frames of the PSNR of (n, 1, H, W) Y clips, ``border`` pixels cropped."""
    crop = (..., slice(border, -border), slice(border, -border))
    mse = ((pred[crop] - gt[crop]) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-clips", type=int, default=150, help="training clips for the trained filter")
    parser.add_argument("--train-frames", type=int, default=3)
    parser.add_argument("--kernel", type=int, default=5, help="LR neighbourhood side (odd)")
    args = parser.parse_args()
    refuse_below(parser, args, {"train_clips": 1, "train_frames": 1, "kernel": 1})
    if args.kernel % 2 == 0:
        parser.error(f"--kernel must be odd (a neighbourhood centred on the pixel), got {args.kernel}")
    scale = EVAL_SCALE

    train = training_motion_clips(args.train_clips, num_frames=args.train_frames, crop_size=160)
    trained = fit([(luma(item["lq"]), luma(item["gt"])) for item in (train[i] for i in range(len(train)))],
                  args.kernel, scale)

    rows = []
    for clip in evaluation_clips():
        lq_y, gt_y = luma(clip["lq"]), luma(clip["gt"])
        bicubic = luma(bicubic_upscale(clip["lq"], scale))
        oracle = fit([(lq_y, gt_y)], args.kernel, scale)
        rows.append((clip["name"], psnr_y(bicubic, gt_y, scale), psnr_y(apply(trained, lq_y, args.kernel, scale),
                     gt_y, scale), psnr_y(apply(oracle, lq_y, args.kernel, scale), gt_y, scale)))

    print(f"evaluation set, x{scale}, {args.kernel}x{args.kernel} LR neighbourhoods; trained filter from "
          f"{args.train_clips} training clips")
    print(f"{'clip':12s} {'bicubic':>8s} {'linear (trained)':>17s} {'linear (oracle)':>16s}")
    for name, *values in rows:
        print(f"{name:12s} {values[0]:8.2f} {values[1]:17.2f} {values[2]:16.2f}")
    means = np.mean([r[1:] for r in rows], axis=0)
    print(f"{'mean':12s} {means[0]:8.2f} {means[1]:17.2f} {means[2]:16.2f}")
    print(f"gain over bicubic: trained linear {means[1] - means[0]:+.2f} dB, per-clip oracle linear "
          f"{means[2] - means[0]:+.2f} dB")


if __name__ == "__main__":
    main()
