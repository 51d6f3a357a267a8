"""Tensors: numpy in (copied) and out (zero-copy where the layout allows), lmf's ops, autograd."""

from __future__ import annotations

import contextlib
from ctypes import byref, c_bool, c_int, c_int32, c_int64, c_size_t, c_void_p

import numpy as np

from ._enums import BF16, BINARY, HOLDER, NAMES, REDUCE, UNARY, device_code, dtype_code
from ._lib import Owned, check, lib, new_handle


def _sizes(values):
    return (c_size_t * len(values))(*values)


def _dims(values):
    return (c_int64 * len(values))(*values)


def _dim_list(dims) -> list[int]:
    if dims is None:
        return []
    return [dims] if isinstance(dims, int) else list(dims)


def _shape_args(shape) -> tuple[int, ...]:
    """``f(2, 3)`` and ``f((2, 3))`` alike."""
    return tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape


class _Borrowed:
    """A tensor's memory as numpy sees it (read-only); it holds the tensor's handle alive."""

    def __init__(self, owner, ptr: int, shape, dtype: np.dtype):
        self._owner = owner
        self.__array_interface__ = {
            "version": 3,
            "shape": tuple(shape),
            "typestr": dtype.str,
            "data": (ptr, True),
        }


class Tensor(Owned):
    """An lmf tensor (an ``LmfTensor*``). Arithmetic operators, ``@`` and the methods below
    run lmf's ops (recorded for autograd when an input requires grad); each returns a new
    tensor."""

    def __init__(self, handle: int):
        """Takes ownership of a raw ``LmfTensor*`` handle."""
        super().__init__(handle, lib.lmf_tensor_free)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_numpy(cls, arr, dtype=None, requires_grad: bool = False) -> Tensor:
        """A CPU tensor with a copy of ``arr`` (anything ``np.asarray`` takes), of ``dtype``
        (default: the array's). A uint16 array with ``dtype="bfloat16"`` holds bf16 bits;
        any other array converts to bfloat16 by value."""
        arr = np.asarray(arr)
        code = dtype_code(arr.dtype if dtype is None else dtype)
        if code == BF16 and arr.dtype != np.uint16:
            t = cls.from_numpy(arr, "float32").to_dtype("bfloat16")
        else:
            arr = arr.astype(HOLDER[NAMES[code]], order="C", copy=False)
            t = cls(new_handle(lib.lmf_tensor_from_data, arr.ctypes.data_as(c_void_p), code,
                               _sizes(arr.shape), arr.ndim))
        if requires_grad:
            t.requires_grad = True
        return t

    @classmethod
    def full(cls, value: float, shape, dtype="float32", device: str = "cpu") -> Tensor:
        """A tensor of ``shape`` (``()`` for a scalar) filled with ``value``."""
        shape = tuple(shape)
        return cls(new_handle(lib.lmf_tensor_full, float(value), dtype_code(dtype),
                              _sizes(shape), len(shape), *device_code(device)))

    # -- inspection ---------------------------------------------------------------------

    def _size_out(self, fn) -> int:
        n = c_size_t()
        check(fn(self.handle, byref(n)))
        return n.value

    @property
    def ndim(self) -> int:
        return self._size_out(lib.lmf_tensor_ndim)

    @property
    def numel(self) -> int:
        return self._size_out(lib.lmf_tensor_numel)

    @property
    def shape(self) -> tuple[int, ...]:
        dims = (c_size_t * self.ndim)()
        check(lib.lmf_tensor_shape(self.handle, dims, len(dims)))
        return tuple(dims)

    @property
    def dtype(self) -> str:
        """The element type's name: a key of ``DTYPES``."""
        code = c_int()
        check(lib.lmf_tensor_dtype(self.handle, byref(code)))
        return NAMES[code.value]

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
        kind, index = c_int(), c_int32()
        check(lib.lmf_tensor_device(self.handle, byref(kind), byref(index)))
        return "cpu" if kind.value == 0 else f"cuda:{index.value}"

    @property
    def requires_grad(self) -> bool:
        out = c_bool()
        check(lib.lmf_tensor_requires_grad(self.handle, byref(out)))
        return out.value

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        """Only on a leaf (a tensor made here, not by an op)."""
        check(lib.lmf_tensor_set_requires_grad(self.handle, bool(value)))

    @property
    def is_contiguous(self) -> bool:
        """Whether the elements are row-major without gaps (``numpy()`` can share them)."""
        out = c_bool()
        check(lib.lmf_tensor_is_contiguous(self.handle, byref(out)))
        return out.value

    def __repr__(self) -> str:
        if self._h is None:
            return "Tensor(closed)"
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device}{grad})"

    # -- numpy out ----------------------------------------------------------------------

    def numpy(self, copy: bool = False) -> np.ndarray:
        """The elements as an ndarray (bfloat16 as uint16 bits). A contiguous CPU tensor is
        shared, not copied: the array is read-only and keeps the handle alive. Any other
        tensor, or ``copy=True``, gives a writable copy."""
        shape, dtype = self.shape, HOLDER[self.dtype]
        if not copy and self.numel and self.device == "cpu" and self.is_contiguous:
            ptr = c_void_p()
            check(lib.lmf_tensor_data_ptr(self.handle, byref(ptr)))
            return np.asarray(_Borrowed(self._h, ptr.value, shape, dtype))
        out = np.empty(shape, dtype)
        check(lib.lmf_tensor_copy_to(self.handle, out.ctypes.data_as(c_void_p), out.nbytes))
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.numpy(copy=bool(copy))
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def item(self) -> float | int:
        """The value of a one-element tensor."""
        t = self.to_dtype("float32") if self.dtype == "bfloat16" else self
        return t.numpy().item()

    # -- ops ----------------------------------------------------------------------------

    def _op(self, fn, *args) -> Tensor:
        return Tensor(new_handle(fn, self.handle, *args))

    def _coerce(self, x) -> Tensor:
        """``x`` as a tensor: a Python or numpy number or array becomes one of this dtype."""
        if isinstance(x, Tensor):
            return x
        t = Tensor.from_numpy(x, self.dtype)
        return t if self.device == "cpu" else t.to_device(self.device)

    def _binary(self, other, op: str, reverse: bool = False) -> Tensor:
        other = self._coerce(other)
        a, b = (other, self) if reverse else (self, other)
        return Tensor(new_handle(lib.lmf_binary, a.handle, b.handle, BINARY[op]))

    def __add__(self, o): return self._binary(o, "add")
    def __radd__(self, o): return self._binary(o, "add", True)
    def __sub__(self, o): return self._binary(o, "sub")
    def __rsub__(self, o): return self._binary(o, "sub", True)
    def __mul__(self, o): return self._binary(o, "mul")
    def __rmul__(self, o): return self._binary(o, "mul", True)
    def __truediv__(self, o): return self._binary(o, "div")
    def __rtruediv__(self, o): return self._binary(o, "div", True)
    def __neg__(self): return self.neg()
    def __pow__(self, e: float): return self._op(lib.lmf_powf, float(e))

    def maximum(self, other) -> Tensor:
        return self._binary(other, "maximum")

    def minimum(self, other) -> Tensor:
        return self._binary(other, "minimum")

    def __matmul__(self, other) -> Tensor:
        """Matrix product, batch dims broadcast: ``[.., m, k] @ [.., k, n]``."""
        other = self._coerce(other)  # held until the call returns
        return Tensor(new_handle(lib.lmf_matmul, self.handle, other.handle))

    def __rmatmul__(self, other) -> Tensor:
        return self._coerce(other) @ self

    def affine(self, mul: float, add: float) -> Tensor:
        """``self * mul + add``."""
        return self._op(lib.lmf_affine, float(mul), float(add))

    def clamp(self, lo: float, hi: float) -> Tensor:
        return self._op(lib.lmf_clamp, float(lo), float(hi))

    def softmax(self, dim: int = -1) -> Tensor:
        return self._op(lib.lmf_softmax, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return self._op(lib.lmf_log_softmax, dim)

    def _reduce(self, op: str, dims, keepdim: bool) -> Tensor:
        ds = _dim_list(dims)
        return self._op(lib.lmf_reduce, REDUCE[op], _dims(ds), len(ds), keepdim)

    def sum(self, dims=None, keepdim: bool = False) -> Tensor:
        """Sum over ``dims`` (an int, a sequence, or ``None`` for all)."""
        return self._reduce("sum", dims, keepdim)

    def mean(self, dims=None, keepdim: bool = False) -> Tensor:
        return self._reduce("mean", dims, keepdim)

    def max(self, dim: int, keepdim: bool = False) -> Tensor:
        return self._reduce("max", dim, keepdim)

    def min(self, dim: int, keepdim: bool = False) -> Tensor:
        return self._reduce("min", dim, keepdim)

    def reshape(self, *shape) -> Tensor:
        shape = _shape_args(shape)
        return self._op(lib.lmf_reshape, _sizes(shape), len(shape))

    def transpose(self, d0: int, d1: int) -> Tensor:
        """Dims ``d0`` and ``d1`` swapped (a view)."""
        return self._op(lib.lmf_transpose, d0, d1)

    def permute(self, *dims) -> Tensor:
        dims = _shape_args(dims)
        return self._op(lib.lmf_permute, _dims(dims), len(dims))

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """``length`` entries of ``dim`` from ``start`` (a view)."""
        return self._op(lib.lmf_narrow, dim, start, length)

    def contiguous(self) -> Tensor:
        return self._op(lib.lmf_contiguous)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return self._op(lib.lmf_tensor_detach)

    def to_dtype(self, dtype) -> Tensor:
        return self._op(lib.lmf_tensor_to_dtype, dtype_code(dtype))

    def to_device(self, device: str) -> Tensor:
        """A copy on ``device`` (``"cpu"``, ``"cuda:N"``), not tracked by autograd."""
        return self._op(lib.lmf_tensor_to_device, *device_code(device))

    # -- autograd -----------------------------------------------------------------------

    def backward(self, grad=None) -> Grads:
        """Backpropagates from this tensor (one element, or ``grad`` of its shape given) and
        returns the gradients of every tensor that requires grad and reaches it."""
        g = None if grad is None else self._coerce(grad)
        return Grads(new_handle(lib.lmf_backward, self.handle, None if g is None else g.handle))


def _unary_method(name: str, op: int):
    def method(self: Tensor) -> Tensor:
        return self._op(lib.lmf_unary, op)

    method.__name__ = name
    method.__doc__ = f"``{name}`` elementwise."
    return method


for _name, _code in UNARY.items():
    setattr(Tensor, _name, _unary_method(_name, _code))


class Grads(Owned):
    """The gradients of one backward pass (an ``LmfGrads*``): ``grads[t]``."""

    def __init__(self, handle: int):
        super().__init__(handle, lib.lmf_grads_free)

    def __getitem__(self, t: Tensor) -> Tensor | None:
        """The gradient of ``t``, or ``None`` when it got none."""
        out = new_handle(lib.lmf_grads_get, self.handle, t.handle)
        return None if out is None else Tensor(out)


def is_grad_enabled() -> bool:
    """Whether ops on this thread record a graph."""
    return lib.lmf_is_grad_enabled()


@contextlib.contextmanager
def no_grad():
    """Ops inside record no graph (this thread); the previous mode comes back on exit."""
    previous = c_bool()
    check(lib.lmf_set_grad_enabled(False, byref(previous)))
    try:
        yield
    finally:
        check(lib.lmf_set_grad_enabled(previous.value, None))
