"""``star-vsr info VIDEO``: frames, fps, size, codec and audio of a video, without decoding it.

A file cut short after its index (an MP4 whose download stopped) is reported as damaged ("damage" row), from
the index's byte offsets against the file's size; its exit status is then 1."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show frames, fps, size, codec and audio of a video",
                                   description=__doc__)
    parser.add_argument("video", help="video file or image folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import probe_video

    info = probe_video(args.video)
    aspect = info.pixel_aspect
    rows = {
        "path": str(info.path),
        "frames": info.num_frames,
        "fps": f"{info.fps:.3f} ({info.frame_rate})",
        "size": f"{info.width}x{info.height}",
        "orientation": info.orientation.describe() + ("" if info.orientation.is_identity else " (read upright)"),
        "pixel aspect": f"{aspect.numerator}:{aspect.denominator}"
                        + ("" if aspect == 1 else f" (shown as {round(info.width * aspect)}x{info.height})"),
        "scan": "interlaced (upscale and degrade deinterlace it)" if info.interlaced else "progressive",
        "timing": "constant frame rate" if info.timing_error_s <= 1.5 / info.fps else
                  f"variable frame rate (frames up to {info.timing_error_s:.2f} s off a constant rate; outputs keep "
                  f"each frame's time)",
        "dynamic range": f"HDR ({info.hdr})" if info.hdr else "SDR",
        "duration": f"{info.duration_s:.2f} s" + (f" (its header lists {info.duration_s + info.missing_s:.2f} s: "
                                                  f"cut short, or a last frame held longer?)" if info.missing_s else ""),
        "codec": "image sequence" if info.is_image_folder else info.codec,
        "pixel format": info.pix_fmt,
        "audio": info.audio_codec if info.has_audio else "none",
        "damage": info.damage or ("n/a" if info.is_image_folder else "none found"),
    }
    if args.json:
        print(json.dumps({
            "path": str(info.path), "num_frames": info.num_frames, "fps": info.fps,
            "frame_rate": str(info.frame_rate), "width": info.width, "height": info.height,
            "duration_s": info.duration_s, "codec": info.codec, "pix_fmt": info.pix_fmt,
            "has_audio": info.has_audio, "audio_codec": info.audio_codec, "is_image_folder": info.is_image_folder,
            "orientation": info.orientation.describe(), "pixel_aspect": str(info.pixel_aspect),
            "interlaced": info.interlaced, "timing_error_s": info.timing_error_s, "hdr": info.hdr,
            "missing_s": info.missing_s, "frames_cut": info.frames_cut, "damage": info.damage,
        }, indent=2))
    else:
        width = max(map(len, rows))
        for key, value in rows.items():
            print(f"{key:>{width}}  {value}")
    return 1 if info.damage else 0
