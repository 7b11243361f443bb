"""One interface over the ways a user can hand a video to a pipeline.

A ``FrameSource`` knows its length and frame size and yields the clip in order as float
tensors (k, 3, h, w) in [0, 1], a few frames at a time, as many passes as needed. Files are
decoded again on each pass (PyAV streaming), so a long video never sits in memory whole.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch

from .errors import CorruptVideoError, InputError, check_whole_number, option
from .units import count_of
from .user_warnings import warn_user

VideoInput = Union[str, Path, torch.Tensor, np.ndarray, Sequence]


#: How far outside [0, 1] float frames may stray (resampling overshoot) before they are refused.
VALUE_TOLERANCE = 0.05


def check_unit_range(frames: torch.Tensor, what: str = "video tensors") -> None:
    """Raise ``InputError`` unless ``frames`` is a floating-point tensor with finite values in
    [0, 1] (give or take ``VALUE_TOLERANCE``): 0..255 values, integer types and NaN are refused,
    not turned into a white or broken video."""
    if not frames.is_floating_point():
        hint = {torch.uint8: "divide uint8 frames by 255", torch.uint16: "divide uint16 frames by 65535"}.get(
            frames.dtype, "convert them to float in [0, 1]")
        raise InputError(f"{what} must be float in [0, 1], got {frames.dtype}; {hint}")
    if frames.numel() == 0:
        return
    # (no float32 copy of a half video; one device-to-host transfer for both, as on every training step)
    low, high = torch.stack(tuple(frames.detach().aminmax())).float().tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{what} hold NaN or infinite values")
    if low < -VALUE_TOLERANCE or high > 1 + VALUE_TOLERANCE:
        hint = ("; they look like 16-bit values: divide by 65535" if high > 256 else
                "; they look like 0..255 values: divide by 255" if high > 2 else "")
        raise InputError(f"{what} must have values in [0, 1], got {low:.3g} to {high:.3g}{hint}")


def _to_tensor(frame: object, mode_i_16bit: bool = False) -> torch.Tensor:
    """One frame (PIL image, uint8 or uint16 (h, w, 3) array (grey: (h, w) or (h, w, 1)), or float (3, h, w) tensor)
    -> float (3, h, w); ``mode_i_16bit``: a PIL image of mode "I" is 16-bit (`_pil_as_array`)."""
    if isinstance(frame, torch.Tensor):
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise InputError(f"tensor frames must be (3, h, w), got {tuple(frame.shape)}")
        check_unit_range(frame, "tensor frames")
        return frame.float()
    if isinstance(frame, PIL.Image.Image):
        frame = _pil_as_array(frame, mode_i_16bit)
    if not hasattr(frame, "__array__"):  # None, a path...: not a frame (arrays and array-likes have it)
        raise InputError(f"each frame of a list must be a PIL image, a numpy array or a tensor, got "
                         f"{type(frame).__name__} (a video file or frame folder is passed as one path, not a list)")
    array = np.asarray(frame)  # PIL images give read-only views: converted by copies below, not shared
    if not array.dtype.isnative:  # big-endian ('>u2' from FITS or np.frombuffer): torch takes only native order
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 3 and array.shape[-1] == 1:  # grey (h, w, 1), as (h, w)
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise InputError(f"image frames must be (h, w, 3) RGB, got an array of shape {array.shape}")
    if array.shape[-1] == 4:
        warn_user("the alpha channel of an RGBA frame is dropped (frames are RGB; composite it onto a "
                  "background first to choose one)")
    array = array[..., :3]
    if array.dtype in (np.uint8, np.uint16):  # 8- and 16-bit images: their whole range is [0, 1]
        return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) / float(np.iinfo(array.dtype).max)
    if array.dtype.kind not in "biufc":  # objects, strings, dates: torch's own TypeError listed its dtypes
        raise InputError(f"image frames must hold numbers (uint8, uint16, or float in [0, 1]), got an array of "
                         f"numpy dtype {array.dtype}")
    frame_tensor = torch.from_numpy(np.array(array)).permute(2, 0, 1)
    check_unit_range(frame_tensor, "image frames that are not uint8 or uint16")
    return frame_tensor.float()


def _pil_as_array(image: PIL.Image.Image, mode_i_16bit: bool = False) -> np.ndarray:
    """A PIL image as (h, w, 3) uint8 RGB or, for 16-bit grey (mode "I;16", "I"), (h, w) float in [0, 1].

    Palette ("P"), CMYK, YCbCr, LAB, HSV and grey-with-alpha images are converted to RGB by PIL; read as
    arrays they would be palette indices or other colour spaces. An alpha channel is dropped with a warning.
    Float grey (mode "F") is taken as it is, so it must hold values in [0, 1] like float arrays (PIL's RGB
    conversion would clip it to 0..255 and turn [0, 1] into black). Mode "I" stores no bit depth: it is
    read as 16-bit with ``mode_i_16bit`` or when a value exceeds 255, else as 8-bit (``ListFrameSource``
    decides once for a whole video: a dark frame of a 16-bit fade read as 8-bit flashed 257 times too bright).
    """
    if image.mode == "F":
        return np.asarray(image)
    if image.mode.startswith("I"):  # 16/32-bit integer grey: PIL's RGB conversion clips it to 0..255
        values = np.asarray(image).astype(np.float32)
        deep = mode_i_16bit or image.mode.startswith("I;16") or values.max() > 255
        return values / (65535.0 if deep else 255.0)
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        warn_user(f"the transparency of a frame in PIL mode {image.mode} is dropped (frames are RGB; "
                  "composite it onto a background first to choose one)")
    return np.asarray(image if image.mode in ("RGB", "L") else image.convert("RGB"))


class FrameSource(ABC):
    """A clip of ``num_frames`` RGB frames of ``height`` x ``width``, readable chunk by chunk."""

    num_frames: int
    height: int
    width: int

    @abstractmethod
    def iter_chunks(self, chunk_size: int) -> Iterator[torch.Tensor]:
        """Yield consecutive (k, 3, h, w) float32 tensors in [0, 1], k <= chunk_size."""


class TensorFrameSource(FrameSource):
    """Frames already in memory: a (n, 3, h, w) float tensor in [0, 1]."""

    def __init__(self, frames: torch.Tensor) -> None:
        given = tuple(frames.shape)  # as the caller passed it, for the message
        if frames.ndim == 5 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 4 or frames.shape[1] != 3:
            # diffusers' video layout (batch, channels, frames, h, w), or (3, frames, h, w): the axes to swap
            # (the message quoted the shape without its batch axis, which the caller never passed)
            swap = (f"; channels come before frames here (diffusers' (batch, channels, frames, h, w) layout): pass "
                    f"video.transpose({len(given) - 4}, {len(given) - 3})"
                    if frames.ndim == 4 and frames.shape[0] == 3 and (len(given) == 5 or frames.shape[1] != 1)
                    else "")  # ((3, 1, h, w): 3 grey frames as likely as 1 frame of 3 channels)
            raise InputError(f"video tensors must be (frames, 3, h, w) or (1, frames, 3, h, w) with values in "
                             f"[0, 1]; got shape {given}{swap}")
        if frames.shape[0] == 0:
            raise InputError("the video has no frames")
        _check_frame_size(frames.shape[-2], frames.shape[-1])
        check_unit_range(frames)
        self.frames = frames
        self.num_frames, _, self.height, self.width = frames.shape

    def iter_chunks(self, chunk_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, self.num_frames, chunk_size):
            # in the usual memory layout: a permuted (n, h, w, 3) tensor took other convolution kernels, whose
            # rounding differs (a diffusion model's output moved by 1e-5)
            yield self.frames[start:start + chunk_size].float().cpu().contiguous()


class ListFrameSource(FrameSource):
    """A list of PIL images, uint8 (h, w, 3) arrays or (3, h, w) float tensors."""

    def __init__(self, frames: Sequence) -> None:
        if len(frames) == 0:
            raise InputError("the video has no frames")
        self.frames = frames
        # mode "I" frames (no bit depth stored) are 16-bit when any of them holds a value above 255
        self._mode_i_16bit = any(isinstance(f, PIL.Image.Image) and f.mode == "I" and np.asarray(f).max() > 255
                                 for f in frames)
        self._first = _to_tensor(frames[0], self._mode_i_16bit)  # (converted once: a conversion may warn)
        self.num_frames, (_, self.height, self.width) = len(frames), self._first.shape
        _check_frame_size(self.height, self.width)

    def iter_chunks(self, chunk_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, self.num_frames, chunk_size):
            chunk = [self._first if start + i == 0 else _to_tensor(f, self._mode_i_16bit)
                     for i, f in enumerate(self.frames[start:start + chunk_size])]
            if any(c.shape != chunk[0].shape for c in chunk) or chunk[0].shape[1:] != (self.height, self.width):
                sizes = sorted({f"{c.shape[-1]}x{c.shape[-2]}" for c in chunk} | {f"{self.width}x{self.height}"})
                raise InputError(f"all frames of a video must have the same size, got {', '.join(sizes)}")
            yield torch.stack(chunk)


class FileFrameSource(FrameSource):
    """A video file or image folder, decoded again on every pass (see ``star_vsr.io``).

    ``deinterlace`` as ``star_vsr.io.open_video``'s; the default, "auto", deinterlaces video flagged
    interlaced, whose woven fields a super-resolution model would sharpen into combs. ``folder_fps``: the
    frame rate of an image folder, which stores none (None: ``star_vsr.io.probe.DEFAULT_FOLDER_FPS``); a
    video file keeps its own, and giving one for a file is an ``InputError``. ``max_frames``: only the first
    ``max_frames`` frames (a preview; None or more than there are: all).
    """

    def __init__(self, path: Union[str, Path], deinterlace: Union[bool, str] = "auto",
                 folder_fps: Optional[Union[float, Fraction]] = None, max_frames: Optional[int] = None) -> None:
        from .io import probe_video
        from .io.probe import DEFAULT_FOLDER_FPS

        if deinterlace not in (True, False, "auto"):
            raise InputError(f"deinterlace must be True, False or 'auto', got {deinterlace!r}")
        if max_frames is not None:  # (NumPy's integers too)
            check_whole_number("max_frames", max_frames, 1)
            max_frames = int(max_frames)
        self.path, self.max_frames = Path(path), max_frames
        self.folder_fps = DEFAULT_FOLDER_FPS if folder_fps is None else folder_fps
        self.info = info = probe_video(self.path, folder_fps=self.folder_fps)
        if folder_fps is not None and not info.is_image_folder:
            what = ("a single image, upscaled as one frame (a frame rate changes nothing there)" if info.is_photo
                    else f"a video file with its own ({info.fps:.6g} fps)")
            raise InputError(f"a frame rate ({option('folder_fps', '--fps')}) is for a folder of frames, which stores "
                             f"none; {self.path} is {what}")
        self.deinterlace = deinterlace
        self.deinterlaced = not info.is_image_folder and (
            deinterlace is True or (deinterlace == "auto" and info.interlaced))
        self.num_frames = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
        self.height, self.width = info.height, info.width
        if info.damage:  # found before any work, not after upscaling every frame that is there
            raise CorruptVideoError(info.damage)
        if self.num_frames < 1:
            raise InputError(f"{self.path}: the video has no frames")

    def iter_chunks(self, chunk_size: int) -> Iterator[torch.Tensor]:
        from .io import open_video

        left = self.max_frames  # None: every frame the decoder gives
        with open_video(self.path, deinterlace=self.deinterlace, folder_fps=self.folder_fps) as reader:
            for chunk in reader.iter_chunks(chunk_size if left is None else min(chunk_size, left)):  # (k, h, w, 3)
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                # contiguous, as the other sources give them (other convolution kernels, other rounding)
                yield torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous().float() / 255.0
                if left == 0:
                    return


def _check_frame_size(height: int, width: int) -> None:
    """``InputError`` for frames without pixels (a frame of 0 rows or columns)."""
    if height < 1 or width < 1:
        raise InputError(f"the frames are {width}x{height}: a frame needs at least one pixel in each direction")


def as_frame_source(video: Union[VideoInput, FrameSource]) -> FrameSource:
    """Wrap a path, tensor, array or list of frames as a ``FrameSource``."""
    if isinstance(video, FrameSource):
        return video
    if isinstance(video, (bytes, bytearray)):
        raise InputError("a path must be a str or pathlib.Path, not bytes (use os.fsdecode)")
    if isinstance(video, (str, os.PathLike)):
        if not os.fspath(video):
            raise InputError("the video path is empty")
        return FileFrameSource(video)
    if isinstance(video, torch.Tensor):
        return TensorFrameSource(video)
    if isinstance(video, np.ndarray):
        if video.ndim == 4 and video.shape[-1] in (1, 3, 4):  # (n, h, w, 3) RGB, (n, h, w, 4) RGBA, (n, h, w, 1)
            return ListFrameSource(list(video))
        raise InputError(f"numpy videos must be (frames, h, w, 3) (grey: (frames, h, w, 1); one frame: frame[None]), "
                         f"got shape {video.shape}")
    if isinstance(video, Sequence):
        return ListFrameSource(video)
    raise InputError(f"unsupported video input {type(video).__name__}: pass a path, a (frames, 3, h, w) tensor "
                     f"in [0, 1], a (frames, h, w, 3) uint8 array or a list of frames")


class SequentialFrames:
    """Hands out consecutive frames of a source on demand: ``take(k)`` returns the next k frames.

    Used for the passes over the input that follow the denoising front (hint encoding, colour
    correction) without holding the clip in memory; ``start`` skips the frames before it (a resumed run).
    """

    def __init__(self, source: FrameSource, chunk_size: int = 8, start: int = 0) -> None:
        self._chunks = skip_frames(source.iter_chunks(chunk_size), start)  # frames before `start`: decoded, dropped
        self._buffer: Optional[torch.Tensor] = None
        self.position = start

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` frames (count, 3, h, w); raises InputError if the source runs out."""
        parts, have = [], 0
        while have < count:
            if self._buffer is None or len(self._buffer) == 0:
                try:
                    self._buffer = next(self._chunks)
                except StopIteration:
                    raise InputError(f"the video ended after {count_of(self.position + have, 'frame')}, fewer than its "
                                     f"header promised") from None
            part, self._buffer = self._buffer[:count - have], self._buffer[count - have:]
            parts.append(part)
            have += len(part)
        self.position += count
        return torch.cat(parts)


