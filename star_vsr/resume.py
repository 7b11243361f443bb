"""Resumable upscaling: the saved progress of a run, and the run that uses it.

While a pipeline upscales a file, every ``CHECKPOINT_SECONDS`` the frames written so far are
committed as a segment (``star_vsr.io.segments``) and the pipeline's state is saved, in
``partial_folder(output)`` (also when the run is stopped by Ctrl-C or SIGTERM, from the last
point a state was handed out: a student's last finished chunk, the diffusion pipeline's last
window evaluation or decoded chunk). A student's state is its recurrent state after the frames
written; the diffusion pipeline's is its sampler's (``star_vsr.window_sampler.SamplerState``: the
latents of the frames still being denoised, their scheduler histories and random streams, the
finished latents waiting for the VAE), so a stopped diffusion run keeps the denoising it did on
frames not yet written:

    .out.mp4.partial/
        progress.json                 settings, frames done, state file, segments (replaced atomically)
        state_000001440.safetensors   the state after frame 1440
        segment_000000.mp4 ...        the committed segments

``progress.json`` is written last, after the files it names are on disk, so a crash at any point
leaves the previous checkpoint whole. The same command goes on from the last checkpoint; the
pipeline then computes the frames an uninterrupted run computes. When every frame is done, the
manifest is saved once more without a state (only the join is left), then the segments are joined
into the output and the folder is removed. A lock on the folder keeps two runs off one output.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .batch_record import input_signature
from .errors import (ARGUMENT_FLAGS, CorruptVideoError, InputChangedError, InputError, SavedRunError, again,
                     cannot_write, UnsupportedVideoError, named, option, write_failed, write_reason)
from .fingerprints import (diffusion_weights_fingerprint, folder_files_fingerprint, input_fingerprint,
                           weights_fingerprint)
from .interrupts import interrupts_held, raise_if_interrupted
from .io.atomic import is_real_folder, parent_folders
from .io.audio import is_silent_video
from .io.folders import photos_in_folder
from .models.student import StarStudentState
from .scene_cuts import SCENE_CUT_THRESHOLD
from .units import byte_amount
from .window_sampler import SamplerState
from .outputs import (PROGRESS_MANIFEST, folder_lock, frame_files, give_default_mode, partial_folder, saved_work,
                      saved_work_in)
from .json_files import loads_json

#: Seconds of upscaling between checkpoints: at most this much work is lost when a run stops (more when
#: saving takes long: a checkpoint waits at least ``SAVE_TIME_FACTOR`` times as long as the last save took).
CHECKPOINT_SECONDS = 60.0
SAVE_TIME_FACTOR = 10.0
#: The manifest of a ``partial_folder`` and the name of the state file after N frames.
MANIFEST = PROGRESS_MANIFEST
STATE_NAME = "state_{:09d}.safetensors"
STATE_FIELDS = StarStudentState.TENSOR_FIELDS
#: Settings that saved progress from earlier versions lacks, and the value it was made with.
SETTING_DEFAULTS = {"deinterlaced": False, "pipeline": "StarStudentPipeline", "frame_rate": "30",
                    "scene_cut_threshold": SCENE_CUT_THRESHOLD, "max_frames": None, "input_folder_files": None}
#: The settings that tell whether the input is the one a saved run read (`input_settings`).
INPUT_SETTINGS = ("input_files", "input_folder_files")
#: How a changed setting is named when saved progress cannot be used (None: "name old -> new").
SETTING_CHANGES = {"input_files": "the input file changed (its size or content)",
                   "student_weights": "other student weights", "weights": "other model weights"}
#: What a changed ``input_files`` is called for a run saved without the input's content signature (before it).
OLD_INPUT_CHANGED = "the input file changed (its size or modification time)"
#: What a changed ``input_files`` or ``input_folder_files`` is called when the input is a frame folder.
FOLDER_CHANGED = ("the input folder's files changed (a file's name, size or modification time, or the number of "
                  "files)")
#: Values of the diffusion pipeline's call that a saved run must share (``upscale`` is a setting of its own).
DIFFUSION_SETTINGS = ("prompt", "negative_prompt", "positive_prompt", "num_inference_steps", "timesteps",
                      "timestep_spacing", "guidance_scale", "guidance_rescale", "noise_level",
                      "controlnet_conditioning_scale", "chunk_frames", "chunk_overlap", "tile_size", "tile_overlap",
                      "color_fix", "decode_chunk_size")


def _setting_change(key: str, saved: Any, now: Any, pipeline: str) -> str:
    """How setting ``key`` of a saved run differs from this run's (of a ``pipeline``), for the user."""
    if key == "pipeline":
        return f"it was made by a {saved}, this run is a {now}"
    if key == "dtype":
        from .upscale import DTYPE_FLAGS

        flag = DTYPE_FLAGS.get(getattr(torch, str(saved), None), saved)
        auto = option("dtype='auto'", "--dtype auto")
        student = pipeline == "StarStudentPipeline"  # (auto runs a diffusion model in float32 on the CPU)
        why = (f" ({auto}, the default, picks bf16 for students on CPUs with AMX, so the same command can change "
               f"precision on another machine)") if student and "bfloat16" in (saved, now) else ""
        model = "student" if student else "model"
        load = option(f"load the model with load_upscaler(..., dtype={flag!r})", f"pass --dtype {flag}")
        return f"the {model} ran in {saved} then, in {now} now{why}; {load} to go on in {saved}"
    if key == "audio":
        drop = option("keep_audio=False", "--no-audio")
        return (f"that run copied the input's audio, this one drops it ({drop})" if saved else
                f"that run dropped the input's audio ({drop}), this one copies it")
    if key == "scene_cut_threshold" and None in (saved, now):
        carry = option("scene_cut_threshold=None", "--no-scene-cut-reset")
        if saved is None:
            return f"that run carried the student's state through scene cuts ({carry}), this one resets it at cuts"
        return f"that run reset the student's state at scene cuts, this one carries it through them ({carry})"
    if key == "call" and isinstance(saved, dict):  # the diffusion options: name each one that changed, but an
        # overlap that follows its size ("--tile-overlap 128 -> 32, --tile-size none -> 64" for --tile-size 64)
        differ = {name for name in {*saved, *now} if saved.get(name) != now.get(name)}
        differ -= {f"{kind}_overlap" for kind, size in (("chunk", "chunk_frames"), ("tile", "tile_size"))
                   if size in differ}
        return ", ".join(_setting_change(name, saved.get(name), now.get(name), pipeline) for name in sorted(differ))
    if key in ("codec", "crf"):  # "codec 'ffv1' -> 'h264'"
        return f"{option(key, '--' + key)} {'none' if saved is None else saved} -> {'none' if now is None else now}"
    if key == "deinterlaced":
        flag = option("deinterlace", "--deinterlace")
        then, now = ("deinterlaced", "keeps") if saved else ("kept", "deinterlaces")
        return f"that run {then} the fields, this one {now} them ({flag})"
    if key == "negative_prompt":  # left out of a call (``_compared_call``): STAR's, the default
        def prompt(value: Any) -> str:
            return "STAR's (the default)" if value is None else repr(value) if value else "'' (none)"

        return f"{named(key)} {prompt(saved)} -> {prompt(now)}"
    if key in ARGUMENT_FLAGS:  # the diffusion options: "chunk_overlap" in Python, "--chunk-overlap" on the command line
        def shown(value: Any) -> str:  # as the flag takes it on the command line: --color-fix none, not None;
            # --prompt 'a cat', quoted as a shell needs it; --upscale 2, not 2.0
            whole = isinstance(value, float) and value.is_integer()
            return option(repr(value), "none" if value is None else shlex.quote(str(int(value) if whole else value)))

        return f"{named(key)} {shown(saved)} -> {shown(now)}"
    if key == "max_frames":
        first = option("max_frames", "--max-frames")
        return (f"that run upscaled {'the first ' + str(saved) if saved else 'all the'} frames, this one "
                f"{'the first ' + str(now) if now else 'all of them'} ({first})")
    if key == "frame_rate":
        return f"the frame folder's rate ({option('folder_fps', '--fps')}) {saved} -> {now} fps"
    return SETTING_CHANGES.get(key) or f"{key} {saved!r} -> {now!r}"


