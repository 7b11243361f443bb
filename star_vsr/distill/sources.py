"""Clips to run a teacher over: a folder of LR videos (optionally with ground truth) as a sequence of clips.

Items are dicts ``{"lq": (n, 3, h, w), "gt": (n, 3, H, W) (with a ground-truth folder),
"caption": "", "name": "video.mp4:start"}`` of float tensors in [0, 1], the input format of
:func:`star_vsr.distill.cache.build_teacher_cache`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..data.video_clips import read_caption_file
from ..degradations.frames import frames_to_clip
from ..errors import CorruptVideoError, InputError, UnsupportedVideoError, listed, option, why_missing
from ..io import VIDEO_EXTENSIONS, open_video, probe_video, read_frames
from ..units import count_of
from ..io.folders import clips_by_name, is_frame_folder, other_subfolders, other_subfolders_note, stray_images_note


MIN_LR_SIDE = 2
"""The smallest side of an LR frame a teacher upscales (a StarVSR pipeline refuses 1-pixel frames)."""


class VideoFolderClips:
    """The videos and frame folders of ``folder`` cut into consecutive windows of ``num_frames`` frames.

    A video shorter than ``num_frames`` gives one clip of its own length; the frames after the
    last whole window of a longer video are left out.

    Parameters:
        folder: folder of LR videos (files with :data:`VIDEO_EXTENSIONS`) and/or frame folders.
        num_frames: frames per clip; None for whole videos.
        gt_folder: folder holding, under the same names (a video's without its suffix), the HR ground truth
            of every video (same frame count, ``scale`` times the size).
        scale: HR / LR size ratio checked against the ground truth.
        besides: folders that may sit inside ``folder`` and are no clips (the cache being written); with
            ``gt_folder``, left out of ``notes()`` without a word.
    """

    def __init__(self, folder: Union[str, Path], num_frames: Optional[int] = None,
                 gt_folder: Union[str, Path, None] = None, scale: int = 4,
                 besides: Sequence[Union[str, Path]] = ()) -> None:
        self.folder = Path(folder)
        if not self.folder.exists():  # (was "is not a folder of videos" too)
            raise InputError(f"{self.folder} {why_missing(self.folder)}; it should be a folder of videos or frame "
                             f"folders")
        if not self.folder.is_dir():
            raise InputError(f"{self.folder} is not a folder of videos or frame folders")
        if num_frames is not None and num_frames < 1:
            raise InputError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames, self.scale = num_frames, scale
        # hidden folders and folders without frames are not clips; a clip's name is its file's stem or folder's name
        data, gt = option("folder", "--data"), option("gt_folder", "--gt")  # as the caller named them
        clips = clips_by_name(self.folder, data)
        if not clips and is_frame_folder(self.folder):  # (it said "no videos or frame folders in" it)
            raise InputError(f"{self.folder} is a frame folder, one clip; {data} takes the folder that holds clips "
                             f"({self.folder.parent})")
        if not clips:
            raise InputError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) or frame folders in {self.folder}")
        videos = list(clips.values())
        self.gt_folder = Path(gt_folder) if gt_folder is not None else None
        known = [*besides, *([self.gt_folder] if self.gt_folder is not None else [])]  # not left-out clips
        others = other_subfolders(self.folder, videos, besides=known)
        self._folder_notes = [note for note in (stray_images_note(self.folder),
                                                other_subfolders_note(self.folder, others))
                              if note]  # pictures and subfolders of videos beside the clips: left out, said so
        self.gt: dict[Path, Path] = {}  # LR clip -> its ground truth, the clip of the same name in gt_folder
        if self.gt_folder is not None:
            if not self.gt_folder.is_dir():
                raise InputError(f"{gt} {self.gt_folder} is not a folder of ground-truth clips")
            gt_clips = clips_by_name(self.gt_folder, gt, needed=clips)
            if not gt_clips and is_frame_folder(self.gt_folder):  # (it said "no ground truth in" it)
                raise InputError(f"{gt} {self.gt_folder} is a frame folder, one clip; {gt} takes the folder that "
                                 f"holds the ground-truth clips ({self.gt_folder.parent})")
            missing = [video.name for name, video in clips.items() if name not in gt_clips]
            if missing:
                raise InputError(f"no ground truth in {self.gt_folder} for {len(missing)} of the {len(clips)} clips "
                                 f"in {self.folder}: {', '.join(missing)} (clips are paired by name: a video's "
                                 f"without its suffix, a frame folder's)")
            self.gt = {video: gt_clips[name] for name, video in clips.items()}
        # a clip's caption, for a teacher that takes a prompt (clip.txt beside clip.mp4, as train_star.py reads it:
        # every clip was cached with the teacher's default prompt, its caption unread; black-box hunt)
        self.captions = {video: read_caption_file(video) for video in videos}
        self.windows: list[tuple[Path, int, int]] = []  # (video, start, stop)
        self.short: list[tuple[str, int]] = []  # (name, frames) of the videos shorter than num_frames
        self.frames_left_out = 0  # frames after the last whole window, summed over the videos
        tiny = []  # (a 1-pixel-wide clip failed the diffusion teacher hours in, after the shards before it)
        for video in videos:
            info = probe_video(video)
            if min(info.width, info.height) < MIN_LR_SIDE:
                tiny.append(f"{video.name} ({info.width}x{info.height})")
            self._check_gt(video, info)
            length = info.num_frames if num_frames is None else min(num_frames, info.num_frames)
            if length < (num_frames or 0):
                self.short.append((video.name, info.num_frames))
            for start in range(0, info.num_frames - length + 1, length):
                self.windows.append((video, start, start + length))
            self.frames_left_out += info.num_frames % length
        if tiny:
            many = len(tiny) != 1
            raise InputError(f"{len(tiny)} clip{'s' * many} in {self.folder} {'have' if many else 'has'} "
                             f"frames under {MIN_LR_SIDE} pixels a side, too small to upscale: {', '.join(tiny[:5])}"
                             f"{f' and {len(tiny) - 5} more' if len(tiny) > 5 else ''}; remove "
                             f"{'them' if many else 'it'}")

    def notes(self) -> list[str]:
        """What was left out of ``folder`` (pictures beside the clips, subfolders without frames) and what the cut
        into windows changed (shorter clips, frames after the last window): one line each."""
        parts = list(self._folder_notes)
        if self.short:
            short = listed([f"{name} ({frames} frame{'s' * (frames != 1)})" for name, frames in self.short])
            limit = option(f"num_frames={self.num_frames}", f"--num-frames {self.num_frames}")
            one = len(self.short) == 1  # (frame folders too: not "videos"; "gives one shorter clip each" of one)
            parts.append(f"{len(self.short)} of the clips {'is' if one else 'are'} shorter than {limit} and "
                         f"give{'s one shorter clip' if one else ' one shorter clip each'}: {short}")
        if self.frames_left_out:
            parts.append(f"{self.frames_left_out} frame{'s' * (self.frames_left_out != 1)} after the last whole "
                         f"{self.num_frames}-frame window of each video {'are' if self.frames_left_out != 1 else 'is'} "
                         "left out (counted over the videos)")
        return parts

    def _check_gt(self, video: Path, info: Any) -> None:
        if self.gt_folder is None:
            return
        gt = self.gt[video]
        gt_info = probe_video(gt)
        expected = (info.num_frames, info.height * self.scale, info.width * self.scale)
        if (gt_info.num_frames, gt_info.height, gt_info.width) != expected:
            raise InputError(f"ground truth {gt} has {count_of(gt_info.num_frames, 'frame')} of "
                             f"{gt_info.width}x{gt_info.height}; "
                             f"expected {count_of(expected[0], 'frame')} of {expected[2]}x{expected[1]} (x{self.scale} "
                             f"of {video})")

    def undecodable(self, progress: bool = False, indices: Optional[Sequence[int]] = None) -> list[str]:
        """Why each clip file (and its ground truth) that cannot be decoded up to its last window's last frame
        cannot, one message per file; empty when all decode. ``indices``: only the files of these windows (those a
        resumed build has still to compute).

        The index ``probe_video`` reads does not show damage inside the data (a run of zeroed bytes in an MP4),
        which a teacher run met hours in, after the shards before it were written under a fingerprint of the
        files, so that a repaired file made the cache one of other clips. Decoding costs a few percent of what
        even the student teacher spends on a clip (320x180 H.264: about 330 frames/s decoded, 6 upscaled x4).
        """
        from tqdm.auto import tqdm

        from ..progress import bar_options

        needed: dict[Path, int] = {}  # file -> frames its windows read
        for video, _, stop in self.windows if indices is None else [self.windows[index] for index in indices]:
            for path in (video, self.gt.get(video)):
                if path is not None:
                    needed[path] = max(needed.get(path, 0), stop)
        problems = []
        for path, frames in tqdm(needed.items(), desc="checking clips", unit="file", disable=not progress,
                                 **bar_options()):
            try:
                with open_video(path) as reader:
                    count = 0
                    for _ in reader:
                        count += 1
                        if count == frames:
                            break
                if count < frames:
                    problems.append(f"{path} ends after {count} of its {frames} frames")
            except (CorruptVideoError, UnsupportedVideoError) as error:
                problems.append(str(error))
        return problems

    def describe(self) -> dict[str, Any]:
        """JSON description for a cache manifest; ``"files"`` fingerprints the clips' files (names, bytes, latest
        change: ``input_fingerprint``, as ``star-vsr upscale``'s resume does), so that a cache is not resumed over
        videos replaced under the same names, and ``"frames"`` (frame folders only) each frame file's name, size and
        time, so that frames swapped by renaming them are noticed too (a rerun mixed old and new clips)."""
        from ..fingerprints import folder_files_fingerprint, input_fingerprint
        from ..io.folders import list_image_files

        digest, frames, folders = hashlib.sha256(), hashlib.sha256(), False
        for video in dict.fromkeys(video for video, _, _ in self.windows):
            for path in (video, self.gt.get(video)):
                if path is not None:
                    digest.update(json.dumps([path.name, *input_fingerprint(path)]).encode())
                    if path.is_dir():  # (frames swapped by renaming keep the sizes, count and latest time)
                        frames.update(folder_files_fingerprint(list_image_files(path)).encode())
                        folders = True
        description = {"kind": "video_folder", "folder": str(self.folder.resolve()), "num_frames": self.num_frames,
                       "gt_folder": str(self.gt_folder.resolve()) if self.gt_folder else None,
                       "clips": len(self.windows), "files": digest.hexdigest()[:16]}
        if folders:  # (a key only clips or ground truth in frame folders have: caches of videos as before)
            description["frames"] = frames.hexdigest()[:16]
        captions = {video.name: caption for video, caption in self.captions.items() if caption is not None}
        if captions:  # (likewise: a cache of clips without captions is described as before)
            description["captions"] = hashlib.sha256(json.dumps(captions, sort_keys=True).encode()).hexdigest()[:16]
        return description

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video, start, stop = self.windows[index]
        indices = list(range(start, stop))
        item: dict[str, Any] = {"lq": frames_to_clip(read_frames(video, indices)),
                                "caption": self.captions[video] or "",  # ("": the teacher's default prompt)
                                "name": f"{video.name}:{start}"}
        if self.gt_folder is not None:
            item["gt"] = frames_to_clip(read_frames(self.gt[video], indices))
        return item
