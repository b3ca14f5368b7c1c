"""Calibration methods, one module per method (or family), each registered by name.

Every module in this package is imported here so that its ``@register_method`` runs; a
module must not import optional heavy dependencies (torch, dask) at import time.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import (
    Method,
    get_method,
    method_table,
    methods,
    register_method,
    run_method,
    unregister_method,
)

__all__ = [
    "Method",
    "get_method",
    "method_table",
    "methods",
    "register_method",
    "run_method",
    "unregister_method",
]

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "registry" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
