"""Exceptions raised by star-vsr for problems the user can fix.

Every message says what was wrong and what to do about it. The CLI prints these without a
traceback; anything else that escapes is a bug.
"""

from __future__ import annotations


class StarVSRError(Exception):
    """Base class for errors whose message is meant for the user."""


class InputError(StarVSRError, ValueError):
    """A bad argument or input: wrong shape, unsupported scale, invalid option."""


class VideoNotFoundError(StarVSRError, FileNotFoundError):
    """An input video, image folder or file does not exist."""


class CorruptVideoError(StarVSRError, ValueError):
    """A file exists but cannot be decoded (truncated, not a video, broken stream)."""


class UnsupportedVideoError(StarVSRError, ValueError):
    """A video uses a codec, container or pixel format that star-vsr cannot handle."""


class MissingWeightsError(StarVSRError, FileNotFoundError):
    """Model weights are not on disk. The message says what to download and where to put it."""


class DeviceError(StarVSRError, RuntimeError):
    """A GPU-only option was requested where no GPU is available, or the device ran out of memory."""


class OutputError(StarVSRError, OSError):
    """An output cannot be written: a read-only or full disk, no permission, a file where a folder must be."""
