"""Shared machinery of the training datasets: per-sample seeds, bad-sample skipping, pair building.

Every random choice of a sample (which frames, where to crop, flips, camera motion, caption
dropout, the degradation) comes from ``numpy.random.SeedSequence([seed, epoch, index, attempt])``,
so a sample depends only on those four numbers: not on the DataLoader's workers, on the order in
which samples are asked for, or on any global random state. That is what makes a resumed
training run exact. Call ``set_epoch`` to get fresh augmentations each epoch (the training
script does, before each epoch's DataLoader iterator is created). The epoch is kept in shared memory, so the
copies of the dataset that a DataLoader's workers hold see it too, persistent ones
(``persistent_workers=True``) included (where the system has no shared memory, the dataset is made with a
warning to load without workers, which need shared memory for their batches too).

A source that cannot give a clip (unreadable file, too few frames, frames too small) is skipped
with a ``BadSampleWarning``, once per source: the item is taken from another source instead (``attempt`` + 1:
the next ``NEIGHBOURS`` sources in order, then all the others in an order drawn from (seed, epoch, index), so
that an item fails only when no source gives a clip), the skip is remembered in ``bad_sources`` (of this
process / worker) and counted in the item's ``"num_skipped"`` so the training loop can log skips from every
worker. A DataLoader worker does not warn: its copy of the dataset is made afresh every epoch, so each worker
said it again every epoch, from a line inside torch. It lists the skips in the item's ``"unreported_skips"``
instead, and the training loop says them once (``report_skips``).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from star_vsr.data.pairs import DegradationSpec, make_pair, resolve_degradation
from star_vsr.degradations.frames import frames_to_clip
from star_vsr.errors import InputError, check_real_number, check_true_or_false, check_whole_number
from star_vsr.user_warnings import warn_user

#: Sources after its own that an item tries first, in order (as before the rest were tried: an item whose
#: substitute lies within them is the one earlier versions gave, so the shipped student's training reproduces).
NEIGHBOURS = 32
#: Streams spawned from a sample's SeedSequence: clip content, caption dropout, degradation.
_STREAMS = 3
#: Spawn key of the SeedSequence (seed, epoch, index) that orders the sources an item tries after its neighbours.
_SUBSTITUTE_STREAM = 1

CropSize = Union[int, Sequence[int]]


class BadSampleError(Exception):
    """Raised by ``load_clip`` when a source cannot give a clip; the dataset skips the source."""


class BadSampleWarning(UserWarning):
    """A training source was skipped (unreadable, too short or too small)."""


def _warn_skip(name: str, reason: str) -> None:
    warn_user(f"skipping training sample {name}: {reason}", BadSampleWarning)


def report_skips(unreported_skips: Sequence[str], said: set[str]) -> None:
    """Warn of the sources that DataLoader workers skipped, a batch's ``"unreported_skips"`` (one JSON
    ``{source: reason}`` per item), each once: ``said`` holds the sources already warned of, and grows."""
    for entry in unreported_skips:
        for name, reason in json.loads(entry).items():
            if name not in said:
                said.add(name)
                _warn_skip(name, reason)


def as_size(size: CropSize, name: str = "crop_size") -> tuple[int, int]:
    """``64`` -> (64, 64); ``(h, w)`` -> (h, w); positive integers only."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (int(size), int(size))
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, (int, np.integer)) for s in size):
        pair = (int(size[0]), int(size[1]))
    else:
        raise InputError(f"{name} must be an int or (height, width), got {size!r}")
    if min(pair) < 1:
        raise InputError(f"{name} must be positive, got {size!r}")
    return pair


def sources_fingerprint(sources: Sequence[Union[str, Path, np.ndarray]], captions: Sequence[Any] = (),
                        as_given: bool = False) -> str:
    """SHA-256 (hex) of a data set's sources in order: for a path (file or frame folder) its place among the
    sources, its bytes, latest modification time and file count (``star_vsr.fingerprints.input_fingerprint``) and,
    for a frame folder, each frame file's name, size and time (``folder_files_fingerprint``: frames swapped by
    renaming them); for an image array its shape and bytes; then ``captions`` (JSON). Files added to, removed from
    or replaced in a data folder change it, and with them the clip each step of a resumed run draws. A path's place
    is relative to the folder that holds all the sources (links followed), so the same files named otherwise
    (absolute, from another working folder, through a link) or moved with their folder and their times (``cp -a``)
    are the same data; a resume of either was refused as "files added, removed or replaced" (black-box hunt).
    ``as_given``: as earlier runs recorded it, each path as given and no frame files."""
    from star_vsr.fingerprints import folder_files_fingerprint, input_fingerprint
    from star_vsr.io.folders import list_image_files

    paths = [Path(source) for source in sources if not isinstance(source, np.ndarray)]
    places = {} if as_given else _places(paths)
    digest = hashlib.sha256()
    for source in sources:
        if isinstance(source, np.ndarray):
            digest.update(json.dumps(list(source.shape)).encode())
            digest.update(np.ascontiguousarray(source).tobytes())
            continue
        path = Path(source)
        held = input_fingerprint(path) if path.exists() else None
        if held is not None and not as_given and path.is_dir():
            try:
                held.append(folder_files_fingerprint(list_image_files(path)))
            except InputError:  # (no frames: read, and skipped, as a bad sample)
                pass
        digest.update(json.dumps([str(path) if as_given else places[path], held]).encode())
    digest.update(json.dumps(list(captions)).encode())
    return digest.hexdigest()


