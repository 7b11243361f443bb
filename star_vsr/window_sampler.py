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

Between two window evaluations the sampler's whole state (the live segments' latents, hints,
accumulators and scheduler histories, and the live frames' random streams) can be taken out as a
``SamplerState`` and put into a fresh sampler over the same windows, which then goes on exactly
as the first would have: a long run can stop and resume (``star_vsr.resume``).
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .errors import InputError

ORDERS = ("wavefront", "synchronous")


class FrameNoise:
    """One random stream per frame, seeded from a base seed: draws do not depend on batching.

    Each frame's stream is consumed in a fixed order by the sampler (hint posterior noise, start
    noise, then one draw per denoising step), so results are independent of how frames are grouped.
    Frame f's stream is seeded with ``base_seed * 1_000_003 + f``, of which torch's CPU generator keeps the low 32
    bits: the frames of one video (under 2**32) never share a stream, but two base seeds share streams between
    frames a fixed distance apart (s and s + 1: 1,000,003 frames; s and s + 94,489: 2,955 frames), which matters
    only to runs compared across seeds. A run's noise depends on its base seed alone, which is what resuming and
    reproducing need.
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

    def state_dict(self) -> dict[int, torch.Tensor]:
        """Where each live frame's stream stands (frame -> ``torch.Generator.get_state()``); frames not
        listed start afresh from the base seed."""
        return {frame: generator.get_state() for frame, generator in self._generators.items()}

    def load_state_dict(self, states: dict[int, torch.Tensor]) -> None:
        """Put the streams of ``state_dict`` back (after a fresh ``FrameNoise`` with the same base seed)."""
        self._generators = {}
        for frame, state in states.items():
            self._generator(frame).set_state(state)


@dataclass
class SamplerState:
    """A ``WindowedSampler`` between two window evaluations: named tensors and JSON-able metadata, as a
    checkpoint stores them (safetensors + JSON). The tensors are the sampler's own, not copies: the
    sampler replaces its tensors at every step rather than changing them, so a state stays valid."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]


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
        self.finished = 0  # segments handed to `finish`
        self.completed_steps = 0  # steps every frame has taken (reported to on_step_end)

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
            progress: Optional[Callable[[], None]] = None,
            after_window: Optional[Callable[[], None]] = None) -> None:
        """Denoise the whole clip (what is left of it, after ``load_state_dict``).

        Args:
            prepare: ``(start, stop) -> (start_latents, hint)`` for frames about to enter; called in
                frame order, once per segment.
            denoise: ``(latents, hint, t) -> v`` for one window, all (k, c, h, w).
            finish: ``(start, stop, latents)`` for fully denoised frames, called in frame order.
            on_step_end: ``(step, t)`` after every frame has taken a step (synchronous order only).
            progress: called after every window evaluation.
            after_window: called after every window evaluation and the ``finish`` calls it allowed.
                ``state_dict`` may be taken there and within ``finish``.
        """
        if on_step_end is not None and self.order != "synchronous":
            raise InputError("on_step_end needs order='synchronous'")
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
            if on_step_end is not None and lowest > self.completed_steps:
                on_step_end(self.completed_steps, self.timesteps[self.completed_steps])
                self.completed_steps += 1
            if self.order == "wavefront" or lowest == len(self.timesteps):
                # (synchronous: the whole clip stays available to on_step_end until the last step)
                self._hand_out(finish)
            if after_window is not None:
                after_window()
        self._hand_out(finish)  # segments left finished by a state taken within a hand-out (resumed runs)

    def _hand_out(self, finish: Callable[[int, int, torch.Tensor], None]) -> None:
        """Pass the fully denoised segments at the left to ``finish``, in order. Each is counted as handed out
        and dropped before ``finish`` sees its latents, so a state taken within ``finish`` holds it once."""
        while self.finished < len(self.segments) and self.segments[self.finished].level == len(self.timesteps):
            segment, latents = self.segments[self.finished], self.segments[self.finished].latents
            self.noise.release(segment.start, segment.stop)
            segment.latents = segment.hint = segment.scheduler = None
            self.finished += 1
            finish(segment.start, segment.stop, latents)

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

    # ------------------------------------------------------------------ stop and resume
    def layout(self) -> dict[str, Any]:
        """What a saved state must share with this sampler: window bounds, timesteps and order."""
        return {"windows": [[start, stop] for start, stop, _ in self.windows],
                "timesteps": [int(t) for t in self.timesteps], "order": self.order}

    def evaluations_done(self) -> int:
        """Window evaluations made so far: window k has taken ``level`` steps of its segments, plus the
        current one if it already contributed to it."""
        done = 0
        for k, indices in enumerate(self.window_segments):
            segment = self.segments[indices[0]]
            done += segment.level + int(k not in segment.pending and segment.level < len(self.timesteps))
        return done

    def state_dict(self) -> SamplerState:
        """This sampler's state between two window evaluations (see ``SamplerState``)."""
        tensors: dict[str, torch.Tensor] = {}
        segments = []
        for j, segment in enumerate(self.segments):
            entry: dict[str, Any] = {"level": segment.level, "pending": sorted(segment.pending)}
            if segment.latents is not None:  # entered and not finished
                for name in ("latents", "hint", "accumulator"):
                    if getattr(segment, name) is not None:
                        tensors[f"segment{j}.{name}"] = getattr(segment, name)
                entry["scheduler"] = _scheduler_fields(segment.scheduler, self.scheduler, tensors,
                                                       f"segment{j}.scheduler.")
            segments.append(entry)
        for frame, state in self.noise.state_dict().items():
            tensors[f"noise.{frame}"] = state
        metadata = {"layout": self.layout(), "base_seed": self.noise.base_seed, "segments": segments,
                    "finished": self.finished, "completed_steps": self.completed_steps}
        return SamplerState(tensors, metadata)

    def load_state_dict(self, state: SamplerState) -> None:
        """Go on from ``state`` (of a sampler over the same windows, timesteps and base seed); then ``run``
        evaluates only what was left, with the values the first sampler would have computed.

        Raises:
            InputError: the state is of another layout or seed.
        """
        metadata, tensors = state.metadata, state.tensors
        if metadata.get("layout") != self.layout() or metadata.get("base_seed") != self.noise.base_seed:
            raise InputError("the saved sampler state is of other temporal windows, timesteps or seed")
        for j, (segment, entry) in enumerate(zip(self.segments, metadata["segments"])):
            segment.level, segment.pending = int(entry["level"]), set(entry["pending"])
            segment.latents = tensors.get(f"segment{j}.latents")
            segment.hint = tensors.get(f"segment{j}.hint")
            segment.accumulator = tensors.get(f"segment{j}.accumulator")
            segment.scheduler = None
            if "scheduler" in entry:
                segment.scheduler = copy.deepcopy(self.scheduler)
                _restore_scheduler_fields(segment.scheduler, entry["scheduler"], tensors, f"segment{j}.scheduler.")
        self.finished, self.completed_steps = int(metadata["finished"]), int(metadata["completed_steps"])
        self.noise.load_state_dict({int(name.split(".")[1]): tensor for name, tensor in tensors.items()
                                    if name.startswith("noise.")})

    # ------------------------------------------------------------------ whole-clip access (synchronous order)
    def gather_latents(self) -> torch.Tensor:
        """Latents of the whole clip (n, c, h, w); valid between steps in synchronous order."""
        return torch.cat([s.latents for s in self.segments])

    def scatter_latents(self, latents: torch.Tensor) -> None:
        """Replace the whole clip's latents (e.g. with what a callback returned)."""
        for s in self.segments:
            s.latents = latents[s.start:s.stop].clone()


