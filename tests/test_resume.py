"""Resumable upscaling: segmented writing, the student pipeline's start state, and ``upscale_video``
going on after a stopped run with the frames an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import re
import signal
from functools import partial
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from star_vsr.cli import main
from star_vsr.errors import (CorruptVideoError, InputChangedError, InputError, OutputBusyError, OutputError,
                             SavedRunError, UnsupportedVideoError)
from star_vsr.io import open_video, probe_video
from star_vsr.io.segments import SegmentedVideoWriter
from star_vsr.io.synthetic import synthetic_frames, write_test_video
from star_vsr.models.student import StarStudentState
from star_vsr.resume import MANIFEST, partial_folder
from star_vsr.student import build_student_pipeline
from star_vsr.text import STAR_NEGATIVE_PROMPT
from star_vsr.upscale import upscale_video


def read_all(path) -> np.ndarray:
    with open_video(path) as reader:
        return np.stack(list(reader))  # (n, h, w, 3)


@pytest.fixture()
def pipe():
    p = build_student_pipeline("tiny", seed=0)
    p.set_progress_bar_config(disable=True)
    return p


class StopAfter:
    """Wraps ``student.step_tensors``: counts the steps and raises KeyboardInterrupt at step ``stop``."""

    def __init__(self, pipe, stop=None):
        self.step, self.stop, self.calls = pipe.student.step_tensors, stop, 0

    def __call__(self, *args):
        self.calls += 1
        if self.stop is not None and self.calls == self.stop:
            raise KeyboardInterrupt
        return self.step(*args)


# ---------------------------------------------------------------- segmented writer
@pytest.mark.filterwarnings("ignore:.*PNG frames store no frame rate")  # 25 fps for both codecs
@pytest.mark.parametrize("codec, name", [("ffv1", "out.mkv"), ("png", "frames")])
def test_segments_join_into_exactly_the_frames_written(tmp_path, codec, name):
    frames = synthetic_frames(9, size=(16, 24))
    writer = SegmentedVideoWriter(tmp_path / name, 25, tmp_path / "work", codec=codec)
    for part in (frames[:4], frames[4:7], frames[7:]):
        writer.write(part)
        writer.commit()
    assert [count for _, count in writer.segments] == [4, 3, 2]
    writer.finish()
    assert np.array_equal(read_all(tmp_path / name), frames)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_h264_segments_of_any_length_keep_frame_rate_and_audio(tmp_path):
    source = write_test_video(tmp_path / "in.mp4", 12, size=(16, 24), fps=Fraction(30000, 1001), audio=True)
    frames = read_all(source)
    writer = SegmentedVideoWriter(tmp_path / "out.mp4", Fraction(30000, 1001), tmp_path / "work", audio_from=source)
    for part in (frames[:2], frames[2:]):  # x264 delays decoding by 2 frames in the long segment, not in the short one
        writer.write(part)
        writer.commit()
    writer.finish()
    info = probe_video(tmp_path / "out.mp4")
    assert (info.num_frames, info.frame_rate, info.has_audio) == (12, Fraction(30000, 1001), True)
    joined = read_all(tmp_path / "out.mp4")
    assert joined.shape == frames.shape and np.abs(joined.astype(int) - frames).mean() < 3
    with av.open(str(tmp_path / "out.mp4")) as container:  # frame i is shown at i / fps
        shown = [round(f.pts * f.time_base * Fraction(30000, 1001)) for f in container.decode(video=0)]
    assert shown == list(range(12))


def test_a_new_writer_goes_on_after_committed_segments(tmp_path):
    frames = synthetic_frames(7, size=(16, 24))
    first = SegmentedVideoWriter(tmp_path / "out.mkv", 25, tmp_path / "work", codec="ffv1")
    first.write(frames[:3])
    first.commit()
    first.write(frames[3:5])  # not committed: lost when the run stops
    first.abort()
    second = SegmentedVideoWriter(tmp_path / "out.mkv", 25, tmp_path / "work", first.segments, codec="ffv1")
    assert second.frames_committed == 3
    second.write(frames[3:])
    second.finish()
    assert np.array_equal(read_all(tmp_path / "out.mkv"), frames)


def test_segments_of_other_codec_settings_are_not_joined(tmp_path):
    writer = SegmentedVideoWriter(tmp_path / "out.mp4", 25, tmp_path / "work")
    writer.write(synthetic_frames(2, size=(16, 24)))
    writer.commit()
    writer.write(synthetic_frames(2, size=(32, 24)))  # another frame size: other codec headers
    with pytest.raises(CorruptVideoError, match="other codec settings"):
        writer.finish()
    assert not (tmp_path / "out.mp4").exists()


# ---------------------------------------------------------------- pipeline: start state
def test_pipeline_started_from_a_saved_state_gives_the_rest_of_the_uninterrupted_run(pipe):
    lr = torch.rand(7, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    full = pipe(lr, chunk_size=3).frames  # (1, 7, 3, 40, 48)
    saved = {}

    def keep(done, state):
        saved[done] = StarStudentState(*(t.clone() for t in state.tensors()))

    pipe(lr, chunk_size=3, frame_sink=lambda chunk: None, state_sink=keep)
    assert sorted(saved) == [3, 6, 7]
    rest = pipe(lr, chunk_size=2, state=saved[3], start_frame=3).frames
    assert torch.equal(rest, full[:, 3:])
    with pytest.raises(InputError, match="start_frame needs the state"):
        pipe(lr, start_frame=3)
    with pytest.raises(InputError, match="does not fit"):
        pipe(lr[:, :, :8], state=saved[3], start_frame=3)


# ---------------------------------------------------------------- upscale_video: stop and go on
def test_a_stopped_upscale_goes_on_and_writes_what_an_uninterrupted_run_writes(pipe, tmp_path, monkeypatch):
    source = write_test_video(tmp_path / "in.mp4", 11, size=(12, 16))
    upscale_video(pipe, source, tmp_path / "whole.mkv", codec="ffv1", progress=False, chunk_size=2)

    output = tmp_path / "out.mkv"
    stopper = StopAfter(pipe, stop=8)
    monkeypatch.setattr(pipe.student, "step_tensors", stopper)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2, checkpoint_seconds=0)
    work = partial_folder(output)
    manifest = json.loads((work / MANIFEST).read_text())
    assert manifest["frames"] == 6 and not output.exists()  # checkpoints after every chunk of 2

    counter = StopAfter(pipe)
    monkeypatch.setattr(pipe.student, "step_tensors", counter)
    upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2, checkpoint_seconds=0)
    assert counter.calls == 11 - 6  # went on from frame 6 instead of starting over
    assert np.array_equal(read_all(output), read_all(tmp_path / "whole.mkv"))
    assert not work.exists()


def test_ctrl_c_saves_the_chunks_finished_since_the_last_checkpoint(pipe, tmp_path, monkeypatch):
    source = write_test_video(tmp_path / "in.mp4", 11, size=(12, 16))
    upscale_video(pipe, source, tmp_path / "whole.mkv", codec="ffv1", progress=False, chunk_size=2)
    output = tmp_path / "out.mkv"
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=8))
    with pytest.raises(KeyboardInterrupt):  # no periodic checkpoint in this short run
        upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2, checkpoint_seconds=1e9)
    assert json.loads((partial_folder(output) / MANIFEST).read_text())["frames"] == 6  # 3 chunks finished
    counter = StopAfter(pipe)
    monkeypatch.setattr(pipe.student, "step_tensors", counter)
    upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2)
    assert counter.calls == 11 - 6
    assert np.array_equal(read_all(output), read_all(tmp_path / "whole.mkv"))


def test_a_run_stopped_within_its_first_chunk_leaves_nothing(pipe, tmp_path, monkeypatch):
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=2))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, source, tmp_path / "out.mp4", progress=False, chunk_size=2)  # checkpoints every 60 s
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]


def stopped_run(pipe, tmp_path, monkeypatch):
    """(input, output) of an x4 run of 6 frames stopped at frame 4 with a checkpoint after frame 2."""
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / "out.mp4"
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    monkeypatch.undo()
    assert json.loads((partial_folder(output) / MANIFEST).read_text())["frames"] == 2
    return source, output


def test_no_audio_is_no_other_setting_for_a_video_without_sound(pipe, tmp_path, monkeypatch):
    """A silent video's run stopped, then run again with --no-audio: refused as "that run copied the input's audio,
    this one drops it" (black-box hunt). Without sound to copy it changes nothing: the run goes on."""
    source, output = stopped_run(pipe, tmp_path, monkeypatch)  # (a video without sound)
    upscale_video(pipe, source, output, progress=False, keep_audio=False)
    assert probe_video(output).num_frames == 6 and not partial_folder(output).exists()
    # with sound it does change the output: refused, as before
    loud = write_test_video(tmp_path / "loud.mp4", 6, size=(12, 16), audio=True)
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, loud, tmp_path / "loud_out.mp4", progress=False, chunk_size=2, checkpoint_seconds=0)
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"other settings: that run copied the input's audio, this one drops it "
                                         r"\(keep_audio=False\)"):
        upscale_video(pipe, loud, tmp_path / "loud_out.mp4", progress=False, keep_audio=False)