def other_unfinished_runs(output_path: str | Path) -> list[tuple[Path, int]]:
    """(folder, bytes) of the saved progress of *other* outputs in ``output_path``'s folder: runs that were
    stopped and never finished (their folders stay until that output is written or they are deleted)."""
    return unfinished_runs(Path(output_path).parent, besides=[partial_folder(output_path)])


def unfinished_runs(folder: Path, besides: Collection[Path] = ()) -> list[tuple[Path, int]]:
    """(folder, bytes) of the saved progress in ``folder`` of outputs whose progress folders are not ``besides``
    (``upscale-batch``: of outputs it does not write, e.g. an earlier run's with another --codec)."""
    found = []
    for work in sorted(Path(folder).glob(".*.partial")):
        if work not in besides and is_real_folder(work) and (work / MANIFEST).is_file():  # (a link: no run's)
            found.append((work, sum(f.stat().st_size for f in work.rglob("*") if f.is_file())))
    return found


def unfinished_inputs(folder: Path) -> dict[str, Path]:
    """The input (resolved path) of each output in ``folder`` that has saved progress, by output name (a damaged
    manifest is passed over)."""
    inputs = {}
    for work, _ in unfinished_runs(folder):
        try:
            manifest = loads_json((work / MANIFEST).read_text(encoding="utf-8"))
            source = manifest["settings"]["input"]
        except (OSError, ValueError, LookupError, TypeError):
            continue
        output = manifest.get("output") or work.name[1:-len(".partial")]  # (a manifest of an earlier version: none)
        if isinstance(source, str) and isinstance(output, str):
            inputs[output] = Path(source)
    return inputs


