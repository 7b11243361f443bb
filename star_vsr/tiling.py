"""Overlapping windows and their blend weights, for temporal chunks and spatial tiles.

A long clip is processed in windows of ``size`` frames (or latent pixels) that overlap by at
least ``overlap``: the fewest windows that can do so, spread evenly from the first position to
the last, so every length from 1 up is covered without a short tail. Each window's prediction is weighted by a raised-cosine ramp across the
overlaps and the weights are normalised so that, at every position, they sum to exactly one:

    r_i(p) = sin^2(pi/2 * (p - a + 1/2) / o)   on the rising overlap [a, a + o) of window i
           = 1                                  in its interior
    w_i(p) = r_i(p) / sum_j r_j(p)

(for two windows overlapping by ``o`` the raw ramps already sum to one: sin^2 + cos^2).
Weights are separable, so a 2-D tile's weight is the product of its row and column weights.
"""

from __future__ import annotations

import math

import torch

from .errors import InputError


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start indices of windows of ``size`` covering ``[0, length)`` with at least ``overlap`` shared."""
    if length < 1:
        raise InputError(f"cannot split an empty axis (length {length})")
    if size < 1 or not 0 <= overlap < size:
        raise InputError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    if length <= size:
        return [0]
    count = math.ceil((length - overlap) / (size - overlap))  # fewest windows with >= overlap shared
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def default_overlap(size: int, default: int) -> int:
    """The overlap of windows of ``size`` when none was asked for: ``default``, or half of ``size`` where that
    is less, so that it fits any size (less than ``size`` from 1 up) and a window still advances by at least
    half its size."""
    return min(default, size // 2)


def _raised_cosine(n: int) -> torch.Tensor:
    """n samples rising from ~0 to ~1 (never exactly 0), sin^2 at the sample centres."""
    return torch.sin(math.pi / 2 * (torch.arange(n, dtype=torch.float64) + 0.5) / n) ** 2


def blend_weights(length: int, size: int, overlap: int) -> list[tuple[int, int, torch.Tensor]]:
    """``(start, stop, weights)`` for every window; the weights sum to one at each position.

    ``weights`` is a float64 vector of ``stop - start`` entries.
    """
    starts = window_starts(length, size, overlap)
    size = min(size, length)
    raw = []
    for i, start in enumerate(starts):
        r = torch.ones(size, dtype=torch.float64)
        if i > 0:  # rising ramp over the overlap with the previous window
            rise = starts[i - 1] + size - start
            r[:rise] = torch.minimum(r[:rise], _raised_cosine(rise))
        if i < len(starts) - 1:  # falling ramp over the overlap with the next window
            fall = start + size - starts[i + 1]
            r[size - fall:] = torch.minimum(r[size - fall:], _raised_cosine(fall).flip(0))
        raw.append(r)
    total = torch.zeros(length, dtype=torch.float64)
    for start, r in zip(starts, raw):
        total[start:start + size] += r
    return [(start, start + size, r / total[start:start + size]) for start, r in zip(starts, raw)]
