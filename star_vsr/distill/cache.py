"""A teacher cache: a slow teacher's outputs on a fixed set of clips, stored once in safetensors shards.

Layout of a cache folder::

    manifest.json              settings, teacher and data description, completion state
    shard-00000.safetensors    clips 0 .. k-1
    shard-00001.safetensors    clips k .. 2k-1
    ...

Each shard holds, for every clip ``i`` it covers, the tensors ``"{i}/lq"`` (n, 3, h, w),
``"{i}/teacher"`` (n, 3, H, W) (absent when built without a teacher), ``"{i}/gt"`` (n, 3, H, W)
(when the clips have ground truth) and ``"{i}/features/{name}"`` (n, c, h_f, w_f), plus the
clips' captions in its metadata and ``"manifest"``, the UTF-8 bytes (uint8) of the manifest as it stood
(a lost ``manifest.json`` is restored from them when the command that built the cache runs again).
Shards are written to a temporary name and renamed, so a shard
file either is complete or does not exist: an interrupted build resumes by skipping the shards
already on disk, and never calls the teacher again for their clips.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import (DISK_FULL_ERRNOS, InputError, OutputError, RanOutOfMemoryError, again, cannot_write,
                      cli_running, is_out_of_memory, listed, memory_amount, option, write_failed)
from ..frames import VALUE_TOLERANCE, check_unit_range
from ..io.atomic import remove_temporary
from ..model_folder import safetensors_shapes
from ..outputs import check_writable, folder_lock, give_default_mode, write_text_atomic
from ..progress import bar_options
from .teacher import DIFFUSION_TEACHER_KIND, Teacher
from ..json_files import loads_json

CACHE_FORMAT_VERSION = 1
"""Version of the layout above; bumped when it changes incompatibly."""

MANIFEST_NAME = "manifest.json"
SHARD_NAME = "shard-{:05d}.safetensors"

MANIFEST_COPY = "manifest"
"""The key of the shards' copy of the manifest (see the layout above)."""
DEFAULT_CLIPS_PER_SHARD = 4
"""Clips per shard: small enough that an interruption loses little work, large enough to keep files few."""

STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
"""Precisions a cache can store its tensors in (float16 halves the size; 8-bit frames survive it exactly
to within a tenth of a level)."""

LAYOUTS = {"lq": "(n, 3, h, w)", "teacher": "(n, 3, H, W)", "gt": "(n, 3, H, W)"}
"""The shapes of a clip's stored tensors (its features: (n, c, h_f, w_f), c as ``feature_channels`` says)."""