def stopped_frame_folder_run(pipe, tmp_path, monkeypatch, also: dict = None) -> Path:
    """A frame folder of 6 frames (and the files ``also``: name -> bytes) whose x4 run into seq.mp4 was stopped at
    frame 4 with a checkpoint after frame 2."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, picture in enumerate(synthetic_frames(6, (12, 16))):
        cv2.imwrite(str(frames / f"{index}.png"), picture)
    for name, data in (also or {}).items():
        (frames / name).write_bytes(data)
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False, chunk_size=2, checkpoint_seconds=0)
    monkeypatch.undo()
    return frames


def test_an_output_with_a_name_near_the_limit_saves_progress_and_goes_on(pipe, tmp_path, monkeypatch, capsys):
    """An output named with 247 to 255 bytes could not be written: its progress folder, .NAME.partial, is 9 bytes
    longer ("File name too long", naming the hidden folder), and in upscale-batch its check ended the whole batch
    before any video (black-box hunt). The folder's name is cut to fit; the manifest keeps the output's name."""
    from star_vsr.resume import unfinished_inputs

    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / ("b" * 247 + ".mp4")  # 251 bytes
    assert len(os.fsencode(partial_folder(output).name)) <= 255
    monkeypatch.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    monkeypatch.undo()
    assert unfinished_inputs(tmp_path) == {output.name: source.resolve()}
    upscale_video(pipe, source, output, progress=False, chunk_size=2)
    assert probe_video(output).num_frames == 6 and {p.name for p in tmp_path.iterdir()} == {"in.mp4", output.name}
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in (output.name, "ok.mp4"):
        (batch / name).write_bytes(source.read_bytes())
    pipe.save_pretrained(tmp_path / "student")
    assert main(["upscale-batch", str(batch), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "student")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")} == {output.name, "ok.mp4"}


def test_a_stopped_run_goes_on_after_its_input_was_only_touched(pipe, tmp_path, monkeypatch):
    """A `touch` (a sync tool, a copy back from a backup) changes the input's modification time, not its content:
    the run was refused as "of another input" (black-box hunt), while the join's check took it as no change. Saved
    runs compare the content's signature; one saved by an earlier version (none) compares the time, as it did."""
    source, output = stopped_run(pipe, tmp_path, monkeypatch)
    os.utime(source, (1e9, 1e9))
    counter = StopAfter(pipe)
    monkeypatch.setattr(pipe.student, "step_tensors", counter)
    upscale_video(pipe, source, output, progress=False, chunk_size=2)
    assert counter.calls == 6 - 2 and probe_video(output).num_frames == 6
    source, output = stopped_run(pipe, tmp_path, monkeypatch)
    manifest_path = partial_folder(output) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["settings"]["input_signature"]
    manifest_path.write_text(json.dumps(manifest))
    os.utime(source, (2e9, 2e9))
    with pytest.raises(InputError, match=r"unfinished run of another input: the input file changed \(its size or "
                                         r"modification time\); delete"):
        upscale_video(pipe, source, output, progress=False)
    # other content copied over it with its size and time (`cp -p`): a change, which the time alone missed
    (tmp_path / "copied").mkdir()
    source, output = stopped_run(pipe, tmp_path / "copied", monkeypatch)
    stat, data = source.stat(), bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF  # (a small file: within its first 64 KiB)
    source.write_bytes(bytes(data))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(InputError, match=r"unfinished run of another input: the input file changed \(its size or "
                                         r"content\); delete"):
        upscale_video(pipe, source, output, progress=False)


