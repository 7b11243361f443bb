"""Exporting the student's streaming step (ONNX, TorchScript) and ``star-vsr export``."""

from __future__ import annotations

import copy
import logging
import shutil
import warnings
import zipfile

import numpy as np
import onnx
import pytest
import torch

from star_vsr.cli import main
from star_vsr.errors import InputError, OutputExistsError
from star_vsr.export import INPUT_NAMES, OUTPUT_NAMES, export_student, verify_export
from star_vsr.models import StarStudentModel
from star_vsr.student import build_student_pipeline

#: float32 ONNX / TorchScript against float32 PyTorch (the same maths, reordered).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def student() -> StarStudentModel:
    return build_student_pipeline("tiny", seed=0).student


@pytest.mark.parametrize("format, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_matches_pytorch_over_a_stream(student, tmp_path, format, suffix):
    path = export_student(student, tmp_path / f"student{suffix}", format, 12, 16)
    assert path.is_file()
    assert verify_export(path, student, format, 12, 16, num_frames=3) < TOLERANCE
    # another size or scale than the export's: the TorchScript interpreter's traceback, onnxruntime's, or numpy's
    # "operands could not be broadcast together with shapes (1,3,32,40) (1,3,16,20)"
    with pytest.raises(InputError, match=f"student{suffix} was exported for frames of 16x12, not 16x16: verify it "
                                         f"at the size it was exported for"):
        verify_export(path, student, format, 16, 16)
    with pytest.raises(InputError, match=f"student{suffix} gives outputs of 64x48 and the student at scale 2 of "
                                         f"32x24: verify it with the scale it was exported at"):
        verify_export(path, student, format, 12, 16, scale=2)


def test_a_torchscript_export_from_before_its_input_checks_is_still_verified(student, tmp_path):
    """An export without `_CheckedStep` (no recorded size) failed verify_export with "'RecursiveScriptModule' object
    has no attribute 'height'"."""
    from star_vsr.export import StarStudentStep, example_inputs

    model = copy.deepcopy(student).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch.jit's deprecation and tracer warnings, as export_student's)
        traced = torch.jit.trace(StarStudentStep(model, None), example_inputs(model, 12, 16), check_trace=False)
        torch.jit.save(traced, str(tmp_path / "old.pt"))
    assert verify_export(tmp_path / "old.pt", student, "torchscript", 12, 16, num_frames=2) < TOLERANCE


def test_onnx_export_of_separable_blocks_matches_pytorch(tmp_path):
    student = StarStudentModel.from_preset("tiny", residual_block="separable")
    student.reset_parameters(torch.Generator().manual_seed(0))
    student.eval()
    path = export_student(student, tmp_path / "separable.onnx", "onnx", 12, 16)
    assert verify_export(path, student, "onnx", 12, 16, num_frames=3) < TOLERANCE


def test_onnx_export_at_an_odd_size_and_a_non_integer_scale(student, tmp_path):
    path = export_student(student, tmp_path / "student.onnx", "onnx", 11, 13, scale=2.5)
    assert verify_export(path, student, "onnx", 11, 13, scale=2.5, num_frames=2) < TOLERANCE


def test_exports_record_their_scale_and_frame_size(student, tmp_path):
    """A deployer could tell the scale only from the output size, which x3.9999999 (resampled) and x4 (the x4 head)
    share, and the command said "x4" of both (black-box hunt)."""
    import onnxruntime

    from star_vsr import __version__

    path = export_student(student, tmp_path / "student.onnx", "onnx", 11, 13, scale=2.5)
    metadata = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert metadata.custom_metadata_map == {"star_vsr.scale": "2.5", "star_vsr.lr_height": "11",
                                            "star_vsr.lr_width": "13", "star_vsr.version": __version__}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # (torch.jit.load is deprecated)
        module = torch.jit.load(str(export_student(student, tmp_path / "student.pt", "torchscript", 11, 13)))
    assert (module.scale, module.height, module.width) == (float(student.config.scale), 11, 13)