def unfinished_note(work: Path, size: int) -> str:
    """What ``upscale`` and ``upscale-batch`` say of the saved progress ``work`` of another output."""
    return (f"note: {work} holds {byte_amount(size)} saved by an unfinished run to another output (stopped, or "
            f"still running); run that command again to finish it, or delete the folder")


def upscale_resumable(pipe: Any, source: Any, output: Path, info: Any, *, codec: Optional[str], crf: Optional[int],
                      audio: Optional[str], progress: bool, restart: bool, checkpoint_seconds: float,
                      overwrite: bool = True, notes: Optional[Callable[[str], None]] = None,
                      finishing: Optional[Callable[[], None]] = None, **pipeline_kwargs: Any) -> Path:
    """``star_vsr.upscale.upscale_video``, saving progress as it goes (a student or a diffusion pipeline)."""
    from .io.segments import SegmentedVideoWriter

    say = notes or partial(_say, progress)

    refused = [key for key in ("callback_on_step_end", "output_type", "frame_sink", "state", "start_frame",
                               "state_sink") if pipeline_kwargs.get(key) is not None]
    if refused:  # before any saved progress is touched
        raise InputError(f"upscale_video writes decoded frames and saves the run's state itself; {', '.join(refused)} "
                         f"cannot be passed to it (call the pipeline directly for those)")

    work = partial_folder(output)
    signature = input_signature(Path(source.path))  # the input as the run starts (`_input_changed`)
    # checks codec and crf before anything is made
    cut_short = source.num_frames < info.num_frames  # a preview (max_frames): its audio ends with its last frame
    writer = SegmentedVideoWriter(output, info.frame_rate, work, codec=codec, crf=crf, audio_from=audio,
                                  audio_until_frame=source.num_frames if cut_short else None, progress=progress,
                                  total_frames=source.num_frames, pixel_aspect=info.pixel_aspect,
                                  frame_times=info.timeline, overwrite=overwrite,
                                  tags_from=None if info.is_image_folder else source.path)
    settings = run_settings(pipe, source.path, writer.codec, writer.crf, audio, source.deinterlaced, pipeline_kwargs)
    settings["max_frames"] = getattr(source, "max_frames", None)  # a preview of the first frames, or None
    if info.is_image_folder:  # a folder stores no rate: the run's (--fps) is a setting; a file's is in its bytes
        settings["frame_rate"] = str(info.frame_rate)
    with _locked(work, output):
        if restart:
            thrown = saved_work_in(work)  # "6 frames are", as "stopped" says; a diffusion run: also the denoising
            if thrown is not None:
                say(f"{output}: starting over ({option('restart=True', '--restart')}); {thrown} thrown "
                    f"away (an earlier run saved them in {work})")
            _clear(work)
        saved = load_progress(work, settings, _device(pipe))
        state, start, complete = None, 0, False
        if saved is not None:
            writer.segments, state, start = saved
            complete = state is None
            done = (f", {state.metadata['evaluations'][0]} of {state.metadata['evaluations'][1]} window steps done"
                    if isinstance(state, SamplerState) and "evaluations" in state.metadata else "")
            say(f"{output}: going on after frame {start} of {source.num_frames}{done} (saved in {work} by "
                f"an earlier run; {option('restart=True', '--restart')} starts over)")
        sinks = _CheckpointingSinks(writer, work, settings, checkpoint_seconds)
        now = signature  # the input's signature at the last look (`_input_changed`)
        try:
            writer.start_progress()  # frames arrive a chunk at a time: the rate must count the first chunk's work
            if not complete:
                pipe(source, frame_sink=sinks.frame_sink, state=state, start_frame=start, state_sink=sinks.state_sink,
                     **pipeline_kwargs)
            sinks.finish()
            now = input_signature(Path(source.path))  # (read once: with a share that came back between two
            changed = _input_changed(Path(source.path), signature, now, audio is not None)  # reads, progress said
            if changed is not None:  # to be kept was deleted: review)
                raise changed
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was done since the checkpoint
            sinks.checkpoint_on_interrupt()
            writer.abort()
            _stopped(work, output, say)
            raise
        except BaseException as error:
            writer.abort()
            # a decoding error, "the video ended after N frames", a missing file: explained by a changed input?
            if isinstance(error, InputChangedError):  # (the check above, with the `now` it read)
                changed = error
            else:
                now = input_signature(Path(source.path))
                changed = _input_changed(Path(source.path), signature, now, audio is not None)
            if changed is not None and now is None:  # removed, or unreadable now (a network share that went
                _stopped(work, output, say)  # away): the saved progress stays, for the file put back
            elif changed is not None or isinstance(error, (InputError, CorruptVideoError, UnsupportedVideoError)):
                # the input's fault, or the frames done are of an input that is no more: going on fails again
                shutil.rmtree(work, ignore_errors=True)
            else:
                _stopped(work, output, say)
            if changed is None or isinstance(error, InputChangedError):
                raise
            raise changed from error
        try:
            writer.finish(finishing)
        except BaseException:
            _stopped(work, output, say)
            raise
        (work / MANIFEST).unlink(missing_ok=True)  # first: a folder left by a kill now holds nothing to go on from
        shutil.rmtree(work, ignore_errors=True)  # (remove_finished_progress removes it on a rerun)
    return output


