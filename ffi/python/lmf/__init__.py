"""Python bindings of liblmf (lmf's C ABI, ``ffi/include/lmf.h``) over ctypes and numpy.

The library is ``$LMF_LIB``, else the nearest ``target/release`` or ``target/debug``
build of ``cargo build -p lmf-ffi`` above this package.
"""

from ._lib import ABI_VERSION, LmfError, Status, lib, live_handles, version
from ._enums import DTYPES
from .functional import cat, embedding, rmsnorm, swiglu
from .model import ChatInfo, Model
from .tensor import Grads, Tensor, is_grad_enabled, no_grad
from .train import CancelToken, train

__all__ = [
    "ABI_VERSION",
    "DTYPES",
    "CancelToken",
    "ChatInfo",
    "Grads",
    "LmfError",
    "Model",
    "Status",
    "Tensor",
    "cat",
    "embedding",
    "is_grad_enabled",
    "lib",
    "live_handles",
    "no_grad",
    "rmsnorm",
    "swiglu",
    "train",
    "version",
]
