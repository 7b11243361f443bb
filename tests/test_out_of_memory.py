"""Running out of memory is a one-line ``DeviceError`` that says what ran out and what to change.

The failures here are real: the CPU allocator asked for 64 TiB (``allocate_too_much``), not a
hand-made exception, except for the CUDA message, which a CPU cannot produce, and FFmpeg's errors of an encoder
that could not start (threads, buffers), which only a memory cap gives.
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from star_vsr.cli import main
from star_vsr.errors import (DeviceError, InputError, cli_wording, explain_out_of_memory, is_out_of_memory,
                             memory_amount)
from star_vsr.io.synthetic import write_test_video
from star_vsr.student import build_student_pipeline
from star_vsr.testing import tiny_star_pipeline
from star_vsr.resume import MANIFEST, partial_folder


def allocate_too_much(*args, **kwargs):
    return torch.empty(2 ** 46, dtype=torch.uint8)  # 64 TiB: the allocator refuses


def test_out_of_memory_errors_are_recognised():
    with pytest.raises(RuntimeError) as cpu:
        allocate_too_much()
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ..."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB, ...)"))
    assert is_out_of_memory(MemoryError("Cannot allocate memory (os error 12)"))  # safetensors, PyAV's av.MemoryError
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert is_out_of_memory(RuntimeError("could not create a primitive"))  # oneDNN under `ulimit -v`, huge frames
    assert not is_out_of_memory(RuntimeError("could not create a primitive descriptor for a matmul primitive"))
    with pytest.raises(DeviceError, match=r"^out of memory, or a frame too large for oneDNN \(its 'could not create "
                                          r"a primitive'\), while testing; do less$"):
        with explain_out_of_memory("testing", "do less"):
            raise RuntimeError("could not create a primitive")
    assert not is_out_of_memory(DeviceError("out of memory while upscaling; use tiles"))  # explained already
    import cv2  # OpenCV's "Insufficient memory" (benchmark --size 100000x100000: a traceback, black-box hunt)

    with pytest.raises(cv2.error) as opencv:
        cv2.resize(np.zeros((4, 4, 3), np.uint8), (10_000_000, 10_000_000))  # 273 TiB: past any address space
    assert is_out_of_memory(opencv.value) and memory_amount(opencv.value) == " (allocating 272.85 TiB failed)"
    with pytest.raises(cv2.error) as opencv:
        cv2.resize(np.zeros((4, 4, 3), np.uint8), (0, 0))  # another of its errors (-215, an assertion)
    assert not is_out_of_memory(opencv.value)
    with pytest.raises(DeviceError, match=r"out of memory while testing \(allocating 2.00 GiB failed\); do less"):
        with explain_out_of_memory("testing", "do less"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")
    with pytest.raises(RuntimeError, match="shapes"):  # other errors pass unchanged
        with explain_out_of_memory("testing", "do less"):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_student_pipeline_explains_out_of_memory(monkeypatch):
    pipe = build_student_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    monkeypatch.setattr(pipe.student, "step_tensors", allocate_too_much)
    with pytest.raises(DeviceError, match=r"while upscaling with the student \(allocating 64.00 TiB failed\); "
                                          r"free some memory, or upscale a smaller video"):
        pipe(torch.rand(2, 3, 8, 8))


def test_star_pipeline_explains_out_of_memory(monkeypatch):
    pipe = tiny_star_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    monkeypatch.setattr(pipe.unet, "forward", allocate_too_much)
    with pytest.raises(DeviceError, match=r"while upscaling with the StarVSR pipeline \(allocating 64.00 TiB "
                                          r"failed\); try spatial tiles \(tile_size=512\), fewer frames per "
                                          r"temporal chunk than 32 \(chunk_frames=16\), decode_chunk_size=1 or a "
                                          r"smaller factor \(upscale=2\) \(a run that saved progress then needs "
                                          r"restart=True\)"):
        pipe(torch.rand(2, 3, 8, 8), num_inference_steps=1)
    # the advice starts from what the call used (positional arguments too)
    # (a tile overlap not given fits any tile: none is advised; the chunk overlap given, 4, does not fit 4 frames)
    with pytest.raises(DeviceError, match=r"try smaller tiles than 256 \(tile_size=128\), fewer "
                                          r"frames per temporal chunk than 8 \(chunk_frames=4, chunk_overlap=1\), "
                                          r"decode_chunk_size=1 or a smaller factor"):
        pipe(torch.rand(2, 3, 8, 8), "a prompt", num_inference_steps=1, tile_size=256, chunk_frames=8,
             chunk_overlap=4)
    with pytest.raises(DeviceError, match=r"even the smallest tiles and chunks do not fit"):
        pipe(torch.rand(2, 3, 8, 8), num_inference_steps=1, tile_size=128, tile_overlap=32, chunk_frames=4,
             chunk_overlap=1, decode_chunk_size=1, upscale=2)
    # the VAE encodes and decodes whole frames, which tiles do not bound: at x4 a smaller factor is offered too
    # (black-box hunt: the advice went down smaller tiles and chunks to "even the smallest ... do not fit")
    with pytest.raises(DeviceError, match=r"\); try a smaller factor \(upscale=2\) \(a run that saved progress"):
        pipe(torch.rand(2, 3, 8, 8), num_inference_steps=1, tile_size=128, tile_overlap=32, chunk_frames=4,
             chunk_overlap=1, decode_chunk_size=1)
    # a streamed clip (star-vsr upscale's FrameSource) bounds what the call used: a 32-frame chunk of a 3-frame
    # clip used 3 frames, and 512-pixel tiles of a 96x64 output are the whole frame (black-box hunt: both advised)
    from star_vsr.frames import TensorFrameSource

    with pytest.raises(DeviceError, match=r"\); try decode_chunk_size=1 or a smaller factor \(upscale=2\) \(a"):
        pipe(TensorFrameSource(torch.rand(3, 3, 16, 24)), num_inference_steps=1, tile_size=512)
    assert pipe.memory_advice(None, None, 32, None, 1, 2, num_frames=10, output_side=480).startswith(
        "try spatial tiles (tile_size=240) or fewer frames per temporal chunk than 10 (chunk_frames=5) (")
    assert pipe.memory_advice(None, None, 32, None, 1, 4, num_frames=100, output_side=1920).startswith(
        "try spatial tiles (tile_size=512), fewer frames per temporal chunk than 32 (chunk_frames=16) or a smaller")
    monkeypatch.setattr(pipe, "_all_hooks", [object()], raising=False)  # as after enable_model_cpu_offload()
    advice = pipe.memory_advice(128, 32, 4, 1, 1)
    assert advice.startswith("try half-precision weights (dtype=torch.float16)") and "offload" not in advice


def test_out_of_memory_advice_names_flags_on_the_command_line_and_arguments_in_python():
    """The command line's user is told --tile-size 512, the Python user tile_size=512; neither both, and the
    command line is not offered what only Python has (decode_chunk_size, CPU offload)."""
    from star_vsr.pipelines.pipeline_star_student import memory_advice

    pipe = tiny_star_pipeline(seed=0)
    python = pipe.memory_advice(256, 128, 8, 4, 3)
    assert "tile_size=128, tile_overlap=32" in python and "decode_chunk_size=1" in python
    assert "--" not in python and "restart=True" in python
    from star_vsr.cli import _command_flags, build_parser

    parser = build_parser()
    with cli_wording(_command_flags(parser, parser.parse_args(["upscale", "in.mp4", "-o", "out.mp4"]))):
        cli = pipe.memory_advice(256, 128, 8, 4, 3)
        student = memory_advice(4, on_gpu=True)
    assert cli == ("try smaller tiles than 256 (--tile-size 128, --tile-overlap 32) or fewer frames per temporal "
                   "chunk than 8 (--chunk-frames 4, --chunk-overlap 1) (a run that saved progress then needs "
                   "--restart)")
    assert "(--upscale 2;" in student and "--restart" in student and "(--device cpu)" in student
    assert "=" not in student and "upscale=2" in memory_advice(4) and "--" not in memory_advice(4)
    # a command without those flags is not told to use them (the demo gives advice of its own)
    with cli_wording(_command_flags(parser, parser.parse_args(["demo", "-o", "out"]))):
        demo = memory_advice(4, on_gpu=True)
    assert "(--device cpu)" in demo and "upscale=2" in demo and "--upscale" not in demo
    # nor told of restarting a run that saved progress: demo and benchmark save none (it said restart=True there)
    with cli_wording(_command_flags(parser, parser.parse_args(["benchmark"]))):
        benchmark = memory_advice(4)
    assert "restart" not in demo and benchmark == "free some memory, or upscale a smaller video or by a smaller " \
                                                  "factor (--upscale 2)"
    # a run by 2 is not told to upscale by 2, nor a CPU run to use the CPU (black-box hunt)
    assert memory_advice(2) == "free some memory, or upscale a smaller video"
    with cli_wording(_command_flags(parser, parser.parse_args(["distill", "cache-teacher", "--teacher", "t", "--data",
                                                               "d", "-o", "c"]))):
        cache = pipe.memory_advice(256, 128, 8, 4, 3)
    assert "--tile-size" not in cache and "tile_size=128" in cache


def test_every_flag_that_messages_name_is_an_upscale_flag_for_its_argument():
    """``ARGUMENT_FLAGS`` (how messages name a pipeline call's arguments on the command line) names real flags of
    ``star-vsr upscale``, each for the call argument of that name."""
    import inspect

    from star_vsr.cli import build_parser
    from star_vsr.errors import ARGUMENT_FLAGS
    from star_vsr.pipelines import StarStudentPipeline, StarVSRPipeline

    parser = build_parser()
    upscale = parser._subparsers._group_actions[0].choices["upscale"]
    call_arguments = {*inspect.signature(StarVSRPipeline.__call__).parameters,
                      *inspect.signature(StarStudentPipeline.__call__).parameters}
    for argument, flag in ARGUMENT_FLAGS.items():
        assert flag in upscale._option_string_actions, flag
        assert argument in call_arguments or argument == "seed", argument  # the seed makes the call's generator
    from star_vsr.cli import _command_flags
    from star_vsr.errors import named

    with cli_wording(_command_flags(parser, parser.parse_args(["upscale", "in.mp4", "-o", "out.mp4"]))):
        assert (named("tile_size", 512), named("tile_size")) == ("--tile-size 512", "--tile-size")
        assert named("decode_chunk_size", 1) == "decode_chunk_size=1"  # no flag: as in Python
    assert (named("tile_size", 512), named("decode_chunk_size")) == ("tile_size=512", "decode_chunk_size")


def test_cli_upscale_out_of_memory_is_one_line_and_keeps_saved_work(tmp_path, monkeypatch, capsys):
    import star_vsr.resume
    from star_vsr.models.student import StarStudentModel

    build_student_pipeline("tiny").save_pretrained(tmp_path / "student")
    source = write_test_video(tmp_path / "in.mp4", 12, size=(12, 16))
    output = tmp_path / "out.mp4"
    real_step, steps = StarStudentModel.step_tensors, []

    def step_until_frame_10(self, *args):
        steps.append(1)
        return allocate_too_much() if len(steps) == 10 else real_step(self, *args)

    monkeypatch.setattr(StarStudentModel, "step_tensors", step_until_frame_10)
    monkeypatch.setattr(star_vsr.resume, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after each chunk of 8
    assert main(["upscale", str(source), "-o", str(output), "--model", str(tmp_path / "student")]) == 2
    err = capsys.readouterr().err
    assert "error: out of memory while upscaling with the student" in err and "Traceback" not in err
    assert "Run the same command again" in err and not output.exists()
    assert json.loads((partial_folder(output) / MANIFEST).read_text())["frames"] == 8


def test_upscale_batch_skips_the_video_memory_ran_out_on_and_goes_on(tmp_path, monkeypatch, capsys):
    """Memory running out on one video (a 4K one among small ones) ended upscale-batch naming no video, the others
    never done (black-box hunt): that video is skipped with the reason, as an unreadable one is."""
    from star_vsr.models.student import StarStudentModel

    build_student_pipeline("tiny").save_pretrained(tmp_path / "student")
    videos = tmp_path / "in"
    videos.mkdir()
    write_test_video(videos / "a.mp4", 2, size=(12, 16))
    write_test_video(videos / "b.mp4", 2, size=(12, 16))
    real_step, steps = StarStudentModel.step_tensors, []

    def first_video_too_large(self, *args):
        steps.append(1)
        return allocate_too_much() if len(steps) == 1 else real_step(self, *args)

    monkeypatch.setattr(StarStudentModel, "step_tensors", first_video_too_large)
    assert main(["upscale-batch", str(videos), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "student")]) == 1
    err = capsys.readouterr().err
    assert f"skipped {videos / 'a.mp4'}: out of memory while upscaling with the student" in err
    assert "1 video was skipped (the reason is above): a.mp4" in err
    assert (tmp_path / "out" / "b.mp4").is_file() and not (tmp_path / "out" / "a.mp4").exists()
    # out of the pipeline too (a probe, a saved state's move to the GPU, the segments' join): torch's own error
    import star_vsr.cli.upscale

    notes = star_vsr.cli.upscale.input_notes
    monkeypatch.undo()
    monkeypatch.setattr(star_vsr.cli.upscale, "input_notes",
                        lambda video, *args, **kwargs: allocate_too_much() if video.name == "a.mp4" else
                        notes(video, *args, **kwargs))
    (tmp_path / "out" / "b.mp4").unlink()
    assert main(["upscale-batch", str(videos), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "student")]) == 1
    assert f"skipped {videos / 'a.mp4'}: out of memory (allocating 64.00 TiB failed)" in capsys.readouterr().err
    assert (tmp_path / "out" / "b.mp4").is_file()


def test_demo_out_of_memory_advises_the_demo_s_own_flags(tmp_path, monkeypatch, capsys):
    """The demo ran out of memory with the pipeline's advice for a Python call: "a smaller factor (upscale=2; a run
    that saved progress then needs restart=True)", none of which the demo has (black-box hunt)."""
    from star_vsr.models.student import StarStudentModel

    monkeypatch.setattr(StarStudentModel, "step_tensors", allocate_too_much)
    assert main(["demo", "-o", str(tmp_path / "demo"), "--frames", "4"]) == 2
    err = capsys.readouterr().err
    assert "error: out of memory while upscaling the demo's clip with the student" in err
    assert "; free some memory, or pass fewer --frames than 4 (the demo keeps its clips in memory)\n" in err
    assert "upscale=" not in err and "restart" not in err and "Traceback" not in err
    assert not (tmp_path / "demo").exists()


