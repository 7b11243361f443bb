"""The training scripts' shared settings loader and checkpoint bookkeeping (star_vsr.training_run)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from star_vsr.errors import InputError, OutputError
from star_vsr.testing import code_running_pickle
from star_vsr.training_run import (SettingsParser, bool_value, changed_settings, check_output_dir, check_run_settings,
                                   checkpoint_folders, checkpoint_step, clear_old_run, parse_with_config,
                                   optional_value, prepare_output_dir, prune_checkpoints, record_run_settings,
                                   resume_checkpoint, save_checkpoint, train_steps)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=None)
    p.add_argument("--learning_rate", type=float, default=1.0)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--layers", nargs="+", default=["a"])
    p.add_argument("--scale_range", type=float, nargs=2, default=None)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--mode", default="x", choices=("x", "y"))
    p.add_argument("--overrides", type=json.loads, default={})
    p.add_argument("--caption", type=str, default="a video")
    p.add_argument("--data", type=optional_value(str, empty_is_none=False), default=None)
    return p


def test_config_values_are_defaults_that_flags_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 5e-4\nscale: 2\nlayers: [b, c]\nscale_range: [1, 4]\nflip: true\n"
                      "overrides: {blocks: 6}\n")
    args = parse_with_config(parser(), ["--config", str(config), "--scale", "3"])
    assert args.learning_rate == 5e-4 and args.scale == 3  # YAML reads 5e-4 as text; the flag's type makes it a float
    assert args.layers == ["b", "c"] and args.scale_range == [1.0, 4.0] and args.flip is True
    assert args.overrides == {"blocks": 6}
    assert parse_with_config(parser(), []).learning_rate == 1.0


def test_a_tilde_in_a_path_setting_is_the_home_folder(tmp_path, monkeypatch):
    """``output_dir: ~/run`` in a config (or ``--output_dir=~/run``, which no shell expands): the models went to
    $HOME/run and the checkpoints, logs and settings to a folder named ``~`` in the working directory, whose
    checkpoints could not be resumed (black-box hunt)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "run.yaml").write_text("output_dir: ~/run\ndata: ~/photos\n")
    p = SettingsParser(path_settings=("output_dir", "data"))
    p.add_argument("--config", default=None)
    p.add_argument("--output_dir", default="out")
    p.add_argument("--data", default=None)
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--logging_dir", default="logs")
    args = parse_with_config(p, ["--config", "~/run.yaml", "--resume_from_checkpoint=~/run/checkpoint-2"])
    home = str(tmp_path / "home")
    assert (args.output_dir, args.data) == (f"{home}/run", f"{home}/photos")
    assert (args.resume_from_checkpoint, args.logging_dir) == (f"{home}/run/checkpoint-2", "logs")


