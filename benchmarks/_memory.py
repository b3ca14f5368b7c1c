"""Process memory readings shared by the benchmark scripts (Linux /proc; 0 elsewhere)."""

from __future__ import annotations

import ctypes
from pathlib import Path


def vm(field: str) -> float:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``, ...) in MiB (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def settle() -> bool:
    """Return freed heap to the system and reset the peak-RSS counter; True if reset."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
