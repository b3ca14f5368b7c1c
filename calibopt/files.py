"""Safe file output: write to temporary files beside the targets, then rename them into place.

:func:`atomic_output` writes one file, :func:`atomic_outputs` several that belong together.
Each target gets a temporary file in its own directory, named
``.<target name>.<pid>.<random>.tmp``; only when the caller's block finishes are the temporary
files renamed over their targets (``os.replace``, one atomic step per file), so a reader sees
either the old or the new version of each file, never a half-written one.

Temporary files are removed on every exit that Python sees (an exception, ``KeyboardInterrupt``,
``SystemExit``). A process killed outright (SIGKILL, a power cut) cannot remove them; the next
write to the same target removes those whose writing process (by the pid in the name, on this
machine) no longer runs, and readers never look at them.

Several files cannot be replaced in one atomic step: a run stopped between two renames leaves
the first targets new and the later ones old. The renames follow the order of the paths, so
the last path is the commit point; a reader that must know the files belong together checks a
token the writer put in both (``calibopt.stacking`` records the mapping CSV's SHA-256 digest in
the HDF5 file, written last).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InvalidProblemError

__all__ = ["atomic_output", "atomic_outputs", "remove_stale_temporaries", "sha256_of"]


def _temporary_pattern(target: Path) -> re.Pattern[str]:
    """The names of this module's temporary files for ``target`` (and of temporaries of those,
    when a writer wrote through a second atomic layer): the pid is group 1."""
    name = re.escape(target.name)
    return re.compile(rf"\.+{name}\.(\d+)\.[a-z0-9_]+\.tmp(?:\.\d+\.[a-z0-9_]+\.tmp)*")


def _process_is_gone(pid: int) -> bool:
    """True when no process with this pid runs on this machine (POSIX only; else False)."""
    if os.name != "posix" or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it runs, as another user
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes to ``path`` whose process no longer runs.

    Parameters
    ----------
    path
        A target of :func:`atomic_output` / :func:`atomic_outputs`.

    Returns
    -------
    list of Path
        The files removed (temporaries of killed writers). Those of writers that still run
        are left alone.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    pattern = _temporary_pattern(target)
    removed = []
    for entry in target.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and _process_is_gone(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):  # another writer removed it first
                entry.unlink()
                removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_targets(targets: list[Path], overwrite: bool) -> None:
    if len({t.resolve() for t in targets}) != len(targets):
        raise InvalidProblemError(f"the output paths {[str(t) for t in targets]} repeat a file.")
    for target in targets:
        if target.is_dir():
            raise InvalidProblemError(f"{str(target)!r} is a directory, not a file path.")
        if target.exists() and not overwrite:
            raise InvalidProblemError(
                f"{str(target)!r} already exists; pass overwrite=True (--overwrite) to replace it."
            )


@contextlib.contextmanager
def atomic_outputs(
    paths: Sequence[str | os.PathLike], *, overwrite: bool = False
) -> Iterator[list[Path]]:
    """Yield one temporary path per target; on success rename each over its target, in order.

    Parameters
    ----------
    paths
        The files to create, in commit order: the last one is renamed last, so when it is
        new, so are all the others. Their directories are created if needed.
    overwrite
        Allow replacing existing files; otherwise an existing file raises
        :class:`~calibopt.InvalidProblemError` before anything is written.

    Yields
    ------
    list of Path
        The temporary files, one per target, in the order of ``paths``.

    Notes
    -----
    On an exception (or ``KeyboardInterrupt``) inside the block every temporary file is
    removed and no target is touched. A failure between two renames leaves the earlier
    targets replaced: put the file that vouches for the others last.
    """
    targets = [Path(p) for p in paths]
    _check_targets(targets, overwrite)
    temporaries: list[Path] = []
    mode = 0o666 & ~_umask()
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(target)
            fd, name = tempfile.mkstemp(
                prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
            )
            os.close(fd)
            temporaries.append(Path(name))
            os.chmod(name, mode)  # mkstemp makes 0600 files; give the usual permissions
        yield list(temporaries)
        for tmp, target in zip(temporaries, targets):
            os.replace(tmp, target)
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


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
    with atomic_outputs([path], overwrite=overwrite) as (tmp,):
        yield tmp


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 digest of a file's bytes, as 64 hexadecimal digits."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
