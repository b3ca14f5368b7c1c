"""torch as an optional dependency: import, device and dtype resolution, sparse conversion.

Nothing here imports torch at module level: :func:`require_torch` does, and turns a missing
install into a :class:`~calibopt.errors.SolverError` that says how to get it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import InvalidProblemError, SolverError

__all__ = ["require_torch", "resolve_device", "resolve_dtype", "to_torch_csr"]

_INSTALL_HINT = (
    "install it with `pip install calibopt[torch]` (for a CPU-only build: "
    "`pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)


def require_torch() -> Any:
    """Import and return :mod:`torch`, or raise :class:`SolverError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:  # also raised when sys.modules["torch"] is None
        raise SolverError(
            f"method 'hard-concrete' needs PyTorch, which is not installed: {_INSTALL_HINT}."
        ) from exc
    return torch


def resolve_device(torch: Any, device: Any) -> Any:
    """``"auto"``/None, ``"cpu"``, ``"cuda"``, ``"cuda:k"`` or a ``torch.device`` -> a device.

    ``"auto"`` picks the first CUDA device when one is available, else the CPU. Unknown names
    raise :class:`InvalidProblemError`; a CUDA device that this torch cannot use raises
    :class:`SolverError`.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device):
        raise InvalidProblemError(
            f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}."
        )
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, ValueError):
        raise InvalidProblemError(
            f"unknown `device` {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'."
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise InvalidProblemError(
            f"`device` {device!r} is not supported by method 'hard-concrete' (it needs sparse CSR "
            f"products, available on 'cpu' and 'cuda'); use device='cpu' or 'cuda'."
        )
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise SolverError(
            f"CUDA requested (device={device!r}) but torch.cuda.is_available() is False: this "
            f"torch {torch.__version__} is {build} and sees no usable GPU. Use device='cpu', or "
            f"install a CUDA build of torch on a machine with an NVIDIA GPU and driver."
        )
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise SolverError(
            f"device {device!r} requested but only {count} CUDA device(s) are visible "
            f"(indices 0..{count - 1})."
        )
    return dev


def resolve_dtype(torch: Any, dtype: Any) -> Any:
    """``"float32"`` / ``"float64"`` (or the torch/numpy dtype objects) -> a torch dtype."""
    names = {
        "float32": torch.float32,
        "float": torch.float32,
        "float64": torch.float64,
        "double": torch.float64,
    }
    if isinstance(dtype, str) and dtype.strip().lower() in names:
        return names[dtype.strip().lower()]
    if dtype in (torch.float32, torch.float64):
        return dtype
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype == np.float32:
        return torch.float32
    if np_dtype == np.float64:
        return torch.float64
    raise InvalidProblemError(f"`dtype` must be 'float32' or 'float64', got {dtype!r}.")


def to_torch_csr(torch: Any, A: sp.csr_matrix, dtype: Any, device: Any) -> Any:
    """A canonical ``scipy.sparse`` CSR matrix as a torch sparse CSR tensor on ``device``.

    Indices are int32 when they fit (half the index traffic of int64 in every product). On the
    CPU the tensor shares memory with ``A`` when the dtypes already match.
    """
    A = sp.csr_matrix(A)
    if not A.has_canonical_format:  # never reorder arrays that may be shared with the caller
        A = A.copy()
        A.sum_duplicates()
    big = A.nnz >= 2**31 - 1 or max(A.shape) >= 2**31 - 1
    idx = np.int64 if big else np.int32
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    crow = torch.from_numpy(np.ascontiguousarray(A.indptr, dtype=idx))
    col = torch.from_numpy(np.ascontiguousarray(A.indices, dtype=idx))
    val = torch.from_numpy(np.ascontiguousarray(A.data, dtype=np_dtype))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        out = torch.sparse_csr_tensor(
            crow.to(device), col.to(device), val.to(device), size=A.shape, check_invariants=False
        )
    return out