def test_saved_work_with_other_settings_is_named_and_restart_discards_it(pipe, tmp_path, monkeypatch):
    source, output = stopped_run(pipe, tmp_path, monkeypatch)
    with pytest.raises(InputError, match=r"other settings: upscale 4.0 -> 2.0.*pass restart=True to start over"):
        upscale_video(pipe, source, output, progress=False, upscale=2)
    # by what they do and the option's name, not "deinterlaced False -> True", "codec 'ffv1' -> 'h264', crf None -> 18"
    with pytest.raises(InputError, match=r"other settings: that run kept the fields, this one deinterlaces them "
                                         r"\(deinterlace\); "):
        upscale_video(pipe, source, output, progress=False, deinterlace=True)
    with pytest.raises(InputError, match=r"other settings: codec h264 -> h265; "):  # (the CRF follows the codec)
        upscale_video(pipe, source, output, progress=False, codec="h265")
    with pytest.raises(InputError, match=r"other settings: that run reset the student's state at scene cuts, this "
                                         r"one carries it through them \(scene_cut_threshold=None\)"):
        upscale_video(pipe, source, output, progress=False, scene_cut_threshold=None)
    with pytest.raises(InputError, match=r"other settings: scene_cut_threshold 0.1 -> 0.2"):
        upscale_video(pipe, source, output, progress=False, scene_cut_threshold=0.2)
    assert partial_folder(output).is_dir()
    other = build_student_pipeline("tiny", seed=1)
    other.set_progress_bar_config(disable=True)
    with pytest.raises(InputError, match="other settings: other student weights"):
        upscale_video(other, source, output, progress=False)
    bf16 = build_student_pipeline("tiny", seed=0)  # the same weights in bfloat16 (--dtype auto on CPUs with AMX)
    torch.nn.Module.to(bf16.student, torch.bfloat16)
    bf16.set_progress_bar_config(disable=True)
    with pytest.raises(InputError, match=r"other settings: the student ran in float32 then, in bfloat16 now "
                                         r".*; load the model with load_upscaler\(\.\.\., dtype='fp32'\) to go on "
                                         r"in float32; delete .* or pass restart=True to start over \(2 frames are "
                                         r"saved there\)$") as refused:
        upscale_video(bf16, source, output, progress=False)
    assert "other student weights" not in str(refused.value)  # their fingerprint changes with the dtype
    write_test_video(source, 6, size=(12, 16), seed=9)  # another input under the same name: no earlier settings
    with pytest.raises(InputError, match=r"unfinished run of another input: the input file changed \(its size or "
                                         r"content\); delete .* or pass restart=True to start over \(2 "
                                         r"frames are saved there\)$"):
        upscale_video(pipe, source, output, progress=False)
    upscale_video(pipe, source, output, progress=False, upscale=2, restart=True)
    assert probe_video(output).height == 24 and not partial_folder(output).exists()
    # a frame folder was "the input file changed" too, "with other settings" (black-box test)
    frames = stopped_frame_folder_run(pipe, tmp_path, monkeypatch)
    # frames swapped by renaming them: the same sizes, times and count (black-box hunt: it went on, the output
    # mixing two frame orders)
    os.rename(frames / "1.png", frames / "tmp.png")
    os.rename(frames / "2.png", frames / "1.png")
    os.rename(frames / "tmp.png", frames / "2.png")
    changed = (r"unfinished run of another input: the input folder's files changed \(a file's name, size or "
               r"modification time, or the number of files\); delete")
    with pytest.raises(InputError, match=changed):
        upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False)
    cv2.imwrite(str(frames / "3.png"), np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(InputError, match=changed):
        upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False)


def test_files_beside_a_folder_s_frames_are_no_change_of_the_input(pipe, tmp_path, monkeypatch):
    """A file browser's .DS_Store or a notes file written into a frame folder is not a frame: a stopped run goes on."""
    frames = stopped_frame_folder_run(pipe, tmp_path, monkeypatch)
    (frames / ".DS_Store").write_bytes(b"\0" * 10)
    step = pipe.student.step_tensors

    def note_written_meanwhile(*args):
        (frames / "notes.txt").write_text(f"step {len(calls)}")
        calls.append(1)
        return step(*args)

    calls = []
    monkeypatch.setattr(pipe.student, "step_tensors", note_written_meanwhile)
    upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False)
    assert probe_video(tmp_path / "seq.mp4").num_frames == 6 and calls


def test_a_frame_folder_s_run_saved_by_an_earlier_version_goes_on(pipe, tmp_path, monkeypatch):
    """Its settings have no per-frame fingerprint and a folder fingerprint of every file: every such run was
    "another input: the input folder's files changed" after the update (review)."""
    from star_vsr.fingerprints import input_fingerprint

    frames = stopped_frame_folder_run(pipe, tmp_path, monkeypatch, also={"notes.txt": b"shot 12"})  # (counted then)
    manifest_path = partial_folder(tmp_path / "seq.mp4") / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["settings"]["input_folder_files"]
    manifest["settings"]["input_files"] = input_fingerprint(frames)  # (every file: the earlier version's)
    manifest_path.write_text(json.dumps(manifest))
    upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False)
    assert probe_video(tmp_path / "seq.mp4").num_frames == 6


CHANGED = (r"changed \(its size or bytes\) while it was being upscaled, so the output would mix the old and the "
           r"new content; nothing was written \(call again to upscale it as it is now\)$")  # (Python's words)


def change_input(source: Path, other: Path, change: str) -> None:
    """Change the input file ``source`` as ``change`` says: "replaced" by ``other`` (os.replace, as editors and
    sync tools save), "removed", "written over" in place with ``other``'s bytes, or "touched"."""
    if change == "replaced":
        os.replace(other, source)
    elif change == "removed":
        source.unlink()
    elif change == "written over":
        with open(source, "r+b") as file:
            file.write(other.read_bytes())
            file.truncate()
    else:
        os.utime(source, (1e9, 1e9))


@pytest.mark.parametrize("change", ["replaced", "removed", "touched", "written over"])
@pytest.mark.parametrize("keep_audio", [True, False])
def test_an_input_changed_while_it_is_upscaled_gives_no_output_of_two_files(pipe, tmp_path, monkeypatch, change,
                                                                            keep_audio):
    """The input replaced (os.replace) during a run: exit 0, "wrote", the output's frames of the old file and its
    audio of the new one, which the join reads (black-box hunt). Written over in place (the reader's open file then
    reads the new bytes), also without audio: frames of both files, or "damaged or truncated" (black-box hunt). The
    input's content is checked before the join, with or without audio (the diffusion pipeline reopens the path for
    each pass: review): a `touch` (a sync tool, an indexer) is no change."""
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16), audio=True)
    other = write_test_video(tmp_path / "other.mp4", 2, size=(12, 16), audio=True, seed=3)
    output, original = tmp_path / "out.mp4", source.read_bytes()
    step = pipe.student.step_tensors

    def change_input_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            change_input(source, other, change)
        return step(*args)

    calls = []
    monkeypatch.setattr(pipe.student, "step_tensors", change_input_at_step_3)
    run = partial(upscale_video, pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0,
                  keep_audio=keep_audio)
    if change == "touched":
        run()
        assert probe_video(output).num_frames == 6 and probe_video(output).has_audio == keep_audio
        return
    what = CHANGED if change != "removed" else \
        r"was removed \(or cannot be read\) while it was being upscaled" + \
        (", so its audio cannot be copied" if keep_audio else "") + \
        r"; nothing was written \(with it back in place, calling again goes on from what was saved\)$"
    with pytest.raises(InputChangedError, match=f"in.mp4 {what}"):
        run()
    # the frames done of a file removed (or unreadable: a network share gone) stay for it put back (review)
    assert not output.exists() and partial_folder(output).exists() == (change == "removed")
    if change == "removed":
        source.write_bytes(original)  # put back (a copy: its modification time is new)
        monkeypatch.undo()
        run()
        assert probe_video(output).num_frames == 6 and not partial_folder(output).exists()


def test_an_input_unreadable_at_the_join_keeps_its_progress_even_if_it_comes_back(pipe, tmp_path, monkeypatch):
    """The join's check found the input unreadable (a network share gone) and said the saved progress was kept;
    the failure path read the input again, found it back, and deleted the progress (review)."""
    import star_vsr.resume as resume

    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / "out.mp4"
    real, reads = resume.input_signature, []

    def gone_at_the_join_only(path):
        reads.append(1)
        return None if len(reads) == 3 else real(path)  # (1: the run's start, 2: its settings, 3: the join)

    monkeypatch.setattr(resume, "input_signature", gone_at_the_join_only)
    with pytest.raises(InputChangedError, match="goes on from what was saved"):
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    assert partial_folder(output).exists() and len(reads) == 3
    monkeypatch.undo()
    upscale_video(pipe, source, output, progress=False)
    assert probe_video(output).num_frames == 6