def test_onnx_graph_names_and_shapes(student, tmp_path):
    import onnxruntime

    path = export_student(student, tmp_path / "student.onnx", "onnx", 12, 16)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    c, cf = student.config.num_channels, student.config.clean_feature_channels
    inputs = {"lr_frame": np.full((1, 3, 12, 16), 0.5, np.float32),
              "hidden": np.zeros((1, c, 12, 16), np.float32),
              "previous_features": np.zeros((1, cf, 12, 16), np.float32),
              "previous_frame": np.zeros((1, 3, 12, 16), np.float32)}
    sr, hidden, previous, previous_frame = session.run(list(OUTPUT_NAMES), inputs)
    assert sr.shape == (1, 3, 48, 64) and hidden.shape == (1, c, 12, 16) and previous.shape == (1, cf, 12, 16)
    assert previous_frame.shape == (1, 3, 12, 16)
    assert np.abs(hidden).sum() > 0  # the state really is produced by the step


def test_export_does_not_change_the_model(student, tmp_path):
    before = {k: v.clone() for k, v in student.state_dict().items()}
    export_student(student, tmp_path / "student.pt", "torchscript", 12, 16)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert student.fuse.weight.is_contiguous(memory_format=torch.channels_last)


def test_an_interrupted_export_leaves_no_file(student, tmp_path, monkeypatch):
    """The file was written in place: a kill or Ctrl-C mid-save left a truncated .onnx (or an empty .pt), which
    the next run then refused to replace ("already exists")."""
    from pathlib import Path

    def half_written(path: Path, data: bytes) -> None:  # the archive is written from memory in one call
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", half_written)
    with pytest.raises(KeyboardInterrupt):
        export_student(student, tmp_path / "student.pt", "torchscript", 12, 16)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file
    monkeypatch.undo()
    export_student(student, tmp_path / "student.pt", "torchscript", 12, 16)
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt"]
    assert zipfile.is_zipfile(tmp_path / "student.pt")  # a whole TorchScript archive


