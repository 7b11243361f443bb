"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def files_decord_failed_on(monkeypatch: pytest.MonkeyPatch) -> set:
    """``star_vsr.io.reader``'s memory of the files decord failed on, empty for each test: a file one test made
    decord fail on is read with PyAV in every later test of the process."""
    import star_vsr.io.reader

    monkeypatch.setattr(star_vsr.io.reader, "_DECORD_FAILED", set())
    return star_vsr.io.reader._DECORD_FAILED


@pytest.fixture
def umask_022() -> Iterator[int]:
    """The process umask set to 022 for the test (the previous one restored after); yields the mode a new
    file gets under it, 0o644 (``-rw-r--r--``)."""
    previous = os.umask(0o022)
    yield 0o644
    os.umask(previous)
