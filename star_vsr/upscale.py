"""Upscale video files with any star-vsr pipeline, streaming frames from the input to the output.

``load_upscaler`` opens a model folder (a ``StarVSRPipeline`` or a ``StarStudentPipeline``, told
apart by its ``model_index.json``) on the right device; ``upscale_video`` streams a file through
it into an atomically written video that keeps the source's frame rate and audio, saving
checkpoints as it goes (``star_vsr.resume``), so a stopped run goes on where it stopped.

It also owns the choice of device and weights' dtype every command and training script makes (``--device``,
``--dtype``: ``resolve_device``, ``resolve_dtype``, ``cpu_has_amx``, ``accelerate_on_cpu``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import torch

from . import resume
from .errors import DeviceError, InputError, cannot_write, explain_out_of_memory, has_flag, option
from .outputs import IMAGE_OUTPUTS
from .progress import bar_options

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The ``--dtype`` value of each weight dtype.
DTYPE_FLAGS = {dtype: flag for flag, dtype in DTYPES.items()}


def accelerate_on_cpu() -> bool:
    """``cpu=`` for Accelerate's ``Accelerator`` / ``PartialState``: True without a CUDA GPU, or under
    ``accelerate launch --cpu``. Without it on a machine with no GPU, Accelerate sets up no process group (gloo)
    even when launched with several processes: each one then ran the whole job alone (two training runs wrote
    one output folder, and one crashed)."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def resolve_device(device: str = "auto", other_types: bool = False) -> torch.device:
    """"auto" picks CUDA when present, else the CPU; asking for CUDA without a GPU is an error. Any case: "CPU"
    was "unknown", where --metrics names are taken in any case. ``other_types``: other devices torch knows
    ("mps", "xpu") are taken as they are (where the caller's code runs on any device)."""
    device = device.strip().lower() if isinstance(device, str) else device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or (resolved.type not in ("cpu", "cuda") and not other_types):
        raise InputError(f"unknown {option('device', '--device')} {device!r}: use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        asked, cpu = option(f"device={device!r}", f"--device {device}"), option("device='cpu'", "--device cpu")
        raise DeviceError(f"{asked} needs a CUDA GPU, and none is available; use {cpu}")
    return resolved


#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` values below AMX (oneDNN ignores a value it does not know, and runs AMX).
ONEDNN_ISAS_WITHOUT_AMX = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                     "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512",
                                     "AVX10_2_512"})


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon of the 4th generation, Sapphire Rapids, and later) that
    this process may use (the kernel must grant them, and oneDNN must not be limited below them: its
    ``ONEDNN_MAX_CPU_ISA``, or the older ``DNNL_MAX_CPU_ISA`` that it reads when the first is unset or empty,
    one of `ONEDNN_ISAS_WITHOUT_AMX`), on which PyTorch's oneDNN runs bfloat16 convolutions."""
    supported = getattr(torch.cpu, "_is_amx_tile_supported", None)  # PyTorch 2.x; absent: assume none
    enable = getattr(torch.cpu, "_init_amx", None)
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"  # (as oneDNN
    if limit.upper() in ONEDNN_ISAS_WITHOUT_AMX:  # reads them: an empty one is unset) told to stay below AMX
        return False
    return bool(supported is not None and enable is not None and supported() and enable())


def resolve_dtype(dtype: Union[str, torch.dtype], device: torch.device, student: bool = False) -> torch.dtype:
    """The weights' dtype for ``dtype`` ("auto", "fp32", "fp16", "bf16", or one of those torch dtypes) on ``device``.

    "auto" is float16 on CUDA; on the CPU it is bfloat16 for a ``student`` where the CPU has AMX, else
    float32. Measured on a 2-core Xeon with AMX (2026-12-02, 320x180 x4, 2 threads): the ``small``
    student's step took 54 ms in bfloat16 against 80 ms in float32 (``benchmarks/student_speed.py
    --model-only``), and the shipped student scores about the same on the evaluation set in both (2026-12-07:
    +0.590 dB over bicubic in bfloat16, +0.597 in float32, E*warp 0.393x / 0.391x). Without AMX
    bfloat16 is slower: the same machine with oneDNN kept off AMX (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``,
    which ``cpu_has_amx`` honours) took 94 ms against 80 ms, and a CPU with AVX-512 BF16 but no AMX was
    slower too (``star_vsr.models.student``'s docstring); so those keep float32, as does the diffusion
    pipeline. float16 on the CPU is refused.
    """
    if isinstance(dtype, torch.dtype):  # the Python API's spelling (from_pretrained(..., dtype=torch.bfloat16))
        dtype = DTYPE_FLAGS.get(dtype, str(dtype))
    if dtype == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if student and device.type == "cpu" and cpu_has_amx() else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of auto, {', '.join(DTYPES)} (or torch.float32, torch.float16, "
                         f"torch.bfloat16); got {dtype!r}")
    if DTYPES[dtype] == torch.float16 and device.type == "cpu":
        raise DeviceError("fp16 needs a GPU; on the CPU use bf16 or fp32")
    return DTYPES[dtype]