def _places(paths: Sequence[Path]) -> dict[Path, str]:
    """Each of ``paths`` relative to the folder that holds them all (links followed; a link to nothing, or a loop,
    as named, Path.resolve raising on a loop)."""
    real = {path: path.resolve() if path.exists() else path.absolute() for path in paths}
    try:
        base = Path(os.path.commonpath(list(real.values())))
    except ValueError:  # none, or on several Windows drives: absolute
        return {path: str(where) for path, where in real.items()}
    if base in real.values():  # one source, or one inside another: from the folder above
        base = base.parent
    return {path: os.path.relpath(where, base) for path, where in real.items()}


def check_seed(seed: int) -> None:
    """``InputError`` unless ``seed`` is a whole number >= 0: NumPy's seed sequences refuse negative ones, so a
    negative seed failed at the first item ("expected non-negative integer"), not where it was given."""
    check_whole_number("seed", seed, 0)


def check_caption(name: str, caption: Any) -> str:
    """``caption``, or ``InputError`` unless it is text: None or a number went into the items, and the DataLoader's
    batching of them failed at the first batch, far from where it was given."""
    if not isinstance(caption, str):
        raise InputError(f"{name} must be text (a str, \"\" for none), got {caption!r}")
    return caption


def sample_seed_sequence(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.SeedSequence:
    """The SeedSequence of one sample; everything random about the sample derives from it."""
    return np.random.SeedSequence([int(seed), int(epoch), int(index), int(attempt)])


class ClipPairDataset(Dataset, ABC):
    """Base of the training datasets: items are HR/LR/hint clip triples with a caption.

    Subclasses say how many sources they have and how to cut an HR clip out of one
    (``load_clip``); this class derives the seeds, skips bad sources, drops captions, degrades.

    Parameters:
        num_frames: frames per clip n.
        crop_size: HR crop, an int (square) or (height, width); divisible by ``scale``.
        scale: HR / LR size ratio (2, 3 or 4).
        degradation: preset name, ``DegradationConfig``, or None / "none" for bicubic downsampling.
        caption_dropout: probability (0..1) that an item's caption is replaced by "" (classifier-free
            guidance training; STAR drops 50 %).
        seed: base seed of every random choice.
        length: items per epoch (None: one per source); fewer than the sources, successive epochs go on
            through the sources (epoch e starts at source e * length), so every source is used.
        sharpen_gt: train against the HR clip sharpened by unsharp masking, degraded from it (``make_pair``).

    Items (``dataset[i]``) are dicts:
        ``"gt"`` (n, 3, H, W), ``"lq"`` (n, 3, H / s, W / s), ``"hint"`` (n, 3, H, W), float32 in [0, 1];
        ``"caption"`` str; ``"index"`` int (i); ``"num_skipped"`` int (bad sources skipped for this item);
        ``"unreported_skips"`` str, JSON ``{source: reason}`` of those a DataLoader worker skipped (``{}`` in the
        main process, which warns itself), for the training loop's ``report_skips``.
    """

    def __init__(self, num_sources: int, num_frames: int, crop_size: CropSize, scale: int,
                 degradation: DegradationSpec, caption_dropout: float, seed: int, length: int | None,
                 sharpen_gt: bool = False) -> None:
        if num_sources < 1:
            raise InputError(f"{type(self).__name__} has no sources to read clips from")
        check_whole_number("num_frames", num_frames, 1)  # (2.5 was cut to 2 frames)
        check_real_number("caption_dropout", caption_dropout, 0.0, 1.0)  # (a probability; "0.5" was a TypeError)
        if length is not None:
            check_whole_number("length", length, 1)
        check_seed(seed)
        self.crop_size = as_size(crop_size)
        self.degradation = resolve_degradation(degradation, scale)
        self.sharpen_gt = check_true_or_false("sharpen_gt", sharpen_gt)  # ("no" was True)
        if self.crop_size[0] % scale or self.crop_size[1] % scale:
            raise InputError(f"crop_size {self.crop_size} must be divisible by scale {scale}")
        self.num_sources = num_sources
        self.num_frames = int(num_frames)
        self.scale = int(scale)
        self.caption_dropout = float(caption_dropout)
        self.seed = int(seed)
        self.length = num_sources if length is None else int(length)
        # () int64 in shared memory: a persistent DataLoader worker keeps its copy of the dataset from the first
        # epoch on (and repeated epoch 0's items with an int here); a shared tensor is the same memory in each copy
        self._epoch = torch.zeros((), dtype=torch.int64)
        try:
            self._epoch.share_memory_()
        except (RuntimeError, OSError) as error:  # no shared memory here (/dev/shm missing, full or not writable):
            # the dataset still works in this process (it was not made at all); DataLoader workers need shared
            # memory for their batches too, so the warning says to do without them (review)
            warn_user(f"no shared memory for the dataset's epoch ({error}); DataLoader workers need it too: load "
                      f"in the main process (num_workers=0, the training scripts' --dataloader_num_workers 0)")
        self.bad_sources: dict[str, str] = {}

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The epoch whose seeds the items use (``set_epoch``)."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Use the seeds of ``epoch`` from now on (epoch 0 is the default), here and in DataLoader workers."""
        check_whole_number("epoch", epoch, 0)  # (-1 failed at the next item, in NumPy's seeding)
        self._epoch.fill_(int(epoch))

    @abstractmethod
    def source_name(self, source: int) -> str:
        """A human-readable name (path) of source ``source`` for warnings."""

    def fingerprint(self, as_given: bool = False) -> str:
        """What the sources are (``sources_fingerprint``, ``as_given`` passed on; here of the sources' names as
        paths): a resumed training run compares it with its start's."""
        return sources_fingerprint([self.source_name(i) for i in range(self.num_sources)], as_given=as_given)

    @abstractmethod
    def load_clip(self, source: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """Cut an HR clip out of source ``source``.

        Returns:
            ``(frames, caption)``: uint8 frames (n, H, W, 3) of ``crop_size``, and the source's caption.

        Raises:
            BadSampleError: the source cannot give such a clip (the reason is the message).
        """

    def _skip(self, source: int, reason: str, unreported: dict[str, str]) -> None:
        """Remember that ``source`` was skipped; warn of it (the first time), or in a worker add it to
        ``unreported``."""
        name = self.source_name(source)
        if get_worker_info() is not None:
            if name not in self.bad_sources:  # (a worker's copy holds what the main process had said before)
                unreported[name] = reason
        elif name not in self.bad_sources:
            _warn_skip(name, reason)  # (at the line that asked for the item)
        self.bad_sources[name] = reason

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} items")
        # an epoch shorter than the sources goes on through them where the last one stopped, so every source is
        # used (item i was source i in every epoch: the rest never); otherwise item i is source i mod the sources
        epoch = self.epoch  # read once: a set_epoch meanwhile (shared memory) must not mix two epochs' seeds
        first = (index + (epoch * self.length if self.length < self.num_sources else 0)) % self.num_sources
        unreported: dict[str, str] = {}
        problems: list[str] = []
        for attempt, source in enumerate(self._sources_to_try(first, index, epoch)):
            clip_seq, caption_seq, degradation_seq = sample_seed_sequence(
                self.seed, epoch, index, attempt).spawn(_STREAMS)
            try:
                frames, caption = self.load_clip(source, np.random.default_rng(clip_seq))
            except BadSampleError as error:
                self._skip(source, str(error), unreported)
                problems.append(f"{self.source_name(source)}: {error}")
                continue
            if np.random.default_rng(caption_seq).random() < self.caption_dropout:
                caption = ""
            degradation_seed = int(degradation_seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
            pair = make_pair(frames_to_clip(frames), self.scale, self.degradation, degradation_seed, self.sharpen_gt)
            return {**pair, "caption": caption, "index": index, "num_skipped": attempt,
                    "unreported_skips": json.dumps(unreported)}
        raise InputError(f"{type(self).__name__}: no usable source among the {self.num_sources} training sources "
                         f"(item {index} tried them all: {'; '.join(problems[:3])}"
                         f"{'; ...' if len(problems) > 3 else ''}). Check the training data.")

    def _sources_to_try(self, first: int, index: int, epoch: int) -> Iterator[int]:
        """Source ``first`` and its ``NEIGHBOURS`` next ones in order, then every other source in a random order
        drawn from (seed, epoch, index), the same in every process and worker: the item failed after the
        neighbours, so a run of 33 bad sources stopped a training run at a random step although good ones existed."""
        neighbours = [(first + step) % self.num_sources for step in range(min(self.num_sources, NEIGHBOURS + 1))]
        yield from neighbours
        if len(neighbours) == self.num_sources:
            return
        tried = set(neighbours)
        sequence = np.random.SeedSequence([self.seed, epoch, index], spawn_key=(_SUBSTITUTE_STREAM,))
        for source in np.random.default_rng(sequence).permutation(self.num_sources):
            if int(source) not in tried:
                yield int(source)

