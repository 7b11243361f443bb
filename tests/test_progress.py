"""Progress bars: redrawn in place on a terminal, whole lines now and then in a log file."""

import io

from tqdm import tqdm

from star_vsr.cli import main
from star_vsr.io.synthetic import write_test_video
from star_vsr.progress import LOG_INTERVAL_S, bar_options


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_keeps_tqdms_own_bar():
    assert bar_options(_Terminal()) == {}


def test_a_log_file_gets_whole_ascii_lines_not_carriage_returns():
    log = io.StringIO()
    options = bar_options(log)
    assert options["mininterval"] == LOG_INTERVAL_S and options["ascii"] is True
    with tqdm(total=4, desc="clip.mp4", unit="frame", **options) as bar:
        for _ in range(4):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and text.isascii()
    lines = text.splitlines()
    assert lines[0].startswith("clip.mp4:   0%") and lines[-1].startswith("clip.mp4: 100%")
    assert len(lines) == 2  # the start and the end: the updates in between came within LOG_INTERVAL_S


def test_a_second_open_bar_writes_no_cursor_codes():
    """The writer's frame bar opens under the diffusion pipeline's step bar: tqdm moves the cursor up ("\\x1b[A")
    to redraw the lower one, and each of those came out as a line of its own."""
    log = io.StringIO()
    with tqdm(total=2, desc="upscale", **bar_options(log)) as outer:
        with tqdm(total=3, desc="writer", **bar_options(log)) as inner:
            inner.update(3)
        outer.update(2)
    text = log.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert all(line.startswith(("upscale:", "writer:")) for line in text.splitlines()), text


def test_upscale_into_a_log_file_writes_lines(tmp_path, capsys):
    """stderr redirected to a file got a carriage-return redraw of Unicode blocks up to ten times a second."""
    src = write_test_video(tmp_path / "in.mp4", num_frames=3, size=(16, 16))
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.mp4")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "█" not in err
    assert any(line.startswith("out.mp4: 100%") and "3/3" in line for line in err.splitlines()), err
