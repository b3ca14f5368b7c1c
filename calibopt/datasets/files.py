"""Safe file output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidProblemError

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it to ``path``.

    Nothing is left behind on failure (the temporary file is removed), and the target is
    replaced in one ``os.replace`` step, so readers see either the old or the new file.

    Parameters
    ----------
    path
        The file to create. Its directory is created if needed.
    overwrite
        Allow replacing an existing file; otherwise an existing file raises
        :class:`~calibopt.InvalidProblemError` before anything is written.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise InvalidProblemError(
            f"{str(target)!r} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    if target.is_dir():
        raise InvalidProblemError(f"{str(target)!r} is a directory, not a file path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
