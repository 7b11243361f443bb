"""Training data for STAR: HR clips, their real-world-degraded LR clips and the ControlNet hint.

- ``VideoClipDataset``: random clips of videos / frame folders / CSV or JSON clip lists.
- ``ImageMotionDataset``: clips filmed from still photos by a smooth random camera move
  (by default scikit-image's bundled colour photographs except the evaluation ones,
  ``star_vsr.evalset.COLOUR_TRAINING_PHOTO_NAMES``; nothing downloaded).
- ``EpochShuffleSampler``: a shuffle that depends only on (seed, epoch), for exact resumption.

Both datasets return dicts with ``"gt"`` (n, 3, H, W), ``"lq"`` (n, 3, H/s, W/s), ``"hint"``
(n, 3, H, W) float32 in [0, 1], ``"caption"``, ``"index"``, ``"num_skipped"`` and ``"unreported_skips"``
(``report_skips``); item i of epoch e depends only on (seed, e, i), whatever the DataLoader workers.
"""

from star_vsr.data.base import BadSampleError, BadSampleWarning, ClipPairDataset, report_skips
from star_vsr.data.image_motion import ImageMotionDataset
from star_vsr.data.pairs import NO_DEGRADATION, make_pair, resolve_degradation
from star_vsr.data.sampler import EpochShuffleSampler
from star_vsr.data.video_clips import VIDEO_EXTENSIONS, ClipSource, VideoClipDataset, list_clip_sources

__all__ = [
    "NO_DEGRADATION",
    "VIDEO_EXTENSIONS",
    "BadSampleError",
    "BadSampleWarning",
    "ClipPairDataset",
    "ClipSource",
    "EpochShuffleSampler",
    "ImageMotionDataset",
    "VideoClipDataset",
    "list_clip_sources",
    "make_pair",
    "report_skips",
    "resolve_degradation",
]
