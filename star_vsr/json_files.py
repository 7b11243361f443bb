"""Reading JSON that a user or another program may have damaged or crafted.

Python's ``json`` decodes nested arrays and objects recursively: text nested ~1,000 deep raises
``RecursionError``, which every reader's ``except ValueError`` (``json.JSONDecodeError`` is one) let through as a
traceback. ``loads_json`` turns it into a ``JSONDecodeError`` like any other damage, so those readers name the file.
"""

from __future__ import annotations

import json
from typing import Any


def loads_json(text: str) -> Any:
    """``json.loads(text)``; ``json.JSONDecodeError`` ("nested too deep to read") where the nesting is too deep for
    Python's recursion."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deep to read", text[:80], 0) from None
