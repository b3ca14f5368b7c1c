"""Reading and writing the tables of the command line: CSV, TSV or Parquet by extension."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InvalidProblemError
from ..files import atomic_output

__all__ = ["read_table", "write_table"]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file (by extension) with a clear error when it cannot."""
    p = Path(path)
    if not p.is_file():
        raise InvalidProblemError(f"input file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".tsv", ".tab"):
            return pd.read_csv(p, sep="\t")
        return pd.read_csv(p)
    except ImportError as exc:
        raise InvalidProblemError(
            f"reading {p.name} needs pyarrow: pip install calibopt[parquet] ({exc})."
        ) from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidProblemError(f"cannot read {str(p)!r}: {exc}") from exc


def write_table(df: pd.DataFrame, path: str | Path, overwrite: bool = False) -> None:
    """Write CSV or Parquet (by extension) atomically; refuse to replace a file by default."""
    p = Path(path)
    with atomic_output(p, overwrite=overwrite) as tmp:
        if p.suffix.lower() in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