def test_onnx_export_without_its_packages_names_the_extra(student, tmp_path, monkeypatch, capsys):
    """Installed without the export extra, torch's ONNX exporter failed with a traceback (no onnxscript)."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(InputError, match=r'ONNX export needs onnxscript, .*in a clone pip install -e "\.\[export\]", '
                                         r'from a wheel pip install "star_vsr-0\.1\.0-py3-none-any\.whl\[export\]"; '
                                         r'TorchScript \(format="torchscript"\) needs nothing more'):
        export_student(student, tmp_path / "student.onnx", "onnx", 12, 16)  # (Python: it named -o student.pt)
    export_student(student, tmp_path / "student.pt", "torchscript", 12, 16)  # TorchScript needs none of them
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", "-o", str(tmp_path / "s.onnx"), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "ONNX export needs onnxscript and onnxruntime" in err and "TorchScript (-o student.pt) needs" in err
    assert not (tmp_path / "s.onnx").exists()
    monkeypatch.delitem(sys.modules, "onnxscript")  # only onnxruntime missing: only --verify needs it
    assert main(["export", "-o", str(tmp_path / "s.onnx"), "--verify"]) == 2
    assert "checking an ONNX export (--verify) needs onnxruntime" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"checking an ONNX export \(verify_export\) needs onnxruntime"):
        verify_export(tmp_path / "student.pt", student, "onnx", 12, 16)  # (Python: it named --verify)


def test_bad_format_and_scale(student, tmp_path):
    with pytest.raises(InputError, match="format"):
        export_student(student, tmp_path / "x", "tflite", 12, 16)
    with pytest.raises(InputError, match="unsupported scale"):
        export_student(student, tmp_path / "x.onnx", "onnx", 12, 16, scale=6)
    # a side near the 64-bit limit was a torch overflow traceback (the command checked its flags; review)
    with pytest.raises(InputError, match=r"frame sides must be at most 16384 \(the export runs the model once on a "
                                         r"frame of that size\), got 16x10000000000"):
        export_student(student, tmp_path / "x.onnx", "onnx", 10 ** 10, 16)
    for height, width in ((0, 16), (9.5, 16), ("9", 16)):  # 9.5 and "9" were torch.full's / a comparison's TypeError
        with pytest.raises(InputError, match=r"(height|width) must be a whole number >= 1"):
            export_student(student, tmp_path / "x.onnx", "onnx", height, width)
    assert export_student(student, tmp_path / "y.pt", "torchscript", 9.0, np.int64(11)).is_file()  # as YAML may give
    # the scale was float()-ed before its check: True and "4" exported at x1 and x4, "abc" a ValueError
    for scale in (True, "4", "abc", [2]):
        with pytest.raises(InputError, match="the scale must be a real number"):
            export_student(student, tmp_path / "z.pt", "torchscript", 9, 11, scale=scale)
    assert not (tmp_path / "z.pt").exists()
    (tmp_path / "z.pt").write_bytes(b"mine")  # the scale is said first, not that the output exists (review)
    with pytest.raises(InputError, match="unsupported scale 6"):
        export_student(student, tmp_path / "z.pt", "torchscript", 9, 11, scale=6, overwrite=False)


def test_export_and_verify_take_a_pipeline_and_refuse_what_checks_nothing(student, tmp_path):
    """A StarStudentPipeline given for its model was an AttributeError ('... has no attribute float');
    verify_export over num_frames=0 compared nothing and returned 0.0, a perfect match (black-box hunt)."""
    pipe = build_student_pipeline("tiny", seed=0)
    path = export_student(pipe, tmp_path / "p.pt", "torchscript", 9, 11)
    assert verify_export(path, pipe, "torchscript", 9, 11, num_frames=2.0) < 1e-4
    for num_frames in (0, -2, 2.5, "3"):
        with pytest.raises(InputError, match="num_frames must be a whole number >= 1"):
            verify_export(path, pipe.student, "torchscript", 9, 11, num_frames=num_frames)
    with pytest.raises(InputError, match="the scale must be a real number"):
        verify_export(path, pipe, "torchscript", 9, 11, scale="x")
    with pytest.raises(InputError, match="student must be a StarStudentModel .or a StarStudentPipeline., got str"):
        export_student("student", tmp_path / "q.pt", "torchscript", 9, 11)


def test_verify_export_of_a_missing_or_wrong_file_is_an_input_error(student, tmp_path, monkeypatch):
    """onnxruntime's NO_SUCHFILE / InvalidProtobuf and torch's "PytorchStreamReader failed reading zip archive"
    came out of verify_export as they were (black-box test)."""
    torchscript = export_student(student, tmp_path / "step.pt", "torchscript", 9, 11)
    for path, format, message in ((tmp_path / "nope.onnx", "onnx", "nope.onnx does not exist: no exported file"),
                                  (tmp_path, "torchscript", "is not a file: no exported file to verify"),
                                  (torchscript, "onnx", r"step.pt cannot be loaded as an ONNX export \(.*\); is it a "
                                                        r"TorchScript file, or damaged\?")):
        with pytest.raises(InputError, match=message):
            verify_export(path, student, format, 9, 11)
    assert verify_export(torchscript, student, "torchscript", 9.0, np.int64(11)) < 1e-3  # (9.0: torch.full's error)
    import importlib.util

    onnx_file = export_student(student, tmp_path / "step.onnx", "onnx", 9, 11)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("onnx") and
                        name != "onnxruntime" else find_spec(name, *a))
    assert verify_export(onnx_file, student, "onnx", 9, 11) < 1e-3  # a check needs onnxruntime alone
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else
                        find_spec(name, *a))
    with pytest.raises(InputError, match="checking an ONNX export .* needs onnxruntime"):  # it read as damaged
        verify_export(onnx_file, student, "onnx", 9, 11)


def test_export_command(tmp_path, capsys):
    folder = tmp_path / "student"
    build_student_pipeline("tiny", seed=1).save_pretrained(folder)
    output = tmp_path / "student.onnx"
    args = ["export", "--model", str(folder), "--format", "onnx", "-o", str(output), "--height", "10",
            "--width", "14", "--verify"]
    assert main(args) == 0
    assert output.is_file()
    assert "largest |onnx - PyTorch|" in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite
    capsys.readouterr()
    # the format follows the file name, and a name of the other format is refused (an ONNX file named .pt was
    # written without a word)
    assert main(args + ["--overwrite", "--format", "torchscript"]) == 2
    assert "student.onnx is the name of an ONNX file but --format is torchscript; name it student.pt" in capsys.readouterr().err
    size = ["--height", "10", "--width", "14"]
    assert main(["export", "--model", str(folder), "-o", str(tmp_path / "student.pt")] + size) == 0
    assert "(torchscript, 14x10 LR frames -> 56x40, x4)" in capsys.readouterr().out
    assert main(["export", "--model", str(folder), "-o", str(tmp_path / "student.bin")] + size) == 2
    assert "pass --format onnx or torchscript" in capsys.readouterr().err
    # named, before the model loads ("frame size must be positive, got 14x0" after it; black-box hunt)
    assert main(["export", "--model", str(tmp_path / "nowhere"), "-o", str(tmp_path / "h.pt"), "--height", "0"]) == 2
    assert "--height must be >= 1, got 0" in capsys.readouterr().err
    for flag, value in (("--height", "99999999999999999999"), ("--width", "10000000000")):  # torch tracebacks
        assert main(["export", "-o", str(tmp_path / "h.onnx"), flag, value]) == 2
        assert f"{flag} must be <= 16384 (the export runs the model once on a frame of that size), got {value}" in \
            capsys.readouterr().err
    for model, what in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "student.pt", "is not a folder")):
        assert main(["export", "--model", str(model), "-o", str(tmp_path / "h.onnx")]) == 2  # (both "not a folder")
        assert f"--model {model} {what}; it takes a student pipeline folder" in capsys.readouterr().err
    # an existing folder as -o, empty or not, with --overwrite too: refused before any work, naming a file in it
    # (an empty one gave "Is a directory" after the export; a full one said to write to an empty folder)
    for name, files in (("empty-out", []), ("full-out", ["a.txt"])):
        target = tmp_path / name
        target.mkdir()
        for file in files:
            (target / file).write_text("x")
        assert main(["export", "--model", str(folder), "-o", str(target), "--format", "onnx", "--overwrite"] + size) == 2
        assert f"{target} is a folder; name the file to write: -o {target / 'student.onnx'}" in capsys.readouterr().err
        assert sorted(p.name for p in target.iterdir()) == files
        assert main(["export", "--model", str(folder), "-o", str(target)] + size) == 2  # no --format: the same
        assert f"{target} is a folder; name the file to write: -o {target / 'student.onnx'}" in capsys.readouterr().err
    assert main(["export", "--model", str(folder), "-o", str(tmp_path / "new.onnx") + "/"] + size) == 2
    assert "new.onnx/ ends with '/', a folder, but names a file" in capsys.readouterr().err
    assert not (tmp_path / "new.onnx").exists()
    # a folder that is no pipeline: the student's help, not how to get STAR's weights
    (tmp_path / "empty").mkdir()
    assert main(["export", "--model", str(tmp_path / "empty"), "-o", str(tmp_path / "y.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not a student pipeline folder" in err and "distill_student" in err and "convert-star" not in err
    assert main(["export", "--model", str(tmp_path / "none"), "--format", "onnx", "-o", str(tmp_path / "y.onnx")]) == 2
    # a StarVSR folder, whole or with a part missing: what export takes, not "the student pipeline at ... lists
    # 'unet', but ... is missing" (black-box hunt)
    from star_vsr.testing import tiny_star_pipeline

    tiny_star_pipeline(seed=0).save_pretrained(tmp_path / "star")
    for missing in ("", "unet"):
        if missing:
            shutil.rmtree(tmp_path / "star" / missing)
        capsys.readouterr()
        assert main(["export", "--model", str(tmp_path / "star"), "-o", str(tmp_path / "y.onnx")]) == 2
        assert capsys.readouterr().err.endswith(f"{tmp_path / 'star'} holds a StarVSRPipeline; only student "
                                                f"pipelines can be exported\n")
    # -o inside the model folder, --overwrite or not, replaced the weights it read (the shipped student too)
    weights = folder / "student" / "diffusion_pytorch_model.safetensors"
    before = weights.read_bytes()
    capsys.readouterr()
    assert main(["export", "--model", str(folder), "-o", str(weights), "--format", "torchscript", "--overwrite"]
                + size) == 2
    assert f"-o {weights} is a file of the model being exported ({folder}); write the export elsewhere" \
        in capsys.readouterr().err
    assert weights.read_bytes() == before
    assert main(["export", "--model", str(folder), "-o", str(folder / "student.pt")] + size) == 0  # a new file: fine


def test_an_export_does_not_replace_a_file_that_appeared_meanwhile_without_overwrite(student, tmp_path):
    """Two exports to one name: the later one replaced the earlier one's file without --overwrite (and said
    "wrote" for a file that held the other's frame size)."""
    output = tmp_path / "student.onnx"

    def another_run_writes(written):  # called between the export and its move into place
        output.write_bytes(b"the other run's export")

    with pytest.raises(OutputExistsError, match="appeared while this run was writing it"):
        export_student(student, output, "onnx", 12, 16, check=another_run_writes, overwrite=False)
    assert output.read_bytes() == b"the other run's export"
    assert [p.name for p in tmp_path.iterdir()] == ["student.onnx"]  # no temporary file left
    export_student(student, output, "onnx", 12, 16, check=another_run_writes)  # the default replaces it
    assert output.read_bytes() != b"the other run's export"


