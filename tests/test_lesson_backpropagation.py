"""Unit tests of aicourse.lessons.backpropagation against torch (no notebook needed)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.backpropagation import Value, _unbroadcast, linear_backward, linear_forward


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("shape_x,d_out,bias", [
    ((5,), 3, True),          # a single vector
    ((7, 4), 2, True),        # a batch
    ((2, 3, 6), 5, True),     # extra leading dimensions
    ((4, 1), 1, True),        # degenerate widths
    ((3, 4), 6, False),       # no bias
])
def test_linear_matches_torch(shape_x, d_out, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape_x)
    W = rng.standard_normal((d_out, shape_x[-1]))
    b = rng.standard_normal(d_out) if bias else None
    dy = rng.standard_normal(shape_x[:-1] + (d_out,))
    y, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(dy, cache)

    xt, Wt = _t(x), _t(W)
    bt = _t(b) if bias else None
    yt = F.linear(xt, Wt, bt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape and dW.shape == W.shape
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)
        assert db.shape == b.shape
    else:
        assert db is None


def test_wrong_linear_backward_is_rejected():
    """Two wrong dW formulas seen in the wild: x^T dy (transposed) and a batch mean instead of the sum."""
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    dy = rng.standard_normal((6, 3))
    _, dW, _ = linear_backward(dy, linear_forward(x, W, b)[1])
    Wt = _t(W)
    F.linear(torch.tensor(x), Wt, torch.tensor(b)).backward(torch.tensor(dy))
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert (x.T @ dy).shape != Wt.grad.shape
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(dy.T @ x / len(x), Wt.grad.numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------- Value (autodiff)
EXPRESSIONS = {
    # name: (shapes of the inputs, function usable with Value and torch alike)
    "broadcast add/mul": ([(3, 4), (4,), ()], lambda a, b, c: ((a + b) * c - b / (c * c + 1.0)).sum()),
    "matmul and transpose": ([(3, 4), (5, 4), (5,)], lambda a, w, b: ((a @ w.T + b).tanh() ** 2).mean()),
    "sum over an axis": ([(2, 3, 4)], lambda a: (a.sum(axis=1) * a.sum(axis=1)).sum()),
    "mean over an axis, keepdims": ([(4, 3)], lambda a: (a - a.mean(axis=0, keepdims=True)).exp().sum()),
    "reused node": ([(5,)], lambda a: (a * a * a + a.sigmoid() * a).sum()),
    "reflected ops": ([(3,)], lambda a: (2.0 - a + 3.0 / (a * a + 1.0) + 1.5 * a).sum()),
    "relu and log": ([(6,)], lambda a: ((a.relu() + 1.0).log() * a).sum()),
    "batched matmul": ([(2, 3, 4), (4, 5)], lambda a, w: (a @ w).tanh().sum()),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_value_matches_torch(name):
    shapes, fn = EXPRESSIONS[name]
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s) for s in shapes]
    values = [Value(a) for a in arrays]
    out = fn(*values)
    out.backward()
    tensors = [_t(a) for a in arrays]
    out_t = fn(*tensors)
    out_t.backward()
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    for v, t in zip(values, tensors):
        assert v.grad.shape == v.data.shape
        np.testing.assert_allclose(v.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_value_mlp_cross_entropy_matches_torch():
    rng = np.random.default_rng(3)
    N, D, H, C = 7, 5, 6, 3
    arrays = [rng.standard_normal(s) for s in [(N, D), (H, D), (H,), (C, H), (C,)]]
    y = rng.integers(0, C, N)
    X, W1, b1, W2, b2 = (Value(a) for a in arrays)
    Z = (X @ W1.T + b1).relu() @ W2.T + b2
    loss = -(Z.log_softmax(axis=1) * np.eye(C)[y]).sum() / N
    loss.backward()
    Xt, W1t, b1t, W2t, b2t = (_t(a) for a in arrays)
    loss_t = F.cross_entropy(F.linear(F.relu(F.linear(Xt, W1t, b1t)), W2t, b2t), torch.tensor(y))
    loss_t.backward()
    np.testing.assert_allclose(loss.data, loss_t.item(), rtol=1e-12)
    for v, t in zip((X, W1, b1, W2, b2), (Xt, W1t, b1t, W2t, b2t)):
        np.testing.assert_allclose(v.grad, t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_value_extreme_inputs_stay_finite():
    a = Value(np.array([-1000.0, 0.0, 1000.0]))
    s = a.sigmoid()
    ls = a.log_softmax()
    (s.sum() + ls.sum()).backward()
    assert np.all(np.isfinite(s.data)) and np.all(np.isfinite(ls.data)) and np.all(np.isfinite(a.grad))
    np.testing.assert_allclose(ls.data, torch.log_softmax(torch.tensor(a.data), 0).numpy())


def test_deep_graph_needs_no_recursion():
    x = Value(1.0)
    y = x
    for _ in range(5000):
        y = y * 1.0 + 0.0
    y.backward()
    assert float(x.grad) == 1.0


def test_assigning_instead_of_accumulating_is_rejected():
    """A backward that sets parent.grad (instead of adding) gets d(x*x)/dx = x, not 2x."""
    class Assigning(Value):
        def _node(self, data, parents, op, local_grads):
            out = Value(data, parents, op)

            def _backward():
                for parent, g in zip(parents, local_grads(out.grad)):
                    parent.grad = _unbroadcast(g, parent.shape)
            out._backward = _backward
            return out

    x0 = np.array([1.5, -2.0])
    ok, bad = Value(x0), Assigning(x0)
    (ok * ok).sum().backward()
    (bad * bad).sum().backward()
    np.testing.assert_allclose(ok.grad, 2 * x0)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(bad.grad, 2 * x0)


def test_value_names_are_optional_and_change_no_number():
    """Leaves may be named (for printing the graph); constants are named by their value; gradients are unchanged."""
    x_named, x_plain = Value(np.array([1.0, -2.0]), name="x"), Value(np.array([1.0, -2.0]))
    for x in (x_named, x_plain):
        ((x * 3.0 - 1.0) ** 2).sum().backward()
    np.testing.assert_array_equal(x_named.grad, x_plain.grad)
    assert x_named.name == "x" and x_plain.name == "" and "x" in repr(x_named)
    assert Value.lift(0.5).name == "0.5" and Value.lift(np.zeros((2, 3))).name == "const(2, 3)"
    out = x_named * 2.0
    assert [p.name for p in out.parents] == ["x", "2"] and out.op == "*"
    assert Value(1.0, (), "").name == ""                                 # the positional signature is unchanged
