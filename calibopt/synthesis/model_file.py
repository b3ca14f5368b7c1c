"""One ``.npz`` file per fitted model: JSON metadata plus arrays, never pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..files import atomic_output

__all__ = ["read_model_file", "write_model_file"]


def write_model_file(
    path: str | os.PathLike,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``meta`` (as JSON; ``default`` as for :func:`json.dumps`) and ``arrays``,
    atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta, default=default)), **arrays)


def read_model_file(
    path: str | os.PathLike, what: str, fmt: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file of :func:`write_model_file` holding a ``what`` of format ``fmt``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidProblemError(f"{str(path)!r} is not a saved {what} ({exc}).") from None
    if meta.get("format") != fmt:
        raise InvalidProblemError(f"{str(path)!r} has format {meta.get('format')!r}.")
    return meta, arrays