def test_a_decoding_error_of_an_input_written_over_says_so_and_keeps_nothing(pipe, tmp_path, monkeypatch):
    """Written over in place, a longer input failed decoding as "damaged or truncated", and the saved progress was
    deleted (black-box hunt); said as the change, the saved progress, which was of the old content, was left behind
    with "nothing was written" and a rerun refused as "of another input" (review)."""
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    other = write_test_video(tmp_path / "other.mp4", 2, size=(12, 16), seed=3)
    output = tmp_path / "out.mp4"
    step = pipe.student.step_tensors

    def written_over_at_step_3_then_damaged(*args):
        calls.append(1)
        if len(calls) == 3:
            change_input(source, other, "written over")
            raise CorruptVideoError(f"{source} is damaged or truncated")  # as the decoder then says
        return step(*args)

    calls = []
    monkeypatch.setattr(pipe.student, "step_tensors", written_over_at_step_3_then_damaged)
    with pytest.raises(InputChangedError, match=f"in.mp4 {CHANGED}") as refused:
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    assert isinstance(refused.value.__cause__, CorruptVideoError)
    assert not output.exists() and not partial_folder(output).exists()
    monkeypatch.undo()
    upscale_video(pipe, source, output, progress=False)  # "run the same command again"
    assert probe_video(output).num_frames == 2


