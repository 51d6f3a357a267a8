"""Tensors: numpy round trips per dtype, zero-copy borrowing, views, ops against numpy."""

import ctypes
import gc

import numpy as np
import pytest

import lmf
from lmf import Tensor

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int64", "uint8"])
@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (0, 3)])
def test_numpy_round_trip(dtype, shape):
    arr = (RNG.standard_normal(shape) * 50).astype(dtype)
    t = Tensor.from_numpy(arr)
    assert t.dtype == dtype
    assert t.shape == shape
    assert t.ndim == len(shape)
    assert t.numel == arr.size
    assert t.device == "cpu"
    for copy in (False, True):
        out = t.numpy(copy=copy)
        assert out.dtype == arr.dtype and out.shape == shape
        np.testing.assert_array_equal(out, arr)


def test_from_numpy_copies_its_input_and_converts_layouts():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor.from_numpy(arr.T)  # a Fortran-order view goes in row-major
    arr[0, 0] = 100
    np.testing.assert_array_equal(t.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4).T)
    big_endian = np.arange(3, dtype=">i4")
    np.testing.assert_array_equal(Tensor.from_numpy(big_endian).numpy(), [0, 1, 2])
    assert Tensor.from_numpy([1.5, 2.5], dtype="f32").dtype == "float32"


def test_bfloat16_travels_as_bits():
    bits = np.array([0x3F80, 0xC000, 0x3F00], dtype=np.uint16)  # 1.0, -2.0, 0.5
    t = Tensor.from_numpy(bits, dtype="bfloat16")
    assert t.dtype == "bfloat16"
    np.testing.assert_array_equal(t.numpy(), bits)
    np.testing.assert_array_equal(t.to_dtype("float32").numpy(), [1.0, -2.0, 0.5])
    by_value = Tensor.from_numpy(np.array([1.0, -2.0, 0.5], dtype=np.float32), dtype="bfloat16")
    np.testing.assert_array_equal(by_value.numpy(), bits)
    assert Tensor.from_numpy(np.float32(3.0), dtype="bf16").item() == 3.0
    with pytest.raises(TypeError, match="bfloat16"):
        Tensor.from_numpy(bits)


@pytest.mark.parametrize("dtype", list(lmf.DTYPES))
def test_full(dtype):
    t = Tensor.full(3, (2, 2), dtype)
    assert t.dtype == dtype and t.shape == (2, 2)
    np.testing.assert_array_equal(t.to_dtype("float64").numpy(), np.full((2, 2), 3.0))
    assert Tensor.full(-1.5, ()).item() == -1.5


def test_numpy_is_zero_copy_and_keeps_the_handle_alive():
    before = lmf.live_handles()
    t = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    arr = t.numpy()
    ptr = ctypes.c_void_p()
    assert lmf.lib.lmf_tensor_data_ptr(t.handle, ctypes.byref(ptr)) == 0
    assert arr.__array_interface__["data"][0] == ptr.value
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0, 0] = 1
    view = arr[1:]
    del t
    gc.collect()
    assert lmf.live_handles() == before + 1, "the array must hold the handle"
    np.testing.assert_array_equal(arr, [[0, 1, 2], [3, 4, 5]])
    del arr
    gc.collect()
    assert lmf.live_handles() == before + 1, "a view of the array must hold it too"
    np.testing.assert_array_equal(view, [[3, 4, 5]])
    del view
    gc.collect()
    assert lmf.live_handles() == before


def test_contiguous_views_are_borrowed_at_their_offset():
    arr = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor.from_numpy(arr)
    base = t.numpy().__array_interface__["data"][0]
    rows = t.narrow(0, 1, 1).numpy()
    assert not rows.flags.writeable, "a contiguous view is borrowed"
    assert rows.__array_interface__["data"][0] == base + 12 * 8
    np.testing.assert_array_equal(rows, arr[1:2])
    np.testing.assert_array_equal(t.reshape(6, 4).narrow(0, 2, 3).numpy(), arr.reshape(6, 4)[2:5])


def test_borrowed_memory_survives_requires_grad():
    arr = np.arange(4.0)
    t = Tensor.from_numpy(arr)
    out = t.numpy()
    t.requires_grad = True  # swaps the object behind the handle; the storage stays
    gc.collect()
    ptr = ctypes.c_void_p()
    assert lmf.lib.lmf_tensor_data_ptr(t.handle, ctypes.byref(ptr)) == 0
    assert out.__array_interface__["data"][0] == ptr.value
    np.testing.assert_array_equal(out, arr)


def test_numpy_copy_is_writable_and_separate():
    t = Tensor.from_numpy(np.ones(3))
    out = t.numpy(copy=True)
    out[0] = 7
    np.testing.assert_array_equal(t.numpy(), np.ones(3))


def test_strided_view_is_copied_out():
    arr = RNG.standard_normal((3, 5))
    tt = Tensor.from_numpy(arr).transpose(0, 1)
    ptr = ctypes.c_void_p()
    status = lmf.lib.lmf_tensor_data_ptr(tt.handle, ctypes.byref(ptr))
    assert status == lmf.Status.INVALID_ARGUMENT, "a transpose cannot be borrowed"
    out = tt.numpy()
    assert out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr.T)
    np.testing.assert_array_equal(tt.contiguous().numpy(), arr.T)
    np.testing.assert_array_equal(np.asarray(tt), arr.T)