def pipeline_class_name(folder: Union[str, Path], variant: Optional[str] = None) -> str:
    """``_class_name`` recorded in a pipeline folder's model_index.json, once the folder is checked for a load of
    ``variant``."""
    from star_vsr.pipelines.pipeline_star_student import missing_student_help
    from star_vsr.pipelines.pipeline_star_vsr import MISSING_WEIGHTS_HELP

    from .model_folder import check_pipeline_folder

    shipped = ("Without --model, star-vsr upscales with the student that ships inside the package"
               if has_flag("--model") else
               "star_vsr.student.default_student_folder() is the student that ships inside the package")
    student_help = (f"{shipped}; a student folder of your own is the output folder of training/distill_student.py "
                    f"(README, \"The student\").")
    return check_pipeline_folder(Path(folder), "star-vsr (student or StarVSR)",
                                 f"{student_help}\n{MISSING_WEIGHTS_HELP}",
                                 class_help={"StarStudentPipeline": missing_student_help(Path(folder)),
                                             "StarVSRPipeline": MISSING_WEIGHTS_HELP}, variant=variant)


def load_upscaler(folder: Union[str, Path], device: str = "auto", dtype: Union[str, torch.dtype] = "auto",
                  variant: Optional[str] = None) -> Any:
    """Load the pipeline saved in ``folder`` onto ``device`` ("auto", "cpu", "cuda", "cuda:1", ...) with weights in
    ``dtype`` (``resolve_dtype``: "auto", "fp32", "bf16", "fp16" or a torch dtype); ``variant``: of a folder saved
    with ``save_pretrained(..., variant="fp16")``."""
    folder = Path(folder).expanduser()  # "~/student" as the command line takes it
    torch_device = resolve_device(device)
    name = pipeline_class_name(folder, variant)
    torch_dtype = resolve_dtype(dtype, torch_device, student=name == "StarStudentPipeline")
    if name == "StarVSRPipeline":
        from star_vsr.pipelines.pipeline_star_vsr import StarVSRPipeline as cls
    elif name == "StarStudentPipeline":
        from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline as cls
    else:
        raise InputError(f"{folder} holds a {name}, which star-vsr cannot run")
    # (its sizes come from the folder's config files: memory running out here is no input's fault, as the
    # command's own advice said; a scheduler config of 10**10 timesteps asked for 37 GiB: black-box hunt)
    bf16 = option("dtype='bf16'", "--dtype bf16")
    half = f"{bf16} halves its weights, or " if torch_dtype == torch.float32 else ""
    with explain_out_of_memory(f"loading the model in {folder}", f"the model its config files (config.json, "
                               f"scheduler_config.json) describe does not fit here: {half}use a machine with more "
                               f"memory (a damaged config file can ask for far more than its weights hold)"):
        return cls.from_pretrained(folder, dtype=torch_dtype, variant=variant).to(torch_device)


def check_image_suffix(output_path: Union[str, Path], codec: Optional[str] = None) -> None:
    """``UnsupportedVideoError`` for an output named as an image star-vsr does not write (``.tif``, ``.webp``,
    ``.bmp``): it was told that star-vsr does not write videos so, for a photo too, and not that .png works.
    With ``codec`` "png" the name is a folder's, whatever it ends with."""
    from .errors import UnsupportedVideoError
    from .io.folders import IMAGE_EXTENSIONS

    output_path = Path(output_path)
    suffix = output_path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS and suffix not in IMAGE_OUTPUTS and not output_path.is_dir() and codec != "png":
        raise UnsupportedVideoError(f"star-vsr writes one image as {' / '.join(IMAGE_OUTPUTS)}, not {suffix} "
                                    f"({output_path}): name it {output_path.with_suffix('.png').name} (lossless); "
                                    f"name a video file, or a folder (no suffix) for PNG frames, for a video")


