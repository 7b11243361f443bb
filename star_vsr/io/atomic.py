"""Atomic outputs: a file or folder is written under a hidden temporary name next to its final path and renamed
onto that path only once it is complete, so that after any error nothing appears under the final name and a file
already there is left untouched.

Temporary names carry the writer's machine and process (`temporary_path`), so that a later writer of the same path
removes those a killed run left behind (`remove_stale_temporaries`) and no others.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from star_vsr.errors import OutputExistsError, option


def is_real_folder(path: Path) -> bool:
    """Whether ``path`` is a folder itself, not a link to one (whose files a removal of "its" content deleted)."""
    return path.is_dir() and not path.is_symlink()


def remove_temporary(path: Path) -> None:
    """Delete a temporary file or folder if it exists (best effort: cleaning up after a failed
    write must not hide the error that made it fail, e.g. on a read-only disk); a link there, not what it
    points to. Also before a write to a fixed temporary name, which must not write through a link planted there."""
    if is_real_folder(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def parent_folders(path: Path) -> Iterator[None]:
    """Make the missing folders above ``path``; after the block, when nothing is at ``path`` (a write that failed or
    was stopped, a run that left no saved progress), remove those it made while they are empty, so that no empty
    folders are left as if something had been written."""
    made = missing_folders(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        if not (path.exists() or path.is_symlink()):
            remove_empty_folders(made)


def missing_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first: those a ``mkdir(parents=True)`` makes."""
    return [folder for folder in path.parents if not folder.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, as `missing_folders` lists them) while they are empty: those a command made
    for its outputs, when it wrote none."""
    for folder in folders:
        try:
            folder.rmdir()  # only while empty
        except OSError:
            break


#: The longest name most file systems take (ext4, XFS, Btrfs, APFS, NTFS: 255 bytes or UTF-16 units).
DEFAULT_NAME_MAX = 255

_PID_DIGITS = 7  # Linux's largest pid_max, 4194304


def temporary_path(path: Path) -> Path:
    """A hidden, unique name next to `path` to write it under until it is complete,
    ``.NAME.HOST-PID-TOKEN.tmp.SUFFIX``: the writer's machine and process, so that a later writer of
    `path` can tell (and first removes, `remove_stale_temporaries`) those of a killed run. NAME is `path`'s
    name, shortened where the whole would be too long a name (`_temporary_name`)."""
    name, suffix = _temporary_parts(path)
    remove_stale_temporaries(path.parent, name, suffix)
    return path.parent / f".{name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}"


def _temporary_parts(path: Path) -> tuple[str, str]:
    """(NAME, SUFFIX) of ``path``'s temporary names: ``_temporary_name(path)`` and its suffix, or, for a name that is
    this process's own temporary one (``.NAME.HOST-PID-TOKEN.tmp.SUFFIX``), those of the output it stands for.
    ``convert-star`` saves its pipeline into a temporary folder, and the save made its own temporary beside that
    one, ``..NAME.HOST-PID-TOKEN.tmp.HOST-PID-TOKEN.tmp.tmp``, which a killed run left for good: no rerun's clean-up
    (``remove_stale_temporaries`` of NAME) matched it."""
    match = _temporary_form(str(os.getpid())).fullmatch(path.name)
    return (match["name"], match["suffix"]) if match else (_temporary_name(path), path.suffix)


def _temporary_form(pid: str = r"\d+") -> re.Pattern[str]:
    """The temporary names ``.NAME.HOST-PID-TOKEN.tmp.SUFFIX`` of this machine's writers (``pid``: a pattern of the
    process ids), with NAME, PID and SUFFIX as the groups ``name``, ``pid`` and ``suffix``."""
    return re.compile(rf"\.(?P<name>.+)\.{re.escape(_host())}-(?P<pid>{pid})-[0-9a-f]{{8}}\.tmp(?P<suffix>.*)",
                      re.DOTALL)


def _temporary_name(path: Path) -> str:
    """`path`'s name as its temporary names carry it (`fitting_name` beside the longest rest of such a name: an
    output named with 240 bytes was upscaled to the end, then could not be written, at every rerun)."""
    return fitting_name(path, len(os.fsencode(f"..{_host()}-{'9' * _PID_DIGITS}-{'0' * 8}.tmp{path.suffix}")))


def fitting_name(path: Path, extra: int) -> str:
    """`path`'s name where a name made of it and ``extra`` more bytes must fit the limit on a name of its folder's
    file system: whole where it fits, else cut and followed by ``~`` and a hash of the whole name."""
    name = os.fsencode(path.name)
    limit = _name_max(path.parent)
    if len(name) + extra <= limit:
        return path.name
    digest = hashlib.sha256(name).hexdigest()[:8]
    keep = max(0, limit - extra - len(digest) - 1)
    return f"{name[:keep].decode(errors='ignore')}~{digest}"  # (a character cut in its middle is left out)


def name_too_long(path: Path) -> Optional[str]:
    """Why ``path`` cannot be made, its name being longer than its folder's file system takes (in words, for a
    batch's line on the input it skips), or None when it fits. An output named from a long input (``clip.ts``
    -> ``clip.mp4``, one byte more, or ``clip_ts.mp4`` beside ``clip.mp4``) failed every ``exists`` of it with
    "File name too long", and stopped a batch before any clip (black-box hunt)."""
    size, limit = len(os.fsencode(path.name)), _name_max(path.parent)
    if size <= limit:
        return None
    return (f"its output's name, {path.name[:40]}..., would be {size} bytes, over the {limit} that the file system "
            f"of {path.parent} takes; give the input a shorter name")


def _name_max(folder: Path) -> int:
    """The longest file name ``folder``'s file system takes (its nearest existing ancestor's), in bytes."""
    for ancestor in (folder, *folder.parents):
        if ancestor.is_dir():
            try:
                return int(os.pathconf(ancestor, "PC_NAME_MAX"))
            except (OSError, ValueError, AttributeError):  # off POSIX, or a file system that does not say
                return DEFAULT_NAME_MAX
    return DEFAULT_NAME_MAX


def remove_stale_temporaries(folder: Path, name: Optional[str] = None, suffix: str = "") -> list[Path]:
    """Remove the temporary files (or PNG folders) ``.NAME.HOST-PID-TOKEN.tmp.SUFFIX`` in ``folder`` that writers on
    this machine whose process has ended left behind (a SIGKILL or a power cut runs no clean-up); returns them.
    Only those of ``name`` and ``suffix`` where ``name`` is given (a writer of that output); of every name where it
    is not (a batch: a rerun with another ``--codec`` writes other names, and the temporary of a join a kill stopped,
    as large as the whole output, stayed for good: black-box hunt). Those of running processes, of other machines
    sharing the folder, and names of another form are left alone."""
    form = _temporary_form()
    try:
        entries = list(folder.iterdir())
    except OSError:  # a missing or unreadable folder holds nothing to remove
        return []
    stale = []
    for entry in entries:
        found = form.fullmatch(entry.name)
        if found is None or (name is not None and (found["name"], found["suffix"]) != (name, suffix)):
            continue
        if not _process_alive(int(found["pid"])):
            remove_temporary(entry)
            stale.append(entry)
    return stale


def _host() -> str:
    """This machine's name, as it may appear in a file name."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in socket.gethostname()) or "host"