def test_counts_and_shares_read_as_they_are():
    """"1 frames are saved", "the dataset has 1 clips"; a saved denoising of 1 of 400 steps read "0%", of 399 of 400
    "100%" (review of this session's neighbours)."""
    from star_vsr.outputs import saved_work
    from star_vsr.units import count_of, share_of

    assert [count_of(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]
    assert [share_of(*pair) for pair in ((0, 400), (1, 400), (200, 400), (399, 400), (400, 400))] == [
        "0%", "<1%", "50%", ">99%", "100%"]
    assert saved_work({"frames": 1}) == "1 frame is"
    assert saved_work({"frames": 0, "evaluations": [1, 400]}) == \
        "0 frames and <1% of the denoising (1 of 400 window steps) are"


def test_byte_amounts_are_in_the_unit_they_round_to():
    """1048575 bytes read "1024.00 KiB" (the unit was picked before rounding: black-box hunt)."""
    from star_vsr.units import byte_amount

    assert [byte_amount(n) for n in (0, 1, 1000, 1023, 1024, 1048575, 4 * 2 ** 20, 3 * 2 ** 30, 2 * 2 ** 40)] == [
        "0 bytes", "1 byte", "1000 bytes", "1.00 KiB", "1.00 KiB", "1.00 MiB", "4.00 MiB", "3.00 GiB", "2.00 TiB"]


def test_numpy_s_amount_is_said_without_its_dot():
    assert memory_amount("Unable to allocate 187. MiB for an array with shape (2160, 3840, 3)") == \
        " (allocating 187 MiB failed)"  # it said "187. MiB"
    assert memory_amount("Tried to allocate 2.00 GiB") == " (allocating 2.00 GiB failed)"
    # the CPU allocator's bytes in a unit that shows them (it said "0.00 GiB" of 4 MiB: black-box hunt)
    assert memory_amount("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4194304 bytes.") == \
        " (allocating 4.00 MiB failed)"
    assert memory_amount("you tried to allocate 3221225472 bytes") == " (allocating 3.00 GiB failed)"
    assert memory_amount("you tried to allocate 100 bytes") == " (allocating 100 bytes failed)"


def test_memory_running_out_while_a_model_loads_blames_its_size_not_the_input(tmp_path, monkeypatch, capsys):
    """A crafted scheduler config (10**10 timesteps) or student config made loading allocate GiBs to TiBs, and the
    error said "try a shorter or smaller input" of a 4-frame clip (black-box hunt)."""
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    build_student_pipeline("tiny").save_pretrained(tmp_path / "student")
    source = write_test_video(tmp_path / "in.mp4", 4, size=(12, 16))
    monkeypatch.setattr(StarStudentPipeline, "from_pretrained", allocate_too_much)
    for dtype, advice in (("fp32", "--dtype bf16 halves its weights, or use a machine"), ("bf16", "use a machine")):
        assert main(["upscale", str(source), "-o", str(tmp_path / "out.mp4"), "--model", str(tmp_path / "student"),
                     "--dtype", dtype]) == 2
        err = capsys.readouterr().err
        assert f"error: out of memory while loading the model in {tmp_path / 'student'} (allocating 64.00 TiB " \
               f"failed); the model its config files (config.json, scheduler_config.json) describe does not fit " \
               f"here: {advice}" in err
        assert "(a damaged config file can ask for far more than its weights hold)" in err
        assert "smaller input" not in err and "Traceback" not in err


def test_cli_out_of_memory_outside_the_pipelines_is_one_line(tmp_path, monkeypatch, capsys):
    import star_vsr.cli.degrade

    source = write_test_video(tmp_path / "in.mp4", 3, size=(16, 16))
    monkeypatch.setattr(star_vsr.cli.degrade, "run", lambda args: allocate_too_much())  # read by register()
    assert main(["degrade", str(source), "-o", str(tmp_path / "out.mp4")]) == 2
    assert "error: out of memory while running star-vsr degrade" in capsys.readouterr().err
    # OpenCV's "Insufficient memory" too (the benchmark's clip made at a size whose resize did not fit, --size
    # 200000x200000: a traceback)
    import cv2
    import star_vsr.io.synthetic

    resize = cv2.resize

    def resize_too_large(*args, **kwargs):
        return resize(np.zeros((4, 4), np.float32), (10_000_000, 10_000_000))  # 364 TiB: past any address space

    monkeypatch.setattr(star_vsr.io.synthetic.cv2, "resize", resize_too_large)
    assert main(["benchmark", "--size", "64x64", "--frames", "1", "--repeats", "1", "--methods", "bicubic"]) == 2
    assert "error: out of memory while running star-vsr benchmark (allocating 363.80 TiB failed)" in \
        capsys.readouterr().err


def test_a_message_that_does_not_fit_in_memory_either_still_says_out_of_memory(monkeypatch):
    """Under `ulimit -v` the handler's own work once ran out of memory too: a MemoryError traceback."""
    import star_vsr.errors
    from star_vsr.errors import RanOutOfMemoryError

    def no_memory_left(error):
        raise MemoryError

    monkeypatch.setattr(star_vsr.errors, "memory_amount", no_memory_left)
    with pytest.raises(RanOutOfMemoryError, match="^out of memory while upscaling$") as refused:
        with explain_out_of_memory("upscaling", "use smaller frames"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert isinstance(refused.value.__cause__, torch.OutOfMemoryError)


def test_not_out_of_memory_errors_keep_their_type():
    with pytest.raises(InputError):
        with explain_out_of_memory("testing", "do less"):
            raise InputError("bad")


def test_encoder_threads_that_cannot_start_are_out_of_memory_not_a_failed_write(tmp_path, monkeypatch, capsys):
    """Under a memory cap (``ulimit -v 4500000``) FFmpeg's encoder could not start its threads and PyAV raised
    ``av.error.BlockingIOError(EAGAIN)``: it was "cannot write out.mp4: Resource temporarily unavailable", as if the
    disk had failed (black-box hunt). It is memory running out, with what to lower; a batch skips the video."""
    import av

    from star_vsr.io.writer import _EncodedSink

    def threads_cannot_start(self, frame):
        raise av.error.BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    build_student_pipeline("tiny").save_pretrained(tmp_path / "student")
    videos = tmp_path / "in"
    videos.mkdir()
    source = write_test_video(videos / "a.mp4", 2, size=(12, 16))
    monkeypatch.setattr(_EncodedSink, "write", threads_cannot_start)
    assert main(["upscale", str(source), "-o", str(tmp_path / "out.mp4"), "--model", str(tmp_path / "student")]) == 2
    err = capsys.readouterr().err
    assert "error: out of memory (Resource temporarily unavailable) while upscaling with the student; free some " \
           "memory" in err and "cannot write" not in err
    assert main(["upscale-batch", str(videos), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "student")]) == 1
    err = capsys.readouterr().err
    assert f"skipped {source}: out of memory (Resource temporarily unavailable) while upscaling" in err
    assert "1 video was skipped (the reason is above): a.mp4" in err
    assert is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not is_out_of_memory(OSError(errno.ENOSPC, "No space left on device"))
    # Python's own EAGAIN is not memory: a full non-blocking pipe (print), a process limit (fork) (review)
    assert not is_out_of_memory(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"))


def encoder_cannot_start(monkeypatch, only: str = ""):
    """Make the encoder of outputs whose name contains ``only`` fail on its first frame, where it opens, with the
    error FFmpeg gave for x264 under a memory cap."""
    import av

    from star_vsr.io.writer import _EncodedSink

    start = _EncodedSink._start

    class FailingStream:  # the opened stream, whose first encode fails as x264's open did
        def __init__(self, stream):
            self.stream = stream

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def encode(self, frame):
            raise av.error.ExternalError(542398533, "Generic error in an external library")

    def start_then_fail(self, height, width):
        start(self, height, width)
        if only in self._container.name:
            self._stream = FailingStream(self._stream)

    monkeypatch.setattr(_EncodedSink, "_start", start_then_fail)


ENCODER_FAILED = r"could not start encoding frames of 64x48, a size it encodes \(Generic error in an external " \
    r"library\): most likely memory ran out; free memory \(close other programs\)"


@pytest.mark.parametrize("codec, name, fresh, resumed", [
    ("h264", "out.mp4", f"^libx264 {ENCODER_FAILED}, or write them with codec=\"ffv1\"$", None),
    ("ffv1", "out.mkv", f"^ffv1 {ENCODER_FAILED}$", None),  # (not "write them with ffv1")
    # x265 refuses some sizes and says not which: a size, unless it encoded the earlier segments at it
    ("h265", "out.mkv", r"^libx265 cannot encode frames of 64x48 \(Generic error in an external library\)",
     r"out.mkv: the h265 encoder could not start on the next frames \(Generic error in an external library\), "
     r"though it encoded the earlier ones at this size: most likely memory ran out; free memory \(close other "
     r"programs\) and call again to go on$")])  # (upscale_video: Python's words)
def test_an_encoder_that_cannot_open_is_not_an_unsupported_size_and_keeps_saved_work(tmp_path, monkeypatch, codec,
                                                                                     name, fresh, resumed):
    """Under a memory cap (``ulimit -v 700000``, 1920x1080 frames) x264 could not open and FFmpeg said only "Generic
    error in an external library" (here hand-made, as FFmpeg raises it): "libx264 cannot encode frames of 1920x1080",
    an UnsupportedVideoError, and a resumed run's saved progress was deleted as the input's fault (black-box hunt).
    x264 takes every size up to 16384 a side (larger ones are refused before), FFV1 any size: memory (review: FFV1
    was told to use FFV1); an encoder that encoded this output's earlier segments at this size: memory too, and
    the saved progress stays."""
    from star_vsr.errors import RanOutOfMemoryError, UnsupportedVideoError
    from star_vsr.upscale import upscale_video

    pipe = build_student_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    source = write_test_video(tmp_path / "in.mp4", 6, size=(12, 16))
    output = tmp_path / name
    step, steps = pipe.student.step_tensors, []
    encoder_cannot_start(monkeypatch)
    with pytest.raises(RanOutOfMemoryError if resumed is None else UnsupportedVideoError, match=fresh):
        upscale_video(pipe, source, output, progress=False, codec=codec)
    assert not partial_folder(output).exists()
    monkeypatch.undo()

    def stop_at_step_4(*args):
        steps.append(1)
        if len(steps) == 4:
            raise KeyboardInterrupt
        return step(*args)

    monkeypatch.setattr(pipe.student, "step_tensors", stop_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(pipe, source, output, progress=False, codec=codec, chunk_size=2, checkpoint_seconds=0)
    monkeypatch.undo()
    encoder_cannot_start(monkeypatch)
    with pytest.raises(RanOutOfMemoryError, match=resumed or fresh):
        upscale_video(pipe, source, output, progress=False, codec=codec, chunk_size=2)
    assert json.loads((partial_folder(output) / MANIFEST).read_text())["frames"] == 2
    monkeypatch.undo()
    upscale_video(pipe, source, output, progress=False, codec=codec, chunk_size=2)
    assert not partial_folder(output).exists() and output.is_file()


def test_degrade_folder_skips_a_clip_whose_encoder_cannot_start(tmp_path, monkeypatch, capsys):
    """The encoder's failure to start was an UnsupportedVideoError, which `degrade FOLDER` skips; as memory running
    out it is skipped too, not the end of the folder's run."""
    gt = tmp_path / "GT"
    gt.mkdir()
    for name in ("a.mkv", "b.mkv"):
        write_test_video(gt / name, num_frames=2, size=(32, 32), codec="ffv1")
    encoder_cannot_start(monkeypatch, only=".a.mkv.")  # (the output's temporary name)
    assert main(["degrade", str(gt), "-o", str(tmp_path / "LR"), "--scale", "2", "--codec", "h264"]) == 1
    err = capsys.readouterr().err
    assert "a.mkv: libx264 could not start encoding frames of 16x16" in err and "most likely memory ran out" in err
    assert sorted(p.name for p in (tmp_path / "LR").iterdir() if not p.name.startswith(".")) == ["b.mkv"]


def test_memory_running_out_in_a_library_s_clothes_is_recognised(tmp_path):
    """Under ulimit -v (black-box hunt): C++'s std::bad_alloc building the model was "the folder is damaged ...
    reinstall star-vsr"; diffusers' lazy import wrapped a MemoryError in a RuntimeError (a traceback); FFmpeg's
    decoder threads that could not start were "decoding failed ...; the file is damaged or truncated"."""
    from pathlib import Path

    import av

    from star_vsr.errors import CorruptVideoError
    from star_vsr.io.reader import _decode

    assert is_out_of_memory(RuntimeError("std::bad_alloc"))
    try:
        try:
            raise MemoryError()
        except MemoryError as error:
            raise RuntimeError("Failed to import diffusers.pipelines.pipeline_utils because of the following "
                               "error (look up to see its traceback):") from error
    except RuntimeError as wrapped:
        assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(RuntimeError("Failed to import x").with_traceback(None))

    class Container:
        def __init__(self, error):
            self.error = error

        def decode(self, stream):
            yield "frame 0"
            raise self.error

    threads = av.error.BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    with pytest.raises(av.error.BlockingIOError):
        list(_decode(Container(threads), None, Path("in.mp4")))
    for damaged in (av.error.InvalidDataError(errno.EINVAL, "Invalid data found when processing input"),
                    av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory")):  # (a damaged header's absurd size)
        with pytest.raises(CorruptVideoError, match="decoding failed after 1 frame .*damaged or truncated"):
            list(_decode(Container(damaged), None, Path("in.mp4")))


def test_only_a_runtime_error_s_cause_is_followed_and_its_details_are_said():
    """(Review) A ValueError raised from a MemoryError is no memory error the handlers catch; a cycle of causes
    raised RecursionError; a wrapped error's amount and words were lost."""
    from star_vsr.errors import memory_amount, memory_error

    def raised_from(error, cause):
        error.__cause__ = cause
        return error

    assert not is_out_of_memory(raised_from(ValueError("bad"), MemoryError()))
    unmapped = ImportError("_core.cpython-311-x86_64-linux-gnu.so: failed to map segment from shared object")
    assert is_out_of_memory(raised_from(RuntimeError("Failed to import diffusers.pipelines"), unmapped))
    assert not is_out_of_memory(raised_from(RuntimeError("Failed to import x"), ImportError("No module named x")))
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert not is_out_of_memory(first)  # (each error once)
    inner = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")
    wrapped = raised_from(RuntimeError("Failed to import a module"), inner)
    assert memory_error(wrapped) is inner and memory_amount(wrapped) == " (allocating 2.00 GiB failed)"
    with pytest.raises(DeviceError, match=r"^out of memory while testing \(allocating 2.00 GiB failed\); do less$"):
        with explain_out_of_memory("testing", "do less"):
            raise wrapped
