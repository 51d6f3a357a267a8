"""Errors: status codes and messages through the wrapper and through the raw ABI."""

import ctypes

import numpy as np
import pytest

import lmf
from lmf import LmfError, Status, Tensor
from lmf._lib import check

LIB = lmf.lib


def test_matmul_shape_mismatch():
    a, b = Tensor.full(1, (2, 3)), Tensor.full(1, (4, 5))
    with pytest.raises(LmfError) as e:
        a @ b
    assert e.value.status == Status.SHAPE == 5
    assert e.value.status.name == "SHAPE"
    assert e.value.message and e.value.message in str(e.value)


def test_stale_handle_is_invalid():
    t = Tensor.full(1, (2,))
    raw = t.handle
    t.close()
    n = ctypes.c_size_t(99)
    status = LIB.lmf_tensor_numel(raw, ctypes.byref(n))
    assert status == Status.INVALID_HANDLE == 2
    assert n.value == 99, "out-pointers are written only on success"
    assert b"not a live LmfTensor" in LIB.lmf_last_error()
    with pytest.raises(LmfError) as e:
        check(status)
    assert e.value.status == Status.INVALID_HANDLE


def test_double_free_is_invalid_handle():
    t = Tensor.full(1, (2,))
    handle = t.handle
    t.close()
    assert LIB.lmf_tensor_free(handle) == Status.INVALID_HANDLE


def test_handle_of_another_type_is_invalid():
    t = Tensor.from_numpy(np.ones(1), requires_grad=True)
    grads = t.sum().backward()
    assert LIB.lmf_tensor_free(grads.handle) == Status.INVALID_HANDLE
    assert b"LmfGrads" in LIB.lmf_last_error()
    assert LIB.lmf_grads_free(t.handle) == Status.INVALID_HANDLE
    assert grads[t].numpy().tolist() == [1.0], "both handles still live"


def test_null_pointers():
    n = ctypes.c_size_t()
    assert LIB.lmf_tensor_numel(None, ctypes.byref(n)) == Status.NULL_POINTER == 1
    assert LIB.lmf_tensor_numel(Tensor.full(1, (1,)).handle, None) == Status.NULL_POINTER
    assert LIB.lmf_tensor_free(None) == Status.OK, "freeing NULL is a no-op"


def test_bad_arguments():
    t = Tensor.full(1, (2, 3))
    for call in (lambda: t.softmax(2), lambda: t.max((0, 1)), lambda: t.narrow(0, 1, 5)):
        with pytest.raises(LmfError):
            call()
    with pytest.raises(LmfError) as e:
        t.softmax(5)
    assert e.value.status == Status.INVALID_ARGUMENT
    buf = (ctypes.c_float * 5)()
    assert LIB.lmf_tensor_copy_to(t.handle, buf, ctypes.sizeof(buf)) == Status.DTYPE
    out = ctypes.c_void_p()
    assert LIB.lmf_unary(t.handle, 99, ctypes.byref(out)) == Status.INVALID_ARGUMENT
    assert LIB.lmf_tensor_to_dtype(t.handle, 42, ctypes.byref(out)) == Status.DTYPE
    assert out.value is None
    with pytest.raises(TypeError):
        Tensor.full(1, (2,), "complex64")
    with pytest.raises(ValueError):
        Tensor.full(1, (2,), device="tpu")



def _overflowing_call(name, t, out):
    """Calls ``name`` with sizes whose product or sum overflows 64 bits; returns the status."""
    sizes = (ctypes.c_size_t * 2)(2**62, 4)
    if name == "lmf_tensor_full":
        return LIB.lmf_tensor_full(1.0, 0, sizes, 2, 0, 0, ctypes.byref(out))
    if name == "lmf_reshape":
        return LIB.lmf_reshape(t.handle, sizes, 2, ctypes.byref(out))
    return LIB.lmf_narrow(t.handle, 1, 2**63, 2**63, ctypes.byref(out))


@pytest.mark.parametrize("name", ["lmf_tensor_full", "lmf_reshape", "lmf_narrow"])
def test_size_overflow_is_an_error(name):
    out = ctypes.c_void_p()
    with Tensor.full(1, (2, 3)) as t:
        status = _overflowing_call(name, t, out)
    assert out.value is None
    assert status in (Status.SHAPE, Status.INVALID_ARGUMENT), status
