"""Autograd: backward against analytic gradients, grads lookup, detach, no_grad."""

import numpy as np
import pytest

import lmf
from lmf import Tensor

RNG = np.random.default_rng(1)


def test_matmul_softmax_sum_gradients_are_exact():
    a, b, c = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)), RNG.standard_normal((3, 5))
    ta = Tensor.from_numpy(a, requires_grad=True)
    tb = Tensor.from_numpy(b, requires_grad=True)
    tc = Tensor.from_numpy(c)
    loss = ((ta @ tb).softmax(-1) * tc).sum()
    assert loss.shape == () and loss.requires_grad

    z = a @ b
    s = np.exp(z - z.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    np.testing.assert_allclose(loss.item(), (s * c).sum(), rtol=1e-12)
    dz = s * (c - (s * c).sum(-1, keepdims=True))

    grads = loss.backward()
    np.testing.assert_allclose(grads[ta].numpy(), dz @ b.T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads[tb].numpy(), a.T @ dz, rtol=0, atol=1e-10)
    assert grads[tc] is None, "a constant gets no gradient"
    assert grads[Tensor.full(1, (), "float64", )] is None, "nor does an unrelated tensor"


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _gelu_grad(x):
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * 0.044715 * x**2)


DERIVATIVES = {
    "neg": lambda x: -np.ones_like(x),
    "exp": np.exp,
    "log": lambda x: 1 / x,
    "sqrt": lambda x: 0.5 / np.sqrt(x),
    "square": lambda x: 2 * x,
    "reciprocal": lambda x: -1 / x**2,
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
    "sigmoid": lambda x: _sig(x) * (1 - _sig(x)),
    "silu": lambda x: _sig(x) * (1 + x * (1 - _sig(x))),
    "gelu": _gelu_grad,
    "relu": lambda x: (x > 0).astype(float),
    "sin": np.cos,
    "cos": lambda x: -np.sin(x),
}


@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_unary_gradients(name):
    sign = 1 if name in ("log", "sqrt") else RNG.choice([-1, 1], (3, 4))
    x = RNG.uniform(0.2, 2.0, (3, 4)) * sign
    g = RNG.standard_normal((3, 4))
    tx = Tensor.from_numpy(x, requires_grad=True)
    grads = getattr(tx, name)().backward(g)
    np.testing.assert_allclose(grads[tx].numpy(), g * DERIVATIVES[name](x), rtol=1e-10, atol=1e-12)


def test_backward_needs_one_element_or_a_grad():
    tx = Tensor.from_numpy(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(lmf.LmfError):
        (tx * 2).backward()


def test_requires_grad_is_set_on_leaves_only():
    t = Tensor.from_numpy(np.ones(3))
    assert not t.requires_grad
    t.requires_grad = True
    assert t.requires_grad
    y = t * 2
    assert y.requires_grad
    with pytest.raises(lmf.LmfError) as e:
        y.requires_grad = False
    assert e.value.status == lmf.Status.INVALID_ARGUMENT
    d = y.detach()
    assert not d.requires_grad
    np.testing.assert_array_equal(d.numpy(), [2, 2, 2])
    d.requires_grad = True
    grads = (d * d).sum().backward()
    np.testing.assert_array_equal(grads[d].numpy(), [4, 4, 4])
    assert grads[t] is None, "detach cuts the graph"


def test_no_grad_records_nothing_and_restores_the_mode():
    t = Tensor.from_numpy(np.ones(3), requires_grad=True)
    assert lmf.is_grad_enabled()
    with lmf.no_grad():
        assert not lmf.is_grad_enabled()
        y = (t * 3).exp().sum()
        assert not y.requires_grad
        with lmf.no_grad():
            pass
        assert not lmf.is_grad_enabled(), "an inner no_grad restores 'off'"
    assert lmf.is_grad_enabled()
    assert (t * 3).requires_grad
    with pytest.raises(RuntimeError), lmf.no_grad():
        raise RuntimeError("boom")
    assert lmf.is_grad_enabled(), "restored on an exception too"
