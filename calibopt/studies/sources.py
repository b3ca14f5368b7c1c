"""What a study runs on: problems, instances or saved files, each with a name and a file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from .instances import Instance, make_instance
from .problem_io import problem_digest, problem_meta, save_problem

__all__ = ["Source", "parse_memory", "resolve_sources", "write_sources"]


@dataclass
class Source:
    """One instance of a study: its name, the problem (when in memory) and its saved file."""

    name: str
    problem: CalibrationProblem | None = None
    path: Path | None = None
    provenance: dict[str, Any] | None = None
    digest: str = ""
    shape: tuple[int, int] = (0, 0)


def _one(item: Any, name: str | None, position: int) -> Source:
    if isinstance(item, Instance):
        return Source(name or item.name, item.problem, provenance=item.provenance)
    if isinstance(item, CalibrationProblem):
        return Source(name or f"problem_{position}", item, provenance={})
    if isinstance(item, str | os.PathLike):
        text = os.fspath(item)
        if text.endswith(".npz") or os.path.isfile(text):
            path = Path(text)
            meta = problem_meta(path)
            return Source(
                name or path.stem,
                path=path,
                provenance=meta.get("provenance", {}),
                digest=meta.get("digest", ""),
                shape=tuple(meta["shape"]),
            )
        kind, _, rest = text.partition(":")
        size, _, seed = rest.partition(":")
        try:
            seed_value = int(seed) if seed else 0
        except ValueError:
            raise InvalidProblemError(
                f"instance {text!r}: write KIND, KIND:SIZE or KIND:SIZE:SEED (seed an integer)."
            ) from None
        inst = make_instance(kind, size or "small", seed_value)
        return Source(name or inst.name, inst.problem, provenance=inst.provenance)
    raise InvalidProblemError(
        f"a study runs on CalibrationProblems, Instances, saved problem files (.npz) or "
        f"instance names ('local-area:small'); got {type(item).__name__}."
    )


def resolve_sources(problems: Any) -> list[Source]:
    """Normalise ``problems`` (one item, a sequence, or a mapping name -> item)."""
    if isinstance(problems, Mapping):
        items = [(str(k), v) for k, v in problems.items()]
    elif isinstance(problems, str | os.PathLike | CalibrationProblem | Instance):
        items = [(None, problems)]
    elif isinstance(problems, Sequence):
        items = [(None, p) for p in problems]
    else:
        raise InvalidProblemError(
            f"`problems` must be a problem, an instance, a file, or a list or dict of them; "
            f"got {type(problems).__name__}."
        )
    if not items:
        raise InvalidProblemError("`problems` is empty: give at least one problem.")
    sources = [_one(item, name, i) for i, (name, item) in enumerate(items)]
    names = [s.name for s in sources]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InvalidProblemError(
            f"instance names must be unique; repeated: {dups}. Pass a dict name -> problem."
        )
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.:+-]+", n)]
    if bad:
        raise InvalidProblemError(
            f"instance names may use letters, digits and _ . : + - only; got {bad}."
        )
    return sources


def write_sources(sources: list[Source], folder: Path) -> None:
    """Give every in-memory source a file in ``folder`` (kept when its digest matches)."""
    for s in sources:
        if s.problem is None:
            continue
        s.digest = problem_digest(s.problem)
        s.shape = (s.problem.n_targets, s.problem.n_units)
        path = folder / f"{s.name.replace(':', '_')}.npz"
        if path.is_file() and problem_meta(path).get("digest") == s.digest:
            s.path = path
            continue
        s.path = save_problem(s.problem, path, provenance=s.provenance, overwrite=True)


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(value: Any, name: str = "memory_limit") -> int | None:
    """Bytes from a number of bytes or a string such as ``"4GB"``, ``"500M"`` (powers of 2)."""
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(I?B)?\s*", value.upper())
        if not m:
            raise InvalidProblemError(
                f"`{name}` {value!r}: write bytes or a size such as '500MB' or '4GB'."
            )
        number, unit = float(m.group(1)), _UNITS[m.group(2)]
        value = number * unit
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidProblemError(f"`{name}` must be a positive size in bytes, got {value!r}.")
    return int(value)
