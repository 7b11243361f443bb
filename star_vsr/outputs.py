"""Checks run on output paths before any work, so an unwritable output fails in a second, not
after an hour of upscaling; the lock that keeps two runs from writing one output; and the permissions of
saved safetensors files; the names of the files that describe a saved model (``MODEL_RECORDS``).

Nothing is created by the checks: the folders of an output are made only when it is written.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO, Union

from .errors import InputError, OutputBusyError, OutputError, cannot_write, is_link_loop, why_missing
from .units import count_of, share_of
from .json_files import loads_json


#: Output suffixes written as one image (PIL format names): a one-frame input, or ``max_frames=1``.
IMAGE_OUTPUTS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}

#: File of a training run's output folder holding the step its final model was saved at (``training_run``).
FINAL_STEP_FILE = "final_step.txt"
#: File of ``training/distill_student.py``'s output folder summarising the run that saved its model.
TRAINING_SUMMARY_FILE = "training_summary.json"
#: Folder of ``training/train_star.py``'s output folder holding the LoRA adapter fused into the saved UNet.
LORA_FOLDER = "unet_lora"
#: Files (and the adapter folder) beside a saved model that describe it: removed when a save starts replacing that
#: model's components, so that none describes the earlier model beside the new one's files (a run killed while
#: it saves).
MODEL_RECORDS = (FINAL_STEP_FILE, TRAINING_SUMMARY_FILE, LORA_FOLDER)
#: What a save replacing a pipeline renames its ``model_index.json`` to until the new components are in place: a
#: folder whose save was killed midway does not load, and still tells which folders are its components.
REPLACING_INDEX = ".model_index.json.replacing"


def saved_index(folder: Path) -> Optional[Path]:
    """The ``model_index.json`` of the pipeline saved in ``folder``, or the one a save that stopped midway left as
    ``REPLACING_INDEX``; None when there is neither."""
    for name in ("model_index.json", REPLACING_INDEX):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


PNG_NAME = "frame_{:06d}.png"
"""File name of frame i (from 0) in a PNG sequence star-vsr writes; past 999,999 frames, seven digits."""
_PNG_NAME_PATTERN = re.compile(r"frame_(\d{6,})\.png", re.ASCII)


def frame_files(folder: Path) -> list[Path]:
    """The PNG frames named `PNG_NAME` in ``folder``, in frame order (a user's ``frame_a.png`` is not one)."""
    numbered = []
    for entry in Path(folder).iterdir():
        match = _PNG_NAME_PATTERN.fullmatch(entry.name)
        if match:
            numbered.append((int(match.group(1)), entry))
    return [entry for _, entry in sorted(numbered)]


def is_frame_output(path: Path) -> bool:
    """Whether ``path`` is a folder holding only PNG frames as star-vsr names them (`PNG_NAME`): an earlier
    output, which a new one may replace; any other file in it is the user's, and it is not."""
    return path.is_dir() and all(entry.is_file() and _PNG_NAME_PATTERN.fullmatch(entry.name)
                                 for entry in path.iterdir())


def check_no_trailing_slash(path: Union[str, Path], hint: str) -> None:
    """``InputError`` for the name of a file to write given with a trailing '/' (``out.mp4/``), which means a
    folder, unless that folder exists: ``Path()`` drops the slash, and a file would be written instead."""
    if str(path).endswith(("/", os.sep)) and not Path(path).is_dir():
        raise InputError(f"{path} ends with '/', a folder, but names a file; drop the '/' to write "
                         f"{Path(path).name}, {hint}")


def check_video_output_name(path: Union[str, Path]) -> None:
    """``check_no_trailing_slash`` for an output named like a video or an image (``out.mp4/``); other names with
    a trailing '/' are folders of PNG frames. Names without a suffix are such folders too, so ``-`` (standard
    output to many tools) and a suffix alone (``.mp4``, a hidden name) are refused: either wrote a folder of PNG
    frames that the user did not ask for."""
    from .io import VIDEO_EXTENSIONS

    name = Path(path).name
    if name == "-":
        raise InputError("the output '-' would be a folder of PNG frames named '-': star-vsr writes files, not "
                         "standard output; name the output, e.g. out.mp4")
    if name.lower() in (*VIDEO_EXTENSIONS, *IMAGE_OUTPUTS):
        raise InputError(f"the output {path} is only a suffix, which names a hidden folder of PNG frames; name the "
                         f"file, e.g. {Path(path).with_name('out' + name)}")
    if Path(path).suffix.lower() in (*VIDEO_EXTENSIONS, *IMAGE_OUTPUTS):
        check_no_trailing_slash(path, "or name a folder without a suffix for PNG frames")


def check_output_folder_name(path: Union[str, Path], writes: str) -> None:
    """``InputError`` for the output folder ``-`` (standard output to many tools), which a batch command would make
    as a folder named '-' in the working folder, for a new one named like a video or image file (``-o out.mp4``
    made a folder ``out.mp4``; ``writes``: what the command puts in it, "the upscaled videos"), and for a link
    that loops or points to nothing."""
    if Path(path).name == "-":
        raise InputError("the output folder '-' would be a folder named '-': star-vsr writes files, not standard "
                         "output; name a folder, e.g. out/")
    from .io.folders import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    suffix = Path(path).suffix.lower()
    if not os.path.lexists(path) and (suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS):
        raise InputError(f"-o {path} is named like {'an image' if suffix in IMAGE_EXTENSIONS else 'a video'} file, "
                         f"but it is the folder this command writes {writes} into; name a folder, e.g. "
                         f"{Path(path).with_suffix('')}")

    if is_link_loop(path):  # (a RuntimeError traceback from Path.resolve() before Python 3.13)
        raise InputError(f"the output folder {path} is (or is inside) a link that points back to itself; name "
                         f"another folder")
    if Path(path).is_symlink() and not Path(path).exists():  # mkdir said "File exists"
        raise InputError(f"the output folder {path} {why_missing(path)}; make that folder, or name another")


def without_missing_parents(path: str) -> str:
    """``path`` with each ``NAME/..`` whose ``NAME`` does not exist taken out: where a writer that makes the missing
    folders first ends up writing (``new/../in.mp4`` is ``in.mp4``). The checks that an output is not the input and
    not there already must see that file, before the run makes ``new`` (they saw nothing there, and the input was
    overwritten). A ``..`` after something that exists is left to the system (after a link, it is not the link's
    folder)."""
    if ".." not in Path(path).parts:
        return path
    parts: list[str] = []
    for part in Path(path).parts:
        if part == ".." and parts and parts[-1] != ".." and not os.path.lexists(Path(*parts)):
            parts.pop()
        else:
            parts.append(part)
    collapsed = str(Path(*parts)) if parts else "."
    return collapsed + os.sep if path.endswith(os.sep) and collapsed != os.sep else collapsed  # ("out.mp4/": refused)


def check_not_a_link(path: Path) -> None:
    """``InputError`` if ``path`` is a link to something that exists: writing it (a temporary file renamed onto it)
    replaces the link and leaves what it points to as it was (``--json /dev/stdout --overwrite``, as root, made the
    system's /dev/stdout link a file). A link to nothing is replaced as any missing output."""
    if path.is_symlink() and path.exists():
        raise InputError(f"{path} is a link to {os.readlink(path)}: writing would replace the link, not what it "
                         f"points to; write to that file itself, or remove the link")


def check_new_output(path: Union[str, Path], overwrite: bool,
                     source: Union[str, Path, Sequence[Union[str, Path]], None] = None,
                     file_hint: Optional[str] = None) -> Path:
    """The checks of a command that writes ``path`` (from ``source``, one input or several, if it reads any):
    ``InputError`` if ``path`` exists and ``overwrite`` is False, or if it is an input itself (even with
    ``overwrite``: the input would be gone before it was read); then ``check_writable``.

    ``file_hint``: ``path`` is a file, never a folder; an existing folder is an ``InputError`` (with
    ``overwrite`` too) that ends with this hint, e.g. "name the file: -o out/student.onnx"."""
    if file_hint is not None:
        check_no_trailing_slash(path, f"or {file_hint}")
    path = Path(path)
    sources = [] if source is None else [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if path.exists() and any(Path(s).exists() and os.path.samefile(path, s) for s in sources):
        raise InputError(f"the output {path} is the input; write to another name")
    for folder in (Path(s) for s in sources if Path(s).is_dir()):  # a frame folder: its frames are the input
        if path.resolve().is_relative_to(folder.resolve()):
            raise InputError(f"the output {path} is inside the input folder {folder}; write it elsewhere")
    if file_hint is not None and path.is_dir():
        raise InputError(f"{path} is a folder; {file_hint}")
    if path.is_dir() and any(path.iterdir()) and not is_frame_output(path):  # a folder of the user's files: kept
        raise InputError(f"{path} is a folder that already holds files; write to a new or empty folder")
    check_not_a_link(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # --overwrite made /dev/null a regular file
        raise InputError(f"{path} is a device, pipe or socket, not a file this run can replace; write to a file")
    if (path.exists() or path.is_symlink()) and not overwrite:  # a dangling link too, which the final move refuses
        there = "" if path.exists() else f": it {why_missing(path)}"  # a dangling link: what it points to
        raise InputError(f"{path} already exists{there}; pass --overwrite to replace it")
    return check_writable(path)


def check_new_video_output(path: Union[str, Path], overwrite: bool, source: Union[str, Path],
                           made: str = "upscaled", codec: Optional[str] = None) -> Path:
    """``check_new_output`` for ``-o`` of a command that writes a video (or PNG frames, ``codec`` "png") made from
    ``source``.

    An existing folder is an output only for PNG frames, and only when empty and with ``overwrite``; otherwise
    the user most likely meant the video to go *into* it, so the ``InputError`` names such a file (the input's
    name, or ``<input>-<made>.mp4`` in the input's own folder)."""
    check_video_output_name(path)
    path, source = Path(path), Path(source)
    is_input = source.exists() and path.exists() and os.path.samefile(path, source)
    if path.is_file() and not path.suffix and not is_input and codec in (None, "png"):  # PNG frames' name: "already
        # exists; pass --overwrite", and then (with it) "is a file; a PNG sequence is written into a folder": advice
        # that led nowhere (black-box hunt). A video codec refuses the name itself, later.
        video = f", or a video file name (-o {path}.mp4)" if codec != "png" else ""  # (--codec png: a folder only)
        raise InputError(f"{path} is a file, and {'--codec png' if codec == 'png' else 'a name without a suffix'} "
                         f"writes PNG frames into a folder: give a folder path{video}")
    if path.is_dir() and not is_input:
        suggested = path / f"{source.stem}.mp4"
        if suggested.resolve() == source.resolve():  # `-o .` beside the input: not the input's own name
            suggested = path / f"{source.stem}-{made}.mp4"
        into = f"to write the video into it, name the file: -o {suggested}"
        if is_frame_output(path) and any(path.iterdir()):  # an earlier run's PNG frames: replaced on --overwrite
            return check_new_output(path, overwrite, source)
        if any(path.iterdir()):
            raise InputError(f"{path} is a folder that already holds files; {into} (PNG frames go to a new or empty "
                             f"folder)")
        if not overwrite:
            raise InputError(f"{path} is an existing folder; {into} (or pass --overwrite to write PNG frames into it)")
    return check_new_output(path, overwrite, source)


def write_text_atomic(path: Union[str, Path], text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: through a hidden temporary file beside it, renamed into
    place (removed if the write fails: an ``OutputError`` naming ``path``). Makes the missing folders above
    ``path``."""
    from .io.atomic import fitting_name, keep_mode, remove_temporary

    path = Path(path)
    temp = path.with_name(f".{fitting_name(path, len('..tmp'))}.tmp")  # (a name of 251 bytes or more: cut to fit)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_temporary(temp)  # (a link named like it had the file it pointed to written over: final review)
        temp.write_text(text, encoding="utf-8")
        keep_mode(temp, path)
        os.replace(temp, path)
    except OSError as error:  # a full disk: said with the file, as other outputs are
        raise cannot_write(path, error) from None
    finally:
        with suppress(OSError):  # (no folder to hold it: "Not a directory" over the error being raised)
            temp.unlink(missing_ok=True)


#: ``--json -``: the JSON goes to standard output (``star-vsr evaluate ... --json - | jq``); write ``./-`` for a file
#: named ``-``.
STDOUT = "-"


@contextmanager
def json_on_stdout(json_path: Optional[str]) -> Iterator[TextIO]:
    """Yield the stream a ``--json -`` command writes its JSON to: standard output, with everything else it prints
    (tables, notes) sent to standard error meanwhile, so that standard output holds the JSON alone. With any other
    ``--json`` (or none) nothing is redirected."""
    stream = sys.stdout
    if json_path != STDOUT:
        yield stream
        return
    with redirect_stdout(sys.stderr):
        yield stream


def check_json_output(json_path: Optional[str], overwrite: bool, source: Any, file_name: str) -> None:
    """The checks of a command's ``--json`` file before its work (``check_new_output``: an existing file needs
    ``--overwrite``, a video it reads, ``source``, is never replaced; a folder is named with ``file_name`` in it).
    Without a file to replace (no ``--json``, or ``--json -``), ``--overwrite`` is said to do nothing, not
    ignored without a word."""
    if json_path and json_path != STDOUT:
        check_new_output(json_path, overwrite, source=source,
                         file_hint=f"name the file to write: --json {Path(json_path) / file_name}")
    elif overwrite:
        where = "--json - writes to standard output" if json_path else "no --json file is written"
        print(f"note: --overwrite replaces an existing --json file, and {where}: it does nothing here",
              file=sys.stderr)


def write_json_output(json_path: str, text: str, stdout: TextIO) -> None:
    """Write the JSON ``text`` to the ``--json`` file (whole or not at all), or to ``stdout`` for ``--json -``."""
    text = text if text.endswith("\n") else text + "\n"  # a text file's last line ends like the others
    if json_path == STDOUT:
        stdout.write(text)
        stdout.flush()
    else:
        write_text_atomic(json_path, text)


def check_writable(path: Union[str, Path]) -> Path:
    """Raise ``OutputError`` unless a file (or folder) named ``path`` can be made.

    The nearest existing folder above ``path`` must be a folder (not a file) in which a scratch
    file can be created; the scratch file is deleted at once. Missing folders in between are
    fine: writers make them. Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {path}: {ancestor} is a file, not a folder")
    try:
        handle, scratch = tempfile.mkstemp(dir=ancestor, prefix=".star-vsr-write-check.")
        os.close(handle)
        os.unlink(scratch)
    except OSError as error:
        # "No such file or directory (/proc)" read as if /proc were missing: say what failed where
        raise OutputError(f"cannot write {path}: no file can be made in {ancestor} ({error.strerror or error})") \
            from None
    return path


#: ``flock`` errors of a file system without locks: the run goes on unlocked.
NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.ENOTSUP})


@contextmanager
def folder_lock(folder: Path, output: Path, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on the existing ``folder`` while this run writes ``output`` (the folder itself, or
    the file whose progress it holds); ``OutputBusyError`` if another run holds it, or with ``wait`` wait for it.
    The lock goes with the process (a killed run leaves none). Without ``fcntl`` (Windows), or on a file system
    that has no locks (some network and FUSE mounts), nothing is locked, as before the lock existed. Yields
    whether it locked."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            where = "" if Path(folder) == Path(output) else f" (its progress is in {folder})"
            raise OutputBusyError(f"another star-vsr run is writing {output}{where}; let it finish or stop it "
                                  f"first") from None
        except OSError as error:
            if error.errno not in NO_LOCK_ERRNOS:
                raise
            locked = False
        else:
            locked = True
        yield locked
    finally:
        os.close(handle)


def give_default_mode(path: Union[str, Path]) -> None:
    """Give the ``.safetensors`` file ``path``, or those in the folder tree ``path``, that are readable by
    their owner only (mode 0600) the mode any new file gets: ``0o666 & ~umask`` (``-rw-r--r--`` under
    umask 022).

    safetensors 0.8 writes through a temporary file, which is created with mode 0600, and renames it into
    place (safetensors issue #782), so saved models, checkpoints and caches were unreadable by other
    users, unlike the ``config.json`` beside them. Every writer of safetensors files in star-vsr calls
    this on what it has just saved. Files it may not change (another user's) are left as they are.
    """
    path = Path(path)
    files = [path] if path.is_file() else path.rglob("*.safetensors")
    mode = 0o666 & ~_umask()
    for file in files:
        try:
            if file.is_file() and file.stat().st_mode & 0o777 == 0o600:
                os.chmod(file, mode)
        except OSError:
            continue


def _umask() -> int:
    """The process umask: Linux reports it in /proc/self/status; elsewhere reading it means setting it for
    an instant (to the common 022, not to 0, in case another thread creates a file meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The manifest in an output's ``partial_folder`` (``star_vsr.resume``).
PROGRESS_MANIFEST = "progress.json"


def partial_folder(output_path: str | Path) -> Path:
    """The hidden folder next to ``output_path`` where an unfinished resumable run keeps its work, ``.NAME.partial``
    (NAME cut to fit, `fitting_name`: an output named with 247 to 255 bytes could not be written, and in a batch
    its folder's check ended the batch)."""
    from .io.atomic import fitting_name

    output = Path(output_path)
    return output.parent / f".{fitting_name(output, len('..partial'))}.partial"


def remove_finished_progress(output_path: str | Path) -> None:
    """Remove the progress folder of the existing output ``output_path`` when it holds nothing to go on from (no
    manifest: a finished run removes its manifest first, right after moving its output into place). A run killed
    while removing the folder left it, hidden, and a rerun said only that the output "already exists". Decided
    under this process's lock: not while another run holds it, nor where locks do not work (Windows, some network
    mounts)."""
    output, work = Path(output_path), partial_folder(output_path)
    if not output.exists() or not work.is_dir() or work.is_symlink():
        return
    try:
        with folder_lock(work, output) as locked:
            if locked and not (work / PROGRESS_MANIFEST).exists():  # (else saved work: of an --overwrite run)
                shutil.rmtree(work)
    except (OutputBusyError, OSError):  # another run's: left as it is
        pass


def saved_progress(output_path: str | Path) -> Optional[str]:
    """"120 frames are saved in DIR" of the saved progress of an output (``saved_work``), or None without any
    (or with a damaged manifest, which the run itself reports)."""
    work = partial_folder(output_path)
    saved = saved_work_in(work)
    return None if saved is None else f"{saved} saved in {work}"


def saved_work_in(work: Path) -> Optional[str]:
    """`saved_work` of the progress folder ``work``'s manifest, or None without one (or with a damaged one, which
    the run itself reports)."""
    try:
        return saved_work(loads_json((Path(work) / PROGRESS_MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError, LookupError, TypeError, ZeroDivisionError):
        return None


def saved_work(manifest: dict[str, Any]) -> str:
    """What a manifest holds, for the user: the frames written, and for a diffusion run the share of the model
    evaluations done (frames being denoised keep theirs)."""
    frames = count_of(manifest["frames"], "frame")
    if manifest.get("evaluations"):
        done, total = manifest["evaluations"]
        return f"{frames} and {share_of(done, total)} of the denoising ({done} of {total} window steps) are"
    return f"{frames} {'is' if manifest['frames'] == 1 else 'are'}"
