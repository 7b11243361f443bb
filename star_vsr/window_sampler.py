"""Denoising a clip in overlapping temporal windows with memory that does not grow with its length.

Every denoising step blends the v-predictions of all windows that cover a frame (weights that
sum to one, ``tiling.py``) before the scheduler moves that frame to the next step. The maths only
ties a frame to the windows covering it, so windows need not run in lock-step over the whole
clip. The clip is cut into *segments* (maximal frame ranges covered by the same windows); each
segment keeps its own latents, hint, accumulator and scheduler state (the multistep history),
and advances one step as soon as every covering window has contributed. Two evaluation orders:

- ``"wavefront"``: always run the leftmost window whose frames are all ready. Window k can run
  step s once windows k +/- 1 ran step s - 1, so about ``num_steps`` windows are alive at once;
  finished frames leave at the left and later frames enter at the right. Memory is bounded by
  the window size times the number of steps, whatever the clip length, and decoded frames stream
  out while later frames are still being denoised.
- ``"synchronous"``: all windows run step 0, then all run step 1, ...; needed when a callback
  wants the whole clip's latents after each step.

Both orders give bit-identical results: all randomness is drawn per frame (``FrameNoise``) and
the scheduler update is elementwise, so neither the order nor the segmentation changes any value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .errors import InputError

ORDERS = ("wavefront", "synchronous")


class FrameNoise:
    """One random stream per frame, seeded from a base seed: draws do not depend on batching.

    Each frame's stream is consumed in a fixed order by the sampler (hint posterior noise, start
    noise, then one draw per denoising step), so results are independent of how frames are grouped.
    """

    def __init__(self, base_seed: int) -> None:
        self.base_seed = base_seed
        self._generators: dict[int, torch.Generator] = {}

    def _generator(self, frame: int) -> torch.Generator:
        if frame not in self._generators:
            self._generators[frame] = torch.Generator().manual_seed((self.base_seed * 1_000_003 + frame) % 2 ** 63)
        return self._generators[frame]

    def draw(self, start: int, stop: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise (stop - start, *shape): one draw from each frame's stream."""
        return torch.stack([torch.randn(shape, generator=self._generator(f)) for f in range(start, stop)])

    def release(self, start: int, stop: int) -> None:
        """Forget the streams of frames that are finished."""
        for f in range(start, stop):
            self._generators.pop(f, None)


@dataclass
class Segment:
    """Frames [start, stop) covered by the same windows; they advance through the steps together."""

    start: int
    stop: int
    windows: tuple[int, ...]
    level: int = 0  # denoising steps applied so far
    pending: set[int] = field(default_factory=set)  # windows still to contribute at this level
    latents: Optional[torch.Tensor] = None  # (m, c, h, w), host
    hint: Optional[torch.Tensor] = None
    accumulator: Optional[torch.Tensor] = None
    scheduler: Any = None