def test_an_existing_output_or_dangling_link_is_refused_before_the_export(student, tmp_path, monkeypatch, capsys):
    """-o naming a link to a missing file passed the first check (Path.exists), ran the whole export, then said the
    file "appeared while this run was writing it"; export_student(overwrite=False) onto a file did the same."""
    import star_vsr.export as export

    def no_export(*args):
        raise AssertionError("exported although the output is refused")

    monkeypatch.setattr(export, "_save_step", no_export)
    (tmp_path / "old.pt").write_bytes(b"kept")
    with pytest.raises(OutputExistsError, match="old.pt already exists; pass overwrite=True to replace it"):
        export_student(student, tmp_path / "old.pt", "torchscript", 12, 16, overwrite=False)
    link = tmp_path / "link.pt"
    link.symlink_to(tmp_path / "missing" / "student.pt")
    assert main(["export", "-o", str(link), "--height", "8", "--width", "8"]) == 2
    assert f"link.pt already exists: it is a link to {tmp_path / 'missing' / 'student.pt'}, which does not exist; " \
        "pass --overwrite to replace it" in capsys.readouterr().err
    assert (tmp_path / "old.pt").read_bytes() == b"kept" and link.is_symlink()


def test_onnx_export_at_a_non_integer_scale_logs_nothing(student, tmp_path, caplog):
    """The ONNX optimiser logged 'Skipping constant folding for op Split with multiple outputs.' to the user."""
    with caplog.at_level(logging.WARNING):
        export_student(student, tmp_path / "student.onnx", "onnx", 12, 16, scale=2.5)
    assert not [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir"))], caplog.text


def test_onnx_stream_with_the_readme_scene_cut_reset_equals_the_pipeline(tmp_path):
    """README's onnxruntime loop zeroes the state where ``star_vsr.scene_cuts`` finds a cut; that is what
    ``StarStudentPipeline`` does, so the two give the same frames on a clip with a cut (without the reset the
    frames after it differ)."""
    import onnxruntime

    from star_vsr.scene_cuts import scene_cuts

    pipe = build_student_pipeline("tiny", seed=0)
    generator = torch.Generator().manual_seed(0)
    dark, bright = torch.rand(3, 3, 12, 16, generator=generator) * 0.3, 0.7 + torch.rand(3, 3, 12, 16) * 0.3
    frames = torch.cat([dark, bright])  # (6, 3, 12, 16), a cut before frame 3
    expected = pipe(frames, output_type="pt").frames[0]  # (6, 3, 48, 64)
    path = export_student(pipe.student, tmp_path / "student.onnx", "onnx", 12, 16)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def stream(reset: bool) -> torch.Tensor:
        zeros = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()[1:]}
        state, previous, out = zeros, None, []
        for frame in frames.numpy()[:, None]:  # (1, 3, 12, 16) each, as the README's loop
            if reset and previous is not None and scene_cuts(torch.from_numpy(frame), torch.from_numpy(previous))[0]:
                state = zeros
            sr, *next_state = session.run(None, {"lr_frame": frame, **state})
            state, previous = dict(zip(state, next_state)), frame
            out.append(np.clip(sr, 0, 1)[0])
        return torch.from_numpy(np.stack(out))

    torch.testing.assert_close(stream(reset=True), expected, atol=TOLERANCE, rtol=0)
    assert (stream(reset=False)[3:] - expected[3:]).abs().max() > 10 * TOLERANCE