def _input_changed(input_path: Path, signature: Optional[list[Any]], now: Optional[list[Any]], audio_copied: bool
                   ) -> Optional[InputChangedError]:
    """The ``InputChangedError`` to raise when the input file or frame folder is no longer the one the run started
    with (``signature``, and ``now``: `star_vsr.batch_record.input_signature`, a file's size and first and last
    64 KiB, a folder's frame count and total size; not modification times, which a ``touch`` changes); None when it
    is. Replaced, written over or cut while it was upscaled, the output mixed the old and the new content with exit
    0: frames read after an overwrite in place (or by a pass of the diffusion pipeline that reopens the path), the
    audio the join copies (black-box hunts, review)."""
    if now == signature:
        return None
    if now is None:
        return InputChangedError(f"{input_path} was removed (or cannot be read) while it was being upscaled"
                                 f"{', so its audio cannot be copied' if audio_copied else ''}; nothing was written "
                                 f"(with it back in place, {option('calling again', 'the same command')} goes on "
                                 f"from what was saved)")
    what = "its frames' number or sizes" if input_path.is_dir() else "its size or bytes"
    return InputChangedError(f"{input_path} changed ({what}) while it was being upscaled, so the output would mix "
                             f"the old and the new content; nothing was written "
                             f"({again()} to upscale it as it is now)")