@dataclass
class CacheManifest:
    """The contents of ``manifest.json``.

    Attributes:
        num_clips: clips in the cache.
        clips_per_shard: clips per shard (the last shard may hold fewer).
        dtype: storage precision, a key of :data:`STORAGE_DTYPES`.
        teacher: the teacher's description (None: no teacher, the cache holds only data).
        source: description of the clips (data folder or data set settings).
        has_gt: whether clips store ground truth.
        feature_channels: width of each stored teacher feature tap (known once a shard exists).
        complete: whether every shard is written.
        wall_time_s: seconds spent building (summed over resumed runs).
        version: :data:`CACHE_FORMAT_VERSION`.
    """

    num_clips: int
    clips_per_shard: int
    dtype: str
    teacher: Optional[dict[str, Any]]
    source: dict[str, Any]
    has_gt: bool = False
    feature_channels: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    wall_time_s: float = 0.0
    version: int = CACHE_FORMAT_VERSION

    @property
    def num_shards(self) -> int:
        return -(-self.num_clips // self.clips_per_shard)

    def shard_clips(self, shard: int) -> range:
        """Indices of the clips stored in shard number ``shard``."""
        return range(shard * self.clips_per_shard, min((shard + 1) * self.clips_per_shard, self.num_clips))

    def settings(self, keep_folders: bool = False) -> dict[str, Any]:
        """The fields that must agree for a rerun to resume this cache. A teacher known by its weights' fingerprint
        is that, not the path it was given by (``teacher/`` and an absolute path were "other settings"), nor the
        fingerprints of its weights cast to other dtypes (``weights_as``: only for naming what differs); clips known
        by their files' fingerprint are those files, not the folders they were found in (``keep_folders``: the
        folders too, for a manifest whose clips are not fingerprinted)."""
        teacher = self.teacher
        if isinstance(teacher, dict) and teacher.get("weights") is not None:
            teacher = {key: value for key, value in teacher.items() if key not in ("source", "weights_as")}
        if isinstance(teacher, dict) and isinstance(teacher.get("features"), list):  # a set: the order of --features
            teacher = {**teacher, "features": sorted(map(str, teacher["features"]))}  # was "other settings"
        source = self.source
        if isinstance(source, dict) and "files" in source and not keep_folders:  # the clips are their files'
            # names, sizes and times wherever their folders are (a cache moved with its data was "other settings")
            source = {**{key: value for key, value in source.items() if key not in ("folder", "gt_folder")},
                      "gt": source.get("gt_folder") is not None}
        return {"num_clips": self.num_clips, "clips_per_shard": self.clips_per_shard, "dtype": self.dtype,
                "teacher": teacher, "source": source, "version": self.version}

    def save(self, folder: Path) -> None:
        write_text_atomic(folder / MANIFEST_NAME, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Union[str, Path]) -> "CacheManifest":
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            try:
                shards = shard_files(Path(folder))
                restorable = bool(shards) and _manifest_in_shards(shards) is not None
            except OSError:  # (not a folder, or one that cannot be listed: no cache to point at)
                shards, restorable = {}, False
            if restorable:  # its manifest lost: the build restores it
                raise InputError(f"{folder} holds teacher-cache shards but no {MANIFEST_NAME}; rerun the "
                                 "`star-vsr distill cache-teacher` command that built it, which restores the "
                                 "manifest from the copies its shards carry")
            if shards:  # (shards of an earlier star-vsr, or of builds with other settings: the copies disagree)
                raise InputError(f"{folder} holds teacher-cache shards but no {MANIFEST_NAME}, and they carry no "
                                 "copy of it that agrees; rebuild the cache (`star-vsr distill cache-teacher ... "
                                 "--overwrite`)")
            raise InputError(f"{folder} is not a teacher cache (no {MANIFEST_NAME}); build one with "
                             "`star-vsr distill cache-teacher`")
        try:
            data = loads_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise _damaged_manifest(path, str(error)) from None
        if not isinstance(data, dict) or data.get("version") != CACHE_FORMAT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise DamagedManifestError(f"{path} has cache format version {version}; this star-vsr reads version "
                                       f"{CACHE_FORMAT_VERSION}. Rebuild the cache (cache-teacher --overwrite).")
        try:
            manifest = cls(**data)
        except TypeError as error:  # a key missing or unknown: edited by hand
            raise _damaged_manifest(path, str(error)) from None
        wrong = manifest._wrong_field()
        if wrong:
            raise _damaged_manifest(path, wrong)
        return manifest

    def _wrong_field(self) -> Optional[str]:
        """The first field not of the type this star-vsr writes, in words (``"num_clips '5' is not a whole number >=
        1"``); None when every one is. Edited by hand, they were a ZeroDivisionError, a cache of no clips, a
        TypeError or AttributeError in whatever read them first, or a 15 GiB feature adapter."""
        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        def scale(described: Any) -> Any:  # (None, as the absent scale of something that is no object)
            return described.get("scale") if isinstance(described, dict) else None

        channels = self.feature_channels
        fields = (("num_clips", self.num_clips, whole(self.num_clips), "a whole number >= 1"),
                  ("clips_per_shard", self.clips_per_shard, whole(self.clips_per_shard), "a whole number >= 1"),
                  ("dtype", self.dtype, isinstance(self.dtype, str) and self.dtype in STORAGE_DTYPES,
                   f"one of {', '.join(STORAGE_DTYPES)}"),
                  ("teacher", self.teacher, self.teacher is None or isinstance(self.teacher, dict),
                   "an object or null"),
                  ("teacher.scale", scale(self.teacher), scale(self.teacher) is None or number(scale(self.teacher)),
                   "a number"),
                  ("source", self.source, isinstance(self.source, dict), "an object"),
                  ("source.scale", scale(self.source), scale(self.source) is None or number(scale(self.source)),
                   "a number"),
                  ("has_gt", self.has_gt, isinstance(self.has_gt, bool), "true or false"),
                  ("feature_channels", channels, isinstance(channels, dict) and all(map(whole, channels.values())),
                   "an object of whole numbers >= 1"),
                  ("complete", self.complete, isinstance(self.complete, bool), "true or false"),
                  ("wall_time_s", self.wall_time_s, number(self.wall_time_s), "a number"))
        return next((f"{name} {value!r} is not {what}" for name, value, fine, what in fields if not fine), None)


class DamagedManifestError(InputError):
    """A cache's ``manifest.json`` that cannot be read as this star-vsr writes it (``--overwrite`` replaces it)."""


def _damaged_manifest(path: Path, reason: str) -> DamagedManifestError:
    """The error of a damaged manifest ``path``, with the way back that costs least: where the shards carry copies
    of it that agree, deleting it and running the build again, which restores it and computes nothing (the advice
    was ``--overwrite``, which computes every shard again: hours of a diffusion teacher; black-box hunt)."""
    try:
        shards = shard_files(path.parent)
        restorable = bool(shards) and _manifest_in_shards(shards) is not None
    except OSError:
        restorable = False
    advice = ("delete it and rerun the `star-vsr distill cache-teacher` command that built the cache, which restores "
              "it from the copies its shards carry without computing anything again" if restorable else
              "rebuild the cache: `star-vsr distill cache-teacher ... --overwrite`")
    return DamagedManifestError(f"{path} is damaged ({reason}); {advice}")


def _as_json(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists), so that manifests compare equal."""
    return json.loads(json.dumps(value))


def build_teacher_cache(
    teacher: Optional[Teacher],
    clips: Sequence[Mapping[str, Any]],
    output_dir: Union[str, Path],
    *,
    clips_per_shard: int = DEFAULT_CLIPS_PER_SHARD,
    dtype: str = "float16",
    source: Optional[Mapping[str, Any]] = None,
    overwrite: bool = False,
    progress: bool = False,
) -> "TeacherCache":
    """Run ``teacher`` over ``clips`` and store inputs, outputs and features in shards (resumable).

    Args:
        teacher: the teacher (see :func:`~star_vsr.distill.teacher.load_teacher`); None stores the
            clips alone (LR and ground truth), e.g. for training on ground truth only.
        clips: a sequence (e.g. a ``torch.utils.data.Dataset``) whose items are dicts with ``"lq"``
            (n, 3, h, w) float in [0, 1] and optionally ``"gt"`` (n, 3, H, W) and ``"caption"``.
            Item ``i`` must be the same clip on every run (seeded data sets are).
        output_dir: cache folder (created).
        clips_per_shard: clips per shard file.
        dtype: storage precision, one of :data:`STORAGE_DTYPES`.
        source: JSON-serialisable description of ``clips`` for the manifest; a rerun resumes only
            when the description, the teacher's and the other settings are unchanged.
        overwrite: delete an existing cache in ``output_dir`` with other settings instead of failing.
        progress: show a progress bar (clips done, clips per second).

    Returns:
        The finished cache, opened for reading.

    Raises:
        InputError: bad settings, a clip without ``"lq"``, a clip whose ``"lq"`` / ``"gt"`` is not a float
            tensor in [0, 1] of the shapes above (``"gt"`` ``scale`` times ``"lq"``'s size, the teacher's scale or,
            without a teacher, ``source["scale"]`` or the first clip's), a teacher output with NaN, clips that
            disagree on having ground truth, or an existing cache with other settings (without ``overwrite``).
        OutputBusyError: another run is building a cache in ``output_dir``.
        OutputError: ``output_dir`` cannot be written.
        RanOutOfMemoryError: memory ran out in the teacher (the clip is named; the shards saved before stay).
    """
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if isinstance(clips_per_shard, bool) or not isinstance(clips_per_shard, int) or clips_per_shard < 1:
        raise InputError(f"clips_per_shard must be a whole number >= 1, got {clips_per_shard!r}")
    if len(clips) < 1:
        raise InputError("there are no clips to cache")
    folder = Path(output_dir)
    first = clips[0]
    if "lq" not in first:
        raise InputError(f"cache clips must be dicts with an 'lq' tensor; got keys {sorted(first)}")
    # the HR / LR size ratio every clip's ground truth must have: the teacher's, the source's, or the first clip's
    scale = teacher.scale if teacher is not None else (source or {}).get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool):
        scale = None
    _check_clip(first, 0, "gt" in first, scale)  # before a folder is made
    if scale is None and "gt" in first:
        scale = first["gt"].shape[-2] // first["lq"].shape[-2]
    manifest = CacheManifest(num_clips=len(clips), clips_per_shard=clips_per_shard, dtype=dtype,
                             teacher=_as_json(teacher.describe()) if teacher is not None else None,
                             source=_as_json(dict(source or {})), has_gt="gt" in first)
    wrong = manifest._wrong_field()  # (a source scale of "4x": every clip computed, then the manifest refused)
    if wrong:
        raise InputError(f"the cache's manifest would not read back: {wrong} (the source and the teacher's describe() "
                         f"are stored in it)")
    new_folder = not folder.exists()
    # a read-only place or a file in the path: "cannot write", not mkdir's bare error (a scratch file in the folder
    # itself when it exists: a writable cache under a read-only parent resumes)
    check_writable(folder / MANIFEST_NAME)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(folder, error) from None
    # two runs on one folder each wrote their own shards under one manifest: a cache marked complete that mixed
    # crop sizes or dtypes
    with folder_lock(folder, folder):
        manifest = _resume_or_start(folder, manifest, overwrite)
        try:
            _fill_shards(teacher, clips, folder, manifest, progress, scale)
        except BaseException as error:
            try:
                saved: Optional[list[int]] = _saved_shards(folder, manifest)
            except OSError:  # (the folder cannot be listed now: left as it is, the error that stopped the build said)
                saved = None
            if saved is None:
                raise
            if not saved:  # nothing cached: leave no cache behind
                (folder / MANIFEST_NAME).unlink(missing_ok=True)
                for temp in folder.glob(".shard-*.tmp"):
                    temp.unlink()
                if new_folder and not any(folder.iterdir()):
                    folder.rmdir()
            else:
                clips_saved = sum(len(manifest.shard_clips(s)) for s in saved)
                kept = f"{clips_saved} of {manifest.num_clips} clip{'s' * (manifest.num_clips != 1)} saved"
                if isinstance(error, OutputError) and error.errno in DISK_FULL_ERRNOS:  # (it said only "cannot write")
                    raise write_failed(f"{error}; {kept}: free some space and {again()} to go on from there",
                                       error) from None
                if progress and isinstance(error, KeyboardInterrupt):
                    tqdm.write(f"{folder}: stopped; {kept}. {again(capital=True)} to go on from there",
                               file=sys.stderr)
            raise
        manifest.complete = True
        manifest.save(folder)
    return TeacherCache(folder)


def _fill_shards(teacher: Optional[Teacher], clips: Sequence[Mapping[str, Any]], folder: Path,
                 manifest: CacheManifest, progress: bool, scale: Optional[int]) -> None:
    """Write every shard that is not in ``folder`` yet, saving the manifest before and after each. ``scale``: the
    HR / LR size ratio of the ground truth (None: the first clip's)."""
    storage = STORAGE_DTYPES[manifest.dtype]
    for shard in range(manifest.num_shards):  # damaged since it was written (a bad copy, a disk error): redo it
        path = _shard_path(folder, shard)
        if path.is_file() and not shard_written(folder, shard):
            tqdm.write(f"{path} is damaged; computing it again", file=sys.stderr)  # (a note, as the others)
            path.unlink()
    done = sum(len(manifest.shard_clips(s)) for s in _saved_shards(folder, manifest))
    # closed on the way out of an error too: the bar's last line was drawn after the CLI's "interrupted"
    with tqdm(total=manifest.num_clips, initial=done, unit="clip", desc="teacher cache", disable=not progress,
              **bar_options()) as bar:
        for shard in range(manifest.num_shards):
            path = _shard_path(folder, shard)
            if path.is_file():
                continue
            started = time.perf_counter()
            tensors: dict[str, torch.Tensor] = {}
            captions: dict[str, str] = {}
            for index in manifest.shard_clips(shard):
                clip = clips[index]
                tensors.update(_clip_tensors(clip, index, teacher, manifest, storage, scale, known=done > 0))
                done += 1
                if clip.get("caption"):
                    captions[str(index)] = str(clip["caption"])
                bar.update(1)
            # the manifest first: what the shard holds (feature_channels, set by its first clip) must be on disk
            # before the shard counts as done (a full disk or a kill between the two left a manifest without the
            # features, and every rerun refused the teacher as returning other features than the earlier clips)
            manifest.save(folder)
            temp = path.with_name(f".{path.name}.tmp")
            # the copy that restores a lost manifest, without the seconds spent, as a tensor of its UTF-8 bytes (a
            # second metadata key came out in random order: the same clips and teacher make the same shard, byte
            # for byte)
            copy = json.dumps(asdict(replace(manifest, wall_time_s=0.0)), sort_keys=True).encode("utf-8")
            tensors[MANIFEST_COPY] = torch.frombuffer(bytearray(copy), dtype=torch.uint8)
            try:
                remove_temporary(temp)  # (not written through a link named like it)
                save_file(tensors, str(temp), metadata={"captions": json.dumps(captions)})
                give_default_mode(temp)
                os.replace(temp, path)
            except (OSError, SafetensorError) as error:  # a full disk: one line, not safetensors' traceback
                temp.unlink(missing_ok=True)
                raise cannot_write(path, error) from None
            manifest.wall_time_s += time.perf_counter() - started
            manifest.save(folder)


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / SHARD_NAME.format(shard)


def shard_files(folder: Path) -> dict[int, Path]:
    """The shard files in ``folder`` by number, from one listing of the folder (a look for each shard a manifest
    counts hung on one edited to 10**12 clips); names that only look like a shard's (``shard-1.safetensors``) left
    out. ``OSError`` when it cannot be listed (``glob`` took a folder without read permission for an empty one)."""
    shards = {}
    for name in os.listdir(folder):
        number = name[len("shard-"):-len(".safetensors")]
        if (name.startswith("shard-") and name.endswith(".safetensors") and number.isascii() and number.isdigit()
                and SHARD_NAME.format(int(number)) == name):
            shards[int(number)] = folder / name
    return shards


def _saved_shards(folder: Path, manifest: CacheManifest) -> list[int]:
    """The shards of ``manifest`` whose file is in ``folder`` (``OSError`` when it cannot be listed)."""
    return sorted(shard for shard in shard_files(folder) if shard < manifest.num_shards)


def _manifest_in_shards(shards: Mapping[int, Path]) -> Optional[CacheManifest]:
    """The manifest a lost ``manifest.json`` held, from the copies the shards carry (each the manifest as it stood
    when its shard was written, but for the seconds spent, which are lost with it): the copy, marked incomplete,
    when every shard whose header reads carries one and all have the same settings; None otherwise (shards written
    before star-vsr stored the copy, or by builds with other settings). ``OSError`` when a shard cannot be read
    now."""
    copies = []
    for _, path in sorted(shards.items()):
        try:
            with safe_open(str(path), framework="pt") as shard:
                held = MANIFEST_COPY in shard.keys()
                text = bytes(shard.get_tensor(MANIFEST_COPY).numpy()).decode("utf-8") if held else None
        except (SafetensorError, ValueError):  # a damaged shard: the build computes it again
            continue
        try:
            copy = CacheManifest(**loads_json(text)) if text is not None else None
        except (TypeError, ValueError):  # (not an object, keys of another version)
            return None
        if copy is None or copy.version != CACHE_FORMAT_VERSION or copy._wrong_field():
            return None
        copies.append(copy)
    if not copies or any(copy.settings() != copies[0].settings() for copy in copies):
        return None
    return replace(copies[-1], complete=False)  # the highest-numbered shard's (not the first listed: review)


def shard_written(folder: Path, shard: int) -> bool:
    """Whether shard ``shard`` of the cache in ``folder`` is on disk with a header that parses (a build computes
    the others)."""
    return _shard_path(folder, shard).is_file() and _shard_shapes(_shard_path(folder, shard)) is not None


def _shard_shapes(path: Path) -> Optional[dict[str, tuple[int, ...]]]:
    """The shapes of a shard's tensors by key (``"{i}/lq"``: (n, 3, h, w), ...), from its header; None when it is
    missing or its header is damaged (does not parse, names tensors outside the file, or holds captions that are no
    JSON object of strings). A file that cannot be read now (a disk or network error, no permission, no file handle
    left) raises: it was taken as damaged, and a build deleted hours of teacher work to compute it again (review)."""
    from safetensors import SafetensorError

    try:
        shapes = safetensors_shapes(path)
        with safe_open(str(path), framework="pt") as shard:
            _captions(shard.metadata())
        return shapes
    except (SafetensorError, FileNotFoundError, ValueError):  # (ValueError: a header naming odd shapes, or captions)
        return None


def _captions(metadata: Optional[Mapping[str, str]]) -> dict[str, str]:
    """The captions by clip index in a shard's ``metadata``; ``ValueError`` when they are no JSON object of strings
    (a list was an AttributeError at the first clip read, mid-run)."""
    captions = loads_json((metadata or {}).get("captions", "{}"))
    if not isinstance(captions, dict) or not all(isinstance(caption, str) for caption in captions.values()):
        raise ValueError(f"its captions are no JSON object of strings: {str(captions)[:40]}")
    return captions


def _unreadable_now(path: Path, error: OSError) -> InputError:
    """The error of a shard that cannot be read now (a disk or network error, no permission, no file handle left):
    not damage, so not to be computed again."""
    return InputError(f"{path} cannot be read now ({error.strerror or error}); it was left as it is: check the disk "
                      f"or share it is on (or its permissions), then run again")


#: The ``star-vsr distill cache-teacher`` flag that sets each manifest setting, named beside it when a rerun of
#: the command is refused for other settings (``source.seed (--seed)``).
SETTING_FLAGS = {"clips_per_shard": "--clips-per-shard", "dtype": "--storage-dtype",
                 "source.folder": "--data", "source.gt_folder": "--gt", "source.gt": "--gt",
                 "source.num_frames": "--num-frames",
                 "source.clips": "--motion-clips", "source.crop_size": "--crop-size",
                 "source.degradation": "--degradation", "source.seed": "--seed", "source.scale": "--upscale",
                 "teacher.source": "--teacher", "teacher.weights": "--teacher", "teacher.kind": "--teacher",
                 "teacher.features": "--features",
                 "teacher.dtype": "--dtype", "teacher.scale": "--upscale", "teacher.seed": "--seed",
                 "teacher.num_inference_steps": "--steps", "teacher.call_kwargs.guidance_scale": "--guidance-scale"}


def _changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], old_teacher: Any = None,
                      new_teacher: Any = None) -> list[str]:
    """The settings that differ, a dict-valued one by its entries, at any depth (``teacher.num_inference_steps``
    and ``teacher.call_kwargs.guidance_scale``, not ``teacher``). ``teacher.weights`` is left out when only the
    dtype differs (``_other_weights``, from the manifests' teachers ``old_teacher`` and ``new_teacher``)."""
    def differing(before: Any, after: Any, key: str) -> list[str]:
        if isinstance(before, dict) and isinstance(after, dict):
            return [name for entry in sorted({*before, *after}, key=str)
                    for name in differing(before.get(entry), after.get(entry), f"{key}.{entry}" if key else entry)]
        return [key] if before != after else []

    changed = differing(dict(old), dict(new), "")
    if "teacher.kind" in changed:  # another kind of teacher (a student's, a diffusion pipeline's): its other
        # settings differ as a matter of course ("teacher.seed (--seed)" though no --seed was given)
        changed = [name for name in changed if not name.startswith("teacher.") or name == "teacher.kind"]
    if "teacher.dtype" in changed and "teacher.weights" in changed and not _other_weights(old_teacher, new_teacher):
        changed.remove("teacher.weights")  # naming --teacher too read as if the teacher were another
    return changed


def _other_weights(old: Any, new: Any) -> bool:
    """Whether two teacher descriptions of different dtypes hold other weights, not the same ones cast: a float32
    teacher records the fingerprints of its weights cast to float16 and bfloat16 (``weights_as``), which the
    same weights loaded in that dtype match. False where that cannot be told (float16 against bfloat16, or a
    manifest from before ``weights_as``)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    old_as, new_as = old.get("weights_as") or {}, new.get("weights_as") or {}
    if new.get("dtype") in old_as:
        return old_as[new["dtype"]] != new.get("weights")
    if old.get("dtype") in new_as:
        return new_as[old["dtype"]] != old.get("weights")
    return False


#: ``SETTING_FLAGS`` where the clips come from ``--data``: their number is the folder's (its videos cut into
#: ``--num-frames`` windows), not ``--motion-clips``.
FOLDER_SETTING_FLAGS = {**SETTING_FLAGS, "source.clips": "--data", "source.captions": "the clips' .txt captions"}


def _with_flag(setting: str, source: Any = None) -> str:
    """``setting`` with the command's flag for it, when a ``star-vsr`` command is running and has that flag
    (``source``: the manifest's clip description, whose kind decides what sets ``source.clips``)."""
    flags = FOLDER_SETTING_FLAGS if isinstance(source, dict) and source.get("kind") == "video_folder" else \
        SETTING_FLAGS
    flag = option(setting, flags.get(setting, setting))
    return setting if flag == setting else f"{setting} ({flag})"


def check_cache_folder(output_dir: Union[str, Path], num_clips: int, clips_per_shard: int, dtype: str,
                       source: Mapping[str, Any], overwrite: bool) -> None:
    """The refusals of ``build_teacher_cache`` into ``output_dir`` that need no teacher (a folder of other files, a
    damaged manifest, a cache of other clips or storage), for a caller to make before loading one (STAR: minutes)."""
    folder = Path(output_dir)
    if folder.is_dir():
        manifest = CacheManifest(num_clips=num_clips, clips_per_shard=clips_per_shard, dtype=dtype, teacher=None,
                                 source=_as_json(dict(source)))
        _existing_cache(folder, manifest, overwrite, compare_teacher=False)


def _existing_cache(folder: Path, manifest: CacheManifest, overwrite: bool,
                    compare_teacher: bool = True) -> Optional[CacheManifest]:
    """The cache in ``folder`` when it has ``manifest``'s settings (the teacher's too with ``compare_teacher``),
    else None; ``InputError`` when what ``folder`` holds may not be replaced (see ``_resume_or_start``)."""
    has_manifest = (folder / MANIFEST_NAME).is_file()
    try:
        shards = shard_files(folder)
        lost = _manifest_in_shards(shards) if shards and not has_manifest else None
    except OSError as error:  # (no permission to list it, a share gone: not damage)
        raise _unreadable_now(folder, error) from None
    if has_manifest:
        try:
            existing = CacheManifest.load(folder)
        except DamagedManifestError:
            if not overwrite:
                raise
            return None  # replaced, with the shards it described
    elif shards:
        if lost is None:  # written before shards carried the manifest, or by builds with other settings
            if not overwrite:
                raise InputError(f"{folder} holds shard files but no {MANIFEST_NAME}; choose another folder, or "
                                 f"pass {option('overwrite=True', '--overwrite')} to replace them")
            return None
        existing = lost  # compared as the manifest.json it was
    else:  # the shards went in among the user's files, and --overwrite would have looked like it replaced them
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if others:
            raise InputError(f"{folder} holds other files ({listed(others)}) and no teacher cache; a cache goes in a "
                             f"new or empty folder")
        return None
    unfingerprinted = isinstance(existing.source, dict) and "files" not in existing.source  # (folders then
    old, new = existing.settings(unfingerprinted), manifest.settings(unfingerprinted)  # say which clips)
    if not compare_teacher:
        old, new = {**old, "teacher": None}, {**new, "teacher": None}
    for key in ("files", "frames"):  # the clips' files, each frame file, not fingerprinted yet
        if isinstance(old["source"], dict) and isinstance(new["source"], dict) and key not in old["source"]:
            new = {**new, "source": {name: value for name, value in new["source"].items() if name != key}}
    if isinstance(old["source"], dict) and isinstance(new["source"], dict):
        prompted = isinstance(existing.teacher, dict) and existing.teacher.get("kind") == DIFFUSION_TEACHER_KIND
        if not prompted or ("captions" not in old["source"] and existing.complete):
            # the captions change a prompted teacher's outputs alone; a finished cache of a version that did not read
            # them is computed no further (nothing to mix: it was refused, and --overwrite computed it all again)
            old, new = ({**settings, "source": {name: value for name, value in settings["source"].items()
                                                if name != "captions"}} for settings in (old, new))
    if isinstance(old["teacher"], dict) and isinstance(new["teacher"], dict):
        if "features" not in old["teacher"] and "features" in new["teacher"]:
            # a diffusion teacher's taps were not recorded yet: those its clips hold
            old = {**old, "teacher": {**old["teacher"], "features": list(existing.feature_channels)}}
        if "code" not in old["teacher"]:  # a callable teacher's code was not fingerprinted yet
            new = {**new, "teacher": {k: v for k, v in new["teacher"].items() if k != "code"}}
    if old == new:
        return existing
    if not overwrite and shards:
        changed = _changed_settings(old, new, existing.teacher, manifest.teacher)
        files = " (the clips' files changed since it was started)" if {"source.files", "source.frames"} & \
            set(changed) and "source.gt" not in changed else ""  # (the ground truth's files are among them)
        named = ", ".join(_with_flag(setting, new["source"]) for setting in changed)
        raise InputError(f"{folder} already holds a teacher cache built with other settings "
                         f"({named} differ{files}); choose another folder, or pass "
                         f"{option('overwrite=True', '--overwrite')} to replace it")
    return None


def _resume_or_start(folder: Path, manifest: CacheManifest, overwrite: bool) -> CacheManifest:
    """Reuse a matching cache in ``folder`` (keeping its progress), or start it afresh.

    A cache with other settings is replaced only with ``overwrite``, or when it holds no shard yet
    (a run that stopped before caching anything has nothing to lose)."""
    restoring = not (folder / MANIFEST_NAME).is_file()
    existing = _existing_cache(folder, manifest, overwrite)
    if existing is not None and restoring:
        existing.save(folder)
        tqdm.write(f"{folder / MANIFEST_NAME} was missing; restored from the copy its shards carry (the teacher "
                   f"time spent on them is not known)", file=sys.stderr)
    if existing is not None:
        old_source, new_source = existing.source, manifest.source
        if (not existing.complete and isinstance(old_source, dict) and isinstance(new_source, dict)
                and "files" not in old_source and "files" in new_source):
            # made before the clips' files were fingerprinted: from now on a later resume compares them too (a
            # finished cache stays byte for byte: training runs record its manifest's hash)
            existing.source = manifest.source
            existing.save(folder)
        return existing
    for path in shard_files(folder).values():
        path.unlink()
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    manifest.save(folder)
    return manifest


def _check_clip(clip: Mapping[str, Any], index: int, has_gt: bool, scale: Optional[int]) -> None:
    """Raise ``InputError``, naming the clip, unless its ``"lq"`` is a float (n >= 1, 3, h, w) tensor in [0, 1] and
    its ``"gt"`` (when ``has_gt``) one of (n, 3, h * scale, w * scale) (any whole ``scale`` >= 1 when None). Checked
    before anything is cached: a 0..255 or NaN clip trained a student on nonsense, and a ground truth of the wrong
    size failed hours later in a loss that did not name the cache."""
    for key in ("lq", "gt") if has_gt else ("lq",):
        value = clip[key]
        if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[1] != 3:
            raise InputError(f"clip {index}: {key!r} must be a {LAYOUTS[key]} tensor, got "
                             f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
        if 0 in value.shape:
            raise InputError(f"clip {index}: {key!r} is empty (shape {tuple(value.shape)})")
        check_unit_range(value, f"clip {index}: {key!r}")
    if has_gt:
        (n, _, h, w), gt_shape = clip["lq"].shape, tuple(clip["gt"].shape)
        ratio = gt_shape[2] // h if scale is None else scale
        if ratio < 1 or gt_shape != (n, 3, h * ratio, w * ratio):
            size = f"{w * scale}x{h * scale} (x{scale} of {w}x{h})" if scale is not None else f"a multiple of {w}x{h}"
            raise InputError(f"clip {index}: 'gt' is {gt_shape[0]} frames of {gt_shape[3]}x{gt_shape[2]}; it must be "
                             f"{n} frames (as 'lq') of {size}")


def _teacher_out_of_memory(error: BaseException, index: int, clip: Mapping[str, Any]) -> RanOutOfMemoryError:
    """Memory running out in the teacher on clip ``index``, as one line naming the clip. In Python a diffusion
    pipeline's advice stays (it names its call's arguments, tile_size=512); ``star-vsr distill cache-teacher`` has
    no such flags: it says its own (a student teacher's error said only "try a shorter or smaller input")."""
    if isinstance(error, RanOutOfMemoryError) and not cli_running():
        return RanOutOfMemoryError(f"{_clip_label(index, clip)}: {error}")
    frames = int(clip["lq"].shape[0])
    flag = f"fewer frames per clip (--num-frames {frames // 2}) or smaller clips" if frames > 1 else "smaller clips"
    cause = error.__cause__ if isinstance(error, RanOutOfMemoryError) and error.__cause__ else error
    smaller = option("shorter or smaller clips", flag)
    return RanOutOfMemoryError(f"{_clip_label(index, clip)}: out of memory in the teacher{memory_amount(cause)}; "
                               f"free some memory and {again()} (it goes on after the last saved shard), or build a "
                               f"cache of {smaller} in another folder")


def _clip_label(index: int, clip: Mapping[str, Any]) -> str:
    """"clip 3 (a.mp4)": how a message names clip ``index`` of a build (its name where it has one)."""
    return f"clip {index} ({clip['name']})" if clip.get("name") else f"clip {index}"


def _clip_tensors(clip: Mapping[str, Any], index: int, teacher: Optional[Teacher], manifest: CacheManifest,
                  storage: torch.dtype, scale: Optional[int], known: bool) -> dict[str, torch.Tensor]:
    """The tensors stored for one clip, keyed ``"{index}/..."``, in the storage precision. ``known``: clips are
    stored already, whose teacher features (``manifest.feature_channels``, maybe none) this clip's must match."""
    if ("gt" in clip) != manifest.has_gt:
        raise InputError(f"clip {index}: either every clip has ground truth ('gt') or none has")
    _check_clip(clip, index, manifest.has_gt, scale)
    lq = clip["lq"]
    tensors = {f"{index}/lq": lq.float()}
    if manifest.has_gt:
        tensors[f"{index}/gt"] = clip["gt"].float()
    if teacher is not None:
        try:
            output = teacher(lq.float(), index=index, caption=clip.get("caption"))
        except InputError as error:  # the teacher's own checks of a clip: name it (it was "frames of 1x1 are too
            # small to upscale" of one clip among hundreds)
            raise InputError(f"{_clip_label(index, clip)}: {error}") from error
        except (RuntimeError, MemoryError) as error:  # memory ran out in the teacher: which clip, and what to do
            if not (isinstance(error, RanOutOfMemoryError) or is_out_of_memory(error)):
                raise
            raise _teacher_out_of_memory(error, index, clip) from error
        for what, value in (("output", output.sr), *((f"feature {k!r}", v) for k, v in output.features.items())):
            if not bool(torch.isfinite(value).all()):
                raise InputError(f"clip {index}: the teacher's {what} holds NaN or infinite values (in half "
                                 f"precision, try the teacher in float32)")
        # frames in [0, 1], as TeacherOutput says (Teacher._finish clamps them; a Teacher of one's own may not):
        # stored, reading them called the shard damaged, and the rebuild advised stored the same (review)
        check_unit_range(output.sr, f"clip {index}: the teacher's output")
        tensors[f"{index}/teacher"] = output.sr
        channels = {name: int(value.shape[1]) for name, value in output.features.items()}
        if known and channels != manifest.feature_channels:  # (none before, some now: a cache whose first clips
            # lack the features that its manifest lists)
            raise InputError(f"clip {index}: the teacher returned features {channels or 'none'}, earlier clips "
                             f"{manifest.feature_channels or 'none'}; a teacher must return the same ones for every "
                             f"clip")
        manifest.feature_channels = channels
        tensors.update({f"{index}/features/{name}": value for name, value in output.features.items()})
    stored = {key: value.to(storage).contiguous() for key, value in tensors.items()}
    beyond = sorted(key for key, value in stored.items() if not bool(torch.isfinite(value).all()))
    if beyond:  # finite before the cast: values past the storage type's range (float16: 65504) became infinite, and
        # reading the cache then called the shard damaged
        wider = option('dtype="float32" or "bfloat16"', "--storage-dtype float32 or bfloat16")
        raise InputError(f"clip {index}: {', '.join(k.split('/', 1)[1] for k in beyond)} exceed the range of "
                         f"{str(storage).removeprefix('torch.')} storage (they become infinite); build the cache with "
                         f"{wider}")
    return stored


#: The stored tensors that are frames in [0, 1] (the clip's as `_check_clip` lets them in, give or take
#: ``VALUE_TOLERANCE``; the teacher's clamped by ``Teacher._finish``); features may hold any finite value.
FRAME_TENSORS = ("lq", "gt", "teacher")


def _in_unit_range(frames: torch.Tensor) -> bool:
    """Whether the finite ``frames`` lie in [0, 1] give or take ``VALUE_TOLERANCE`` and a bfloat16 step (2 ** -7
    near 1): storage rounds a value let in past it (-0.04999 reads -0.05005 from bfloat16)."""
    low, high = frames.aminmax()
    slack = VALUE_TOLERANCE + 2 ** -7
    return -slack <= float(low) and float(high) <= 1 + slack


def _clip_span(indices: Sequence[int]) -> str:
    """Clip indices in words: ``"clips 0..3"``, ``"clip 4"``, ``"clips 0, 2"``, ``"no clip"``."""
    if not indices:
        return "no clip"
    if len(indices) == 1:
        return f"clip {indices[0]}"
    if list(indices) == list(range(indices[0], indices[-1] + 1)):
        return f"clips {indices[0]}..{indices[-1]}"
    return f"clips {', '.join(map(str, indices))}"


def _misshapen(shapes: Mapping[str, tuple[int, ...]], index: int, needed: Mapping[str, int]) -> Optional[str]:
    """``"holds 3/lq of shape (384,), not (n, 3, h, w)"``: the first of clip ``index``'s tensors ``needed`` (their
    names, with their widths) in a shard's header ``shapes`` that is not in its layout (:data:`LAYOUTS`; features
    (n, c, h_f, w_f)) of as many frames as the clip's lq; None when each is."""
    frames = shapes[f"{index}/lq"][:1]
    for name, width in needed.items():
        shape = shapes[f"{index}/{name}"]
        if len(shape) != 4 or shape[1] != width or shape[:1] != frames or 0 in shape:
            layout = LAYOUTS.get(name, f"(n, {width}, h_f, w_f)")
            return f"holds {index}/{name} of shape {shape}, not ({'n' if name == 'lq' else frames[0]}{layout[2:]}"
    return None


class TeacherCache(Dataset):
    """A finished teacher cache as a data set of clips (float32 CPU tensors).

    Items are dicts with ``"lq"`` (n, 3, h, w), ``"teacher"`` (n, 3, H, W) when the cache has a
    teacher, ``"gt"`` (n, 3, H, W) when it has ground truth, ``"teacher_features"``
    (``{name: (n, c, h_f, w_f)}``, possibly empty), ``"caption"`` (str, possibly empty) and
    ``"index"`` (int).

    Parameters:
        folder: the cache folder.
        allow_incomplete: open a cache whose build was interrupted (only its finished shards).
    """

    def __init__(self, folder: Union[str, Path], allow_incomplete: bool = False) -> None:
        self.folder = Path(folder)
        self.manifest = CacheManifest.load(self.folder)
        if not self.manifest.complete and not allow_incomplete:
            raise InputError(f"the teacher cache in {self.folder} is incomplete; rerun the same "
                             "`star-vsr distill cache-teacher` command to finish it")
        self._indices: list[int] = []
        self.lr_sizes: set[tuple[int, int]] = set()  # the (h, w) of the clips' LR frames
        try:
            saved = _saved_shards(self.folder, self.manifest)
        except OSError as error:  # (no permission to list it, a share gone: not damage)
            raise _unreadable_now(self.folder, error) from None
        unreadable = []
        for shard in saved:
            path = _shard_path(self.folder, shard)
            try:  # (is_file too: a share gone fails at its stat, ESTALE or EIO, which is_file raises)
                # the header only: a missing or damaged shard is found now, not mid-run
                shapes = _shard_shapes(path) if path.is_file() else None
            except OSError as error:  # not damage: the file is left as it is
                raise _unreadable_now(path, error) from None
            if shapes is None:
                unreadable.append(shard)
                continue
            self._check_contents(path, shard, shapes)
            self._indices += self.manifest.shard_clips(shard)
            self.lr_sizes |= {shape[-2:] for key, shape in shapes.items() if key.endswith("/lq")}
        # the missing counted, the first few named (a manifest edited to 10**12 clips listed all their shards: a hang)
        missing = 0 if allow_incomplete else self.manifest.num_shards - len(saved)
        if unreadable or missing:
            on_disk = set(saved)
            absent = (shard for shard in range(self.manifest.num_shards) if shard not in on_disk)
            first = sorted({*unreadable, *(islice(absent, 3) if missing else ())})
            names = [_shard_path(self.folder, shard).name for shard in first]
            raise InputError(f"the teacher cache in {self.folder} is missing or cannot read "
                             f"{listed(names, total=len(unreadable) + missing)} (an incomplete copy?); rerun the "
                             f"`star-vsr distill cache-teacher` command that built it: it computes missing and damaged "
                             f"shards again")

    def _check_contents(self, path: Path, shard: int, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """``InputError`` unless the shard holds the clips the manifest puts in it, each with what the manifest says
        every clip has, in its layout (see ``_misshapen``). A manifest edited by hand, or one of another build beside
        these shards, opened and then failed mid-run with ``KeyError: 'lq'``, or left clips out without a word; tensors
        of another rank or width were a ValueError or RuntimeError in the first batch, and feature widths other than
        the shards' a 15 GiB feature adapter."""
        expected = list(self.manifest.shard_clips(shard))
        held = sorted({int(key.split("/", 1)[0]) for key in shapes if key.split("/", 1)[0].isdigit()})
        needed = {"lq": 3, **{name: 3 for name, kept in (("teacher", self.has_teacher), ("gt", self.manifest.has_gt))
                              if kept}, **{f"features/{name}": width for name, width in self.feature_channels.items()}}
        lacking = sorted({name for index in expected for name in needed if f"{index}/{name}" not in shapes})
        if held != expected:
            found = f"holds {_clip_span(held)}"
        elif lacking:
            found = f"lacks {', '.join(lacking)}"
        else:
            found = next(filter(None, (_misshapen(shapes, index, needed) for index in expected)), None)
        if found:
            raise InputError(f"the teacher cache in {self.folder} does not match its {MANIFEST_NAME}: {path.name} "
                             f"{found}, where the manifest puts {_clip_span(expected)} with {', '.join(needed)}; "
                             f"rebuild it (`star-vsr distill cache-teacher ... --overwrite`)")

    @property
    def has_teacher(self) -> bool:
        return self.manifest.teacher is not None

    @property
    def feature_channels(self) -> dict[str, int]:
        return dict(self.manifest.feature_channels)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"clip {item} is out of range for a cache of {len(self)} clips")
        index = self._indices[item]
        path = _shard_path(self.folder, index // self.manifest.clips_per_shard)
        try:
            with safe_open(str(path), framework="pt") as shard:
                captions = _captions(shard.metadata())
                prefix = f"{index}/"
                keys = [k for k in shard.keys() if k.startswith(prefix)]
                tensors = {k[len(prefix):]: shard.get_tensor(k).float() for k in keys}
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise InputError(f"{path} is missing (removed since the cache was opened?); run `star-vsr distill "
                                 f"cache-teacher` again with the same settings: it computes missing shards again"
                                 ) from None
            raise _unreadable_now(path, error) from None  # (EIO, no permission: it was called damaged, and the
            # rebuild it advised raises the same error: review)
        except Exception as error:  # SafetensorError, JSONDecodeError: a damaged file
            raise InputError(f"{path} is damaged ({error}); run `star-vsr distill cache-teacher` again with the "
                             f"same settings: it computes damaged shards again") from None
        # bytes damaged under a sound header: "lr hold NaN or infinite values" at step 0, naming no file; or frames
        # out of [0, 1], which the build stores none of (a teacher's -23 trained on: black-box hunt). Flipped bits
        # that leave a value in range are not found
        bad = sorted(name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()
                     or name in FRAME_TENSORS and not _in_unit_range(tensor))
        if bad:
            raise InputError(f"{path} is damaged: clip {index}'s {', '.join(bad)} hold NaN, infinite or (frames) "
                             f"out-of-range values; delete it and run `star-vsr distill cache-teacher` again with the "
                             f"same settings: it computes missing shards again")
        item_dict: dict[str, Any] = {
            "lq": tensors["lq"], "index": index, "caption": captions.get(str(index), ""),
            "teacher_features": {k[len("features/"):]: v for k, v in tensors.items() if k.startswith("features/")},
        }
        for key in ("teacher", "gt"):
            if key in tensors:
                item_dict[key] = tensors[key]
        return item_dict

