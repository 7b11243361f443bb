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


def test_the_readme_student_snippet_runs(tmp_path, monkeypatch):
    """The README's Python example with the shipped student, run as written on a small input.mp4."""
    import re

    from star_vsr.io import probe_video
    from star_vsr.io.synthetic import write_test_video

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (snippet,) = [block for block in blocks if "default_student_folder" in block]
    monkeypatch.chdir(tmp_path)
    write_test_video(tmp_path / "input.mp4", num_frames=5, size=(12, 16))
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert tuple(namespace["frames"].shape) == (1, 5, 3, 48, 64)
    assert probe_video(tmp_path / "output.mp4").num_frames == 5
