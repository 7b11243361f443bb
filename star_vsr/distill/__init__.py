"""Distillation of a slow video SR teacher into the fast student.

- ``teacher.py``: one ``Teacher`` interface over a StarVSR diffusion folder, a student folder or
  any callable video-to-video model (``load_teacher``).
- ``cache.py``: the teacher's outputs (and features) on fixed clips, in resumable safetensors
  shards (``build_teacher_cache``, ``TeacherCache``), so a slow teacher runs once, not every epoch.
- ``sources.py``: clips from a folder of LR videos (``VideoFolderClips``).
- ``convlstm.py``: the ConvLSTM shared by teacher and student in time distillation.

The losses are in ``star_vsr.losses.distillation``; the training script is
``training/distill_student.py``; the command line is ``star-vsr distill cache-teacher``.
"""

from star_vsr.distill.cache import CacheManifest, TeacherCache, build_teacher_cache
from star_vsr.distill.convlstm import ConvLSTM, ConvLSTMCell
from star_vsr.distill.sources import VideoFolderClips
from star_vsr.distill.teacher import (
    CallableTeacher,
    DiffusionTeacher,
    StudentTeacher,
    Teacher,
    TeacherOutput,
    load_teacher,
)

__all__ = [
    "CacheManifest",
    "CallableTeacher",
    "ConvLSTM",
    "ConvLSTMCell",
    "DiffusionTeacher",
    "StudentTeacher",
    "Teacher",
    "TeacherCache",
    "TeacherOutput",
    "VideoFolderClips",
    "build_teacher_cache",
    "load_teacher",
]
