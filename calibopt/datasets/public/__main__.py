"""``python -m calibopt.datasets.public fetch [api] [taxcalc] [targets]``: fill the cache.

``where`` prints the cache folder; ``check`` loads every cached source and exits non-zero
with the fetch command when one is missing.
"""

from __future__ import annotations

import argparse
import sys

from .sources import SOURCES, PublicDataError, cache_dir, fetch, locate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calibopt.datasets.public")
    parser.add_argument("action", choices=["fetch", "check", "where"])
    parser.add_argument("sources", nargs="*", help=f"some of {', '.join(SOURCES)} (default all)")
    args = parser.parse_args(argv)
    names = args.sources or list(SOURCES)
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        parser.error(f"unknown source(s) {unknown}; choose from {sorted(SOURCES)}")
    if args.action == "where":
        print(cache_dir())
        return 0
    try:
        if args.action == "fetch":
            fetch(names)
        else:
            for name in names:
                print(f"{name}: {SOURCES[name].release} in {locate(name)}")
    except PublicDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