def test_torchscript_refuses_other_frame_sizes(student, tmp_path):
    """Traced at a non-integer scale, its output size was a constant: a 64x96 frame came out 48x72 without an
    error, where ONNX refuses another size itself (black-box review)."""
    import warnings

    path = export_student(student, tmp_path / "x15.pt", "torchscript", 32, 48, 1.5)
    assert verify_export(path, student, "torchscript", 32, 48, 1.5, num_frames=2) < TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in torch 2.14
        module = torch.jit.load(str(path))
    state = student.init_state(1, 64, 96, device=torch.device("cpu"), dtype=torch.float32).tensors()
    with pytest.raises(torch.jit.Error, match=r"this export takes lr_frame of 48x32 pixels, got 96x64; export again"):
        module(torch.rand(1, 3, 64, 96), *state)
    # the state's shapes were documented only in star_vsr/export.py; another one failed with "The size of tensor a
    # (17) must match the size of tensor b (18)", and uint8 frames ran and came out as garbage
    frame = torch.rand(1, 3, 32, 48)
    initial = module.initial_state(frame)
    expected = student.init_state(1, 32, 48, device=torch.device("cpu"), dtype=torch.float32).tensors()
    assert [tuple(t.shape) for t in initial] == [tuple(t.shape) for t in expected]
    assert all(torch.equal(a, b) for a, b in zip(initial, expected))
    with pytest.raises(torch.jit.Error, match=r"takes hidden of shape \[1, \d+, 32, 48\], got \[1, \d+, 31, 48\]; "
                                              r"start a stream from initial_state\(lr_frame\)"):
        module(frame, initial[0][:, :, 1:], *initial[1:])
    with pytest.raises(torch.jit.Error, match=r"takes float32 frames with values in \[0, 1\] \(uint8 / 255.0\)"):
        module((frame * 255).to(torch.uint8), *initial)
    # float frames on 8-bit levels ran and came out as garbage
    with pytest.raises(torch.jit.Error, match=r"takes float32 frames with values in \[0, 1\] \(uint8 / 255.0\), "
                                              r"got values from about 0 to 255"):
        module(torch.cat([torch.zeros(1, 3, 1, 48), torch.full((1, 3, 31, 48), 255.0)], 2), *initial)
    module(frame.clamp(0.1, 0.9) * 1.2 - 0.1, *initial)  # a bicubic resize's overshoot is not refused
    for bad in (float("nan"), float("inf")):  # NaN passed the range check; inf printed as -9223372036854775808
        with pytest.raises(torch.jit.Error, match=r"got values that are not finite \(inf or NaN\)"):
            module(torch.cat([frame[:, :, :1] * bad, frame[:, :, 1:]], 2), *initial)
    # two frames at once failed deep inside ("grid_sampler(): expected grid and input to have same batch size")
    with pytest.raises(torch.jit.Error, match=r"takes one RGB frame at a time, lr_frame of shape \[1, 3, 32, 48\], "
                                              r"got \[2, 3, 32, 48\]"):
        module(torch.rand(2, 3, 32, 48), *initial)