def test_a_frame_folder_whose_frames_change_while_it_is_upscaled_gives_no_output(pipe, tmp_path, monkeypatch):
    """Frames are read one file at a time: a frame written over mid-run gave an output of frames from before and
    after the change, with exit 0."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, picture in enumerate(synthetic_frames(6, (12, 16))):
        cv2.imwrite(str(frames / f"{index}.png"), picture)
    step = pipe.student.step_tensors

    def change_frame_5_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            cv2.imwrite(str(frames / "5.png"), np.full((12, 16, 3), 7, np.uint8))
        return step(*args)

    calls = []
    monkeypatch.setattr(pipe.student, "step_tensors", change_frame_5_at_step_3)
    with pytest.raises(InputChangedError, match="frames changed \\(its frames' number or sizes\\) while it was being "
                                                "upscaled, so the output would mix the old and the new content"):
        upscale_video(pipe, frames, tmp_path / "seq.mkv", progress=False, chunk_size=2, checkpoint_seconds=0)
    assert not (tmp_path / "seq.mkv").exists() and not partial_folder(tmp_path / "seq.mkv").exists()


def test_a_bad_scale_or_input_leaves_no_partial_folder(pipe, tmp_path):
    source = write_test_video(tmp_path / "in.mp4", 3, size=(12, 16))
    for scale in (8, 0, float("nan")):
        with pytest.raises(InputError):
            upscale_video(pipe, source, tmp_path / "out.mp4", progress=False, upscale=scale)
        assert not partial_folder(tmp_path / "out.mp4").exists() and not (tmp_path / "out.mp4").exists()
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, size in enumerate([(12, 16), (12, 16), (14, 16)]):  # a frame of another size, mid-way
        cv2.imwrite(str(frames / f"{index}.png"), np.zeros((*size, 3), np.uint8))
    with pytest.raises(UnsupportedVideoError, match="one size"):
        upscale_video(pipe, frames, tmp_path / "seq.mp4", progress=False, chunk_size=1)
    assert not partial_folder(tmp_path / "seq.mp4").exists()


def test_a_finished_runs_progress_folder_is_removed_on_a_rerun(pipe, tmp_path, capsys, monkeypatch):
    """A run killed between moving its output into place and removing its progress folder left the hidden folder,
    and a rerun of the command (or of the batch) only said the output "already exists" (with --overwrite, when
    the manifest was still there: that its frames were saved "by a stopped run"; black-box test, review)."""
    import errno
    import fcntl
    import shutil

    from star_vsr.outputs import folder_lock

    folder = tmp_path / "student"
    pipe.save_pretrained(folder)
    (tmp_path / "in").mkdir()
    source = write_test_video(tmp_path / "in" / "a.mp4", 3, size=(12, 16))
    output = tmp_path / "out" / "a.mp4"
    command = ["upscale", str(source), "-o", str(output), "--model", str(folder)]
    rmtree = shutil.rmtree

    def killed_before_removing_it(path, *args, **kwargs):
        if Path(path) == partial_folder(output):
            raise KeyboardInterrupt
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_before_removing_it)
    assert main(command) == 130
    monkeypatch.undo()
    assert probe_video(output).num_frames == 3
    assert partial_folder(output).is_dir() and not (partial_folder(output) / MANIFEST).exists()  # removed first
    with folder_lock(partial_folder(output), output):  # a run that has just started over it (--overwrite): kept
        assert main(command) == 2
    assert partial_folder(output).is_dir()

    def no_locks(*args):  # a file system without locks: another run could be writing it
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert main(command) == 2 and partial_folder(output).is_dir()
    monkeypatch.undo()
    manifest = partial_folder(output) / MANIFEST
    manifest.write_text("{}")  # saved work (of a stopped --overwrite run, or one whose output another program
    assert main(command) == 2 and manifest.is_file()  # wrote meanwhile): kept, whatever the times say
    manifest.unlink()
    capsys.readouterr()
    assert main(command) == 2
    assert "already exists" in capsys.readouterr().err and not partial_folder(output).exists()
    partial_folder(output).mkdir()  # nothing saved (killed while removing it): removed by a batch too
    assert main(["upscale-batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(folder)]) == 0
    assert "1 of 1 video already done" in capsys.readouterr().out and not partial_folder(output).exists()


def test_damaged_saved_work_is_an_input_error(pipe, tmp_path, monkeypatch):
    source, output = stopped_run(pipe, tmp_path, monkeypatch)
    manifest = json.loads((partial_folder(output) / MANIFEST).read_text())
    (partial_folder(output) / MANIFEST).write_text("{")
    with pytest.raises(InputError, match="damaged.*restart=True"):
        upscale_video(pipe, source, output, progress=False)
    # a damaged count of the diffusion work done (what a refusal says is saved): the same, not a ZeroDivisionError
    (partial_folder(output) / MANIFEST).write_text(json.dumps({**manifest, "evaluations": [3, 0]}))
    with pytest.raises(InputError, match="damaged.*restart=True"):
        upscale_video(pipe, source, output, progress=False)


def test_cli_upscale_stopped_by_sigterm_says_how_to_go_on_and_restart_starts_over(pipe, tmp_path, monkeypatch,
                                                                                  capsys):
    import star_vsr.resume

    pipe.save_pretrained(tmp_path / "student")
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / "out.mp4"
    args = ["upscale", str(source), "-o", str(output), "--model", str(tmp_path / "student")]
    original_call = type(pipe).__call__

    def stop_after_first_chunk(self, *a, state_sink=None, **kw):
        def sink(done, state):
            state_sink(done, state)
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or `docker stop` do

        return original_call(self, *a, state_sink=sink, **kw)

    monkeypatch.setattr(star_vsr.resume, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(type(pipe), "__call__", stop_after_first_chunk)
    assert main(args) == 143  # 128 + SIGTERM, as shells and process managers expect (it was 130, Ctrl-C's)
    stopped = capsys.readouterr().err
    assert "Run the same command again" in stopped
    monkeypatch.undo()
    assert main([*args, "--upscale", "2"]) == 2
    err = capsys.readouterr().err  # the command line's flag, not the Python argument
    assert "other settings: --upscale 4 -> 2" in err and "or pass --restart to start over" in err  # (not 4.0 -> 2.0)
    saved = stopped.split("stopped; ", 1)[1].split(" saved in ", 1)[0]  # "2 frames are"
    assert f"({saved} saved there)" in err  # as "stopped" says it (it was "(2 frames done)")
    assert "restart=True" not in err and "Python" not in err
    assert main([*args, "--no-scene-cut-reset"]) == 2
    assert "carries it through them (--no-scene-cut-reset)" in capsys.readouterr().err
    assert main([*args, "--upscale", "2", "--restart"]) == 0
    assert probe_video(output).height == 24 and not partial_folder(output).exists()
    err = capsys.readouterr().err  # the saved frames are not thrown away without a word
    assert "starting over (--restart); 6 frames are thrown away (an earlier run saved them in" in err


def test_cli_upscale_points_to_saved_progress_of_other_outputs(pipe, tmp_path, monkeypatch, capsys):
    source, output = stopped_run(pipe, tmp_path, monkeypatch)  # saved progress of out.mp4
    pipe.save_pretrained(tmp_path / "student")
    model = ["--model", str(tmp_path / "student"), "--dtype", "fp32"]  # as the stopped run (auto is bf16 with AMX)
    assert main(["upscale", str(source), "-o", str(tmp_path / "renamed.mp4"), *model]) == 0
    out = capsys.readouterr().out
    assert f"note: {partial_folder(output)} holds" in out and "unfinished run to another output" in out
    # in the unit it has one of: a few KiB read "0.0 MB", MiB were labelled "MB" (black-box hunt)
    size = sum(f.stat().st_size for f in partial_folder(output).rglob("*") if f.is_file())
    assert size < 2 ** 20 and f"holds {size / 1024:.2f} KiB saved by" in out
    assert main(["upscale", str(source), "-o", str(output), *model]) == 0
    assert "note:" not in capsys.readouterr().out  # finishing it removed it


def batch_stopped_in_v1(pipe, tmp_path, monkeypatch, videos: int, output: str = "v1.mp4",
                        **kwargs) -> tuple[Path, Path]:
    """Folders in/ (v0.mp4, v1.mp4, ...: ``videos`` of them) and out/, where an upscale of v1 to ``output``
    (``kwargs``: more of its settings) stopped after 4 frames and saved its progress; the student in student/."""
    pipe.save_pretrained(tmp_path / "student")
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(videos):
        write_test_video(inputs / f"v{i}.mp4", 6, size=(12, 16), seed=i)
    with monkeypatch.context() as patched:
        patched.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
        with pytest.raises(KeyboardInterrupt):
            upscale_video(pipe, inputs / "v1.mp4", outputs / output, progress=False, chunk_size=2,
                          checkpoint_seconds=0, **kwargs)
    return inputs, outputs


def test_upscale_batch_goes_on_with_a_partly_done_video(pipe, tmp_path, monkeypatch, capsys):
    inputs, outputs = batch_stopped_in_v1(pipe, tmp_path, monkeypatch, videos=2)
    # --dtype as the stopped run (auto is bf16 on CPUs with AMX)
    assert main(["upscale-batch", str(inputs), "-o", str(outputs), "--model", str(tmp_path / "student"),
                 "--dtype", "fp32"]) == 0
    assert "0 of 2 videos already done; 2 to go on 1 process, 1 of them partly done" in capsys.readouterr().out
    assert [probe_video(outputs / f"v{i}.mp4").num_frames for i in range(2)] == [6, 6]
    assert not partial_folder(outputs / "v1.mp4").exists()


def test_the_notes_of_a_run_go_where_the_caller_says_also_without_a_progress_bar(pipe, tmp_path, monkeypatch,
                                                                                capsys):
    """upscale-batch's processes other than the first run without a progress bar, and so said nothing of what they
    saved when stopped or went on from ("stopped; 416 frames are saved" missing for their videos)."""
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output, notes = tmp_path / "out.mkv", []
    with monkeypatch.context() as patched:
        patched.setattr(pipe.student, "step_tensors", StopAfter(pipe, stop=4))
        with pytest.raises(KeyboardInterrupt):
            upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2, checkpoint_seconds=0,
                          notes=notes.append)
    upscale_video(pipe, source, output, codec="ffv1", progress=False, chunk_size=2, notes=notes.append)
    assert [note.split(";")[0] for note in notes] == [f"{output}: stopped", f"{output}: going on after frame 2 of 6 "
                                                                            f"(saved in {partial_folder(output)} by an "
                                                                            f"earlier run"]
    assert capsys.readouterr().err == ""  # not printed as well


def test_every_process_of_upscale_batch_says_what_it_goes_on_from(pipe, tmp_path, monkeypatch):
    import subprocess
    import sys

    inputs, outputs = batch_stopped_in_v1(pipe, tmp_path, monkeypatch, videos=2)
    for name in ("a.mp4", "b.mp4", "z.mp4"):  # unreadable: a and b the first process's, z the second's, with v1
        (inputs / name).write_bytes(b"not a video" * 10)
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "star_vsr",
         "upscale-batch", str(inputs), "-o", str(outputs), "--model", str(tmp_path / "student"), "--dtype", "fp32"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"[process 1] {outputs / 'v1.mp4'}: going on after frame 2 of 6" in result.stderr, result.stderr[-3000:]
    assert f"[process 1] skipped {inputs / 'z.mp4'}" in result.stderr
    assert f"[process 0] skipped {inputs / 'a.mp4'}" in result.stderr
    # one total of every process's skipped videos (each process counted its own: "[process 0] 2 video(s) ...")
    assert result.stderr.count("were skipped") == 1, result.stderr[-3000:]
    assert "\n3 videos were skipped (the reasons are above): a.mp4, b.mp4, z.mp4\n" in result.stderr
    assert [probe_video(outputs / f"v{i}.mp4").num_frames for i in range(2)] == [6, 6]


def test_upscale_batch_points_to_saved_progress_of_outputs_it_does_not_write(pipe, tmp_path, monkeypatch, capsys):
    """A batch stopped with --codec ffv1 (v1.mkv) and run again with H.264 (v1.mp4) left the FFV1 run's saved
    progress behind without a word."""
    inputs, outputs = batch_stopped_in_v1(pipe, tmp_path, monkeypatch, videos=2, output="v1.mkv", codec="ffv1")
    assert main(["upscale-batch", str(inputs), "-o", str(outputs), "--model", str(tmp_path / "student")]) == 0
    out = capsys.readouterr().out
    assert f"note: {partial_folder(outputs / 'v1.mkv')} holds" in out and "unfinished run to another output" in out
    assert probe_video(outputs / "v1.mp4").num_frames == 6


def test_upscale_batch_skips_a_video_whose_saved_progress_has_other_settings(pipe, tmp_path, monkeypatch, capsys):
    """Saved progress of another --upscale stopped the whole batch at that video (exit 2), after the videos
    before it were done and before those after it were started; now that video is reported and skipped."""
    inputs, outputs = batch_stopped_in_v1(pipe, tmp_path, monkeypatch, videos=3)  # v1 stopped in a run at x4
    assert main(["upscale-batch", str(inputs), "-o", str(outputs), "--model", str(tmp_path / "student"),
                 "--dtype", "fp32", "--upscale", "2"]) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "other settings: --upscale 4 -> 2" in err and "--restart" in err
    assert "1 video was skipped (the reason is above): v1.mp4" in err
    assert [probe_video(outputs / f"v{i}.mp4").height for i in (0, 2)] == [24, 24]
    assert not (outputs / "v1.mp4").exists() and partial_folder(outputs / "v1.mp4").exists()  # kept for --upscale 4


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(pipe, tmp_path, monkeypatch):
    import safetensors.torch

    source, output = stopped_run(pipe, tmp_path, monkeypatch)  # a checkpoint after frame 2
    work = partial_folder(output)
    real_save = safetensors.torch.save_file

    def disk_fills_up(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)  # a half-written state file is left ...
        raise OSError(28, "No space left on device")  # ... when the disk fills up

    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills_up)
    with pytest.raises(OutputError, match="No space left on device.*free some space and call again to go on "
                       "from the previous checkpoint$") as refused:
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    assert refused.value.errno == 28  # a full disk: `star-vsr upscale` exits 1, not 2 as for a setting
    manifest = json.loads((work / MANIFEST).read_text())
    assert manifest["frames"] == 2 and sorted(p.name for p in work.iterdir()) == sorted(
        [MANIFEST, manifest["state"], *(name for name, _ in manifest["segments"])])
    monkeypatch.undo()
    upscale_video(pipe, source, output, progress=False)
    assert probe_video(output).num_frames == 6 and not work.exists()


def test_a_full_disk_at_the_first_checkpoint_says_the_rerun_starts_over(pipe, tmp_path, monkeypatch):
    """It said "run the same command again to go on from the previous checkpoint" when there was none."""
    import safetensors.torch

    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / "out.mp4"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputError, match=r"free some space and call again \(no checkpoint was saved yet: it "
                       r"starts over\)$"):
        upscale_video(pipe, source, output, progress=False, chunk_size=2, checkpoint_seconds=0)
    assert not (partial_folder(output) / MANIFEST).exists() and not output.exists()


def test_a_damaged_segment_is_found_before_any_frame_is_upscaled(pipe, tmp_path, monkeypatch):
    source, output = stopped_run(pipe, tmp_path, monkeypatch)
    work = partial_folder(output)
    segment = work / json.loads((work / MANIFEST).read_text())["segments"][0][0]
    segment.write_bytes(segment.read_bytes()[:300])  # truncated
    counter = StopAfter(pipe)
    monkeypatch.setattr(pipe.student, "step_tensors", counter)
    with pytest.raises(InputError, match=r"segment segment_000000.mp4 is damaged.*restart=True"):
        upscale_video(pipe, source, output, progress=False)
    assert counter.calls == 0 and (work / MANIFEST).is_file()
    segment.unlink()  # said "does not exist; check the path of the input video or frame folder"
    with pytest.raises(InputError, match=r"segment segment_000000.mp4 is missing; .*restart=True") as error:
        upscale_video(pipe, source, output, progress=False)
    assert "input video" not in str(error.value) and counter.calls == 0


def test_a_failed_join_keeps_every_frame_and_the_next_run_only_joins(pipe, tmp_path, monkeypatch):
    import star_vsr.io.segments

    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / "out.mp4"

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(star_vsr.io.segments, "_join_encoded", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        upscale_video(pipe, source, output, progress=False, chunk_size=2)
    manifest = json.loads((partial_folder(output) / MANIFEST).read_text())
    assert (manifest["frames"], manifest["state"]) == (6, None)  # all frames done, no state needed
    monkeypatch.undo()
    counter = StopAfter(pipe)
    monkeypatch.setattr(pipe.student, "step_tensors", counter)
    upscale_video(pipe, source, output, progress=False)
    assert counter.calls == 0 and probe_video(output).num_frames == 6 and not partial_folder(output).exists()


def test_two_runs_on_one_output_do_not_mix(pipe, tmp_path):
    from star_vsr.resume import _locked

    source = write_test_video(tmp_path / "in.mp4", 3, size=(12, 16))
    output = tmp_path / "out.mp4"
    with _locked(partial_folder(output), output):  # another run is writing out.mp4
        with pytest.raises(OutputBusyError, match="another star-vsr run is writing"):
            upscale_video(pipe, source, output, progress=False)
    upscale_video(pipe, source, output, progress=False)
    assert probe_video(output).num_frames == 3


# ---------------------------------------------------------------- the diffusion pipeline
@pytest.fixture(scope="module")
def star():
    from star_vsr.testing import tiny_star_pipeline

    p = tiny_star_pipeline(seed=0)
    p.set_progress_bar_config(disable=True)
    return p


def star_kwargs(seed=0, steps=2):
    """A tiny StarVSR call: 9 frames in 4 windows of 4 frames overlapping by 2, ``steps`` steps each."""
    return dict(num_inference_steps=steps, chunk_frames=4, chunk_overlap=2, decode_chunk_size=2,
                generator=torch.Generator().manual_seed(seed))


class StopWindow:
    """Wraps ``StarVSRPipeline.denoise_window``: counts window evaluations, KeyboardInterrupt at call ``stop``."""

    def __init__(self, pipe, stop=None):
        self.denoise, self.stop, self.calls = pipe.denoise_window, stop, 0

    def __call__(self, *args):
        self.calls += 1
        if self.stop is not None and self.calls == self.stop:
            raise KeyboardInterrupt
        return self.denoise(*args)


@pytest.mark.parametrize("every, stop, saved_frames", [(0, 6, 2), (1e9, 3, 0)])
def test_a_stopped_diffusion_upscale_goes_on_and_writes_what_an_uninterrupted_run_writes(
        star, tmp_path, monkeypatch, every, stop, saved_frames):
    """Periodic checkpoints (every=0: after each window) or only the one Ctrl-C saves (before any frame is
    finished: the denoising done so far is kept all the same)."""
    source = write_test_video(tmp_path / "in.mp4", 9, size=(8, 12))
    upscale_video(star, source, tmp_path / "whole.mkv", codec="ffv1", progress=False, **star_kwargs())
    output = tmp_path / "out.mkv"
    monkeypatch.setattr(star, "denoise_window", StopWindow(star, stop=stop))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(star, source, output, codec="ffv1", progress=False, checkpoint_seconds=every, **star_kwargs())
    manifest = json.loads((partial_folder(output) / MANIFEST).read_text())
    assert manifest["frames"] == saved_frames and manifest["state"] and not output.exists()
    assert manifest["evaluations"] == [stop - 1, 8]  # what the stop message reports (next test)
    counter = StopWindow(star)
    monkeypatch.setattr(star, "denoise_window", counter)
    upscale_video(star, source, output, codec="ffv1", progress=False, **star_kwargs())
    assert counter.calls == 4 * 2 - (stop - 1)  # 8 window evaluations in all; those done before the stop are kept
    assert np.array_equal(read_all(output), read_all(tmp_path / "whole.mkv"))
    assert not partial_folder(output).exists()


def stopped_star_run(star, tmp_path, monkeypatch, stop, checkpoint_seconds=0.0, progress=False):
    """(input, output) of a 9-frame StarVSR run (``star_kwargs``) stopped by Ctrl-C at window evaluation ``stop``."""
    source = write_test_video(tmp_path / "in.mp4", 9, size=(8, 12))
    output = tmp_path / "out.mp4"
    monkeypatch.setattr(star, "denoise_window", StopWindow(star, stop=stop))
    with pytest.raises(KeyboardInterrupt):
        upscale_video(star, source, output, progress=progress, checkpoint_seconds=checkpoint_seconds, **star_kwargs())
    monkeypatch.undo()
    return source, output


def test_an_input_replaced_during_a_diffusion_run_is_refused_without_audio_too(star, tmp_path, monkeypatch):
    """The diffusion pipeline reopens the path for each pass (the hints, the colour correction): an input replaced
    mid-run without audio to copy gave an output of neither file, with exit 0 (review)."""
    source = write_test_video(tmp_path / "in.mp4", 9, size=(8, 12))
    other = write_test_video(tmp_path / "other.mp4", 9, size=(8, 12), seed=3)
    denoise, calls = star.denoise_window, []

    def replaced_at_the_first_window(*args):
        if not calls:
            change_input(source, other, "replaced")
        calls.append(1)
        return denoise(*args)

    monkeypatch.setattr(star, "denoise_window", replaced_at_the_first_window)
    with pytest.raises(InputChangedError, match=f"in.mp4 {CHANGED}"):
        upscale_video(star, source, tmp_path / "out.mp4", progress=False, keep_audio=False, **star_kwargs())
    assert not (tmp_path / "out.mp4").exists() and not partial_folder(tmp_path / "out.mp4").exists()


def test_a_saved_diffusion_run_names_what_changed(star, pipe, tmp_path, monkeypatch):
    source, output = stopped_star_run(star, tmp_path, monkeypatch, stop=5)
    with pytest.raises(InputError, match=r"other settings: num_inference_steps 2 -> 3; run with the earlier"):
        upscale_video(star, source, output, progress=False, **star_kwargs(steps=3))
    with pytest.raises(InputError, match=r"other settings: seed 0 -> 1;"):
        upscale_video(star, source, output, progress=False, **star_kwargs(seed=1))
    # a size alone, not the overlap that follows it ("tile_overlap 128 -> 32, tile_size None -> 64")
    with pytest.raises(InputError, match=r"other settings: tile_size None -> 64;"):
        upscale_video(star, source, output, progress=False, **star_kwargs(), tile_size=64)
    # a diffusion model's dtype: no word of auto's bf16 for students
    from star_vsr.resume import _setting_change

    assert "auto" not in _setting_change("dtype", "float32", "bfloat16", "StarVSRPipeline")
    assert "auto" in _setting_change("dtype", "float32", "bfloat16", "StarStudentPipeline")
    # (it read as if --dtype auto had picked bf16 where --dtype bf16 was typed)
    assert "the default, picks bf16 for students on CPUs with AMX, so the same command can change precision" in \
        _setting_change("dtype", "float32", "bfloat16", "StarStudentPipeline")
    with pytest.raises(InputError, match=r"other settings: it was made by a StarVSRPipeline, this run is a "
                                         r"StarStudentPipeline;"):
        upscale_video(pipe, source, output, progress=False)
    with pytest.raises(InputError, match=r"other settings: negative_prompt STAR's \(the default\) -> 'blurry';"):
        upscale_video(star, source, output, progress=False, **star_kwargs(), negative_prompt="blurry")
    with pytest.raises(InputError, match=r"other settings: negative_prompt STAR's \(the default\) -> '' \(none\);"):
        upscale_video(star, source, output, progress=False, **star_kwargs(), negative_prompt=None)  # (no details)
    # a run that recorded STAR's prompt (passed by a Python caller, or by this version's first command line) goes
    # on with it left out, and the other way round
    manifest_path = partial_folder(output) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["settings"]["call"]["negative_prompt"] = STAR_NEGATIVE_PROMPT
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"negative_prompt STAR's \(the default\) -> 'blurry'"):
        upscale_video(star, source, output, progress=False, **star_kwargs(), negative_prompt="blurry")
    counter = StopWindow(star)
    monkeypatch.setattr(star, "denoise_window", counter)
    # STAR's negative prompt passed (as star-vsr upscale passes it since --negative-prompt) is the default the run
    # was saved with: it goes on (runs saved before the flag were refused, "negative_prompt None -> 'painting, ...'")
    upscale_video(star, source, output, progress=False, **star_kwargs(), negative_prompt=STAR_NEGATIVE_PROMPT)
    assert counter.calls == 8 - 4 and probe_video(output).num_frames == 9


def test_ctrl_c_while_frames_are_written_saves_them_with_the_state_after_them(star, tmp_path, monkeypatch):
    from star_vsr.io.segments import SegmentedVideoWriter

    source = write_test_video(tmp_path / "in.mp4", 9, size=(8, 12))
    upscale_video(star, source, tmp_path / "whole.mkv", codec="ffv1", progress=False, **star_kwargs())
    write, calls = SegmentedVideoWriter.write, []

    def write_and_ctrl_c(self, frames):
        calls.append(len(frames))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of writing the second chunk
        write(self, frames)

    monkeypatch.setattr(SegmentedVideoWriter, "write", write_and_ctrl_c)
    output = tmp_path / "out.mkv"
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal (not SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            upscale_video(star, source, output, codec="ffv1", progress=False, checkpoint_seconds=1e9,
                          **star_kwargs())
    finally:
        signal.signal(signal.SIGINT, handler)
    assert json.loads((partial_folder(output) / MANIFEST).read_text())["frames"] == sum(calls) == 4
    monkeypatch.undo()
    upscale_video(star, source, output, codec="ffv1", progress=False, **star_kwargs())
    assert np.array_equal(read_all(output), read_all(tmp_path / "whole.mkv"))


def test_the_sampled_weights_fingerprint_reads_tensors_past_float32_positions():
    from star_vsr.fingerprints import weights_fingerprint

    embedding = torch.nn.Embedding(49408, 340)  # 16.8 M values > 2 ** 24, like OpenCLIP's 49408 x 1024 tokens
    before = weights_fingerprint([embedding], samples=4096)
    with torch.no_grad():
        embedding.weight[-1, -1] += 1  # the last value is one of the samples
    assert weights_fingerprint([embedding], samples=4096) != before


def test_upscale_video_refuses_pipeline_arguments_it_sets_itself_before_touching_saved_work(star, tmp_path,
                                                                                            monkeypatch):
    source, output = stopped_star_run(star, tmp_path, monkeypatch, stop=5)
    for extra in (dict(callback_on_step_end=lambda *args: {}), dict(output_type="latent")):
        with pytest.raises(InputError, match="cannot be passed to it"):
            upscale_video(star, source, output, progress=False, **star_kwargs(), **extra)
    assert (partial_folder(output) / MANIFEST).is_file()  # still there to go on from


def test_a_stopped_diffusion_run_says_how_much_denoising_is_saved(star, tmp_path, monkeypatch, capsys):
    source, output = stopped_star_run(star, tmp_path, monkeypatch, stop=4, checkpoint_seconds=1e9, progress=True)
    assert "stopped; 0 frames and 38% of the denoising (3 of 8 window steps) are saved in" in capsys.readouterr().err
    upscale_video(star, source, output, progress=True, **star_kwargs())
    assert "going on after frame 0 of 9, 3 of 8 window steps done" in capsys.readouterr().err


def test_restart_says_the_saved_denoising_is_thrown_away(star, tmp_path, monkeypatch, capsys):
    """It said only "the 0 frames an earlier run saved ... are thrown away" of a run that had denoised 38 %."""
    source, output = stopped_star_run(star, tmp_path, monkeypatch, stop=4, checkpoint_seconds=1e9, progress=True)
    capsys.readouterr()
    upscale_video(star, source, output, progress=True, restart=True, **star_kwargs())
    assert "starting over (restart=True); 0 frames and 38% of the denoising (3 of 8 window steps) are thrown away " \
           f"(an earlier run saved them in {partial_folder(output)})" in capsys.readouterr().err


def test_a_student_run_shows_one_progress_bar_with_frames_per_second(tmp_path, capsys, pipe):
    source = write_test_video(tmp_path / "in.mp4", num_frames=3, size=(16, 16))
    upscale_video(pipe, source, tmp_path / "out.mkv", codec="ffv1", upscale=2)
    err = capsys.readouterr().err
    assert "out.mkv: 100%" in err and "frame/s" in err  # the writer's bar
    assert "step/s" not in err and "upscale:" not in err  # not the pipeline's too


def test_upscale_video_takes_paths_and_says_where_frames_go(pipe, tmp_path):
    """An array as the input was a raw TypeError from os.fspath (black-box review)."""
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(InputError, match=r"takes input_path as a file or folder path \(str or pathlib.Path\), got "
                                         r"ndarray; to upscale frames in memory call the pipeline"):
        upscale_video(pipe, frames, tmp_path / "out.mp4", progress=False)
    with pytest.raises(InputError, match="takes output_path as a file or folder path"):
        upscale_video(pipe, tmp_path / "in.mp4", None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_upscale_video_refuses_to_write_over_its_input(pipe, tmp_path):
    source = write_test_video(tmp_path / "in.mp4", 2, size=(12, 16))
    before = source.read_bytes()
    with pytest.raises(InputError, match="is the input"):
        upscale_video(pipe, source, source, progress=False, restart=True)
    assert source.read_bytes() == before


def test_a_changed_diffusion_option_reads_as_its_flag_takes_it():
    """`--color-fix none` on a resume read "--color-fix 'adain' -> None" (Python's reprs)."""
    from star_vsr.errors import cli_wording
    from star_vsr.resume import _setting_change

    with cli_wording(["--color-fix", "--steps"]):
        assert _setting_change("color_fix", "adain", None, "StarVSRPipeline") == "--color-fix adain -> none"
        assert _setting_change("num_inference_steps", 2, 3, "StarVSRPipeline") == "--steps 2 -> 3"
    with cli_wording(["--prompt"]):  # a prompt of several words as the shell takes it again
        assert _setting_change("prompt", "a good video", "a cat's video", "StarVSRPipeline") == \
            """--prompt 'a good video' -> 'a cat'"'"'s video'"""
    assert _setting_change("color_fix", "adain", None, "StarVSRPipeline") == "color_fix 'adain' -> None"


def test_a_run_that_fails_before_writing_removes_the_folders_it_made(pipe, tmp_path, monkeypatch):
    """Folders made for the output are removed when the run leaves nothing (no output, no saved progress); those
    there before are kept, and so are the made ones of a run that saved its progress."""
    source = write_test_video(tmp_path / "in.mp4", 3, size=(8, 12))
    (tmp_path / "kept").mkdir()

    def fail(*args, **kwargs):
        assert (tmp_path / "kept" / "new" / "deeper").is_dir()  # made for the run's saved progress
        raise InputError("refused")

    monkeypatch.setattr(type(pipe), "__call__", fail)
    with pytest.raises(InputError, match="refused"):
        upscale_video(pipe, source, tmp_path / "kept" / "new" / "deeper" / "out.mp4", progress=False)
    assert list((tmp_path / "kept").iterdir()) == []
    monkeypatch.undo()
    upscale_video(pipe, source, tmp_path / "kept" / "new" / "out.mp4", progress=False)
    assert probe_video(tmp_path / "kept" / "new" / "out.mp4").num_frames == 3


def test_a_link_or_file_where_the_progress_folder_goes_is_refused_and_left_alone(pipe, tmp_path, capsys):
    """A link named .out.mp4.partial to the input's folder had that folder emptied, the input with it (the run
    found no manifest there and cleared it), and a file there was "cannot write out.mp4: File exists"; in a batch
    either stopped every video after it (black-box hunt). Now that output is refused, and a batch skips it."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        write_test_video(inputs / f"{name}.mp4", 3, size=(12, 16))
    (inputs / "notes.txt").write_text("mine")
    link = inputs / ".out.mp4.partial"
    link.symlink_to(".")
    with pytest.raises(SavedRunError, match=r"\.out\.mp4\.partial, the folder where star-vsr keeps the progress of "
                                            r"out\.mp4, is a link: move it away and run again"):
        upscale_video(pipe, inputs / "a.mp4", inputs / "out.mp4", progress=False)
    assert sorted(p.name for p in inputs.iterdir()) == [".out.mp4.partial", "a.mp4", "b.mp4", "notes.txt"]
    outputs = tmp_path / "out"
    outputs.mkdir()
    (outputs / ".a.mp4.partial").write_text("not a folder")
    pipe.save_pretrained(tmp_path / "student")
    assert main(["upscale-batch", str(inputs), "-o", str(outputs), "--model", str(tmp_path / "student")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"skipped \S+a\.mp4: \S+\.a\.mp4\.partial, the folder where star-vsr keeps the progress of "
                     r"a\.mp4, is a file: move it away", err), err
    assert probe_video(outputs / "b.mp4").num_frames == 3 and (outputs / ".a.mp4.partial").read_text() == "not a folder"
