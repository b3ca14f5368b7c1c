"""``--json``: every sub-command that prints a result can print it as one JSON document.

With ``--json`` the human-readable lines go to stderr and stdout holds only the JSON
(numbers as numbers, NaN and infinities as null, tables as lists of records), so that
``calibopt COMMAND ... --json | jq`` works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_json_argument", "emit", "human_output", "plain"]


def add_json_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--json`` to a sub-command's parser."""
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON on stdout (the usual lines go to stderr)",
    )


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, arrays, paths and DataFrames turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return [plain(r) for r in value.to_dict("records")]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def emit(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout (call it outside :func:`human_output`)."""
    print(json.dumps(plain(payload), indent=1, allow_nan=False))


@contextlib.contextmanager
def human_output(args: argparse.Namespace) -> Iterator[None]:
    """With ``--json``, send what the command prints to stderr."""
    if getattr(args, "json", False):
        with contextlib.redirect_stdout(sys.stderr):
            yield
    else:
        yield