def test_help_is_shown_whatever_the_config_holds(tmp_path, capsys):
    """--help with a broken --config printed the config's error instead of the help (black-box hunt)."""
    config = tmp_path / "run.yaml"
    config.write_text("scale: 2\nscale: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_with_config(parser(), ["--config", str(config), "--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_two_config_files_are_refused(tmp_path, capsys):
    """--config A --config B used B alone, without a word (black-box hunt)."""
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("scale: 2\n")
    with pytest.raises(SystemExit) as refused:
        parse_with_config(parser(), ["--config", str(tmp_path / "a.yaml"), "--config", str(tmp_path / "b.yaml")])
    assert refused.value.code == 2 and "--config is given 2 times" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--config", "", "--config", str(tmp_path / "b.yaml")])
    assert "--config is an empty path" in capsys.readouterr().err


def test_a_whole_float_is_a_whole_number_setting(tmp_path, capsys):
    """``scale: 2.0`` (and ``max_train_steps: 1000.0``) were refused as "must be int, got 2.0" / "must be a whole
    number ..., got 1000.0" (black-box hunt); a float setting keeps its float, a fraction is still refused."""
    config = tmp_path / "run.yaml"
    config.write_text("scale: 2.0\nlearning_rate: 2.0\nscale_range: [1.0, 4.0]\n")
    args = parse_with_config(parser(), ["--config", str(config)])
    assert (args.scale, type(args.scale), args.learning_rate, args.scale_range) == (2, int, 2.0, [1.0, 4.0])
    steps = parser()
    steps.add_argument("--max_train_steps", type=train_steps, default=1)
    config.write_text("max_train_steps: 1000.0\n")
    assert parse_with_config(steps, ["--config", str(config)]).max_train_steps == 1000
    config.write_text("max_train_steps: 1000.5\n")
    with pytest.raises(SystemExit):
        parse_with_config(steps, ["--config", str(config)])
    config.write_text("max_train_steps: 0.0\n")  # refused in the words of the value as written (review)
    with pytest.raises(SystemExit):
        parse_with_config(steps, ["--config", str(config)])
    assert "got 0.0" in capsys.readouterr().err
    steps.add_argument("--gt_usm", type=bool_value, default=False)  # a true-or-false flag takes no 1.0 (review)
    config.write_text("gt_usm: 1.0\n")
    with pytest.raises(SystemExit):
        parse_with_config(steps, ["--config", str(config)])


def test_quoted_text_that_yaml_would_read_otherwise_is_taken_as_written(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("caption: 'no'\ndata: \"2024_12\"\nlayers: ['010', b]\n")
    args = parse_with_config(parser(), ["--config", str(config)])
    assert (args.caption, args.data, args.layers) == ("no", "2024_12", ["010", "b"])
    config.write_text("layers: b\n")  # one value of a list setting, as --layers b takes it (it was refused)
    assert parse_with_config(parser(), ["--config", str(config)]).layers == ["b"]


@pytest.mark.parametrize("text, message", [
    ("learnig_rate: 0.5\n", "unknown settings ['learnig_rate'] (did you mean learning_rate?)"),  # (black-box hunt)
    ("learnig_rate: 0.5\nscael: 2\n", "unknown settings ['learnig_rate', 'scael'] (did you mean learnig_rate -> "
                                     "learning_rate, scael -> scale?)"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("scale: [1\n", "is not valid YAML"),
    ("scale: 1.5\n", "scale must be int, got 1.5"),
    ("scale: [2]\n", "scale must be a single value, got [2]"),
    ("learning_rate: true\n", "learning_rate must be a number"),
    ("layers: []\n", "layers must be a list of one or more values"),
    ("layers: {a: 1}\n", "layers must be a list of one or more values, got {'a': 1}"),  # (not "a single value")
    ("scale_range: [1, 2, 3]\n", "scale_range must be a list of 2 values"),
    ("flip: 1\n", "flip must be true or false"),
    ("mode: z\n", "mode must be one of x, y, got 'z'"),
    # found by a black-box test of the configs: null where a value is needed was a TypeError traceback later on,
    # the line of a YAML error was cut off, numeric keys broke the sorting of the unknown ones
    ("scale: null\n", "scale needs a value (null or nothing after the colon is not one here)"),
    ("scale:\n", "scale needs a value"),
    ("layers: null\n", "layers needs a value"),
    ("a: 1\n  b: [\n", "is not valid YAML (line 2, column 4): mapping values are not allowed here"),
    ("1: 2\nfoo: 3\n", "unknown settings ['1', 'foo']"),
    # a config naming another (an include) is no run's record, whose keys are left out (review)
    ("config: base.yaml\nresume_from_checkpoint: latest\n", "run.yaml: config: base.yaml names another config "
                                                             "file; a config cannot include one"),
    ("scale: 2\nmode: x\nscale: 3\n", "is not valid YAML (line 3, column 1): 'scale' is given twice"),  # 3 won
    ("? [a, b]\n: 1\n", "a list or mapping cannot be a setting's name"),  # a TypeError traceback
    ("scale: " + "[" * 5000 + "]" * 5000 + "\n", "is not a settings file: its collections are nested too deep "
                                                 "(hundreds of levels)"),  # a RecursionError traceback (black-box hunt)
    # a flag of type=str took a list or mapping as its JSON text: caption '["a", "b"]' (black-box hunt)
    ("caption: [a, b]\n", "caption must be a single value, got ['a', 'b']"),
    ("caption: {a: 1}\n", "caption must be a single value, got {'a': 1}"),
    ("data: [a.mp4, b.mp4]\n", "data must be a single value, got ['a.mp4', 'b.mp4']"),  # a path flag too (review)
    # YAML 1.1 turns unquoted text into other values: caption "False", a log folder 202412, "8" (black-box hunt)
    ("caption: no\n", "caption takes text, but YAML read the unquoted value as bool False (it reads no, on or "
                      "1_000 so): put the text in quotes"),
    ("data: 2024_12\n", "data takes text, but YAML read the unquoted value as int 202412"),
    # and numbers in a base nobody meant: max_train_steps: 010 trained 8 steps (black-box hunt)
    ("caption: 010\n", "run.yaml (line 1, column 10): YAML reads 010 as the octal number 8; write the number in "
                       "decimal, or put text in quotes"),
    ("steps: 010\n", "run.yaml (line 1, column 8): YAML reads 010 as the octal number 8"),
    ("layers: [a, 1:30]\n", "run.yaml (line 1, column 13): YAML reads 1:30 as the base-60 number 90"),
    ("lr: 1:30.5\n", "run.yaml (line 1, column 5): YAML reads 1:30.5 as the base-60 number 90.5"),
])
def test_bad_configs_are_one_line_argument_errors(tmp_path, capsys, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        parse_with_config(parser(), ["--config", str(config)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--config", str(tmp_path / "missing.yaml")])
    assert "does not exist" in capsys.readouterr().err


def test_config_null_clears_only_settings_that_may_be_none_and_the_command_line_can_undo_a_config(tmp_path, capsys):
    p = parser()
    p.add_argument("--trainable", type=optional_value(str), nargs="+", default=None)
    p.add_argument("--limit", type=optional_value(int), default=5)
    p.add_argument("--rotate", type=bool_value, nargs="?", const=True, default=False)
    p.add_argument("--precision", type=optional_value(str), choices=(None, "no", "bf16"), default=None)
    config = tmp_path / "run.yaml"
    config.write_text("scale_range: null\nlimit: null\ntrainable: [head]\nrotate: true\nprecision: no\n")
    args = parse_with_config(p, ["--config", str(config)])
    assert args.scale_range is None and args.limit is None and args.trainable == ["head"] and args.rotate is True
    assert args.precision == "no"  # YAML 1.1 reads an unquoted no as false: mixed_precision: no
    args = parse_with_config(p, ["--config", str(config), "--trainable", "none", "--rotate", "false"])
    assert args.trainable is None and args.rotate is False  # store_true flags could not be turned off, lists cleared
    assert parse_with_config(p, ["--rotate"]).rotate is True
    with pytest.raises(SystemExit):
        parse_with_config(p, ["--trainable", "head", "none"])
    assert "--trainable takes none alone" in capsys.readouterr().err
    for argv, message in ((["--config"], "argument --config: expected one argument"),
                          (["--config", str(tmp_path)], "is a folder; name a YAML file")):
        script_parser = SettingsParser(prog="x.py")
        script_parser.add_argument("--config")
        with pytest.raises(SystemExit):
            parse_with_config(script_parser, argv)
        err = capsys.readouterr().err
        assert err.startswith("x.py: error: ") and message in err and "usage" not in err, err


def test_help_says_each_default_once_and_only_real_ones():
    """--help printed "(default: None)" after "(default: the launcher's ...)" and "(default: False)" after flags."""
    p = SettingsParser(prog="x.py")
    p.add_argument("--precision", default=None, help="precision (default: the launcher's)")
    p.add_argument("--dir", default=None, help="a folder")
    p.add_argument("--flag", action="store_true", help="turn it on")
    p.add_argument("--steps", type=int, default=0, help="steps")
    p.add_argument("--rate", type=float, default=0.5, help="rate")
    text = " ".join(p.format_help().split())
    assert "(default: the launcher's) (default" not in text and "(default: None)" not in text
    assert "(default: False)" not in text
    assert "steps (default: 0)" in text and "rate (default: 0.5)" in text  # 0 is a real default, not False


def test_the_launchers_precision_is_the_runs_and_the_seed_must_fit(tmp_path, monkeypatch):
    """A precision that ``accelerate launch --mixed_precision bf16`` chose was recorded as null (train_star) or
    overridden by the script's default no (distill_student); a seed out of range was a traceback from Accelerate."""
    args = argparse.Namespace(learning_rate=1.0, lr_scheduler="constant_with_warmup", lr_warmup_steps=0,
                              adam_beta1=0.9, adam_beta2=0.99,
                              adam_weight_decay=0.0, adam_epsilon=1e-8, max_grad_norm=1.0, dataloader_num_workers=0,
                              checkpoints_total_limit=None, checkpointing_steps=10, validation_steps=0, seed=0,
                              mixed_precision=None, output_dir=str(tmp_path / "run"), resume_from_checkpoint=None,
                              overwrite_output_dir=False, max_train_steps=10)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    check_run_settings(args, parser())
    assert args.mixed_precision == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    args.mixed_precision = None
    check_run_settings(args, parser())
    assert args.mixed_precision == "bf16"
    args.mixed_precision = "no"  # the script's own flag wins
    check_run_settings(args, parser())
    assert args.mixed_precision == "no"
    for seed in (-1, 2 ** 32):
        args.seed = seed
        with pytest.raises(InputError, match=r"--seed must be in \[0, 4294967295\]"):
            check_run_settings(args, parser())


def test_a_training_scripts_errors_are_said_once_or_by_the_process_they_stop(monkeypatch, capsys):
    """Under accelerate launch --num_processes 2 every error was printed by both processes, as a bare 'error: '."""
    from star_vsr.training_run import script_error

    parser = SettingsParser(prog="distill_student.py")
    for rank, said in (("0", "distill_student.py: error: bad (see --help)\n"), ("1", "")):
        monkeypatch.setenv("RANK", rank)  # the same argument error on every process: the first says it
        with pytest.raises(SystemExit) as exit_info:
            parser.error("bad")
        assert exit_info.value.code == 2 and capsys.readouterr().err == said
    monkeypatch.setenv("WORLD_SIZE", "2")  # a run's error: each process says its own
    assert script_error("train_star.py", InputError("no data")) == "[process 1] train_star.py: error: no data"
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert script_error("train_star.py", InputError("no data")) == "train_star.py: error: no data"


def test_checkpoints_are_ordered_by_step_and_pruned_oldest_first(tmp_path):
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-100", "checkpoint-final", "logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert checkpoint_step(tmp_path / "checkpoint-100") == 100
    assert prune_checkpoints(tmp_path, None) == []
    assert [p.name for p in prune_checkpoints(tmp_path, 2)] == ["checkpoint-9"]
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-10", "checkpoint-100"]
    assert (tmp_path / "checkpoint-final").is_dir() and checkpoint_folders(tmp_path / "missing") == []


class _OneProcess:
    """What `save_checkpoint` uses of an Accelerator, for one process; `save_state` writes two files,
    and fails between them when `fail` is set (a kill or a full disk while saving)."""

    is_main_process, num_processes = True, 1

    def __init__(self) -> None:
        self.fail = False

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_text("weights")
        if self.fail:
            raise OSError(28, "No space left on device")
        (Path(folder) / "optimizer.bin").write_text("optimizer")


def test_checkpoints_are_saved_whole_or_not_at_all(tmp_path):
    accelerator = _OneProcess()
    for step in (2, 4, 6):
        save_checkpoint(accelerator, tmp_path, step, limit=2)
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    accelerator.fail = True
    with pytest.raises(OSError):
        save_checkpoint(accelerator, tmp_path, 8, limit=2)
    # the half-written state is hidden, nothing was pruned, and `latest` is the last whole checkpoint
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    assert resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-6"
    accelerator.fail = False
    save_checkpoint(accelerator, tmp_path, 8, limit=2)  # clears the leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6", "checkpoint-8"]
    # one left at another step (stopped while saving, resumed from an earlier checkpoint) stayed for good
    accelerator.fail = True
    with pytest.raises(OSError):
        save_checkpoint(accelerator, tmp_path, 10, limit=2)
    (tmp_path / ".checkpoint-3.old").mkdir()  # a checkpoint set aside by a save killed before deleting it
    accelerator.fail = False
    save_checkpoint(accelerator, tmp_path, 9, limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-8", "checkpoint-9"]
    shutil.rmtree(tmp_path / "checkpoint-9")
    assert (tmp_path / "checkpoint-8" / "optimizer.bin").is_file()
    # gone on from checkpoint-6 (--resume_from_checkpoint .../checkpoint-6): checkpoint-8 is of the abandoned
    # run; the new step-7 state replaces it for `latest`, and pruning never drops the new one
    save_checkpoint(accelerator, tmp_path, 7, limit=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-7"]
    assert resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-7"


def test_a_checkpoint_the_disk_cannot_hold_is_one_line_error_that_keeps_errno_and_leaves_nothing(tmp_path):
    """A full disk while saving a checkpoint ended distill_student.py with safetensors' traceback, leaving the
    half-written hidden folder (exit 1 by accident); it is one error naming the checkpoint and how to go on, with the
    errno that makes the script exit 1 (a failure, not a setting)."""
    from safetensors import SafetensorError

    class DiskFills(_OneProcess):
        def save_state(self, folder: str) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_text("half")
            raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")

    class TorchSaveFills(_OneProcess):  # the optimizer's state, by torch.save (accelerate's save_state)
        def save_state(self, folder: str) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            torch.save({"state": torch.zeros(100_000)}, "/dev/full")

    save_checkpoint(_OneProcess(), tmp_path, 2, limit=None)
    with pytest.raises(OutputError, match=r"cannot save checkpoint-4 in .* \(Error while serializing: I/O error: "
                                          r"File too large \(os error 27\)\); checkpoints saved before, if any, are "
                                          r"whole: free some space, then --resume_from_checkpoint latest$") as refused:
        save_checkpoint(DiskFills(), tmp_path, 4, limit=None)
    assert refused.value.errno == errno.EFBIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    if Path("/dev/full").exists():
        with pytest.raises(OutputError, match=r"cannot save checkpoint-4 in .* \(PyTorch wrote less than it had to: a "
                                              r"full disk or a file-size limit\); .*--resume_from_checkpoint latest$"):
            save_checkpoint(TorchSaveFills(), tmp_path, 4, limit=None)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


@pytest.mark.parametrize("error, message", [
    # (it said "then run the same command again", which is refused: the output folder holds a run)
    ("OSError(errno.EFBIG, 'File too large')", "a write failed: File too large (a full disk or a file-size limit: "
                                               "free some space, then run it again with --resume_from_checkpoint "
                                               "latest)"),
    ("cannot_write('out/model.safetensors', OSError(errno.ENOSPC, 'No space left on device'))",
     "cannot write out/model.safetensors: No space left on device"),
    ("InputError('--crop_size 3 is too small')", "--crop_size 3 is too small"),
    ("RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598')",  # torch.save's
     "a write failed: PyTorch wrote less than it had to: a full disk or a file-size limit"),
])
def test_a_training_script_stops_on_a_full_disk_with_one_line_and_status_1(error, message):
    """A full disk while a training script built its model (a library's write) ended it with a traceback; one while
    saving its final model exited 2, as for a setting, where `star-vsr` exits 1: both are one line and status 1,
    and a setting error stays status 2."""
    import subprocess
    import sys

    script = ("import errno\nfrom star_vsr.errors import InputError, cannot_write\n"
              "from star_vsr.training_run import run_script\n"
              f"def run():\n    raise {error}\nrun_script('train.py', run)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip() == f"train.py: error: {message}"
    assert result.returncode == (2 if error.startswith("InputError") else 1)


def test_a_process_whose_peer_stopped_says_so_in_one_line():
    """When one process of a 2-process run stopped with its one-line error, the other printed gloo's 30-line
    traceback ("Connection closed by peer") from the collective it was waiting in (black-box hunt)."""
    import os
    import subprocess
    import sys

    script = ("from star_vsr.training_run import run_script\n"
              "def run():\n    raise RuntimeError('[../gloo/transport/tcp/pair.cc:561] Connection closed by peer "
              "[127.0.0.1]:29500')\nrun_script('train.py', run)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "WORLD_SIZE": "2", "RANK": "1"})
    assert result.stderr.strip() == "[process 1] train.py: error: another process of this run stopped (its error " \
                                    "is above), and this one with it"
    assert result.returncode == 1
    alone = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "WORLD_SIZE": "1"})
    assert "Traceback" in alone.stderr  # (one process: no peer, a bug to show whole)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_training_script_shows_warnings_as_one_line_also_from_its_data_workers(tmp_path, start):
    """A skipped training sample was Python's "/.../torch/utils/data/_utils/fetch.py:52: BadSampleWarning: ..."
    and that file's source line (open item); the script's own warnings and a DataLoader worker's now read as
    ``star-vsr``'s: "prog: warning: message", with the process under several; also from a worker that spawn starts
    (Python's own showwarning there, not the script's: review)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"  # (a file: spawn imports the script's module in the worker)
    script.write_text(
        "import warnings\nimport torch\nfrom star_vsr.data.base import BadSampleWarning\n"
        "from star_vsr.training_run import data_worker_init, run_script\n"
        "from star_vsr.user_warnings import warn_user\n"
        "class Data(torch.utils.data.Dataset):\n    def __len__(self):\n        return 1\n"
        "    def __getitem__(self, index):\n"
        "        warn_user('skipping training sample a.mp4: cannot be read', BadSampleWarning)\n"
        "        return torch.zeros(1)\n"
        "def run():\n    warnings.warn('a library says this')\n"
        f"    list(torch.utils.data.DataLoader(Data(), num_workers=1, multiprocessing_context='{start}', "
        "worker_init_fn=data_worker_init))\n"
        "if __name__ == '__main__':\n"
        "    shown = warnings.showwarning\n    run_script('train.py', run)\n    assert warnings.showwarning is shown\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["train.py: warning: a library says this",
                                          "train.py: warning: skipping training sample a.mp4: cannot be read"]
    several = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "WORLD_SIZE": "2", "RANK": "1"})
    assert several.stderr.splitlines() == ["[process 1] train.py: warning: a library says this",
                                           "[process 1] train.py: warning: skipping training sample a.mp4: cannot "
                                           "be read"]


@pytest.mark.parametrize("script", ["train_star", "distill_student"])
def test_a_run_s_record_reused_as_a_config_gives_the_run_s_settings(tmp_path, capsys, script):
    """A run's train_config.yaml, given as --config to reproduce the run, was refused: "unknown settings ['config']"
    (the file that run read, which it records), and for distill_student.py "student_overrides must be a single
    value, got {}" (recorded as a YAML mapping, read as JSON text only). How the run was started (overwrite,
    resume) is left out of it with a note: a recorded overwrite_output_dir would replace the run that wrote it."""
    import importlib.util
    import sys

    from star_vsr.training_run import CONFIG_FILE, record_run_settings, recorded_settings

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "training"))
    try:
        module = importlib.import_module(script)
    finally:
        sys.path.pop(0)
    run = tmp_path / "rün 日本"  # written as it is, not as "r\xFCn \u65E5\u672C" (black-box hunt)
    tiny = {"train_star": "train_star_tiny.yaml", "distill_student": "distill_student_tiny.yaml"}[script]
    extra = ["--student_overrides", '{"num_blocks": 3}'] if script == "distill_student" else ["--lora_rank", "2"]
    args = module.parse_args(["--config", str(repo / "configs" / tiny), "--output_dir", str(run),
                              "--overwrite_output_dir", "--learning_rate", "3e-4", *extra])
    run.mkdir()
    record_run_settings(args, module.build_parser(), None)
    assert f"output_dir: {run}\n" in (run / CONFIG_FILE).read_text(encoding="utf-8")
    capsys.readouterr()
    again = module.parse_args(["--config", str(run / CONFIG_FILE), "--output_dir", str(tmp_path / "b")])
    assert capsys.readouterr().err == (f"note: {run / CONFIG_FILE} is a run's record; its "
                                       f"--overwrite_output_dir true is left out (give it on the command line)\n")
    assert not again.overwrite_output_dir and again.learning_rate == 3e-4
    recorded, reproduced = (recorded_settings(settings, module.build_parser()) for settings in (args, again))
    for settings in (recorded, reproduced):  # (pairs as pairs: crop_size 32 is [32, 32])
        for name in ("config", "output_dir", "overwrite_output_dir"):
            settings.pop(name)
    assert reproduced == recorded
    if script == "distill_student":
        assert again.student_overrides == {"num_blocks": 3}


def test_a_full_disk_in_the_final_save_says_how_to_finish_the_run():
    """A full disk while a training script saved its final model said only "the folder was left as it was"; the
    same command was then refused (the folder holds a run), and nothing said --resume_from_checkpoint (black-box
    hunt). Other output errors pass unchanged."""
    from star_vsr.errors import cannot_write
    from star_vsr.training_run import final_model_save

    with pytest.raises(OutputError, match=r"^cannot write out/student: File too large: free some space, then run it "
                                          r"again with --resume_from_checkpoint latest \(it goes on from the newest "
                                          r"checkpoint, if any\)$") as refused:
        with final_model_save():
            raise cannot_write("out/student", OSError(errno.EFBIG, "File too large"))
    assert refused.value.errno == errno.EFBIG
    with pytest.raises(OutputError, match=r"^cannot write out/student: Permission denied$"):
        with final_model_save():
            raise cannot_write("out/student", PermissionError(errno.EACCES, "Permission denied"))


def test_a_training_script_keeps_the_traceback_of_an_error_that_is_no_full_disk():
    """run_script says a full disk in one line; other OSErrors (a library's multi-line "Can't load ...", a read)
    are no setting or disk the user can fix from a line: their traceback stays (review)."""
    import subprocess
    import sys

    script = ("from star_vsr.training_run import run_script\n"
              "def run():\n    raise PermissionError(13, 'Permission denied', 'weights.bin')\n"
              "run_script('train.py', run)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" in result.stderr and "train.py: error" not in result.stderr


def test_an_output_folder_with_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    check_output_dir(tmp_path / "new", None, False)
    check_output_dir(tmp_path, None, False)  # an empty (or unrelated) folder is fine
    (tmp_path / "train_config.yaml").write_text("")  # a run that failed before its first step
    (tmp_path / "train_log.jsonl").write_text("")
    check_output_dir(tmp_path, None, False)
    (tmp_path / "train_log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(InputError, match=r"holds a run .train_log.jsonl.; choose another --output_dir, or pass "
                                         r"--overwrite_output_dir to start over$"):  # no checkpoint to go on from
        check_output_dir(tmp_path, None, False)
    check_output_dir(tmp_path, "latest", False)  # stopped before its first checkpoint: starts over
    check_output_dir(tmp_path, None, True)
    # a finished run without a checkpoint (its last step was not a multiple of --checkpointing_steps): `latest`
    # started a new run and replaced the trained model
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(InputError, match="holds a trained model .model_index.json. but no checkpoint to go on from"):
        check_output_dir(tmp_path, "latest", False)
    check_output_dir(tmp_path, "latest", True)
    (tmp_path / "checkpoint-4").mkdir()
    check_output_dir(tmp_path, "latest", False)
    with pytest.raises(InputError, match=r"holds a run .checkpoint-4, model_index.json.*; go on with "
                                         r"--resume_from_checkpoint latest, choose another --output_dir"):
        check_output_dir(tmp_path, None, False)
    # going on here from another run's checkpoint mixed the runs, and its first save deleted checkpoint-4 of
    # this one ("abandoned": later than its step)
    other = tmp_path / "other" / "checkpoint-2"
    other.mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds another run .checkpoint-4, .* than the one of "
                                         r"--resume_from_checkpoint .*other/checkpoint-2, and going on here would mix "
                                         r"the two; to go on with the run there \(one that went on from .*other/"
                                         r"checkpoint-2 too\), pass --resume_from_checkpoint latest; to go on from "
                                         r".*, choose a new --output_dir, or pass --overwrite_output_dir"):
        check_output_dir(tmp_path, str(other), False)
    check_output_dir(tmp_path, str(other), True)
    check_output_dir(tmp_path / "new", str(other), False)  # a new folder for it: fine
    check_output_dir(tmp_path, str(tmp_path / "checkpoint-4"), False)  # one of its own: fine


def test_component_folders_of_the_users_and_a_run_of_the_other_script_are_refused(tmp_path):
    """The final save replaces component folders whole: files of the user's in an unet/ of a folder that held no run
    were deleted without a word. --overwrite_output_dir over the other script's run deleted only what this script
    writes, and left that run's step log and validation images among the new run's."""
    from star_vsr.training_run import check_overwritten_run_is_this_scripts

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "mine.bin").write_bytes(b"mine")
    for overwrite in (False, True):
        with pytest.raises(InputError, match=r"holds unet/ \(no saved model's: no model_index.json\); the trained "
                                             r"pipeline is saved as such folders and would replace it"):
            check_output_dir(tmp_path, None, overwrite)
    (tmp_path / "model_index.json").write_text("{}")  # a saved model's: the run's own, replaced
    check_output_dir(tmp_path, None, True)
    star = tmp_path / "star"
    (star / "checkpoint-2" / "controlnet").mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds a run of training/train_star.py, which training/distill_student.py "
                                         r"cannot go on from; --overwrite_output_dir replaces runs of "
                                         r"training/distill_student.py only"):
        check_overwritten_run_is_this_scripts(star, "student")
    check_overwritten_run_is_this_scripts(star, "controlnet")
    (tmp_path / "empty" / "student").mkdir(parents=True)  # the user's empty folder: no run (review)
    check_overwritten_run_is_this_scripts(tmp_path / "empty", "controlnet")
    (tmp_path / "distilled" / "student").mkdir(parents=True)  # a finished run's model, no checkpoint
    (tmp_path / "distilled" / "student" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"holds a run of training/distill_student.py"):
        check_overwritten_run_is_this_scripts(tmp_path / "distilled", "controlnet")
    check_overwritten_run_is_this_scripts(tmp_path / "new", "controlnet")


def run_parser() -> SettingsParser:
    """The settings a resume compares, as a training script declares them."""
    p = SettingsParser(path_settings=("config", "train_data", "output_dir"), pair_settings=("crop_size",))
    p.add_argument("--config", default=None)
    p.add_argument("--train_data", default=None)
    p.add_argument("--output_dir", default="run")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--lr_warmup_steps", type=int, default=0)
    p.add_argument("--lr_scheduler", default="constant")
    p.add_argument("--mixed_precision", default="no")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--crop_size", type=json.loads, default=[32, 32])
    p.add_argument("--max_train_steps", type=int, default=8)
    p.add_argument("--checkpointing_steps", type=int, default=2)
    p.add_argument("--checkpoints_total_limit", type=int, default=None)
    p.add_argument("--validation_steps", type=int, default=0)
    for name, default in (("adam_beta1", 0.9), ("adam_beta2", 0.99), ("adam_weight_decay", 0.0),
                          ("adam_epsilon", 1e-8), ("max_grad_norm", 1.0)):
        p.add_argument(f"--{name}", type=float, default=default)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report_to", default="tensorboard")
    p.add_argument("--resume_from_checkpoint", default=None)
    p.add_argument("--overwrite_output_dir", action="store_true")
    p.add_argument("--allow_changed_settings", action="store_true")
    return p


def run_args(output_dir: Path, *flags: str) -> argparse.Namespace:
    """Parsed and checked as the training scripts do (``check_run_settings``)."""
    args = parse_with_config(run_parser(), ["--output_dir", str(output_dir), *flags])
    check_run_settings(args, run_parser())
    return args


def started_run(tmp_path: Path, *flags: str) -> Path:
    """A run folder whose run started with ``flags`` (its settings recorded) and saved checkpoint-2."""
    output_dir = tmp_path / "run"
    output_dir.mkdir(parents=True)
    record_run_settings(run_args(output_dir, *flags), run_parser(), None)
    save_checkpoint(_OneProcess(), output_dir, 2, limit=None)
    return output_dir


def test_a_size_given_as_one_int_or_as_its_pair_is_the_same_setting(tmp_path):
    for started, resumed in (("32", "[32, 32]"), ("[32, 32]", "32")):
        run = started_run(tmp_path / started, "--crop_size", started)
        run_args(run, "--resume_from_checkpoint", "latest", "--crop_size", resumed)  # accepted
        with pytest.raises(InputError, match=r"other settings: crop_size: \[32, 32\] -> \[32, 48\]\."):
            run_args(run, "--resume_from_checkpoint", "latest", "--crop_size", "[32, 48]")


def test_a_resume_with_settings_that_change_what_is_trained_is_refused_naming_each(tmp_path):
    run = started_run(tmp_path)
    with pytest.raises(InputError) as refused:
        run_args(run, "--resume_from_checkpoint", "latest", "--learning_rate", "2e-3", "--scale", "2",
                 "--checkpointing_steps", "4")
    message = str(refused.value)
    assert "was trained with other settings: learning_rate: 0.001 -> 0.002, scale: 4 -> 2." in message
    assert "checkpointing_steps" not in message  # accepted: it does not change what is trained
    assert "another --output_dir" in message and "--allow_changed_settings" in message
    # a schedule that decays over max_train_steps would change course: raising it is refused too
    with pytest.raises(InputError, match=r'lr_scheduler: "constant" -> "cosine", max_train_steps: 8 -> 9 \(the '
                                         r'cosine learning-rate schedule depends on it\)\.'):
        run_args(run, "--resume_from_checkpoint", "latest", "--lr_scheduler", "cosine", "--max_train_steps", "9")
    cosine = started_run(tmp_path / "cosine", "--lr_scheduler", "cosine")
    with pytest.raises(InputError, match=r"other settings: max_train_steps: 8 -> 9 \(the cosine"):
        run_args(cosine, "--resume_from_checkpoint", "latest", "--lr_scheduler", "cosine", "--max_train_steps", "9")
    # an explicit checkpoint path is compared with the run that saved it
    with pytest.raises(InputError, match=r"other settings: scale: 4 -> 3\."):
        run_args(tmp_path / "elsewhere", "--resume_from_checkpoint", str(run / "checkpoint-2"), "--scale", "3")


def test_a_resume_with_another_number_of_processes_is_refused_unless_allowed(tmp_path, monkeypatch):
    """A checkpoint of `accelerate launch --num_processes 2` resumed as one process (or the other way) went on
    silently, each step averaging half the batches it did ('changed: {}' in the record)."""
    run = started_run(tmp_path)
    for index in range(2):  # what Accelerate saves per process
        (run / "checkpoint-2" / f"random_states_{index}.pkl").write_bytes(b"")
    (run / "checkpoint-2" / "num_processes.txt").write_text("2\n")  # and save_checkpoint records
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # not launched: one process
    with pytest.raises(InputError, match=r"checkpoint-2 was trained by 2 processes and this run has 1: each "
                                         r"step would average 1 instead of 2 batches .* accelerate launch "
                                         r"--num_processes 2"):
        run_args(run, "--resume_from_checkpoint", "latest")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_args(run, "--resume_from_checkpoint", "latest")  # the same number of processes
    monkeypatch.setenv("WORLD_SIZE", "1")
    args = run_args(run, "--resume_from_checkpoint", "latest", "--allow_changed_settings")
    record_run_settings(args, run_parser(), run / "checkpoint-2")
    [entry] = yaml.safe_load_all((run / "train_config_resumes.yaml").read_text())
    assert entry["changed"] == {"num_processes": [2, 1]}


def test_resuming_another_folders_checkpoint_starts_the_new_folders_record(tmp_path):
    """The new folder got no train_config.yaml, although the resume warning said it kept the starting settings."""
    run = started_run(tmp_path)
    other = tmp_path / "other"
    args = run_args(other, "--resume_from_checkpoint", str(run / "checkpoint-2"), "--checkpointing_steps", "4")
    other.mkdir()
    record_run_settings(args, run_parser(), run / "checkpoint-2")
    started = yaml.safe_load((other / "train_config.yaml").read_text())
    assert started == yaml.safe_load((run / "train_config.yaml").read_text())  # the settings that trained it
    assert started["checkpointing_steps"] == 2
    resumes = list(yaml.safe_load_all((other / "train_config_resumes.yaml").read_text()))
    assert resumes[0]["changed"] == {"checkpointing_steps": [2, 4]}
    assert resumes[0]["checkpoint"] == str((run / "checkpoint-2").resolve())


def test_settings_are_compared_like_with_like(tmp_path, monkeypatch):
    """Paths relative or absolute, values from a YAML file or a flag, a setting the run did not record (added
    to the script since) at its default: the same settings."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    run = started_run(tmp_path, "--train_data", "data", "--learning_rate", "0.0005", "--crop_size", "[16, 24]")
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["train_data"] == str(tmp_path / "data") and saved["crop_size"] == [16, 24]
    del saved["report_to"]
    (run / "train_config.yaml").write_text(yaml.safe_dump(saved))
    (run / "checkpoint-2" / "train_config.yaml").unlink()  # a checkpoint saved before they held settings
    config = tmp_path / "resume.yaml"
    config.write_text(f"train_data: {tmp_path / 'data'}/\nlearning_rate: 5e-4\ncrop_size: [16, 24]\n")
    args = run_args(run, "--config", str(config), "--resume_from_checkpoint", "latest")
    assert changed_settings(saved, args, run_parser()) == []
    args = run_args(run, "--config", str(config), "--resume_from_checkpoint", "latest", "--report_to", "none")
    assert changed_settings(saved, args, run_parser()) == [("report_to", "tensorboard", "none")]


def test_accepted_changes_are_recorded_apart_and_the_run_keeps_its_starting_settings(tmp_path, caplog):
    run = started_run(tmp_path)
    started = (run / "train_config.yaml").read_text()
    assert yaml.safe_load((run / "checkpoint-2" / "train_config.yaml").read_text()) == yaml.safe_load(started)
    # settings that do not change what is trained: accepted, with a warning
    args = run_args(run, "--resume_from_checkpoint", "latest", "--max_train_steps", "12", "--report_to", "none")
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        record_run_settings(args, run_parser(), run / "checkpoint-2")
    assert 'changed settings: max_train_steps: 8 -> 12, report_to: "tensorboard" -> "none"' in caplog.text
    assert (run / "train_config.yaml").read_text() == started  # not rewritten as if the run had used them
    [entry] = yaml.safe_load_all((run / "train_config_resumes.yaml").read_text())
    assert entry["step"] == 2 and entry["checkpoint"] == "checkpoint-2"
    assert entry["changed"] == {"max_train_steps": [8, 12], "report_to": ["tensorboard", "none"]}
    assert entry["settings"]["max_train_steps"] == 12
    # checkpoints of the resumed run hold its settings: going on from them compares with those
    save_checkpoint(_OneProcess(), run, 4, limit=None)
    args = run_args(run, "--resume_from_checkpoint", "latest", "--max_train_steps", "12", "--report_to", "none",
                    "--learning_rate", "2e-3", "--allow_changed_settings")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        record_run_settings(args, run_parser(), run / "checkpoint-4")
    assert "changed settings: learning_rate: 0.001 -> 0.002 (learning_rate accepted with --allow_changed_settings)" \
        in caplog.text
    entries = list(yaml.safe_load_all((run / "train_config_resumes.yaml").read_text()))
    assert [e["changed"] for e in entries[1:]] == [{"learning_rate": [0.001, 0.002]}]
    assert (run / "train_config.yaml").read_text() == started
    save_checkpoint(_OneProcess(), run, 6, limit=None)
    # each checkpoint is compared with the settings that trained it; from checkpoints saved before they held
    # settings, with the run folder's record: its last resume before their step, else its starting settings
    for own_settings in (True, False):
        if not own_settings:
            for step in (2, 4, 6):
                (run / f"checkpoint-{step}" / "train_config.yaml").unlink()
        with pytest.raises(InputError, match=r"other settings: learning_rate: 0.002 -> 0.001\."):
            run_args(run, "--resume_from_checkpoint", str(run / "checkpoint-6"), "--max_train_steps", "12")
        with pytest.raises(InputError, match=r"other settings: learning_rate: 0.001 -> 0.002\."):
            run_args(run, "--resume_from_checkpoint", str(run / "checkpoint-4"), "--learning_rate", "2e-3")
        run_args(run, "--resume_from_checkpoint", str(run / "checkpoint-2"))


def test_a_run_that_recorded_no_settings_is_resumed_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)  # an earlier version's run: no settings recorded
    args = run_args(run, "--resume_from_checkpoint", "latest", "--learning_rate", "2e-3")
    with caplog.at_level(logging.WARNING, logger="star_vsr.training_run"):
        record_run_settings(args, run_parser(), run / "checkpoint-2")
    assert "no settings were recorded for" in caplog.text
    [entry] = yaml.safe_load_all((run / "train_config_resumes.yaml").read_text())
    assert entry["changed"] is None and entry["settings"]["learning_rate"] == 2e-3
    assert not (run / "train_config.yaml").exists()


def test_a_damaged_resume_record_is_refused_before_it_is_appended_to(tmp_path):
    """A record cut short by a kill was appended to; every checkpoint the resumed run saved then lacked its
    settings (``save_checkpoint`` could not read them), and resuming one of those was refused later (black-box
    hunt). The resume is refused first, with the settings' checks (on every process, before minutes of loading:
    review), the record left as it was."""
    run = started_run(tmp_path)
    (run / "train_config_resumes.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")  # RecursionError (review)
    with pytest.raises(InputError, match=r"cannot read the settings recorded in .*train_config_resumes.yaml"):
        run_args(run, "--resume_from_checkpoint", "latest")
    damaged = "---\nstep: 2\ncheckpoint: checkpoint-2\nsettings: {a: [1, "
    (run / "train_config_resumes.yaml").write_text(damaged)
    with pytest.raises(InputError, match=r"cannot read the settings recorded in .*train_config_resumes.yaml"):
        run_args(run, "--resume_from_checkpoint", "latest")  # with the settings' checks, before any model loads
    assert (run / "train_config_resumes.yaml").read_text() == damaged
    other = started_run(tmp_path / "other")  # a run replacing this one deletes the record: not refused (review)
    run_args(run, "--resume_from_checkpoint", str(other / "checkpoint-2"), "--overwrite_output_dir")


def test_starting_over_deletes_what_runs_wrote_and_nothing_else(tmp_path):
    """--overwrite_output_dir: checkpoints (and a save's leftovers), settings, the model the index names, and the
    script's own outputs for this run's settings and the old run's (another logging folder) go; the user's
    files, other TensorBoard runs and anything outside the folder stay."""
    run = tmp_path / "run"
    written = ["checkpoint-2/optimizer.bin", ".checkpoint-4.partial/optimizer.bin", "train_config_resumes.yaml",
               "model_index.json", "vae/config.json", "student/model.safetensors", "train_log.jsonl",
               "validation/step-000002.png", "logs/train/events.out.tfevents.1", "logs/train/1.5/events.out.tfevents.2",
               "old_logs/train/events.out.tfevents.3"]
    users = ["notes.txt", "checkpoint-final/notes.txt", "checkpoint-7", "vae2/config.json", "validation/mine.png",
             "logs/other/events.out.tfevents.4", "student.txt"]
    for name in written + users:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    (run / "train_config.yaml").write_text("logging_dir: old_logs\n")  # the old run logged elsewhere
    (run / "model_index.json").write_text(json.dumps({"_class_name": "P", "vae": ["diffusers", "AutoencoderKL"],
                                                      "student": ["star_vsr", "StarStudentModel"]}))
    outside = tmp_path / "elsewhere" / "train"
    outside.mkdir(parents=True)
    (outside / "events.out.tfevents.5").write_text("x")

    def run_outputs(settings):
        return ["train_log.jsonl", "validation/step-*.png", f"{settings['logging_dir']}/train"]

    args = argparse.Namespace(output_dir=str(run), logging_dir="logs", resume_from_checkpoint=None,
                              overwrite_output_dir=False)
    prepare_output_dir(args, None, run_outputs, ExitStack())  # a new run in a folder without a run: nothing deleted
    assert all((run / name).exists() for name in written + users)
    args.overwrite_output_dir = True
    prepare_output_dir(args, None, run_outputs, ExitStack())
    left = sorted(str(path.relative_to(run)) for path in run.rglob("*") if path.is_file())
    assert left == sorted(users)
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["checkpoint-7", "checkpoint-final", "logs", "notes.txt", "student.txt", "validation", "vae2"])
    assert (outside / "events.out.tfevents.5").is_file()
    # a logging folder outside output_dir is never cleared, whatever the settings say
    args.logging_dir = str(tmp_path / "elsewhere")
    clear_old_run(args, run_outputs)
    args.logging_dir = "../elsewhere"
    clear_old_run(args, run_outputs)
    assert (outside / "events.out.tfevents.5").is_file()
    # going on from a checkpoint deletes nothing
    (run / "checkpoint-2").mkdir()
    args.resume_from_checkpoint = "latest"
    prepare_output_dir(args, run / "checkpoint-2", run_outputs, ExitStack())
    assert (run / "checkpoint-2").is_dir()
    # `latest` with no checkpoint to go on from (the old run stopped before its first): starts over too
    shutil.rmtree(run / "checkpoint-2")
    (run / "train_log.jsonl").write_text('{"step": 1}\n')
    args.overwrite_output_dir = False
    prepare_output_dir(args, None, run_outputs, ExitStack())
    assert not (run / "train_log.jsonl").exists() and (run / "notes.txt").is_file()
    # going on from another folder's checkpoint with --overwrite_output_dir replaces the run here
    (run / "checkpoint-4").mkdir()
    (run / "train_log.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "other" / "checkpoint-2").mkdir(parents=True)
    args.overwrite_output_dir = True
    prepare_output_dir(args, tmp_path / "other" / "checkpoint-2", run_outputs, ExitStack())
    assert not (run / "checkpoint-4").exists() and not (run / "train_log.jsonl").exists()
    assert (tmp_path / "other" / "checkpoint-2").is_dir() and (run / "notes.txt").is_file()


def test_starting_over_never_deletes_the_folder_itself_or_a_whole_logging_folder(tmp_path):
    """A pattern that globs to "logs/.." (an odd project name) is the output folder itself, not something a run
    wrote: left alone (train_star.py also refuses such a --tracker_project_name, and "." or "")."""
    run = tmp_path / "run"
    (run / "logs" / "other").mkdir(parents=True)
    (run / "logs" / "other" / "events.out.tfevents.1").write_text("x")
    (run / "notes.txt").write_text("x")
    args = argparse.Namespace(output_dir=str(run), logging_dir="logs", resume_from_checkpoint=None,
                              overwrite_output_dir=True)
    clear_old_run(args, lambda settings: [f"{settings['logging_dir']}/.."])
    assert (run / "notes.txt").is_file() and (run / "logs" / "other" / "events.out.tfevents.1").is_file()


def test_overwriting_a_folder_that_holds_an_input_of_the_run_is_refused(tmp_path, monkeypatch):
    """--overwrite_output_dir clears the folder before training: an input inside it (the model to start from,
    the data) would be gone, so the run is refused before anything is deleted."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "data").mkdir(parents=True)
    with pytest.raises(InputError, match="--train_data run/data is inside --output_dir"):
        run_args(tmp_path / "run", "--overwrite_output_dir", "--train_data", "run/data")
    with pytest.raises(InputError, match="is inside --output_dir"):
        run_args(tmp_path / "run", "--overwrite_output_dir", "--train_data", str(tmp_path / "run"))
    assert (tmp_path / "run" / "data").is_dir()
    run_args(tmp_path / "run", "--overwrite_output_dir", "--train_data", str(tmp_path / "elsewhere"))
    run_args(tmp_path / "run", "--train_data", "run/data")  # not overwritten: nothing is deleted


def test_a_relative_path_compares_equal_whether_or_not_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = started_run(tmp_path, "--train_data", "data")  # recorded while data/ does not exist
    (tmp_path / "data").mkdir()
    args = run_args(run, "--train_data", "data", "--resume_from_checkpoint", "latest")  # exists now: the same
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["train_data"] == str(tmp_path / "data") and changed_settings(saved, args, run_parser()) == []


def test_a_damaged_settings_record_does_not_cost_the_checkpoint(tmp_path):
    run = started_run(tmp_path)
    (run / "train_config_resumes.yaml").write_text("step: [2\n")  # edited by hand
    save_checkpoint(_OneProcess(), run, 4, limit=None)
    assert (run / "checkpoint-4" / "optimizer.bin").is_file()
    assert not (run / "checkpoint-4" / "train_config.yaml").exists()
    with pytest.raises(InputError, match="cannot read the settings recorded in .*train_config_resumes.yaml"):
        run_args(run, "--resume_from_checkpoint", "latest")


@pytest.mark.parametrize("announce", [True, False])
def test_a_stop_request_is_announced_only_by_the_process_told_to(announce, capsys):
    """Ctrl-C reaches every process of a multi-process run; each sets its request, only the main one says so."""
    import os
    import signal

    from star_vsr.training_run import StopRequest

    with StopRequest(announce=announce) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert ("stopping after this step" in capsys.readouterr().err) == announce


def test_a_dataloader_worker_forked_with_the_stop_handler_says_nothing():
    """Ctrl-C reaches the DataLoader workers too, forked with the handler: the notice was printed once per worker
    (black-box hunt: 4 times with --dataloader_num_workers 3). A worker now leaves the stop to its process."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys, time
        from star_vsr.training_run import StopRequest
        with StopRequest() as stop:
            pid = os.fork()
            if pid == 0:  # a worker: the handler it inherited
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                os._exit(3 if stop.requested else 0)
            _, status = os.waitpid(pid, 0)
            print("worker", os.waitstatus_to_exitcode(status), flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            print("main", stop.requested, flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["worker", "0", "main", "True"], result.stdout + result.stderr
    assert result.stderr.count("stopping after this step") == 1, result.stderr


def test_a_stop_requested_during_a_scheduled_save_stops_after_it(tmp_path, monkeypatch, capsys):
    """Ctrl-C while checkpoint-2 was being saved (a multi-GB save takes minutes) trained step 3 and saved
    checkpoint-3 before stopping."""
    from star_vsr import training_run
    from star_vsr.training_run import StopRequest

    class Bar:
        def close(self) -> None:
            pass

    class Accelerator(_OneProcess):
        def print(self, text: str) -> None:
            print(text)

        def end_training(self) -> None:
            pass

    saved = []
    with StopRequest(announce=False) as stop:
        def save_then_ctrl_c(accelerator, output_dir, step, limit):
            saved.append(step)
            stop.requested = True  # the signal handler's effect, mid-save

        monkeypatch.setattr(training_run, "save_checkpoint", save_then_ctrl_c)
        stop.checkpoint_or_stop(Accelerator(), tmp_path, 1, max_steps=8, every=2, limit=None, progress=Bar())
        with pytest.raises(SystemExit) as stopped:
            stop.checkpoint_or_stop(Accelerator(), tmp_path, 2, max_steps=8, every=2, limit=None, progress=Bar())
    assert stopped.value.code == 130 and saved == [2]  # no second save
    assert "stopped at step 2; saved" in capsys.readouterr().out
    import os
    import signal

    with StopRequest(announce=False) as stop:  # `kill`, a scheduler: 128 + SIGTERM, not Ctrl-C's 130
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as stopped:
            stop.checkpoint_or_stop(Accelerator(), tmp_path, 3, max_steps=8, every=2, limit=None, progress=Bar())
    assert stopped.value.code == 143 and saved == [2, 3]


def test_the_first_signal_decides_the_exit_status():
    """SIGTERM stopped an upscale and a Ctrl-C came while it saved: the run exited 130, not 143."""
    import signal

    from star_vsr import interrupts

    interrupts.clear_interrupt()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with pytest.raises(KeyboardInterrupt):
            interrupts.request_interrupt(sig)
    assert interrupts.interrupted_exit_status() == 143
    interrupts.clear_interrupt()
    assert interrupts.interrupted_exit_status() == 130  # none recorded: Ctrl-C's


def test_the_launchers_sigterm_right_after_ctrl_c_is_the_same_request(monkeypatch):
    """accelerate launch (1.16) answers Ctrl-C by sending its training process SIGTERM at once (and SIGKILL 5 s
    later): that SIGTERM stopped the run without its checkpoint. Later, a SIGTERM is a second request."""
    import os
    import signal

    from star_vsr import training_run
    from star_vsr.training_run import StopRequest

    now = [100.0]
    monkeypatch.setattr(training_run.time, "monotonic", lambda: now[0])
    with StopRequest(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        now[0] += 0.5
        os.kill(os.getpid(), signal.SIGTERM)  # the launcher's echo: the run goes on to its checkpoint
        assert stop.requested
        now[0] += training_run.LAUNCHER_ECHO_SECONDS
        with pytest.raises(KeyboardInterrupt):  # SIGTERM from elsewhere, later: stop at once
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_resume_trains_at_this_runs_learning_rate(schedule):
    """load_state restored the checkpoint's learning rate and AdamW settings, so a rate changed with
    --allow_changed_settings was recorded as changed but not used; unchanged settings stay bit for bit."""
    import torch
    from diffusers.optimization import get_scheduler

    from star_vsr.training_run import apply_run_hyperparameters

    def build(lr, beta1=0.9):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=lr, betas=(beta1, 0.999))
        return optimizer, get_scheduler(schedule, optimizer, num_warmup_steps=2, num_training_steps=10)

    optimizer, scheduler = build(1e-3)
    for _ in range(3):
        optimizer.step(), scheduler.step()
    saved = optimizer.state_dict(), scheduler.state_dict()
    for lr, beta1 in ((1e-3, 0.9), (2e-3, 0.5)):
        resumed, resumed_scheduler = build(lr, beta1)
        resumed.load_state_dict(saved[0]), resumed_scheduler.load_state_dict(saved[1])
        assert resumed.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]  # the checkpoint's, whatever lr
        args = argparse.Namespace(learning_rate=lr, adam_beta1=beta1, adam_beta2=0.999, adam_weight_decay=0.01,
                                  adam_epsilon=1e-8)
        apply_run_hyperparameters(resumed, resumed_scheduler, args)
        factor = resumed_scheduler.lr_lambdas[0](3)
        assert resumed.param_groups[0]["lr"] == lr * factor and resumed_scheduler.get_last_lr() == [lr * factor]
        assert resumed.param_groups[0]["betas"] == (beta1, 0.999)
        if lr == 1e-3:  # the run's own settings: the rate it had
            assert resumed.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
        resumed.step(), resumed_scheduler.step()
        assert resumed.param_groups[0]["lr"] == lr * resumed_scheduler.lr_lambdas[0](4)


def test_an_epoch_must_fill_a_step(capsys):
    """2 clips with --gradient_accumulation_steps 3 trained steps of 2 micro-batches without a word; 8 clips, the
    last step of each epoch (a black-box hunt): a note says so."""
    from star_vsr.training_run import check_batches_per_epoch

    args = argparse.Namespace(train_batch_size=1, gradient_accumulation_steps=3, max_train_steps=3)
    check_batches_per_epoch(3, args, num_processes=1)
    check_batches_per_epoch(6, args, num_processes=1)
    assert capsys.readouterr().err == ""
    check_batches_per_epoch(8, args, num_processes=1)
    assert ("note: an epoch holds 8 batches of --train_batch_size 1: the last step of each epoch sums 2 of them, "
            "each weighted 1/3 as by --gradient_accumulation_steps") in capsys.readouterr().err
    args.max_train_steps = 2  # a run that ends before the epoch's third, partial step takes none (review)
    check_batches_per_epoch(8, args, num_processes=1)
    assert capsys.readouterr().err == ""
    with pytest.raises(InputError, match=r"^the dataset's 2 clips make 2 batches of --train_batch_size 1 per epoch, "
                                         r"fewer than --gradient_accumulation_steps 3: each step would average only 2"):
        check_batches_per_epoch(2, args, num_processes=1)
    with pytest.raises(InputError, match=r"make 1 batch of --train_batch_size 1 per epoch on each of 2 processes"):
        check_batches_per_epoch(3, args, num_processes=2)
    args.train_batch_size = 4
    with pytest.raises(InputError, match=r"^the dataset has 3 clips, fewer than --train_batch_size 4$"):
        check_batches_per_epoch(3, args, num_processes=1)
    args.gradient_accumulation_steps = 1  # no whole batch on each process: not "lower accumulation", already 1
    with pytest.raises(InputError, match=r"^the dataset has 5 clips, fewer than --train_batch_size 4 x 2 processes"):
        check_batches_per_epoch(5, args, num_processes=2)


def test_a_checkpoint_that_does_not_fit_is_not_called_damaged(tmp_path):
    """Only a damaged file is 'damaged; delete it': a shape mismatch (settings changed under
    --allow_changed_settings) or a permission error leaves the checkpoint alone (review)."""
    from star_vsr.training_run import load_training_checkpoint

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    write_random_states(checkpoint / "random_states_0.pkl")

    class Loader:
        process_index, num_processes = 0, 1

        def __init__(self, error):
            self.error = error

        def load_state(self, path):
            raise self.error

    mismatch = RuntimeError("Error(s) in loading state_dict for Net:\n\tsize mismatch for w: copying a param with "
                            "shape torch.Size([4, 2]) from checkpoint, the shape in current model is "
                            "torch.Size([8, 2]).")
    # the line that names the weight, not the header alone (black-box hunt: "(Error(s) in loading state_dict for ...:)")
    with pytest.raises(InputError, match=r"checkpoint-2 does not fit the model of this run \(size mismatch for w: "
                                         r"copying a param with shape torch.Size\(\[4, 2\]\) from checkpoint, the "
                                         r"shape in current model is torch.Size\(\[8, 2\]\).\); resume with the"):
        load_training_checkpoint(Loader(mismatch), checkpoint)
    with pytest.raises(PermissionError):
        load_training_checkpoint(Loader(PermissionError(13, "Permission denied")), checkpoint)
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(Unable to load weights"):
        load_training_checkpoint(Loader(OSError("Unable to load weights from checkpoint file")), checkpoint)
    # a file that is no pickle torch reads safely: not torch's advice to load it with weights_only=False (which runs
    # a pickle's code), but what the unpickler found
    import torch

    (tmp_path / "garbage.bin").write_text("garbage\n")
    try:
        torch.load(tmp_path / "garbage.bin", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch's own error, as Accelerate lets it through
        unpickling = error
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(a file of it is no PyTorch "
                                         r"state torch.load reads safely \(Unsupported operand 103\)\); "
                                         r"delete") as raised:
        load_training_checkpoint(Loader(unpickling), checkpoint)
    assert "weights_only" not in str(raised.value)
    (tmp_path / "text.bin").write_text("hello\n")  # "h" reads memo entry 101: a bare KeyError(101), was "(101)"
    with pytest.raises(KeyError) as text:
        torch.load(tmp_path / "text.bin", weights_only=True)
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(a file of it is not a "
                                         r"PyTorch file: neither its zip format nor a pickle\); delete"):
        load_training_checkpoint(Loader(text.value), checkpoint)
    # a file of the checkpoint missing (was a FileNotFoundError traceback); one outside it is said as it is
    gone = FileNotFoundError(2, "No such file or directory", str(checkpoint / "optimizer.bin"))
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(optimizer.bin is missing\); "
                                         r"delete .*checkpoint-2"):
        load_training_checkpoint(Loader(gone), checkpoint)
    with pytest.raises(FileNotFoundError):
        load_training_checkpoint(Loader(FileNotFoundError(2, "No such file", str(tmp_path / "data.mp4"))), checkpoint)
    # safetensors names the file only in its message; Accelerate asks for pytorch_model.bin when model.safetensors
    # is missing: named by the file it saved
    for message, name in ((f"No such file or directory: {checkpoint}/unet_trainable.safetensors",
                           "unet_trainable.safetensors"),
                          (f"[Errno 2] No such file or directory: '{checkpoint}/pytorch_model_1.bin'",
                           "model_1.safetensors")):
        with pytest.raises(InputError, match=rf"cannot be loaded \({name} is missing\)"):
            load_training_checkpoint(Loader(FileNotFoundError(message)), checkpoint)
    # the random states missing: Accelerate went on with other random numbers, the resume silently not exact
    write_random_states(checkpoint / "random_states_2.pkl")  # of 3 processes, the second one's missing
    with pytest.raises(InputError, match=r"\(random_states_1.pkl, the random number generators' states, is missing; "
                                         r"without it the resumed run would not be exact\)"):
        load_training_checkpoint(Loader(AssertionError("load_state must not be called")), checkpoint)
    (checkpoint / "random_states_2.pkl").unlink()
    (checkpoint / "num_processes.txt").write_text("2\n")  # saved by 2 processes: the last one's lost is no gap
    with pytest.raises(InputError, match=r"\(random_states_1.pkl, the random number generators' states, is missing"):
        load_training_checkpoint(Loader(AssertionError("load_state must not be called")), checkpoint)
    (checkpoint / "num_processes.txt").unlink()
    # ... and damaged: Accelerate logged "Could not load random states" and went on (black-box hunt)
    good = (checkpoint / "random_states_0.pkl").read_bytes()
    for damage, found in ((good[:20], "cannot be read: "), (b"", "cannot be read: "),
                          (None, "cannot be read: it holds no random_state")):
        if damage is None:
            torch.save({"step": 2}, checkpoint / "random_states_0.pkl")
        else:
            (checkpoint / "random_states_0.pkl").write_bytes(damage)
        with pytest.raises(InputError, match=rf"\(random_states_0.pkl, the random number generators' states, "
                                             rf"{found}.*; without it the resumed run would not be exact\)"):
            load_training_checkpoint(Loader(AssertionError("load_state must not be called")), checkpoint)
    (checkpoint / "random_states_0.pkl").unlink()
    with pytest.raises(InputError, match=r"\(random_states_0.pkl, the random number generators' states, is missing; "
                                         r"without it the resumed run would not be exact\)"):
        load_training_checkpoint(Loader(AssertionError("load_state must not be called")), checkpoint)
    # a registered state's file missing (distill_student's weight average): Accelerate's "Number of custom
    # checkpoints in folder ... does not match the number of registered objects" traceback (black-box hunt)
    write_random_states(checkpoint / "random_states_0.pkl")
    loader = Loader(AssertionError("load_state must not be called"))
    loader._custom_objects = ["clock", "weight average"]
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(b"clock")
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(custom_checkpoint_1.pkl, "
                                         r"a state this run registers, is missing \(or the run that saved it had "
                                         r"fewer: another --ema_decay\?\)\)"):
        load_training_checkpoint(loader, checkpoint)
    loader._custom_objects = ["clock"]  # more files than states: saved by a run with other settings
    (checkpoint / "custom_checkpoint_1.pkl").write_bytes(b"weight average")
    with pytest.raises(InputError, match=r"checkpoint-2 holds 2 registered states .*, this run registers 1: it was "
                                         r"saved by a run with other settings"):
        load_training_checkpoint(loader, checkpoint)
    # Accelerate unpickles them whole: a downloaded checkpoint's file ran the code it named (security review); one
    # that is no plain data is refused before load_state, and runs nothing
    (checkpoint / "custom_checkpoint_1.pkl").unlink()
    marker = tmp_path / "ran"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(code_running_pickle(marker))
    with pytest.raises(InputError, match=r"checkpoint-2 is damaged and cannot be loaded \(custom_checkpoint_0.pkl "
                                         r"cannot be read as plain data \(.*\): it is damaged, or holds Python "
                                         r"objects, which loading would run\)"):
        load_training_checkpoint(loader, checkpoint)
    assert not marker.exists()
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(code_running_pickle())
    with pytest.raises(InputError) as refused:  # torch's advice to load it with weights_only=False is not passed on
        load_training_checkpoint(loader, checkpoint)
    message = str(refused.value)
    assert "(Trying to load unsupported GLOBAL posix.system" in message and "weights_only" not in message
    torch.save({"step": 2, "epoch": 0}, checkpoint / "custom_checkpoint_0.pkl")  # plain data: loaded
    with pytest.raises(AssertionError, match="load_state must not be called"):
        load_training_checkpoint(loader, checkpoint)


def test_load_failure_says_what_the_safe_unpickler_found_never_its_advice_to_load_unsafely(tmp_path):
    from star_vsr.errors import is_damaged_weights_error, load_failure

    found = {}
    for name, payload in (("shell", code_running_pickle()), ("object", code_running_pickle(tmp_path / "ran")),
                          ("junk", b"garbage\n"), ("text", b"hello\n")):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(Exception) as failed:
            torch.load(tmp_path / name, weights_only=True)
        found[name] = load_failure(failed.value)
    assert found.pop("object").startswith("Unsupported global: GLOBAL io.open was not an allowed global by default")
    assert found == {"shell": "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.",
                     "junk": "Unsupported operand 103",  # (also what a pickle of protocol 4 gets: no "no pickle")
                     "text": "not a PyTorch file: neither its zip format nor a pickle"}  # (was "101": black-box hunt)
    with pytest.raises(KeyError) as text:
        torch.load(tmp_path / "text", weights_only=True)
    assert load_failure(KeyError(101)) == "101"  # raised elsewhere (a bug of ours): not said to be the file's
    assert is_damaged_weights_error(text.value) and not is_damaged_weights_error(KeyError(101))
    imported = RuntimeError("Weights only load failed. numpy.core.multiarray must be numpy._core.multiarray to load "
                            "this file\n In PyTorch 2.6, we changed the default value of ... trusted source.\n")
    assert load_failure(imported) == "numpy.core.multiarray must be numpy._core.multiarray to load this file"
    assert not (tmp_path / "ran").exists()


def test_a_run_that_fails_ends_its_worker_processes(tmp_path):
    """DataLoader workers ignore SIGTERM (``ignore_stop_signals``), which is how Python's exit ends daemon children
    before it waits for them: a run whose worker raised printed its error and then waited forever (black-box hunt).
    A daemon child that ignores SIGTERM stands in for the worker here (a real DataLoader's hang depends on when its
    iterator is collected: tests/test_train_star.py has that case)."""
    import subprocess
    import sys

    script = ("import multiprocessing, time\n"
              "from star_vsr.errors import InputError\n"
              "from star_vsr.training_run import ignore_stop_signals, run_script\n"
              "def worker():\n    ignore_stop_signals(0)\n    time.sleep(600)\n"
              "def run():\n    multiprocessing.Process(target=worker, daemon=True).start()\n    time.sleep(1)\n"
              "    raise InputError('no usable source')\n"
              "if __name__ == '__main__':\n    run_script('train.py', run)\n")
    (tmp_path / "run.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == "train.py: error: no usable source\n", result


def test_sigterm_while_a_script_sets_up_or_saves_is_one_line_with_status_143(tmp_path):
    """Outside the training loop's clean stop (setting up, saving the final model) SIGTERM ended a training script
    at once with no word, leaving the model's temporary folder behind (black-box hunt); it now stops as Ctrl-C
    does, with SIGTERM's status."""
    import subprocess
    import sys

    script = ("import os, signal\nfrom star_vsr.training_run import run_script\n"
              "run_script('train.py', lambda: (os.kill(os.getpid(), signal.SIGTERM), signal.pause()))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 143, result
    assert result.stderr.strip() == "train.py: interrupted; checkpoints saved before, if any, are whole " \
                                    "(--resume_from_checkpoint latest goes on from the newest)"


def test_a_second_sigterm_stops_at_once_with_sigterm_s_status_and_workers_ignore_the_launchers():
    """A second signal during training stopped with 130 after SIGTERM, SIGTERM (review); DataLoader workers, which
    `accelerate launch` sends its SIGTERM too, failed the step with torch's "DataLoader worker is killed by signal"
    (review): the training DataLoaders' workers ignore Ctrl-C and SIGTERM."""
    import signal
    import subprocess
    import sys

    import torch

    from star_vsr.training_run import ignore_stop_signals

    script = ("import os, signal, time\nimport star_vsr.training_run as t\nt.LAUNCHER_ECHO_SECONDS = 0\n"
              "def run():\n    with t.StopRequest(announce=False):\n"
              "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.05)\n"
              "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
              "t.run_script('train.py', run)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 143 and "train.py: interrupted" in result.stderr, result

    class Probe(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> bool:
            return all(signal.getsignal(sig) == signal.SIG_IGN for sig in (signal.SIGINT, signal.SIGTERM))

    loader = torch.utils.data.DataLoader(Probe(), num_workers=1, worker_init_fn=ignore_stop_signals)
    assert [bool(item) for item in loader] == [True, True]


def write_random_states(path: Path) -> None:
    """A ``random_states_<process>.pkl`` as Accelerate saves it (the generators' states it restores)."""
    import random

    torch.save({"random_state": random.getstate(), "numpy_random_seed": np.random.get_state(),
                "torch_manual_seed": torch.get_rng_state()}, path)


@pytest.mark.parametrize("script, config", [("train_star.py", "train_star_tiny.yaml"),
                                            ("distill_student.py", "distill_student_gt.yaml")])
@pytest.mark.parametrize("when", ["loading", "setting up"])
def test_ctrl_c_before_training_starts_is_one_line_not_a_traceback(tmp_path, script, config, when):
    """Ctrl-C while a training script imports its libraries or builds its run printed a KeyboardInterrupt
    traceback; now one line and exit status 130. (Should the SIGINT land in the loop, the clean stop after a step
    also says one line with 130.)"""
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(repo / "training" / script), "--config", str(repo / "configs" / config),
               "--output_dir", str(tmp_path / "run"), "--max_train_steps", "2", "--validation_steps", "0"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    seen = []
    if when == "loading":
        time.sleep(0.5)  # torch, diffusers and accelerate take seconds to import
    else:
        for line in process.stdout:  # accelerate's state: the run is being built
            seen.append(line)
            if "Device:" in line:
                break
    process.send_signal(signal.SIGINT)
    output = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    if when == "setting up":
        assert f"{script}: interrupted" in output or "stopped at step" in output, output


def test_yaml_merge_keys_still_work_and_may_be_overridden(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("<<: {scale: 2, mode: y}\nscale: 3\n")  # (the duplicate-key check skips the merge key)
    args = parse_with_config(parser(), ["--config", str(config)])
    assert args.scale == 3 and args.mode == "y"


def test_a_run_that_recorded_no_precision_resumes_with_the_same_command(tmp_path, monkeypatch):
    """train_star recorded mixed_precision null before the launcher's precision was filled in; the same command
    was then refused on resume ("mixed_precision: null -> no")."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    run = started_run(tmp_path)
    record = run / "train_config.yaml"
    settings = yaml.safe_load(record.read_text())
    settings["mixed_precision"] = None
    record.write_text(yaml.safe_dump(settings))
    for checkpoint_record in run.glob("checkpoint-2/*.yaml"):
        saved = yaml.safe_load(checkpoint_record.read_text())
        if isinstance(saved, dict) and "mixed_precision" in saved:
            saved["mixed_precision"] = None
            checkpoint_record.write_text(yaml.safe_dump(saved))
    run_args(run, "--resume_from_checkpoint", "latest")  # accepted
    with pytest.raises(InputError, match="learning_rate"):  # other changes are still refused
        run_args(run, "--resume_from_checkpoint", "latest", "--learning_rate", "0.5")


def test_a_relative_checkpoint_is_found_in_the_output_folder(tmp_path, monkeypatch):
    """``--resume_from_checkpoint checkpoint-2`` (as ``ls OUTPUT_DIR`` shows it) was looked for in the current
    folder only, and a path that does not exist was called "not a checkpoint-<step> folder"."""
    run = started_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert resume_checkpoint(run, "checkpoint-2") == run / "checkpoint-2"
    assert resume_checkpoint(run, "run/checkpoint-2") == Path("run/checkpoint-2")  # from here first
    with pytest.raises(InputError, match=r"checkpoint-9 \(here or in --output_dir .*run\) does not exist; give a "
                                         r"checkpoint-<step> folder, or 'latest'"):
        resume_checkpoint(run, "checkpoint-9")


@pytest.mark.parametrize("script, config", [("train_star.py", "train_star_tiny.yaml"),
                                            ("distill_student.py", "distill_student_gt.yaml")])
def test_a_setting_that_cannot_work_exits_2_from_either_script(tmp_path, script, config):
    """train_star.py raised its setting errors (exit 1 through run_script), distill_student.py passed them to
    argparse (exit 2): the same mistake exited differently. Both now exit 2, as star-vsr does."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(repo / "training" / script), "--config", str(repo / "configs" / config),
               "--output_dir", str(tmp_path / "run"), "--learning_rate", "0"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{script}: error: --learning_rate must be a finite number > 0, got 0" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_a_run_is_finished_from_a_checkpoint_only_when_its_model_was_written_at_that_step(tmp_path):
    """The model's age against the checkpoint's said "finished" for an earlier checkpoint of a longer run, and for
    folders copied without their times; the step the model was written at says it."""
    from star_vsr import StarStudentPipeline
    from star_vsr.errors import MissingWeightsError
    from star_vsr.student import build_student_pipeline
    from star_vsr.training_run import finished_from, record_final_step

    for step in (1, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert not finished_from(tmp_path / "checkpoint-2")  # stopped before its model
    build_student_pipeline("tiny").save_pretrained(tmp_path)  # the run's final model
    assert not finished_from(tmp_path / "checkpoint-2")  # a model of an earlier version's run: no step recorded
    record_final_step(tmp_path, 2)
    assert finished_from(tmp_path / "checkpoint-2") and not finished_from(tmp_path / "checkpoint-1")
    # a part of the model deleted since: not finished, so that the resume writes it again (it said "nothing to
    # train" and left the folder without it: black-box hunt)
    shutil.move(tmp_path / "student", tmp_path / "kept")
    assert not finished_from(tmp_path / "checkpoint-2")
    # (not how to download STAR's weights; and what the resume does: review)
    with pytest.raises(MissingWeightsError, match=r"student is missing .*\n.* is a training run's output folder: "
                                                  r"start its training command again with --resume_from_checkpoint "
                                                  r"latest, which writes the model again$"):
        StarStudentPipeline.from_pretrained(tmp_path)
    (tmp_path / "checkpoint-2").rename(tmp_path / "checkpoint-x")
    with pytest.raises(MissingWeightsError, match=r"which trains again from its step 1$"):
        StarStudentPipeline.from_pretrained(tmp_path)
    (tmp_path / "checkpoint-1").rename(tmp_path / "checkpoint-y")
    with pytest.raises(MissingWeightsError, match=r"is a training run's output folder, with no checkpoint left: "
                                                  r"train it again$"):
        StarStudentPipeline.from_pretrained(tmp_path)  # (--checkpointing_steps none, or all deleted)
    (tmp_path / "checkpoint-x").rename(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-y").rename(tmp_path / "checkpoint-1")
    shutil.move(tmp_path / "kept", tmp_path / "student")
    record_final_step(tmp_path, 1)  # an earlier end of a run that went on to checkpoint-2 and was stopped
    assert not finished_from(tmp_path / "checkpoint-2")


def test_a_resume_from_an_earlier_checkpoint_says_the_later_ones_are_left_behind(tmp_path):
    """Gone on from checkpoint-2 of a folder with checkpoint-4 and -6, the run said only "Resuming from": killed
    before its first save, `latest` then went back to the branch it had left, without a word."""
    from star_vsr.training_run import resuming_message

    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert resuming_message(tmp_path / "checkpoint-6", tmp_path) == f"resuming from {tmp_path / 'checkpoint-6'}"
    # going on in another folder leaves this one's checkpoints as they are: nothing to say of them
    assert resuming_message(tmp_path / "checkpoint-2", tmp_path / "new") == f"resuming from {tmp_path / 'checkpoint-2'}"
    assert resuming_message(tmp_path / "checkpoint-2", tmp_path) == (
        f"resuming from {tmp_path / 'checkpoint-2'}; the later checkpoint-4, checkpoint-6 of this folder are left "
        f"behind: deleted at this run's first checkpoint, and until then what `latest` would resume (their logged "
        f"steps are dropped now)")


def test_a_launcher_precision_overridden_by_the_script_s_setting_is_noted(monkeypatch, capsys):
    """`accelerate launch --mixed_precision fp16 training/train_star.py --config configs/train_star_tiny.yaml`
    trained in float32 (the config's `mixed_precision: "no"`) without a word (black-box hunt)."""
    from star_vsr.training_run import launcher_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert launcher_precision(None) == "fp16" and capsys.readouterr().err == ""
    assert launcher_precision("no") == "no"
    assert "note: --mixed_precision no (given to the script or in its --config) overrides the launcher's fp16; pass " \
        "--mixed_precision none to train in the launcher's" in capsys.readouterr().err
    assert launcher_precision("fp16") == "fp16" and capsys.readouterr().err == ""  # the same: nothing to say
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # a plain launch: the script's own choice, silently
    assert launcher_precision("bf16") == "bf16" and capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["training", "upscale-batch"])
def test_a_launch_of_several_processes_that_started_one_is_noted(monkeypatch, capsys, tmp_path, command):
    """`accelerate launch --cpu --num_processes 2` (no --multi_gpu) runs one process, which then did the whole job
    alone without a word (black-box hunt); the launcher sets MASTER_ADDR for the processes it does not start."""
    from star_vsr.cli import main

    def run() -> str:
        if command == "upscale-batch":
            assert main(["upscale-batch", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
        else:
            run_args(tmp_path / "run")  # (check_run_settings)
        return capsys.readouterr().err

    note = "note: accelerate launch started one process, not the several its --num_processes asks for (they need " \
           "--multi_gpu in place of --cpu, which on a machine without a GPU starts CPU processes)"
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "ACCELERATE_MIXED_PRECISION", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                 "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert note not in run()  # not launched
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert note not in run()  # `accelerate launch` of one process
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert note in run()  # --num_processes 2 without --multi_gpu
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")  # an MPI launch (accelerate --mpirun_hostfile) of several
    assert note not in run()
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("WORLD_SIZE", "1")  # (a launch of several processes sets WORLD_SIZE for each)
    assert note not in run()


def test_a_new_run_clears_what_a_run_stopped_before_training_left(tmp_path):
    """A run that failed at its first step (a damaged cache: black-box hunt) left its settings record and TensorBoard
    events; the next run in that folder, not refused (no run there), added its events beside them."""
    run = tmp_path / "run"
    for name in ("train_config.yaml", "train_cache.sha256", "logs/train/events.out.tfevents.1", "notes.txt"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("logging_dir: logs\n" if name == "train_config.yaml" else "x")

    def run_outputs(settings):
        return ["train_cache.sha256", f"{settings['logging_dir']}/train"]

    args = argparse.Namespace(output_dir=str(run), logging_dir="logs", resume_from_checkpoint=None,
                              overwrite_output_dir=False)
    check_output_dir(run, None, overwrite=False)  # no run there: a new one may start
    prepare_output_dir(args, None, run_outputs, ExitStack())
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == ["notes.txt"]


def test_a_step_logs_the_mean_of_its_micro_batches():
    """With --gradient_accumulation_steps 2, distill_student logged the second micro-batch's losses alone (and
    froze the time-distillation ConvLSTM on them; black-box hunt). StepLosses averages a step's micro-batches (over
    processes too: ``reduce``), counts what is counted, and starts afresh after each step."""
    from star_vsr.training_run import StepLosses

    class TwoProcesses:  # the other process saw twice these values
        def reduce(self, tensor, reduction):
            return (tensor + 2 * tensor) / (2 if reduction == "mean" else 1)

    losses = StepLosses(summed=("num_skipped",))
    losses.add({"loss": torch.tensor(1.0), "num_skipped": torch.tensor(1.0)})
    losses.add({"loss": torch.tensor(3.0, dtype=torch.float16), "num_skipped": torch.tensor(0.0)})
    assert losses.means(TwoProcesses()) == {"loss": 3.0, "num_skipped": 3.0}
    losses.add({"loss": torch.tensor(5.0)})
    assert losses.means(TwoProcesses()) == {"loss": 7.5}


def test_overwrite_beside_a_resume_that_goes_on_here_is_noted(tmp_path, capsys):
    """--overwrite_output_dir with --resume_from_checkpoint latest went on from the checkpoint without a word
    (black-box hunt); it is noted as having no effect. Going on from another folder's checkpoint, it still replaces
    the run here, and without a checkpoint it starts over: no note."""
    run = started_run(tmp_path)
    for resume in ("latest", "checkpoint-2"):
        run_args(run, "--resume_from_checkpoint", resume, "--overwrite_output_dir")
        assert f"note: --overwrite_output_dir has no effect: --resume_from_checkpoint {resume} goes on from " \
               f"{run / 'checkpoint-2'} (leave out" in capsys.readouterr().err
    run_args(tmp_path / "new", "--resume_from_checkpoint", "latest", "--overwrite_output_dir")
    run_args(tmp_path / "other", "--resume_from_checkpoint", str(run / "checkpoint-2"), "--overwrite_output_dir")
    assert "no effect" not in capsys.readouterr().err


def test_a_checkpoint_linked_into_the_output_folder_is_resumed_there(tmp_path):
    """A link in --output_dir to another run's checkpoint was refused as "another run than the one of
    --resume_from_checkpoint ...; pass --resume_from_checkpoint latest", which had been passed (black-box hunt);
    pruning it with --checkpoints_total_limit raised rmtree's OSError. It is this folder's checkpoint; pruning
    removes the link, not the other run's checkpoint."""
    other = started_run(tmp_path / "a")
    run = tmp_path / "b"
    run.mkdir()
    (run / "checkpoint-2").symlink_to(other / "checkpoint-2")
    args = run_args(run, "--resume_from_checkpoint", "latest", "--checkpoints_total_limit", "1")
    assert resume_checkpoint(run, args.resume_from_checkpoint) == run / "checkpoint-2"
    record_run_settings(args, run_parser(), run / "checkpoint-2")
    assert next(yaml.safe_load_all((run / "train_config_resumes.yaml").read_text()))["checkpoint"] == "checkpoint-2"
    save_checkpoint(_OneProcess(), run, 4, limit=1)
    assert [p.name for p in checkpoint_folders(run)] == ["checkpoint-4"] and not (run / "checkpoint-2").is_symlink()
    assert (other / "checkpoint-2" / "train_config.yaml").is_file()  # the other run's checkpoint is kept
    (run / "checkpoint-6").symlink_to(other / "checkpoint-2")  # a later one, abandoned by a save at step 6
    save_checkpoint(_OneProcess(), run, 6, limit=None)
    assert (run / "checkpoint-6").is_dir() and not (run / "checkpoint-6").is_symlink()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == [] and (other / "checkpoint-2").is_dir()


def test_a_main_process_step_that_fails_stops_every_process_with_its_error(monkeypatch):
    """The output folder's lock was taken on the main process only: the other processes of a run it refused went on
    into the checkpoints of the run holding the folder, and one said a checkpoint that run was pruning was damaged
    and should be deleted (black-box hunt, 2 processes). Here the broadcast between processes is played by hand."""
    import accelerate.utils

    from star_vsr.errors import OutputBusyError
    from star_vsr.training_run import main_process_step

    class Process(argparse.Namespace):
        num_processes = 2

    sent: list = []

    def broadcast(objects, from_process=0):  # the main process's list, as the others receive it
        if sent:
            objects[:] = sent[-1]
        else:
            sent.append(list(objects))

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast)
    steps = []

    def refused():
        steps.append("main")
        raise OutputBusyError("another star-vsr run is writing out; let it finish or stop it first")

    with pytest.raises(OutputBusyError, match="another star-vsr run is writing out"):
        main_process_step(Process(is_main_process=True), refused)
    with pytest.raises(OutputBusyError, match="another star-vsr run is writing out"):  # not on into the checkpoint
        main_process_step(Process(is_main_process=False), refused)
    assert steps == ["main"]
    sent[:] = [[None]]  # the main process's step went well: the others go on
    main_process_step(Process(is_main_process=False), refused)
    assert steps == ["main"]
    from star_vsr.errors import OutputError, exit_status, write_failed

    def disk_full():
        raise write_failed("cannot write out/train_config.yaml: No space left on device", OSError(28, "full"))

    sent.clear()
    with pytest.raises(OutputError):
        main_process_step(Process(is_main_process=True), disk_full)
    with pytest.raises(OutputError) as other:
        main_process_step(Process(is_main_process=False), disk_full)
    assert exit_status(other.value) == 1  # a full disk's status on every process (its errno came along)
