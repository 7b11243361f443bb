"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture
def umask_022() -> Iterator[int]:
    """The process umask set to 022 for the test (the previous one restored after); yields the mode a new
    file gets under it, 0o644 (``-rw-r--r--``)."""
    previous = os.umask(0o022)
    yield 0o644
    os.umask(previous)
