"""lmf's ops on several tensors: concatenation and the fused kernels of the models."""

from __future__ import annotations

from ctypes import c_void_p

from ._lib import lib, new_handle
from .tensor import Tensor


def cat(tensors, dim: int = 0) -> Tensor:
    """``tensors`` concatenated along ``dim``."""
    handles = (c_void_p * len(tensors))(*(t.handle for t in tensors))
    return Tensor(new_handle(lib.lmf_cat, handles, len(tensors), dim))


def embedding(table: Tensor, ids: Tensor) -> Tensor:
    """Rows ``ids`` (int32/int64, any shape) of ``table: [vocab, dim]``."""
    return Tensor(new_handle(lib.lmf_embedding, table.handle, ids.handle))


def rmsnorm(x: Tensor, w: Tensor, eps: float = 1e-6, offset: float = 0.0) -> Tensor:
    """``x * rsqrt(mean(x**2, -1) + eps) * (w + offset)``."""
    return Tensor(new_handle(lib.lmf_rmsnorm, x.handle, w.handle, eps, offset))


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """``silu(gate) * up``."""
    return Tensor(new_handle(lib.lmf_swiglu, gate.handle, up.handle))