def _device(pipe: Any) -> torch.device:
    """Where a pipeline's saved state goes back to: a student's device (the diffusion sampler keeps its state
    in host memory)."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    return pipe.student.fuse.weight.device if isinstance(pipe, StarStudentPipeline) else torch.device("cpu")


class _CheckpointingSinks:
    """The ``frame_sink`` and ``state_sink`` that ``upscale_resumable`` hands a pipeline: they write its frames to
    ``writer`` (a ``SegmentedVideoWriter``) and, every ``checkpoint_seconds`` at least, commit the segment and save
    the state after those frames in ``work``.

    ``latest`` is the (frames done, the state after them) last handed out, ``latest_saved`` whether it is the one on
    disk. Frames wait in ``waiting`` for the state after them, and both go to the writer and ``latest`` with Ctrl-C
    held back, so that on Ctrl-C the writer holds exactly the frames of ``latest`` (`checkpoint_on_interrupt`).
    """

    def __init__(self, writer: Any, work: Path, settings: dict[str, Any], checkpoint_seconds: float) -> None:
        self.writer, self.work, self.settings, self.every = writer, work, settings, checkpoint_seconds
        self.latest: Optional[tuple[int, Any]] = None
        self.latest_saved = False
        self.waiting: list[np.ndarray] = []  # (k, H, W, 3) uint8 each
        self.next_checkpoint = time.monotonic() + checkpoint_seconds

    def frame_sink(self, frames: torch.Tensor) -> None:  # (k, 3, H, W) in [0, 1]
        from .frames import frames_to_uint8

        self.waiting.append(frames_to_uint8(frames))

    def _write_waiting(self) -> None:
        for frames in self.waiting:
            self.writer.write(frames)
        self.waiting.clear()

    def _save(self, frames_done: int, state: Any) -> None:
        self.writer.commit()
        save_progress(self.work, self.settings, self.writer.segments, frames_done, state, self.writer.path.name)

    def state_sink(self, frames_done: int, state: Any) -> None:
        raise_if_interrupted()  # before these frames are written: the state before them is `latest`
        with interrupts_held():
            self._write_waiting()
            self.latest, self.latest_saved = (frames_done, state), False
        if time.monotonic() >= self.next_checkpoint:
            began = time.monotonic()
            self._save(frames_done, state)
            self.latest_saved, took = True, time.monotonic() - began
            self.next_checkpoint = time.monotonic() + max(self.every, SAVE_TIME_FACTOR * took)

    def finish(self) -> None:
        """After the pipeline's last frames: commit them and save a manifest with no state (only the join of the
        segments is left)."""
        self._write_waiting()  # (none: both pipelines hand out a state after their last frames)
        self.writer.commit()
        if self.latest is not None:
            save_progress(self.work, self.settings, self.writer.segments, self.latest[0], None,
                          self.writer.path.name)

    def checkpoint_on_interrupt(self) -> None:
        """Commit the open segment and save ``latest`` if it is not on disk yet and the writer holds exactly the
        frames it was handed out with. A second interrupt, or a failure, while saving leaves the previous
        checkpoint, which is replaced only once all is on disk."""
        if self.latest_saved or self.latest is None or self.writer.frames_written != self.latest[0]:
            return
        try:
            self._save(*self.latest)
        except BaseException:  # the caller re-raises the interrupt that brought us here, not this
            pass


def _say(enabled: bool, message: str) -> None:
    if enabled:
        tqdm.write(message, file=sys.stderr)


def _stopped(work: Path, output: Path, say: Callable[[str], None]) -> None:
    """After a failure: say what is saved and how to go on, or remove the folder when nothing is."""
    if not (work / MANIFEST).is_file():
        shutil.rmtree(work, ignore_errors=True)
        return
    saved = saved_work_in(work) or "the frames done before are"  # (damaged: the error raised, not a JSON one here)
    say(f"{output}: stopped; {saved} saved in {work}. {again(capital=True)} (same settings) to go on "
        f"from there; {option('restart=True', '--restart')} starts over")


@contextmanager
def _locked(work: Path, output: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``work`` (made if missing); ``OutputBusyError`` if another run holds it.

    Folders above ``work`` that it makes are removed again when the run leaves them empty (it failed
    before writing anything, e.g. on an unsupported scale). Without ``fcntl`` (Windows) nothing is locked.
    """
    if work.is_symlink() or (work.exists() and not work.is_dir()):  # not one this run may use, nor empty: a
        # link's target had its files deleted (the input among them, in a link to the input's folder), and a file
        # there was "cannot write OUTPUT: File exists" (black-box hunt)
        raise SavedRunError(f"{work}, the folder where star-vsr keeps the progress of {output.name}, is "
                            f"{'a link' if work.is_symlink() else 'a file'}: move it away and run again")
    with ExitStack() as stack:
        try:
            stack.enter_context(parent_folders(work))  # removed again when the run leaves no saved progress
            work.mkdir(exist_ok=True)
        except OSError as error:
            raise cannot_write(output, error) from None
        with folder_lock(work, output):
            yield


def _clear(work: Path, keep: frozenset[str] = frozenset()) -> None:
    """Delete everything in ``work`` but the names in ``keep`` (the folder itself stays: it holds the lock)."""
    for path in work.iterdir() if work.is_dir() else ():
        if path.name not in keep:  # (a link inside: itself, not what it points to; rmtree refused it)
            shutil.rmtree(path) if is_real_folder(path) else path.unlink()