class WindowedSampler:
    """Runs ``denoise`` over overlapping temporal windows and scheduler steps, segment by segment.

    Args:
        windows: ``(start, stop, weights)`` per window from ``tiling.blend_weights`` (weights: one per
            frame of the window, summing to one over windows at every frame).
        scheduler: a diffusers scheduler with ``set_timesteps`` already called; copied per segment.
        noise: per-frame random streams.
        order: "wavefront" or "synchronous".
    """

    def __init__(self, windows: list[tuple[int, int, torch.Tensor]], scheduler: Any, noise: FrameNoise,
                 order: str = "wavefront") -> None:
        if order not in ORDERS:
            raise InputError(f"order must be one of {ORDERS}, got {order!r}")
        self.windows = windows
        self.scheduler = scheduler
        self.timesteps = list(scheduler.timesteps)
        self.noise = noise
        self.order = order
        bounds = sorted({b for start, stop, _ in windows for b in (start, stop)})
        self.segments = []
        for start, stop in zip(bounds, bounds[1:]):
            covering = tuple(k for k, (a, b, _) in enumerate(windows) if a <= start and stop <= b)
            self.segments.append(Segment(start, stop, covering, pending=set(covering)))
        self.window_segments = [[j for j, s in enumerate(self.segments) if k in s.windows]
                                for k in range(len(windows))]

    # ------------------------------------------------------------------ readiness
    def _ready(self, k: int, level: int) -> bool:
        return all(self.segments[j].level == level and k in self.segments[j].pending
                   for j in self.window_segments[k])

    def _next_window(self) -> Optional[tuple[int, int]]:
        """(window, step) to evaluate next, or None when every frame is done."""
        num_steps = len(self.timesteps)
        if self.order == "synchronous":
            level = min(s.level for s in self.segments)
            if level == num_steps:
                return None
            for k in range(len(self.windows)):
                if self._ready(k, level):
                    return k, level
            raise RuntimeError("windowed sampler stalled")  # unreachable: see module docstring
        for k in range(len(self.windows)):
            level = self.segments[self.window_segments[k][0]].level
            if level < num_steps and self._ready(k, level):
                return k, level
        return None

    # ------------------------------------------------------------------ main loop
    def run(self, prepare: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
            denoise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
            finish: Callable[[int, int, torch.Tensor], None],
            on_step_end: Optional[Callable[[int, torch.Tensor], None]] = None,
            progress: Optional[Callable[[], None]] = None) -> None:
        """Denoise the whole clip.

        Args:
            prepare: ``(start, stop) -> (start_latents, hint)`` for frames about to enter; called in
                frame order, once per segment.
            denoise: ``(latents, hint, t) -> v`` for one window, all (k, c, h, w).
            finish: ``(start, stop, latents)`` for fully denoised frames, called in frame order.
            on_step_end: ``(step, t)`` after every frame has taken a step (synchronous order only).
            progress: called after every window evaluation.
        """
        if on_step_end is not None and self.order != "synchronous":
            raise InputError("on_step_end needs order='synchronous'")
        finished = 0  # segments handed to `finish`
        completed_steps = 0
        while (task := self._next_window()) is not None:
            k, level = task
            start, stop, weights = self.windows[k]
            for j in self.window_segments[k]:
                if self.segments[j].latents is None:
                    self._enter(j, prepare)
            x = torch.cat([self.segments[j].latents for j in self.window_segments[k]])  # (stop-start, c, h, w)
            hint = torch.cat([self.segments[j].hint for j in self.window_segments[k]])
            v = denoise(x, hint, self.timesteps[level]).float().cpu()
            for j in self.window_segments[k]:
                segment = self.segments[j]
                lo, hi = segment.start - start, segment.stop - start
                contribution = v[lo:hi] * weights[lo:hi].float()[:, None, None, None]
                segment.accumulator = contribution if segment.accumulator is None else segment.accumulator + contribution
                segment.pending.discard(k)
                if not segment.pending:
                    self._advance(segment)
            if progress is not None:
                progress()
            lowest = min(s.level for s in self.segments)
            if on_step_end is not None and lowest > completed_steps:
                on_step_end(completed_steps, self.timesteps[completed_steps])
                completed_steps += 1
            if self.order == "synchronous" and lowest < len(self.timesteps):
                continue  # the whole clip stays available to on_step_end until the last step
            while finished < len(self.segments) and self.segments[finished].level == len(self.timesteps):
                segment = self.segments[finished]
                finish(segment.start, segment.stop, segment.latents)
                self.noise.release(segment.start, segment.stop)
                segment.latents = segment.hint = segment.scheduler = None
                finished += 1

    def _enter(self, j: int, prepare: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Create the state of segment j (segments enter left to right)."""
        for i in range(j + 1):
            segment = self.segments[i]
            if segment.latents is None and segment.level == 0:
                segment.latents, segment.hint = prepare(segment.start, segment.stop)
                segment.scheduler = copy.deepcopy(self.scheduler)

    def _advance(self, segment: Segment) -> None:
        """One scheduler step for a segment whose windows all contributed."""
        t = self.timesteps[segment.level]
        noise = self.noise.draw(segment.start, segment.stop, tuple(segment.latents.shape[1:]))
        segment.latents = segment.scheduler.step(segment.accumulator, t, segment.latents,
                                                 variance_noise=noise).prev_sample
        segment.accumulator = None
        segment.level += 1
        segment.pending = set(segment.windows)

    # ------------------------------------------------------------------ whole-clip access (synchronous order)
    def gather_latents(self) -> torch.Tensor:
        """Latents of the whole clip (n, c, h, w); valid between steps in synchronous order."""
        return torch.cat([s.latents for s in self.segments])

    def scatter_latents(self, latents: torch.Tensor) -> None:
        """Replace the whole clip's latents (e.g. with what a callback returned)."""
        for s in self.segments:
            s.latents = latents[s.start:s.stop].clone()
