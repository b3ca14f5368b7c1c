"""What the sub-command modules share to build their parsers."""

from __future__ import annotations

import argparse

__all__ = ["add_command"]


def add_command(
    subparsers: argparse._SubParsersAction, name: str, help: str, doc: str | None
) -> argparse.ArgumentParser:
    """Add sub-command ``name`` whose ``--help`` shows the module docstring ``doc`` verbatim."""
    return subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
