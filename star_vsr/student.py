"""Where the shipped student lives, and how to build a student pipeline from a preset.

The default student checkpoint (a ``StarStudentPipeline`` folder; how it was trained and how
well it does: ``star_vsr/weights/MODEL_CARD.md``) is installed at
``star_vsr/weights/student-default``; ``star-vsr upscale`` uses it when no ``--model`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import star_vsr

from .errors import InputError, MissingWeightsError, has_flag

if TYPE_CHECKING:
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

#: Folder name of the default student under ``star_vsr/weights``.
DEFAULT_STUDENT_NAME = "student-default"


def default_student_folder() -> Path:
    """The folder of the student that ships with star-vsr.

    Raises:
        MissingWeightsError: the folder (or its model_index.json) is not there.
    """
    folder = _bundled_folder()
    if not (folder / "model_index.json").is_file():
        raise MissingWeightsError(f"the default student is not installed (expected a pipeline folder at {folder}).\n"
                                  + bundled_student_help(folder))
    return folder


def _bundled_folder() -> Path:
    return Path(star_vsr.__file__).parent / "weights" / DEFAULT_STUDENT_NAME


def is_bundled_student(folder: Path) -> bool:
    """Whether ``folder`` is the student that ships with star-vsr."""
    try:
        return Path(folder).resolve() == _bundled_folder().resolve()
    except OSError:
        return False


def bundled_student_help(folder: Path) -> str:
    """What to do when the student that ships with star-vsr (at ``folder``) is missing or damaged."""
    another = "pass --model FOLDER to use another student" if has_flag("--model") else \
        "use another student's folder"  # (cache-teacher's --teacher, a Python caller's from_pretrained)
    return (f"{folder} is the student that ships inside the star-vsr package, and its files are missing or damaged: "
            f"reinstall star-vsr (in a clone, `git checkout -- star_vsr/weights`; from a wheel, `pip install "
            f"--force-reinstall --no-deps` of the wheel), or {another}")


def check_not_the_shipped_student(folder: Path | str, writing: str) -> None:
    """``InputError`` when ``writing`` ("save into", "train into") the folder ``folder`` would change the student that
    ships with star-vsr: that folder or one inside it (its ``student/``). A pipeline's save went over it without a
    word, deleting its training record; a training run's ``--overwrite_output_dir`` emptied it before training."""
    try:
        inside = Path(folder).expanduser().resolve().is_relative_to(_bundled_folder().resolve())
    except OSError:  # (a link loop: its own error where it is written)
        return
    if inside:
        raise InputError(f"cannot {writing} {folder}: it is the student that ships inside the star-vsr package (which "
                         f"the commands use without --model), or a part of it; {writing} another folder (to replace "
                         f"the shipped student on purpose, copy a student folder's files over it)")


def build_student_pipeline(preset: str = "small", seed: int = 0, bilinear_start: bool = False,
                           **config: Any) -> "StarStudentPipeline":
    """A ``StarStudentPipeline`` with a fresh student of ``preset``, weights drawn from ``seed``.

    Random weights give noise-like pictures; ``bilinear_start`` zeroes the output convs so the
    pictures are bilinear upscales for the same compute (see ``StarStudentModel.reset_parameters``).
    Use these for tests and for speed and memory measurements without trained weights: a video
    encoder spends ~10x longer on noise than on natural pictures, so end-to-end timings need
    ``bilinear_start``. ``config`` overrides student config keys (``scale``, ``num_blocks``, ...).
    """
    import torch

    from star_vsr.models.student import StarStudentModel
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    student = StarStudentModel.from_preset(preset, **config)
    student.reset_parameters(torch.Generator().manual_seed(seed), bilinear_start=bilinear_start)
    return StarStudentPipeline(student=student.eval())