def _same(a: Any, b: Any) -> bool:
    """Whether two scheduler attribute values are equal (tensors by value, lists element by element)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError, RuntimeError):  # e.g. numpy arrays: compared elementwise
        return False


def _scheduler_fields(scheduler: Any, template: Any, tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """The attributes in which ``scheduler`` (a copy of ``template`` after some steps) differs from it, as
    JSON-able metadata; tensors go into ``tensors`` under ``prefix + name``. A diffusers multistep scheduler
    changes a step counter and its history of model outputs (a list of tensors)."""
    fields: dict[str, Any] = {}
    base = vars(template)
    for name, value in vars(scheduler).items():
        if name in base and _same(value, base[name]):
            continue
        if isinstance(value, torch.Tensor):
            tensors[prefix + name] = value
            fields[name] = {"tensor": True}
        elif isinstance(value, (list, tuple)) and all(v is None or isinstance(v, torch.Tensor) for v in value):
            for i, v in enumerate(value):
                if v is not None:
                    tensors[f"{prefix}{name}.{i}"] = v
            fields[name] = {"tensors": [v is not None for v in value]}
        elif value is None or isinstance(value, (bool, numbers.Integral, float, str)):
            fields[name] = {"value": int(value) if isinstance(value, numbers.Integral) and
                            not isinstance(value, bool) else value}
        else:
            raise TypeError(f"cannot save the state of {type(scheduler).__name__}: its {name} is a "
                            f"{type(value).__name__}")
    return fields


def _restore_scheduler_fields(scheduler: Any, fields: dict[str, Any], tensors: dict[str, torch.Tensor],
                              prefix: str) -> None:
    """Set the attributes ``_scheduler_fields`` saved on a fresh copy of the template scheduler."""
    for name, spec in fields.items():
        if "tensor" in spec:
            value: Any = tensors[prefix + name]
        elif "tensors" in spec:
            value = [tensors[f"{prefix}{name}.{i}"] if present else None for i, present in enumerate(spec["tensors"])]
        else:
            value = spec["value"]
        setattr(scheduler, name, value)
