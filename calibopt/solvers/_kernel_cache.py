"""When to use the numba kernels: no visible compilation on a fresh machine.

numba compiles a kernel the first time it is called in an environment (seconds) and caches it
on disk. calibopt never makes a user wait for that: until the compiled kernels are known to be
in the cache, the solvers use NumPy/SciPy versions of the same operations
(:mod:`calibopt.solvers.kernels`), and a background process (``python -m
calibopt.solvers._numba_kernels``, at low priority) compiles them. When it has finished, a
stamp file says so, and the next kernel call in any process loads the compiled code from the
cache (milliseconds).

``CALIBOPT_KERNELS`` chooses: ``auto`` (default, as above), ``numba`` (always the compiled
kernels, compiling in the foreground when needed) or ``numpy`` (never numba). The stamp lives
in ``NUMBA_CACHE_DIR`` when set, else next to the kernels (``__pycache__``) when writable,
else in ``~/.cache/calibopt``; its name holds a digest of the kernels' source, the numba and
Python versions and the machine, so a change of any of them compiles again.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

__all__ = ["kernel_mode", "numba_ready", "stamp_path", "start_warm_up"]

_SOURCE = Path(__file__).with_name("_numba_kernels.py")
_SOURCES = (_SOURCE, _SOURCE.with_name("_numba_cells.py"))
STALE_LOCK = 600.0
"""Seconds after which a warm-up lock whose process died is ignored."""

_state: dict[str, object] = {"ready": False, "proc": None, "stamp": None}


def kernel_mode() -> str:
    """``auto``, ``numba`` or ``numpy`` (the ``CALIBOPT_KERNELS`` environment variable)."""
    mode = os.environ.get("CALIBOPT_KERNELS", "auto").strip().lower()
    return mode if mode in ("auto", "numba", "numpy") else "auto"


def _cache_dir() -> Path:
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    here = _SOURCE.parent / "__pycache__"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    return Path.home() / ".cache" / "calibopt"


def stamp_path() -> Path:
    """The file whose presence says the compiled kernels are in numba's cache."""
    cached = _state.get("stamp")
    if cached is not None and cached[0] == os.environ.get("NUMBA_CACHE_DIR"):  # type: ignore[index]
        return cached[1]  # type: ignore[index]
    try:
        numba_version = metadata.version("numba")
    except metadata.PackageNotFoundError:  # pragma: no cover - numba is a dependency
        numba_version = "none"
    h = hashlib.sha256(b"".join(src.read_bytes() for src in _SOURCES))
    h.update(f"{numba_version}|{sys.version}|{platform.machine()}|{sys.executable}".encode())
    path = _cache_dir() / f"calibopt-kernels-{h.hexdigest()[:16]}.ready"
    _state["stamp"] = (os.environ.get("NUMBA_CACHE_DIR"), path)
    return path


def _purge_cell_kernels() -> None:
    """Removes numba's cache entries of the cell kernels.

    numba checks a cached kernel against its own source file only, and the cell kernels
    inline helpers from ``_numba_kernels.py``: after a change there alone they would load
    stale code. The warm-up runs when the kernels' digest changed, so it compiles them anew.
    """
    dirs = [_SOURCE.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    for folder in dirs:
        try:
            for index in folder.rglob("_numba_cells.*.nbi"):
                index.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - unreadable cache folders
            continue


def start_warm_up() -> subprocess.Popen | None:
    """Start compiling the kernels in a background process (once; None if one is running)."""
    proc = _state["proc"]
    if proc is not None:
        return proc  # type: ignore[return-value]
    stamp = stamp_path()
    lock = stamp.with_suffix(".lock")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        if lock.exists() and time.time() - lock.stat().st_mtime < STALE_LOCK:
            return None  # another process compiles them
        lock.write_text(str(os.getpid()))
    except OSError:
        return None
    _purge_cell_kernels()
    code = (
        "import os, sys\n"
        "try:\n    os.nice(10)\nexcept OSError:\n    pass\n"
        "from calibopt.solvers._numba_cells import warm\n"
        "warm()\n"
        f"open({str(stamp)!r}, 'w').write('ok')\n"
        f"os.remove({str(lock)!r})\n"
    )
    env = dict(os.environ)
    root = str(_SOURCE.parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None
    _state["proc"] = proc
    return proc


def numba_ready() -> bool:
    """Whether the solvers should call the numba kernels now (see the module docstring)."""
    if _state["ready"]:
        return True
    mode = kernel_mode()
    if mode == "numpy":
        return False
    if mode == "numba" or stamp_path().exists():
        _state["ready"] = True
        return True
    proc = _state["proc"]
    if proc is None:
        start_warm_up()
    return False