def test_views_match_numpy():
    arr = RNG.standard_normal((2, 3, 4))
    t = Tensor.from_numpy(arr)
    np.testing.assert_array_equal(t.reshape(6, 4).numpy(), arr.reshape(6, 4))
    np.testing.assert_array_equal(t.reshape((4, 6)).numpy(), arr.reshape(4, 6))
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), arr.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.narrow(2, 1, 2).numpy(), arr[:, :, 1:3])
    np.testing.assert_array_equal(t.narrow(-2, 2, 1).numpy(), arr[:, 2:3, :])
    np.testing.assert_array_equal(t.transpose(-1, 0).numpy(), arr.swapaxes(-1, 0))
    parts = [arr, arr * 2]
    np.testing.assert_array_equal(lmf.cat([Tensor.from_numpy(p) for p in parts], 1).numpy(),
                                  np.concatenate(parts, 1))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "square": np.square,
    "reciprocal": np.reciprocal,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0),
    "sin": np.sin,
    "cos": np.cos,
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops_match_numpy(name):
    arr = RNG.uniform(0.1, 3.0, (4, 5)) * RNG.choice([-1, 1], (4, 5))
    if name in ("log", "sqrt"):
        arr = np.abs(arr)
    got = getattr(Tensor.from_numpy(arr), name)().numpy()
    np.testing.assert_allclose(got, UNARY[name](arr), rtol=1e-12, atol=1e-12)


def test_binary_ops_broadcast_and_take_scalars():
    a, b = RNG.standard_normal((3, 1, 4)), RNG.uniform(0.5, 2, (5, 1))
    ta, tb = Tensor.from_numpy(a), Tensor.from_numpy(b)
    for got, want in [
        (ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
        (ta.maximum(tb), np.maximum(a, b)), (ta.minimum(tb), np.minimum(a, b)),
        (ta + 2, a + 2), (2 - ta, 2 - a), (ta * 0.5, a * 0.5), (3 / tb, 3 / b),
        (-ta, -a), (tb ** 1.5, b ** 1.5), (ta.affine(2, -1), a * 2 - 1),
        (ta.clamp(-0.5, 0.5), np.clip(a, -0.5, 0.5)), (ta + b, a + b),
    ]:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    f32 = Tensor.from_numpy(np.ones(2, np.float32)) * 3
    assert f32.dtype == "float32"


def test_matmul_reductions_softmax_match_numpy():
    a, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((4, 5))
    ta = Tensor.from_numpy(a)
    np.testing.assert_allclose((ta @ b).numpy(), a @ b, rtol=1e-12)
    np.testing.assert_allclose(ta.sum().numpy(), a.sum(), rtol=1e-12)
    np.testing.assert_allclose(ta.sum(1).numpy(), a.sum(1), rtol=1e-12)
    np.testing.assert_allclose(ta.sum((0, 2), keepdim=True).numpy(),
                               a.sum((0, 2), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(ta.mean(-1).numpy(), a.mean(-1), rtol=1e-12)
    np.testing.assert_array_equal(ta.max(1).numpy(), a.max(1))
    np.testing.assert_array_equal(ta.min(0, keepdim=True).numpy(), a.min(0, keepdims=True))
    e = np.exp(a - a.max(-1, keepdims=True))
    soft = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(ta.softmax(-1).numpy(), soft, rtol=1e-12)
    np.testing.assert_allclose(ta.log_softmax(2).numpy(), np.log(soft), rtol=1e-12)


def test_fused_ops_match_numpy():
    x, w = RNG.standard_normal((3, 8)), RNG.standard_normal(8)
    tx, tw = Tensor.from_numpy(x), Tensor.from_numpy(w)
    want = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * (w + 1)
    np.testing.assert_allclose(lmf.rmsnorm(tx, tw, 1e-5, 1.0).numpy(), want, rtol=1e-12)
    g, u = RNG.standard_normal((2, 4)), RNG.standard_normal((2, 4))
    np.testing.assert_allclose(
        lmf.swiglu(Tensor.from_numpy(g), Tensor.from_numpy(u)).numpy(),
        g * _sigmoid(g) * u, rtol=1e-12)
    table, ids = RNG.standard_normal((10, 3)), np.array([[1, 9], [1, 0]])
    np.testing.assert_array_equal(
        lmf.embedding(Tensor.from_numpy(table), Tensor.from_numpy(ids)).numpy(), table[ids])


def test_to_device():
    arr = RNG.standard_normal((2, 3))
    t = Tensor.from_numpy(arr)
    on_cpu = t.to_device("cpu")
    assert on_cpu.device == "cpu" and on_cpu.handle != t.handle
    np.testing.assert_array_equal(on_cpu.numpy(), arr)
    try:
        on_gpu = t.to_device("cuda:0")
    except lmf.LmfError as e:  # no GPU here
        assert e.status == lmf.Status.RUNTIME and "CUDA" in e.message
        return
    assert on_gpu.device == "cuda:0"
    out = on_gpu.numpy()
    assert out.flags.writeable, "a GPU tensor is copied out"
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal((on_gpu * 2).to_device("cpu").numpy(), arr * 2)


def test_close_is_idempotent_and_frees():
    before = lmf.live_handles()
    t = Tensor.full(1, (2,))
    assert lmf.live_handles() == before + 1
    t.close()
    t.close()
    assert lmf.live_handles() == before
    with pytest.raises(ValueError, match="closed"):
        t.shape
    assert repr(t) == "Tensor(closed)"
    with Tensor.full(1, (2,)) as u:
        assert u.numel == 2
    assert lmf.live_handles() == before