def input_settings(input_path: Path) -> dict[str, Any]:
    """The `INPUT_SETTINGS` of an input file or frame folder: its `input_fingerprint`, and for a folder each
    frame's too (`folder_files_fingerprint`: frames swapped by renaming them went on from a saved run as if the
    folder were the same, and the output mixed two frame orders). A folder's are of the frames the reader reads
    (its visible images), not of other files there (a ``.DS_Store`` a file browser writes, a log)."""
    if not input_path.is_dir():  # (with its content's `input_signature`: `_same_content`)
        return {"input_files": input_fingerprint(input_path), "input_folder_files": None,
                "input_signature": input_signature(input_path)}
    frames = photos_in_folder(input_path)
    return {"input_files": input_fingerprint(input_path, frames),
            "input_folder_files": folder_files_fingerprint(frames)}


def run_settings(pipe: Any, input_path: Path, codec: str, crf: Optional[int], audio: Optional[str],
                 deinterlaced: bool, pipeline_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a saved run must share with this one to go on from it: input, output format, model and call."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    upscale = pipeline_kwargs.get("upscale")
    if upscale is None:  # the pipeline's default: a student's own scale, the diffusion model's 4
        upscale = pipe.student.config.scale if isinstance(pipe, StarStudentPipeline) else 4
    settings = {"input": str(Path(input_path).resolve()), **input_settings(Path(input_path)),
                "pipeline": type(pipe).__name__, "upscale": float(upscale),
                "codec": codec, "crf": crf, "audio": audio is not None, "deinterlaced": deinterlaced}
    if isinstance(pipe, StarStudentPipeline):
        return {**settings, "student_weights": weights_fingerprint([pipe.student]),
                "dtype": str(pipe.student.dtype).removeprefix("torch."),
                "scene_cut_threshold": pipeline_kwargs.get("scene_cut_threshold", SCENE_CUT_THRESHOLD)}
    generator = pipeline_kwargs.get("generator")
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]
    call = _compared_call({key: pipeline_kwargs[key] for key in DIFFUSION_SETTINGS if key in pipeline_kwargs})
    return {**settings, "weights": diffusion_weights_fingerprint(pipe),
            "dtype": str(pipe.unet.dtype).removeprefix("torch."), "call": json.loads(json.dumps(call, default=str)),
            "seed": generator.initial_seed() if isinstance(generator, torch.Generator) else None}


