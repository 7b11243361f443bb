"""``star-vsr info VIDEO``: frames, fps, size, codec and audio of a video, decoding at most its first frames.

A file cut short after its index (an MP4 whose download stopped) is reported as damaged ("damage" row), from
the index's byte offsets against the file's size; its exit status is then 1. A folder of frames has each
image's structure checked (PIL's verify, no decoding) and its size compared with the first frame's. A folder
of clips (videos and frame folders, as REDS4 / Vid4 lay them out) gets one line per clip; an unreadable or
damaged clip makes the exit status 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from .arguments import ParagraphsHelpFormatter, path_argument
from ..units import count_of, seconds_amount
from .columns import pad, text_width


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show frames, fps, size, codec, audio and damage of a video (or of "
                                                "each clip in a folder)",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("video", type=path_argument,
                        help="video file or image folder, or a folder of them (one line each)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import probe_video
    from ..io.folders import clip_collection
    from ..io.probe import VARIABLE_RATE_FRAMES, check_exists

    path = check_exists(args.video)
    clips = clip_collection(path)
    if clips:
        return _run_folder(path, clips, args.json)
    from ..io.audio import carries_audio

    info = probe_video(args.video)
    damage = _damage(info)
    aspect = info.pixel_aspect
    rows = {
        "path": str(info.path),
        "frames": _frames_row(info),
        "fps": "none (a photo)" if info.is_photo else f"{info.fps:.3f} ({info.frame_rate})" + (
            (" (assumed: a raw stream without timestamps or a rate)" if info.rate_assumed else
             " (a raw stream without timestamps: from its headers)") if info.raw_stream else
            " (images have no rate: upscale plays them at this one unless --fps says otherwise)"
            if info.is_image_folder else ""),
        "size": f"{info.width}x{info.height}",
        "orientation": info.orientation.describe() + ("" if info.orientation.is_identity else " (read upright)"),
        "pixel aspect": f"{aspect.numerator}:{aspect.denominator}"
                        + ("" if aspect == 1 else f" (shown as {round(info.width * aspect)}x{info.height})"),
        "scan": "interlaced (upscale and degrade deinterlace it)" if info.interlaced else "progressive",
        "timing": "constant frame rate" if info.timing_error_s <= VARIABLE_RATE_FRAMES / info.fps else
                  f"variable frame rate (frames up to {info.timing_error_s:.2f} s off a constant rate; outputs keep "
                  f"each frame's time)",
        "dynamic range": f"HDR ({info.hdr})" if info.hdr else "SDR" + (", BT.2020 (wide gamut) colours, which outputs "
                                                                       "do not keep" if info.wide_gamut else ""),
        "duration": "none (a photo)" if info.is_photo else seconds_amount(info.duration_s) + (
            f" (its header lists {seconds_amount(info.duration_s + info.missing_s)}: cut short, or a last frame held "
            f"longer?)" if info.missing_s else ""),
        "codec": "image sequence" if info.is_image_folder else info.codec + (
            f" (first of {info.video_streams} video tracks, which star-vsr reads)" if info.video_streams > 1 else ""),
        "pixel format": info.pix_fmt + (f" + alpha ({info.side_alpha_kind}), which is dropped"
                                        if info.side_alpha else "")
                        + (f"; colour profile {info.colour_profile}, read as sRGB (outputs carry none)"
                           if info.colour_profile else ""),
        "audio": (info.audio_codec + (f" (first of {info.audio_streams} tracks)" if info.audio_streams > 1 else "")
                  + (" (cut short: the end of the track is missing from the file)" if info.audio_cut else "")
                  + ("" if carries_audio(info.path) else " (an empty track: no sound, which outputs leave out)")
                  if info.has_audio else "none"),
        "damage": damage or ("none found (image headers checked, frames not decoded)" if info.is_image_folder else
                             f"{_maybe_cut(info)} (see duration)" if info.missing_s else
                             f"none found ({_what_was_checked(info.path)}, frames not decoded)"),
    }
    if args.json:
        print(json.dumps(_json_fields(info, damage), indent=2))
    else:
        width = max(map(len, rows))
        for key, value in rows.items():
            print(f"{key:>{width}}  {value}")
    return 1 if damage else 0


def _frames_row(info: Any) -> str:
    """The frames row of a video (``VideoInfo``): the count, and what is not read or missing."""
    row = f"{info.num_frames}"
    if info.pages > 1:
        row += (f" (the first of {info.pages} pages, read as a photo)" if info.is_photo else
                f" (the first page of each file: the first file has {info.pages})")
    elif info.undecodable_lead:
        row += (f" (and {info.undecodable_lead} before the first key frame, which cannot be decoded: it starts "
                f"inside a group of pictures)")
    return row + (f"; {info.numbering_gaps}" if info.missing_numbers else "")


def _damage(info: Any) -> Optional[str]:
    """What is damaged in the video ``info`` (``VideoInfo``) describes, as the damage row says it; None when nothing
    found is."""
    from ..io.probe import LAST_FRAME_CUT

    if info.last_frame_cut:  # (a Y4M: FFmpeg reads its whole frames, as upscale does, and leaves the part out)
        return f"the file {LAST_FRAME_CUT}; its {info.num_frames} whole frames are read"
    return info.damage or (frame_folder_damage(info.path) if info.is_image_folder else None)


def _maybe_cut(info: Any) -> str:
    """The damage column of a video whose frames end before its header's duration (``VideoInfo.missing_s``): cut
    short, or a last frame held longer, which the file cannot tell apart."""
    return f"maybe: its frames end {seconds_amount(info.missing_s)} before its header says"


def _json_fields(info: Any, damage: Optional[str]) -> dict[str, Any]:
    """What ``--json`` prints of a video (``VideoInfo``): alone, or as one clip of a folder."""
    return {
        # a photo has no rate or duration (the table says "none (a photo)"; it gave 30 and 1/30 s)
        "path": str(info.path), "num_frames": info.num_frames, "fps": None if info.is_photo else info.fps,
        "frame_rate": None if info.is_photo else str(info.frame_rate), "width": info.width, "height": info.height,
        "duration_s": None if info.is_photo else info.duration_s, "codec": info.codec, "pix_fmt": info.pix_fmt,
        "has_audio": info.has_audio, "audio_codec": info.audio_codec, "is_image_folder": info.is_image_folder,
        "is_photo": info.is_photo,
        "orientation": info.orientation.describe(), "pixel_aspect": str(info.pixel_aspect),
        "interlaced": info.interlaced, "timing_error_s": info.timing_error_s, "hdr": info.hdr,
        "missing_s": info.missing_s, "frames_cut": info.frames_cut, "video_streams": info.video_streams,
        "audio_streams": info.audio_streams, "audio_cut": info.audio_cut, "side_alpha": info.side_alpha,
        "pages": info.pages, "undecodable_lead": info.undecodable_lead, "raw_stream": info.raw_stream,
        "rate_assumed": info.rate_assumed, "last_frame_cut": info.last_frame_cut, "damage": damage,
        # what the table's damage column says of a file that may be cut short (its frames end before its header's
        # duration): "damage" was null beside it, and a script saw nothing (black-box hunt)
        "maybe_damage": _maybe_cut(info) if info.missing_s and not damage else None,
        "wide_gamut": info.wide_gamut, "colour_profile": info.colour_profile,
        "missing_numbers": [list(gap) for gap in info.missing_numbers],
    }


def _what_was_checked(path: Path) -> str:
    """What a probe of ``path`` checked for damage: the index against the file's size where the container has one
    (MP4 / MOV, Matroska's cues), else its headers alone (a cut Y4M or raw stream read "the index checked")."""
    from ..io.probe import find_video_stream, open_container

    with open_container(path) as container:
        indexed = bool(find_video_stream(container, path).index_entries)
    return "the index checked against the file's size" if indexed else "headers read, no index to check"


def frame_folder_damage(folder: Path) -> Optional[str]:
    """The first frame image of ``folder`` that cannot be read or has another size than the first once upright by
    its EXIF orientation, as frames are read (what stops an upscale of it half-way), from the image headers; None
    when all agree."""
    from PIL import Image, UnidentifiedImageError

    from ..io.folders import list_image_files
    from ..io.probe import MAX_FRAME_PIXELS, exif_orientation

    size = None
    for file in list_image_files(folder):
        try:
            with Image.open(file) as image:
                image.verify()  # the file's structure (a PNG's chunks and checksums), without decoding pixels
                stored = image.size
            upright = exif_orientation(file)  # (a phone's frame stored on its side was "damage")
            frame_size = stored if upright is None else upright.display_size(*stored)
        except (OSError, UnidentifiedImageError, SyntaxError):  # PIL reports a broken PNG chunk as SyntaxError
            return f"{file.name} is not a readable image"
        except Image.DecompressionBombError:  # (a traceback)
            return f"{file.name} has more pixels than star-vsr reads ({MAX_FRAME_PIXELS:,})"
        if size is not None and frame_size != size:
            return f"{file.name} is {frame_size[0]}x{frame_size[1]}, the first frame {size[0]}x{size[1]}"
        size = size or frame_size
    return None


def _run_folder(folder: Path, clips: list[Path], as_json: bool) -> int:
    """One line (or JSON object) per clip of ``folder``: frames, rate, size, codec, audio, colours (HDR and BT.2020,
    which outputs do not keep, as ``info VIDEO`` says: the table showed neither), damage."""
    from ..errors import StarVSRError, why_missing
    from ..io import probe_video
    from ..io.folders import broken_links, other_subfolders, other_subfolders_note, stray_images_note

    for note in (stray_images_note(folder), other_subfolders_note(folder, other_subfolders(folder, clips))):
        if note:  # beside JSON on standard output, not in it
            print(f"note: {note}", file=sys.stderr if as_json else sys.stdout)
    rows, objects, bad, frames = [], [], 0, 0  # table rows, JSON objects (a single video's, and the clip's name)
    for clip in clips:
        name = clip.name + ("/" if clip.is_dir() else "")
        try:
            info = probe_video(clip)
        except StarVSRError as error:  # unreadable: said on its line, the others still listed
            rows.append({"clip": name, "error": str(error)})
            objects.append({"clip": name, "path": str(clip), "error": str(error)})
            bad += 1
            continue
        damage = _damage(info)
        bad += bool(damage)
        colours = f"HDR ({info.hdr})" if info.hdr else "SDR, BT.2020" if info.wide_gamut else "SDR"
        # a frame folder's numbering gaps and a colour profile read as sRGB, which `info CLIP` shows: the table
        # showed neither (only its --json did)
        missing = f" ({count_of(info.missing_number_count, 'number')} missing)" if info.missing_numbers else ""
        frames += info.num_frames
        rows.append({"clip": name, "frames": f"{info.num_frames}{missing}",
                     "fps": f"{info.fps:.3f}", "size": f"{info.width}x{info.height}",
                     "codec": "image sequence" if info.is_image_folder else info.codec,
                     "audio": info.audio_codec if info.has_audio else "none",
                     "colours": colours + (f", {info.colour_profile} read as sRGB" if info.colour_profile else ""),
                     "damage": damage or (_maybe_cut(info) if info.missing_s else "none found")})
        objects.append({"clip": name, **_json_fields(info, damage)})
    for link in broken_links(folder):  # (left out without a word)
        error = f"it {why_missing(link)}"
        rows.append({"clip": link.name, "error": error})
        objects.append({"clip": link.name, "path": str(link), "error": error})
        bad += 1
    if as_json:
        print(json.dumps({"folder": str(folder), "clips": objects}, indent=2))
        return 1 if bad else 0
    columns = ("clip", "frames", "fps", "size", "codec", "audio", "colours", "damage")
    widths = {c: max(len(c), *(text_width(str(r.get(c, ""))) for r in rows)) for c in columns[:-1]}
    print("  ".join(pad(c, widths[c]) for c in columns[:-1]) + "  damage")
    for row in rows:
        if "error" in row:
            print(f"{pad(row['clip'], widths['clip'])}  unreadable: {row['error']}")
        else:
            print("  ".join(pad(str(row[c]), widths[c]) for c in columns[:-1]) + f"  {row['damage']}")
    print(f"{len(rows)} clip{'s' * (len(rows) != 1)}, {frames} frame{'s' * (frames != 1)}"
          + (f"; {bad} unreadable or damaged" if bad else ""))
    return 1 if bad else 0
