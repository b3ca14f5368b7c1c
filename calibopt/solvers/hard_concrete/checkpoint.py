"""Checkpoints of a Hard-Concrete run: atomic files that resume only the run they came from.

A checkpoint holds the parameters, the Adam state, the random generator's state, the epoch,
the best parameters seen so far with their evaluation, the history and the early-stopping
counters, so that a resumed run continues exactly where the saved one was (same weights,
bit for bit, on the same device and thread count). It also holds a fingerprint of the data
and of the options that define the model; loading it for anything else raises.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InvalidProblemError

__all__ = ["FORMAT", "fingerprint", "load_checkpoint", "save_checkpoint"]

FORMAT = "calibopt.hard-concrete/1"


def fingerprint(arrays: list[np.ndarray], options: dict[str, Any]) -> str:
    """BLAKE2 hash of the arrays' bytes (with shapes and dtypes) and the sorted options."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    for key in sorted(options):
        h.update(f"{key}={options[key]!r};".encode())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str], expected_fingerprint: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` for the same problem and options.

    Raises
    ------
    InvalidProblemError
        If the file is not a readable checkpoint of this format, or was written for other data
        or other model options.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise InvalidProblemError(
            f"cannot read checkpoint {str(path)!r} ({type(exc).__name__}: {exc}); delete it or "
            f"point `checkpoint` at another file to start afresh."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InvalidProblemError(
            f"{str(path)!r} is not a calibopt hard-concrete checkpoint (expected format "
            f"{FORMAT!r})."
        )
    if payload.get("fingerprint") != expected_fingerprint:
        raise InvalidProblemError(
            f"checkpoint {str(path)!r} was written for a different problem or different model "
            f"options (X, targets, initial weights, bounds, loss, gates, penalties, dtype must "
            f"all match); use another checkpoint path or resume=False to start afresh."
        )
    return payload