def _compared_call(call: Any) -> Any:
    """A diffusion run's call (``run_settings``' ``"call"``, this run's or a saved one) as runs compare it: STAR's
    negative prompt, the pipeline's default, left out (runs that did not pass it recorded none; the command line
    passes it since ``--negative-prompt``), and None as "" (the pipeline reads both as no negative prompt)."""
    if not isinstance(call, dict) or "negative_prompt" not in call:
        return call
    from star_vsr.text import STAR_NEGATIVE_PROMPT

    negative = call["negative_prompt"] or ""
    rest = {key: value for key, value in call.items() if key != "negative_prompt"}
    return rest if negative == STAR_NEGATIVE_PROMPT else {**rest, "negative_prompt": negative}


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _state_file(state: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A ``StarStudentState`` or ``SamplerState`` as the tensors and string metadata of a safetensors file
    (host memory, contiguous, none sharing memory with another). Which tensors were channels-last is
    noted, and ``_state_from_file`` restores it: convolutions may round differently in the other layout."""
    if isinstance(state, SamplerState):
        tensors, channels_last, seen = {}, [], set()
        for name, tensor in state.tensors.items():
            if _is_channels_last(tensor):
                channels_last.append(name)
            tensor = tensor.detach().cpu().contiguous()
            pointer = tensor.untyped_storage().data_ptr()
            tensors[name] = tensor.clone() if pointer in seen else tensor
            seen.add(pointer)
        return tensors, {"sampler": json.dumps(state.metadata), "channels_last": json.dumps(channels_last)}
    tensors, layout = {}, {}
    for field, tensor in zip(STATE_FIELDS, state.tensors()):
        tensors[field] = tensor.detach().cpu().contiguous()
        layout[field] = str(_is_channels_last(tensor))
    return tensors, layout


def _is_channels_last(tensor: torch.Tensor) -> bool:
    """Whether a tensor is laid out channels-last (and not also contiguous, as tensors of one pixel are)."""
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) \
        and not tensor.is_contiguous()


def _state_from_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str], device: torch.device) -> Any:
    """The state ``_state_file`` saved: a ``SamplerState`` (host memory) or a ``StarStudentState`` on ``device``."""
    if "sampler" in metadata:
        for name in json.loads(metadata.get("channels_last", "[]")):
            tensors[name] = tensors[name].contiguous(memory_format=torch.channels_last)
        return SamplerState(tensors, json.loads(metadata["sampler"]))
    return StarStudentState(*(
        tensors[field].to(device).contiguous(memory_format=torch.channels_last) if metadata.get(field) == "True"
        else tensors[field].to(device) for field in STATE_FIELDS))


def save_progress(work: Path, settings: dict[str, Any], segments: list[tuple[str, int]], frames: int,
                  state: Optional[Any], output_name: Optional[str] = None) -> None:
    """Save the state after ``frames`` frames (None: all frames are done), then the manifest naming it and
    the committed segments (and the output, ``output_name``: a long one is cut in ``work``'s name, `partial_folder`),
    each on disk before the manifest is replaced; then delete what it no longer names.

    Raises:
        OutputError: the disk is full or not writable (the previous checkpoint stays whole).
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    if frames != sum(count for _, count in segments):
        raise RuntimeError(f"checkpoint of {frames} frames with {segments} committed")  # a bug, not the user's
    name = None if state is None else STATE_NAME.format(frames)
    manifest = {"settings": settings, "frames": frames, "state": name, "segments": segments,
                **({"output": output_name} if output_name else {})}
    if isinstance(state, SamplerState) and "evaluations" in state.metadata:
        manifest["evaluations"] = state.metadata["evaluations"]
    temp = work / (MANIFEST + ".tmp")
    try:
        for segment, _ in segments[-1:]:
            if (work / segment).is_file():
                _fsync(work / segment)
        if state is not None:
            tensors, metadata = _state_file(state)
            save_file(tensors, str(work / name), metadata=metadata)
            give_default_mode(work / name)
            _fsync(work / name)
        temp.write_text(json.dumps(manifest, indent=1))
        _fsync(temp)
        os.replace(temp, work / MANIFEST)
    except (OSError, SafetensorError) as error:
        for written in (temp, *([work / name] if name else [])):
            written.unlink(missing_ok=True)
        saved = (work / MANIFEST).is_file()
        if saved:  # the segment just committed is of no use without its state: free its space
            _remove_unlisted(work, loads_json((work / MANIFEST).read_text()))
        then = "to go on from the previous checkpoint" if saved else "(no checkpoint was saved yet: it starts over)"
        raise write_failed(f"cannot save the progress of the run in {work} ({write_reason(error)}); free some space "
                           f"and {again()} {then}", error) from None
    _remove_unlisted(work, manifest)


def _remove_unlisted(work: Path, manifest: dict[str, Any]) -> None:
    """Delete what the manifest does not name (older states, a segment or temporary file of a run that stopped)."""
    _clear(work, frozenset({MANIFEST, manifest["state"], *(name for name, _ in manifest["segments"])}))


def load_progress(work: Path, settings: dict[str, Any], device: torch.device
                  ) -> Optional[tuple[list[tuple[str, int]], Optional[Any], int]]:
    """(segments, state, frames) saved in ``work`` for a run with ``settings``; None when nothing is saved
    (leftovers of a run that stopped before its first checkpoint are removed). A None state: every frame
    is done, only the join is left.

    Raises:
        SavedRunError: the saved run had other settings, or its files are damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not (work / MANIFEST).is_file():
        _clear(work)
        return None
    fix = f"delete {work} or pass {option('restart=True', '--restart')} to start over"
    try:
        manifest = loads_json((work / MANIFEST).read_text())
        saved_settings, frames, segments = manifest["settings"], int(manifest["frames"]), manifest["segments"]
        saved = saved_work(manifest)  # (a damaged "evaluations" entry: the damage message, not a traceback)
        tensors, metadata = None, {}
        if manifest["state"] is not None:
            with safe_open(str(work / manifest["state"]), framework="pt") as file:
                metadata = file.metadata() or {}
                tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError, SafetensorError) as error:
        raise SavedRunError(f"{work} holds an unfinished run whose files are damaged ({error}); {fix}") from None
    if "call" in saved_settings:  # (as run_settings writes this run's)
        saved_settings = {**saved_settings, "call": _compared_call(saved_settings["call"])}
    if "input_folder_files" not in saved_settings and settings.get("input_folder_files") is not None:
        # a frame folder's run saved by an earlier version, whose fingerprint was of every file in the folder and
        # had no per-frame one: compared its way (every such run was "another input" to this version)
        settings = {**settings, "input_files": input_fingerprint(Path(settings["input"])), "input_folder_files": None}
    changed = [key for key in settings if saved_settings.get(key, SETTING_DEFAULTS.get(key)) != settings[key]
               and key != "input_signature"]
    same_content = _same_content(saved_settings, settings)
    if "input_files" in changed and same_content:
        changed.remove("input_files")
    elif same_content is False and "input_files" not in changed:  # (its time kept: `cp -p`, `rsync -a`)
        changed.insert(0, "input_files")
    if "pipeline" in changed:  # another kind of model: its other settings do not compare
        changed = ["pipeline"]
    if "dtype" in changed:  # the weights' fingerprint is of the rounded weights: it changes with the dtype
        changed = [key for key in changed if key not in ("student_weights", "weights")]
    if "codec" in changed:  # the CRF follows the codec ("crf None -> 18" for --codec h264 alone)
        changed = [key for key in changed if key != "crf"]
    if "audio" in changed and is_silent_video(Path(settings["input"])):  # --no-audio changes nothing: it was
        changed.remove("audio")  # "that run copied the input's audio" of a video without any (black-box hunt)
    if changed:
        if "input_files" in changed and "input_folder_files" in changed:  # (a folder: one FOLDER_CHANGED)
            changed.remove("input_folder_files")
        details = ", ".join(FOLDER_CHANGED if key in INPUT_SETTINGS and Path(settings["input"]).is_dir() else
                            OLD_INPUT_CHANGED if key == "input_files" and same_content is None else
                            _setting_change(key, saved_settings.get(key, SETTING_DEFAULTS.get(key)), settings[key],
                                            settings["pipeline"]) for key in changed)
        # a changed input cannot be changed back; settings can (a dtype change says how itself)
        go_on = "" if set(changed) <= {"input", *INPUT_SETTINGS, "dtype"} else \
            "run with the earlier settings to go on, or "
        other = "of another input" if set(changed) <= {"input", *INPUT_SETTINGS} else "with other settings"
        # what is saved, as "stopped" says it: "(0 frames done)" read as nothing to lose, with half the denoising
        raise SavedRunError(f"{work} holds an unfinished run {other}: {details}; {go_on}{fix} ({saved} saved there)")
    segments = [(str(name), int(count)) for name, count in segments]
    _check_segments(work, segments, fix)
    _remove_unlisted(work, manifest)
    if tensors is None:
        return segments, None, frames
    try:
        state = _state_from_file(tensors, metadata, device)
    except (ValueError, KeyError, TypeError) as error:
        raise SavedRunError(f"{work} holds an unfinished run whose state is damaged ({error!r}); {fix}") from None
    return segments, state, frames


def _same_content(saved: dict[str, Any], now: dict[str, Any]) -> Optional[bool]:
    """Whether an input file has the content it had when a run was saved (the same `input_signature`: size and
    first and last 64 KiB), whatever its modification time: a ``touch``, a copy back from a backup or a sync tool
    changes the time, and the run was refused as "of another input" (black-box hunt); a copy that keeps the time
    (``cp -p``) over other content is a change. None for a frame folder (its frames' names, sizes and times are
    compared) and for runs saved by versions before the signature (the time is compared)."""
    if saved.get("input_signature") is None or now.get("input_signature") is None:
        return None
    return saved["input_signature"] == now["input_signature"]


def _check_segments(work: Path, segments: list[tuple[str, int]], fix: str) -> None:
    """``SavedRunError`` unless every saved segment is there, holds its frames and has the first one's codec headers."""
    from .io.probe import open_container

    headers = None
    for name, count in segments:
        path = work / name
        if not path.exists():  # (open_container's "check the path of the input video" would blame the input)
            raise SavedRunError(f"{work} holds an unfinished run whose segment {name} is missing; {fix}")
        try:
            if path.is_dir():  # PNG frames
                found = len(frame_files(path))
            else:
                with open_container(path) as container:
                    stream = container.streams.video[0]
                    found = stream.frames or sum(1 for p in container.demux(stream) if p.size)
                    if headers is None:
                        headers = stream.codec_context.extradata
                    elif stream.codec_context.extradata != headers:
                        found = -1
        except (OSError, ValueError, IndexError) as error:  # missing, CorruptVideoError, no video stream
            raise SavedRunError(f"{work} holds an unfinished run whose segment {name} is damaged ({error}); "
                                f"{fix}") from None
        if found != count:
            what = "other codec headers" if found < 0 else f"{found} of its {count} frames"
            raise SavedRunError(f"{work} holds an unfinished run whose segment {name} is damaged ({what}); {fix}")
