"""Metadata tags of a source video (its title, creation time, the language of its tracks) carried into the output.

An upscaled or degraded video keeps the tags of its source as FFmpeg keeps them by default (``-map_metadata``):
the container's, the video track's and the copied audio track's (`star_vsr.io.audio`), less those that describe
the source file's own encoding (its muxer, its MP4 brands and handlers, Matroska's per-track statistics), which
the output's muxer writes anew. Players pick audio tracks by their language, libraries sort videos by their
creation time: both were dropped. A camera's ``timecode`` is kept too, as FFmpeg keeps it: an .mp4 / .mov output
then holds it in a timecode (tmcd) data track of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from star_vsr.io.probe import find_video_stream, open_container

#: Tags of a file's encoding, not of its content (lower case). Matroska's statistics tags may carry a language
#: suffix ("BPS-eng", "DURATION-eng"): the part before "-" is compared.
ENCODING_TAGS = frozenset({
    "encoder", "software", "major_brand", "minor_version", "compatible_brands", "handler_name", "vendor_id", "duration",
    "number_of_frames", "number_of_bytes", "bps", "_statistics_writing_app", "_statistics_writing_date_utc",
    "_statistics_tags",
})


def content_tags(metadata: Mapping[str, str]) -> dict[str, str]:
    """The tags of ``metadata`` (a container's or a stream's) that describe the content, not `ENCODING_TAGS`."""
    return {key: value for key, value in metadata.items() if key.lower().split("-")[0] not in ENCODING_TAGS}


def track_tags(metadata: Mapping[str, str]) -> dict[str, str]:
    """`content_tags` of a track: with its title under "title", where MP4 / MOV sources give it as "name" (the
    muxers take a track's title from "title" only: an .mp4's track titles were lost, and became "NAME" tags in
    a .mkv)."""
    tags = content_tags(metadata)
    if "name" in tags and "title" not in tags:
        tags["title"] = tags.pop("name")
    return tags


def source_tags(source: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the container's tags, the video track's tags) of the video file ``source``, as `content_tags` and
    `track_tags`."""
    with open_container(source) as container:
        video = find_video_stream(container, source)
        return content_tags(container.metadata), track_tags(video.metadata)


def output_tags(tags_from: str | Path | None, codec: str) -> tuple[dict[str, str], dict[str, str]]:
    """The tags an output of ``codec`` takes from the video file ``tags_from`` (`source_tags`): none for PNG frames,
    which hold none, or without a source."""
    return source_tags(Path(tags_from)) if tags_from is not None and codec != "png" else ({}, {})
