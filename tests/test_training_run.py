"""The training scripts' shared settings loader and checkpoint bookkeeping (star_vsr.training_run)."""

from __future__ import annotations

import argparse

import pytest

from star_vsr.training_run import checkpoint_folders, checkpoint_step, parse_with_config, prune_checkpoints


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=None)
    p.add_argument("--learning_rate", type=float, default=1.0)
    p.add_argument("--scale", type=int, default=4)
    return p


def test_config_values_are_defaults_that_flags_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 0.5\nscale: 2\n")
    args = parse_with_config(parser(), ["--config", str(config), "--scale", "3"])
    assert args.learning_rate == 0.5 and args.scale == 3
    assert parse_with_config(parser(), []).learning_rate == 1.0


@pytest.mark.parametrize("text, message", [
    ("learnig_rate: 0.5\n", "unknown settings ['learnig_rate']"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("scale: [1\n", "is not valid YAML"),
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
    assert [p.name for p in prune_checkpoints(tmp_path, 2)] == ["checkpoint-9", "checkpoint-10"]
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-100"]
    assert (tmp_path / "checkpoint-final").is_dir() and checkpoint_folders(tmp_path / "missing") == []
