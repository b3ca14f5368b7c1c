"""The ``calibopt`` command.

One module per sub-command (``calibopt/cli/<command>.py``, dashes written as underscores), each
exposing ``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it;
modules whose name starts with ``_`` hold what several commands share.

:func:`main` turns every failure a user can cause into one line on stderr and an exit status:
1 for a :class:`~calibopt.CalibrationError`, 130 for Ctrl-C, 143 for SIGTERM (which, like
Ctrl-C, unwinds the command so that no temporary file is left), and 141 when the reader of
the output went away (``calibopt targets overview | head``), without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import CalibrationError

__all__ = ["build_parser", "main"]

EXIT_BROKEN_PIPE = 128 + 13
"""Exit status when stdout's reader closed the pipe (the shell's status for SIGPIPE)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="calibopt",
        description="Calibrate microdata weights to known totals (every method an explicit "
        "optimisation model).",
    )
    parser.add_argument("--version", action="version", version=f"calibopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``calibopt`` command; returns the exit status."""
    try:
        with _sigterm_unwinds():
            try:
                return _dispatch(argv)
            finally:
                sys.stdout.flush()  # here, so that a closed pipe is reported below
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CalibrationError as exc:
        print(f"calibopt {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"calibopt {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(f"calibopt {args.command}: terminated", file=sys.stderr)
        return int(exc.code)


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler while a command runs."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into ``_Terminated(143)`` (a ``SystemExit``) while the command runs, so
    that its ``finally`` blocks (temporary files) run; the previous handler is restored
    afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _discard_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush does not fail
    again on the closed pipe (and print a traceback)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