def test_a_torchscript_stream_needs_no_torch_no_grad(student, tmp_path):
    """The saved module's parameters required grad, so the README's loop (no torch.no_grad()) chained every
    frame's autograd graph through the state: memory grew with every frame (185 MiB a 320x180 frame) and
    sr.numpy() failed (black-box review)."""
    import warnings

    path = export_student(student, tmp_path / "student.pt", "torchscript", 12, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in torch 2.14
        module = torch.jit.load(str(path))
    assert not any(parameter.requires_grad for parameter in module.parameters())
    frame = torch.rand(1, 3, 12, 16)
    state = module.initial_state(frame)
    for _ in range(3):
        sr, *state = module(frame, *state)
        assert not sr.requires_grad and all(tensor.grad_fn is None for tensor in state)
    assert sr.numpy().shape == (1, 3, 48, 64)
    assert all(parameter.requires_grad for parameter in student.parameters())  # the model itself is left as it was


@pytest.mark.parametrize("scale", [4, 2.5])  # the integer head (pixel shuffle) and the scale-aware upsampler
def test_torchscript_step_follows_its_inputs_device(student, tmp_path, scale):
    """The traced step held torch.arange / torch.eye / torch.full made on the export's device (the CPU) as
    constants, so the file could not run on a GPU (a CPU grid added to CUDA flow); no device may be baked in."""
    import warnings

    path = export_student(student, tmp_path / "student.pt", "torchscript", 12, 16, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in torch 2.14
        module = torch.jit.load(str(path))
    code = "\n".join(getattr(submodule, "code", "") for _, submodule in module.named_modules())  # containers: none
    assert "grid_sampler" in code  # the warp, whose sampling grid was one of them, is in the traced code
    assert "torch.device(" not in code
    assert verify_export(path, student, "torchscript", 12, 16, scale, num_frames=3) < TOLERANCE


def test_export_failures_leave_nothing_at_the_output(tmp_path, capsys, monkeypatch):
    """A failed --verify left the unverified file at -o (the next run then needed --overwrite); a full disk under
    TorchScript aborted the process inside torch.jit.save; running out of memory said to use a smaller input."""
    import errno
    from pathlib import Path

    import star_vsr.cli.export as export_cli

    folder = tmp_path / "student"
    build_student_pipeline("tiny", seed=1).save_pretrained(folder)
    out = tmp_path / "out"
    args = ["export", "--model", str(folder), "--height", "8", "--width", "8"]
    monkeypatch.setattr(export_cli, "VERIFY_TOLERANCE", 0.0)
    assert main([*args, "-o", str(out / "a.onnx"), "--verify"]) == 2
    assert f"> 0; nothing was written to {out / 'a.onnx'}" in capsys.readouterr().err
    assert not out.exists()  # nor the folder made for it (it was left empty, as if something were written)
    out.mkdir()  # a folder there before the run is kept
    assert main([*args, "-o", str(out / "deeper" / "a.onnx"), "--verify"]) == 2
    assert list(out.iterdir()) == []
    monkeypatch.undo()

    def disk_full(path: Path, data: bytes) -> None:
        with open(path, "wb") as file:
            file.write(data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    for verify in ([], ["--verify"]):  # named as -o, not as a hidden temporary file; a failure of the run: status 1
        assert main([*args, "-o", str(out / "b.pt"), *verify]) == 1
        assert f"cannot write {out / 'b.pt'}: No space left on device" in capsys.readouterr().err
        assert list(out.iterdir()) == []
    monkeypatch.undo()

    def out_of_memory(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 111.76 GiB")

    import star_vsr.export  # (the command imports export_student from it when it runs)

    monkeypatch.setattr(star_vsr.export, "export_student", out_of_memory)
    assert main([*args, "-o", str(out / "c.onnx")]) == 2
    assert "lower --height / --width (the export runs the model once at that size)" in capsys.readouterr().err