def skip_frames(chunks: Iterator[torch.Tensor], count: int) -> Iterator[torch.Tensor]:
    """``chunks`` (k, 3, h, w) without their first ``count`` frames (decoded and dropped: exact for any codec,
    where seeking lands on key frames)."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(k, 3, H, W) float frames in [0, 1] -> (k, H, W, 3) uint8 RGB, rounded and clamped, as written to video.

    Converted one frame at a time into a preallocated uint8 array: no (k, H, W, 3) float copy, and each
    frame stays in cache through the scale, round and clamp (~2.5x faster than whole-chunk ops on 720p).
    """
    frames = frames.detach().float().cpu()
    k, _, h, w = frames.shape
    out = torch.empty(k, h, w, 3, dtype=torch.uint8)
    for i in range(k):
        out[i] = frames[i].mul(255).round_().clamp_(0, 255).permute(1, 2, 0)
    return out.numpy()


def frames_to_output(chunks: list[torch.Tensor], output_type: str) -> Any:
    """Collected (k, 3, H, W) float chunks in [0, 1] -> a pipeline's ``frames`` with a batch dimension of 1:
    ``"pt"`` a (1, n, 3, H, W) tensor, ``"np"`` a (1, n, H, W, 3) float array, ``"pil"`` ``[[PIL.Image, ...]]``."""
    video = torch.cat(chunks)[None].contiguous()  # (1, n, 3, H, W)
    if output_type == "pt":
        return video
    if output_type == "np":
        return video.permute(0, 1, 3, 4, 2).numpy()  # (1, n, H, W, 3)
    return [[PIL.Image.fromarray(frame) for frame in frames_to_uint8(video[0])]]