def check_image_output(output_path: Union[str, Path], num_frames: int, codec: Optional[str] = None,
                       crf: Optional[int] = None) -> bool:
    """Whether ``output_path`` is one image (``.png``, ``.jpg``): then the input must come to one frame
    (``num_frames``, after ``max_frames``), else an ``InputError`` says what to write instead; ``crf``, an x264 /
    x265 setting, is one too (it was ignored without a word, where PNG frames and FFV1 refuse it)."""
    output_path = Path(output_path)
    if output_path.suffix.lower() not in IMAGE_OUTPUTS or output_path.is_dir():
        return False
    if codec not in (None, "png"):
        raise InputError(f"{output_path} is an image name but {option('codec', '--codec')} is {codec}; name a video "
                         f"file for {codec}")
    if crf is not None:
        raise InputError(f"crf applies to h264/h265 only; {output_path} is a "
                         f"{IMAGE_OUTPUTS[output_path.suffix.lower()]} image, {option('leave crf=None', 'drop --crf')}")
    if codec == "png" and IMAGE_OUTPUTS[output_path.suffix.lower()] != "PNG":  # a lossy JPEG, without a word
        raise InputError(f"{output_path} names a JPEG image (lossy) but {option('codec', '--codec')} is png: name it "
                         f"{output_path.with_suffix('.png').name} for a lossless image")
    if num_frames != 1:
        raise InputError(f"{output_path} is one image, and this run gives {num_frames} frames: pass "
                         f"{option('max_frames=1', '--max-frames 1')} for the first frame, name a video (.mp4) for all "
                         f"of them, or a folder (no suffix) for PNG frames")
    return True


def upscale_video(pipe: Any, input_path: Union[str, Path], output_path: Union[str, Path], *,
                  codec: Optional[str] = None, crf: Optional[int] = None, keep_audio: bool = True,
                  progress: bool = True, restart: bool = False, checkpoint_seconds: Optional[float] = None,
                  deinterlace: Union[bool, str] = "auto", folder_fps: Optional[Union[float, Fraction]] = None,
                  max_frames: Optional[int] = None, overwrite: bool = True,
                  notes: Optional[Callable[[str], None]] = None, finishing: Optional[Callable[[], None]] = None,
                  **pipeline_kwargs: Any) -> Path:
    """Run ``pipe`` over a video file or image folder and write the result.

    Frames stream from the input through the pipeline into the output, which appears under
    ``output_path`` only when everything succeeded (and keeps the input's fps and audio).
    ``pipeline_kwargs`` go to the pipeline call (``upscale``, ``num_inference_steps``, ...; a student ignores the
    diffusion model's, with a warning).

    The run is resumable (``star_vsr.resume``), with a student or a diffusion pipeline: every
    ``checkpoint_seconds`` (None: ``star_vsr.resume.CHECKPOINT_SECONDS``) it commits the frames
    written so far as a segment and saves the pipeline's state in ``partial_folder(output_path)`` (a
    student's recurrent state; the diffusion sampler's latents still being denoised, so its work on
    frames not yet written is kept too). If the run stops (Ctrl-C, a crash, a full disk), the same
    call goes on from the last checkpoint with the frames an uninterrupted run computes (with FFV1 or
    PNG the output is the same, bit for bit; H.264/H.265 get a key frame at every checkpoint);
    ``restart`` discards the saved work instead. A saved run with other settings (input, weights,
    scale, codec, diffusion options, seed, ...) is an ``InputError`` that names them.

    ``deinterlace`` (True, False, "auto": when the input is flagged interlaced) passes the frames
    through FFmpeg's bwdif first (``star_vsr.io.open_video``). ``folder_fps``: the frame rate of an image folder
    input, which stores none (default 30); a video file keeps its own (giving one is an ``InputError``).
    ``max_frames``: upscale only the first ``max_frames`` frames, a preview (the audio is cut where they end).
    An output named ``.png`` / ``.jpg`` is one image, of a one-frame input (a photo) or of ``max_frames=1``.
    ``overwrite=False``: an ``OutputExistsError`` if ``output_path`` exists, before the run or when it ends (another
    run or program wrote it meanwhile: it is kept, and a video's saved progress too).
    ``notes``: where the run's notes go ("going on after frame N", "stopped; N frames are saved"), a function
    of one line; by default they are printed above the progress bar, and only with ``progress``.
    ``finishing``: called once the output is complete, just before it is put in place, so that a kill between the
    two cannot leave the output there without what ``finishing`` records of it (upscale-batch's record of which
    input made it, written after the move, was lost to a kill, and an input added later took the output's name:
    black-box hunt). Should the move then fail, what it recorded stands for an output that is not there.
    """
    from .frames import FileFrameSource
    from .io.atomic import check_no_replace
    from .outputs import check_video_output_name, without_missing_parents

    for name, path in (("input_path", input_path), ("output_path", output_path)):
        if not isinstance(path, (str, os.PathLike)):  # frames in memory go to the pipeline call instead
            raise InputError(f"upscale_video takes {name} as a file or folder path (str or pathlib.Path), got "
                             f"{type(path).__name__}; to upscale frames in memory call the pipeline: "
                             f"pipe(frames).frames")
    # "~/out.mp4" as the command line takes it (it was written to a folder named "~" in the current one)
    input_path, output_path = os.path.expanduser(input_path), without_missing_parents(os.path.expanduser(output_path))
    check_video_output_name(output_path)  # "out.mp4/": a file's name given as a folder
    if Path(input_path).exists() and Path(output_path).exists() and os.path.samefile(input_path, output_path):
        raise InputError(f"the output {output_path} is the input; write to another name")
    check_no_replace(Path(output_path), overwrite)
    check_image_suffix(output_path, codec)
    source = FileFrameSource(input_path, deinterlace=deinterlace, folder_fps=folder_fps, max_frames=max_frames)
    if check_image_output(output_path, source.num_frames, codec, crf):
        return _upscale_to_image(pipe, source, Path(output_path), progress, overwrite, pipeline_kwargs, finishing)
    audio = str(input_path) if keep_audio and Path(input_path).is_file() else None
    # one bar per run: the writer's counts frames (and frames per second); a student's own bar would count the
    # same frames again, a diffusion pipeline's counts the denoising steps between the frames it hands on
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    every = resume.CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    with _progress_bar_config(pipe, disable=not progress or isinstance(pipe, StarStudentPipeline)):
        return resume.upscale_resumable(pipe, source, Path(output_path), source.info, codec=codec, crf=crf,
                                        audio=audio, progress=progress, restart=restart, checkpoint_seconds=every,
                                        overwrite=overwrite, notes=notes, finishing=finishing, **pipeline_kwargs)


