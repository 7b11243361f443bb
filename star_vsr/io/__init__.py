"""Video input/output: probe, stream, randomly access and atomically write videos.

Frames at this boundary are ``numpy.uint8`` RGB arrays shaped (h, w, 3), stacks (n, h, w, 3).
"""

from star_vsr.io.folders import VIDEO_EXTENSIONS
from star_vsr.io.probe import VideoInfo, probe_video
from star_vsr.io.reader import VideoReader, deinterlace_choice, open_video, read_frames
from star_vsr.io.writer import CODECS, VideoWriter, output_name, output_names

__all__ = [
    "CODECS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "deinterlace_choice",
    "open_video",
    "output_name",
    "output_names",
    "probe_video",
    "read_frames",
]
