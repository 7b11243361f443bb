"""The README's install and test commands are exactly what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_readme_commands() -> list[str]:
    """Commands of .ci/run marked ``# README`` (or ``# README: <command>``)."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        if "# README" not in line:
            continue
        code, _, comment = line.partition("# README")
        commands.append(comment[1:].strip() if comment.startswith(":") else code.strip())
    return commands


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = ci_readme_commands()
    assert len(commands) >= 4  # torch, the package, pyiqa, pytest
    for command in commands:
        assert command in readme, f"README.md does not show the CI command: {command}"


def test_ci_fails_when_pytest_collects_nothing():
    script = (ROOT / ".ci" / "run").read_text()
    assert '"$status" -eq 5' in script and "exit 1" in script