def _process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (True where that cannot be asked safely: off POSIX,
    signal 0 would terminate it)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def move_into_place(temp: Path, path: Path, overwrite: bool = True) -> None:
    """Rename the complete output `temp` onto `path`. A folder there (empty, or an earlier output's frames:
    `check_png_folder`) gives way to a PNG folder: swapped with it in one step where the system can (Linux), then
    deleted, so that `path` holds the old frames or the new ones at every moment (elsewhere moved aside, replaced,
    then deleted).

    Without `overwrite`, `OutputExistsError` if anything is at `path` now: a file that appeared there while the
    output was being written (another run, another program) is kept, not replaced by this one; `temp` is left for
    the caller to remove."""
    if not overwrite:
        _move_without_replacing(temp, path)
        return
    keep_mode(temp, path)
    if temp.is_dir() and path.is_dir():
        if _exchange(temp, path):  # one step: path holds the new frames, temp the old ones
            _remove_folder(temp)
            return
        # two renames: a kill between them leaves no `path`, and the old frames under a temporary name of it
        # (they were `.NAME.replaced-TOKEN`, which nothing removed), which the next writer's clean-up removes
        old = temporary_path(path)
        os.replace(path, old)
        try:
            os.replace(temp, path)
        except BaseException:
            os.replace(old, path)
            raise
        _remove_folder(old)
        return
    os.replace(temp, path)


def _remove_folder(folder: Path) -> None:
    """Delete the replaced output ``folder`` (best effort). A read-only one (0555, whose mode the new one kept:
    `keep_mode`) is made writable first: its files could not be removed, and each --overwrite left one behind."""
    try:
        os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | stat.S_IRWXU)
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


def keep_mode(temp: Path, path: Path) -> None:
    """Give ``temp``, about to replace ``path``, the read, write and execute permissions of this user's file or
    folder at ``path`` (none there, a link, or another user's: left as the umask made them, since the new file is
    this user's, of this user's group, and the old one's group permissions would be given to another group). An
    output replaced with --overwrite took the umask's mode: a private (0600) video or JSON file became readable by
    everyone, where ``cp`` onto it keeps its mode (black-box hunt)."""
    try:
        old = path.lstat()
        if stat.S_ISLNK(old.st_mode) or old.st_uid != os.getuid() or stat.S_ISDIR(old.st_mode) != temp.is_dir():
            return
        os.chmod(temp, stat.S_IMODE(old.st_mode) & 0o777)
    except (OSError, AttributeError):  # nothing there; no user ids (Windows)
        pass


#: ``renameat2``'s "the directory file descriptor is the working directory" and "swap the two paths".
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux's ``renameat2`` with ``RENAME_EXCHANGE``); False where the
    system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc before 2.28, other C libraries)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):  # an old kernel, a file system without
        # it, a sandbox's syscall filter (seccomp denies with EPERM; a real permission problem shows in os.replace)
        return False
    raise OSError(error, os.strerror(error), str(b))


def check_no_replace(path: Path, overwrite: bool) -> None:
    """`OutputExistsError` if `path` exists and `overwrite` is False (a writer told not to replace it); a link to
    something that exists is refused either way (`star_vsr.outputs.check_not_a_link`)."""
    from star_vsr.outputs import check_not_a_link

    check_not_a_link(path)  # (the commands refused it; upscale_video(..., overwrite=True) replaced the link)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path} already exists; {option('pass overwrite=True', 'pass --overwrite')} to "
                                f"replace it")


def _move_without_replacing(temp: Path, path: Path) -> None:
    """`move_into_place` without `overwrite`: a hard link, which never replaces a file, where the file system
    has them; a folder by rename, which replaces only an empty folder."""
    appeared = OutputExistsError(f"{path} appeared while this run was writing it (made by another run or "
                                 f"program?); it was left as it is, and this run's output was not saved there: "
                                 f"{option('pass overwrite=True', 'pass --overwrite')} to replace it")
    if path.exists() or path.is_symlink():
        raise appeared
    if temp.is_dir():
        os.rename(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise appeared from None
    except OSError:  # no hard links here (FAT, some network file systems): the check above has to do
        os.replace(temp, path)
        return
    os.unlink(temp)
