"""Output checks and the permissions of saved safetensors files (star_vsr.outputs)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from star_vsr.errors import InputError
from star_vsr.outputs import PNG_NAME, check_new_output, frame_files, give_default_mode, is_frame_output
from star_vsr.testing import safetensors_modes


def test_safetensors_files_get_the_mode_of_other_new_files(tmp_path, umask_022):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "sub").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "sub" / "b.safetensors"))
    kept = tmp_path / "sub" / "kept.safetensors"  # a mode someone chose stays
    save_file({"w": torch.zeros(2)}, str(kept))
    os.chmod(kept, 0o640)
    private = tmp_path / "notes.txt"  # only safetensors files are touched
    private.write_text("x")
    os.chmod(private, 0o600)
    give_default_mode(tmp_path)
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == umask_022
    assert (tmp_path / "sub" / "b.safetensors").stat().st_mode & 0o777 == umask_022
    assert kept.stat().st_mode & 0o777 == 0o640 and private.stat().st_mode & 0o777 == 0o600
    single = tmp_path / "single.safetensors"
    save_file({"w": torch.zeros(2)}, str(single))
    give_default_mode(single)  # one file
    assert safetensors_modes(tmp_path) == {umask_022, 0o640}


def test_an_output_replaced_with_overwrite_keeps_its_mode(tmp_path, umask_022, capsys):
    """A private (0600) output replaced with --overwrite became -rw-r--r-- (the umask's mode), where `cp` onto it
    keeps its mode (black-box hunt): videos, PNG frame folders, one image and JSON files keep theirs."""
    from star_vsr.cli import main
    from star_vsr.io.synthetic import write_test_video

    video = write_test_video(tmp_path / "in.mp4", 2, size=(16, 16))
    other = write_test_video(tmp_path / "other.mp4", 2, size=(16, 16), seed=1)
    outputs = {"lr.mp4": ["degrade", str(video), "--scale", "2"], "sr.mp4": ["upscale", str(video)],
               "frames": ["upscale", str(video)], "one.png": ["upscale", str(video), "--max-frames", "1"],
               "scores.json": ["evaluate", "--pred", str(other), "--gt", str(video), "--scale", "2"]}
    for name, command in outputs.items():
        flag = "--json" if command[0] == "evaluate" else "-o"
        assert main([*command, flag, str(tmp_path / name)]) == 0, name
        os.chmod(tmp_path / name, 0o700 if name == "frames" else 0o600)
        assert main([*command, flag, str(tmp_path / name), "--overwrite"]) == 0, name
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o700 if name == "frames" else 0o600), name
    assert oct(write_test_video(tmp_path / "new.mp4", 1).stat().st_mode & 0o777) == oct(0o644)  # (new: the umask)
    capsys.readouterr()


def test_a_folder_lock_refuses_a_second_holder_and_is_skipped_where_the_file_system_has_no_locks(tmp_path,
                                                                                                   monkeypatch):
    import errno
    import fcntl

    import pytest

    from star_vsr.errors import OutputBusyError
    from star_vsr.outputs import folder_lock

    with folder_lock(tmp_path, tmp_path):
        with pytest.raises(OutputBusyError, match=f"another star-vsr run is writing {tmp_path}; let it finish"):
            with folder_lock(tmp_path, tmp_path):
                pass
    with folder_lock(tmp_path, tmp_path, wait=True):  # free again (a killed or finished holder leaves none)
        pass

    def no_locks_here(handle, operation):  # NFS without lockd, some FUSE mounts: commands worked there before
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks_here)
    with folder_lock(tmp_path, tmp_path):
        pass


def test_an_output_that_is_a_device_or_pipe_is_refused_even_with_overwrite(tmp_path):
    """--json /dev/null --overwrite (or any -o naming a device, a pipe or a socket) renamed a regular file over it:
    run as root, /dev/null would have become a file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for overwrite in (False, True):
        with pytest.raises(InputError, match="pipe is a device, pipe or socket, not a file this run can replace"):
            check_new_output(pipe, overwrite)
    assert not pipe.is_file() and pipe.exists()


def test_frame_files_are_star_vsr_s_png_frames_in_frame_order(tmp_path):
    """A saved PNG segment was counted, and segments joined, by the glob ``frame_*.png`` in name order: a user's
    ``frame_a.png`` counted as a frame, and frame 1,000,000 (seven digits) sorted before frame 999,999."""
    for index in (999_999, 1_000_000, 0, 12):
        (tmp_path / PNG_NAME.format(index)).write_bytes(b"")
    assert [p.name for p in frame_files(tmp_path)] == ["frame_000000.png", "frame_000012.png", "frame_999999.png",
                                                       "frame_1000000.png"]
    assert is_frame_output(tmp_path)
    (tmp_path / "frame_a.png").write_bytes(b"")
    assert len(frame_files(tmp_path)) == 4 and not is_frame_output(tmp_path)


def test_without_missing_parents_takes_out_only_what_a_writer_s_new_folders_would(tmp_path, monkeypatch):
    from star_vsr.outputs import without_missing_parents

    monkeypatch.chdir(tmp_path)
    (tmp_path / "real" / "inner").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere" / "deep", tmp_path / "link")
    assert without_missing_parents("new/../out.mp4") == "out.mp4"
    assert without_missing_parents("a/b/../../out.mp4") == "out.mp4"
    assert without_missing_parents("real/new/../out.mp4") == os.path.join("real", "out.mp4")
    assert without_missing_parents("real/inner/../out.mp4") == "real/inner/../out.mp4"  # (the system's to resolve)
    assert without_missing_parents("link/../out.mp4") == "link/../out.mp4"  # elsewhere/out.mp4, not ./out.mp4
    assert without_missing_parents("../new/../out.mp4") == os.path.join("..", "out.mp4")
    assert without_missing_parents(f"{tmp_path}/new/../out.mp4") == str(tmp_path / "out.mp4")
    assert without_missing_parents("new/../out.mp4/") == "out.mp4/"  # (a file's name as a folder: still refused)
    assert without_missing_parents("new/..") == "."


def test_a_link_at_a_fixed_temporary_name_is_replaced_not_written_through(tmp_path):
    """write_text_atomic wrote through a link named like its temporary file (.NAME.tmp), into the file it pointed
    to (final review); the link is removed and the file it pointed to left as it was."""
    from star_vsr.outputs import write_text_atomic

    mine = tmp_path / "mine.txt"
    mine.write_text("user content\n")
    (tmp_path / ".settings.json.tmp").symlink_to(mine)
    write_text_atomic(tmp_path / "settings.json", "{}\n")
    assert (tmp_path / "settings.json").read_text() == "{}\n" and mine.read_text() == "user content\n"
    assert not (tmp_path / "settings.json").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == [
        "mine.txt", "settings.json"]
