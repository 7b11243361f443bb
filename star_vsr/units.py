"""Amounts as messages write them for the user: bytes in the binary unit they have at least one of, seconds with
the digits that keep a short time from reading as none, counts with their noun in the right number.

Sizes were written as "0.0 MB" for a few KiB of saved progress (and MiB labelled MB), "0.00 GiB" for a 4 MiB
allocation; two frames at 1000 fps lasted "0.00 s" (black-box hunts of numbers and units).
"""

from __future__ import annotations

#: The binary units, largest first, and their powers of two.
UNIT_POWERS = {"TiB": 40, "GiB": 30, "MiB": 20, "KiB": 10}


def byte_amount(size: int) -> str:
    """``size`` bytes in the largest binary unit it has at least one of, as it rounds ("4.00 MiB", not "0.00 GiB";
    "1.00 MiB" for 1048575 bytes, not "1024.00 KiB"); "1 byte", "512 bytes" under 1 KiB."""
    for unit, power in UNIT_POWERS.items():
        if round(size / 2 ** power, 2) >= 1:
            return f"{size / 2 ** power:.2f} {unit}"
    return "1 byte" if size == 1 else f"{size} bytes"


def seconds_amount(seconds: float) -> str:
    """"2.50 s"; three significant digits under 0.1 s ("0.002 s" of two frames at 1000 fps, which read "0.00 s")."""
    return f"{seconds:.2f} s" if seconds >= 0.1 or seconds == 0 else f"{seconds:.3g} s"


def count_of(count: int, noun: str, plural: str | None = None) -> str:
    """"1 frame", "0 frames", "3 frames" ("1 frames" in several messages); ``plural`` where it is not noun + "s"."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def share_of(done: int, total: int) -> str:
    """``done / total`` as a whole percentage that is 0% or 100% only when it is: "<1%" for 1 of 400, ">99%" for
    399 of 400 (saved denoising read "0%" and "100%" of work done and not done)."""
    share = done / total
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"