@contextmanager
def _progress_bar_config(pipe: Any, disable: bool) -> Iterator[None]:
    """``pipe``'s progress bar for one `upscale_video` run ("upscale", drawn as star-vsr's bars are, or none);
    the caller's own settings come back after it (diffusers' ``set_progress_bar_config`` replaces them whole:
    a ``pipe(video)`` after the run had no bar, or one named "upscale")."""
    own = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(disable=disable, desc="upscale", unit="step", **bar_options())
    try:
        yield
    finally:
        pipe.set_progress_bar_config(**own)


def _upscale_to_image(pipe: Any, source: Any, output: Path, progress: bool, overwrite: bool,
                      pipeline_kwargs: dict[str, Any], finishing: Optional[Callable[[], None]] = None) -> Path:
    """One frame through ``pipe`` into the image ``output``, written whole or not at all (``finishing`` called
    before it is put in place, as `upscale_video` says)."""
    from PIL import Image

    from .frames import frames_to_uint8
    from .io.atomic import move_into_place, temporary_path
    from .io.writer import warn_lost_pixel_aspect

    with _progress_bar_config(pipe, disable=not progress):
        frame = frames_to_uint8(pipe(source, output_type="pt", **pipeline_kwargs).frames[0])[0]  # (H, W, 3) uint8
    image_format = IMAGE_OUTPUTS[output.suffix.lower()]
    if source.info.pixel_aspect != 1:  # said for PNG frames, not for one image
        warn_lost_pixel_aspect(str(output), f"a {image_format} image", source.info.pixel_aspect, *frame.shape[:2],
                               "A video output (.mp4) keeps it")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(output)  # unique to this process (two runs on one output); a killed run's is removed
    try:
        Image.fromarray(frame).save(temp, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
        if finishing is not None:
            finishing()
        move_into_place(temp, output, overwrite)
    except OSError as error:  # a full disk: said with the file (Pillow's error names none), as other outputs are
        raise cannot_write(output, error) from None
    finally:
        temp.unlink(missing_ok=True)
    return output
