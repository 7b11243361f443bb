"""The training scripts' shared settings loader and checkpoint bookkeeping (star_vsr.training_run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from star_vsr.errors import InputError
from star_vsr.training_run import (check_output_dir, checkpoint_folders, checkpoint_step, parse_with_config,
                                   prune_checkpoints, resume_checkpoint, save_checkpoint)


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


@pytest.mark.parametrize("text, message", [
    ("learnig_rate: 0.5\n", "unknown settings ['learnig_rate']"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("scale: [1\n", "is not valid YAML"),
    ("scale: 1.5\n", "scale must be int, got 1.5"),
    ("scale: [2]\n", "scale must be int, got [2]"),
    ("learning_rate: true\n", "learning_rate must be a number"),
    ("layers: b\n", "layers must be a list of one or more values"),
    ("scale_range: [1, 2, 3]\n", "scale_range must be a list of 2 values"),
    ("flip: 1\n", "flip must be true or false"),
    ("mode: z\n", "mode must be one of x, y, got 'z'"),
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
    assert (tmp_path / "checkpoint-8" / "optimizer.bin").is_file()
    # gone on from checkpoint-6 (--resume_from_checkpoint .../checkpoint-6): checkpoint-8 is of the abandoned
    # run; the new step-7 state replaces it for `latest`, and pruning never drops the new one
    save_checkpoint(accelerator, tmp_path, 7, limit=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-7"]
    assert resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-7"


def test_an_output_folder_with_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    check_output_dir(tmp_path / "new", None, False)
    check_output_dir(tmp_path, None, False)  # an empty (or unrelated) folder is fine
    (tmp_path / "train_config.yaml").write_text("")  # a run that failed before its first step
    (tmp_path / "train_log.jsonl").write_text("")
    check_output_dir(tmp_path, None, False)
    (tmp_path / "train_log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(InputError, match="holds a run .train_log.jsonl.*--resume_from_checkpoint latest"):
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
