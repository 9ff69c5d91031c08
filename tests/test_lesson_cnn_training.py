"""aicourse.lessons.cnn_training (notebook 11): IDX/MNIST loading on tiny files written here,
the NumPy CNN layers against torch, and the shape tracer."""

import gzip
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.checks import rel_error
from aicourse.lessons.cnn_training import (IDX_TYPES, MNIST_FILES, Conv2d, Flatten, Linear, MaxPool2d, ReLU,
                                           Sequential, from_torch, load_idx, load_mnist, trace_shapes)
from initcheck import assert_torch_init

TOL = 1e-10
CODE = {np.dtype(v): k for k, v in IDX_TYPES.items()}


def idx_bytes(a):
    """The IDX encoding of array a, written independently of load_idx."""
    a = np.asarray(a)
    header = bytes([0, 0, CODE[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def rel(a, b):
    """The course's relative error (aicourse.checks.rel_error), shapes required to match."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return rel_error(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 5, 3)])
@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 100).astype(dtype) if np.dtype(dtype).kind == "f" else \
        rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    raw = idx_bytes(a)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    back = load_idx(path)
    assert back.shape == shape and back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, a)


def test_load_idx_reads_known_bytes(tmp_path):
    # 2 images of 2x3 unsigned bytes, written byte by byte as the MNIST page describes the format
    raw = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12))
    (tmp_path / "x").write_bytes(raw)
    np.testing.assert_array_equal(load_idx(tmp_path / "x"), np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    # big-endian int32 1 and 256
    (tmp_path / "y").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0]))
    np.testing.assert_array_equal(load_idx(tmp_path / "y"), np.array([1, 256], dtype=np.int32))


@pytest.mark.parametrize("raw,message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX"),                # bad magic
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type byte"),                 # unknown type
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "header"),                        # header cut short
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "data bytes"),            # truncated data
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "data bytes"),            # trailing bytes
])
def test_load_idx_rejects_bad_files(tmp_path, raw, message):
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(ValueError, match=message):
        load_idx(tmp_path / "bad")


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_tiny_files(tmp_path, compress):
    rng = np.random.default_rng(1)
    arrays = {"X_train": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 5, dtype=np.uint8),
              "X_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), "y_test": rng.integers(0, 10, 3, dtype=np.uint8)}
    for key, stem in MNIST_FILES.items():
        raw = idx_bytes(arrays[key])
        (tmp_path / (stem + ".gz" if compress else stem)).write_bytes(gzip.compress(raw) if compress else raw)
    split = load_mnist(tmp_path)
    assert split.X_train.shape == (5, 1, 28, 28) and split.X_test.shape == (3, 1, 28, 28)
    assert split.X_train.dtype == np.float64 and split.y_train.dtype == np.int64
    np.testing.assert_array_equal(split.X_train[:, 0], arrays["X_train"] / 255.0)
    np.testing.assert_array_equal(split.y_test, arrays["y_test"])


def test_load_mnist_missing_files_says_so_without_network(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(tmp_path)


def cnn(c=4, size=8, in_channels=1):
    return nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c, 2 * c, 3, padding=1, stride=(1, 1)), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * c * (size // 4) ** 2, 10)).double()


@pytest.mark.parametrize("c,size,batch", [(2, 8, 1), (4, 8, 5), (3, 12, 4)])
def test_numpy_cnn_equals_torch_forward_and_backward(c, size, batch):
    torch.manual_seed(c)
    tm = cnn(c, size)
    model = from_torch(tm)
    rng = np.random.default_rng(c)
    x = rng.standard_normal((batch, 1, size, size))
    dout = rng.standard_normal((batch, 10))
    y = model.forward(x)
    dx = model.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    yt.backward(torch.tensor(dout))
    assert rel(y, yt.detach().numpy()) < TOL
    assert rel(dx, xt.grad.numpy()) < TOL
    assert len(model.grads) == len(list(tm.parameters())) == 6
    for g, p in zip(model.grads, tm.parameters()):
        assert rel(g, p.grad.numpy()) < TOL


def test_from_torch_copies_weights_and_conv_options():
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), dilation=(2, 1), groups=2).double()
    model = from_torch(nn.Sequential(conv))
    x = np.random.default_rng(2).standard_normal((2, 4, 9, 7))
    assert rel(model.forward(x), conv(torch.tensor(x)).detach().numpy()) < TOL
    model.layers[0].W[...] = 0.0                                      # a copy: torch's weights untouched
    assert conv.weight.abs().sum() > 0


def test_layers_init_like_torch_bounds():
    rng = np.random.default_rng(3)
    conv, lin = Conv2d(3, 5, 3, rng=rng), Linear(20, 4, rng=rng)
    assert np.abs(conv.W).max() <= 1 / np.sqrt(27) and np.abs(lin.W).max() <= 1 / np.sqrt(20)
    assert conv.W.shape == (5, 3, 3, 3) and lin.W.shape == (4, 20)


# (in_channels, out_channels, kernel_size, groups): plain, grouped with a non-square kernel, depthwise
CONV_CASES = [(3, 2000, 3, 1), (8, 2048, (3, 2), 4), (6, 1536, 5, 6), (12, 1200, 1, 2)]


@pytest.mark.parametrize("C,F,k,groups", CONV_CASES)
def test_conv_init_spread_matches_torch_groups_included(C, F, k, groups):
    kh, kw = (k, k) if isinstance(k, int) else k
    fan_in = C // groups * kh * kw
    conv = Conv2d(C, F, k, groups=groups, rng=np.random.default_rng(5))
    assert conv.W.shape == (F, C // groups, kh, kw) and conv.b.shape == (F,)
    assert_torch_init(conv.W, fan_in, "Conv2d W")
    assert_torch_init(conv.b, fan_in, "Conv2d b")
    torch.manual_seed(0)
    ref = nn.Conv2d(C, F, k, groups=groups)                     # torch's own init, the promise
    assert_torch_init(ref.weight.detach().numpy(), fan_in, "nn.Conv2d weight")
    assert_torch_init(ref.bias.detach().numpy(), fan_in, "nn.Conv2d bias")
    np.testing.assert_allclose(conv.W.std(), ref.weight.detach().numpy().std(), rtol=0.05)
    np.testing.assert_allclose(conv.b.std(), ref.bias.detach().numpy().std(), rtol=0.05)


@pytest.mark.parametrize("n_in,n_out", [(30, 3000), (500, 2000)])
def test_linear_init_spread_matches_torch(n_in, n_out):
    lin = Linear(n_in, n_out, rng=np.random.default_rng(6))
    assert_torch_init(lin.W, n_in, "Linear W")
    assert_torch_init(lin.b, n_in, "Linear b")
    torch.manual_seed(0)
    ref = nn.Linear(n_in, n_out)
    np.testing.assert_allclose(lin.W.std(), ref.weight.detach().numpy().std(), rtol=0.05)
    np.testing.assert_allclose(lin.b.std(), ref.bias.detach().numpy().std(), rtol=0.05)


@pytest.mark.parametrize("mistake", ["zero biases", "halved bound", "fan_in ignoring groups",
                                     "fan_in without the kernel area"])
def test_init_spread_check_rejects_wrong_initialisers(mistake):
    # the check above must fail for the initialisers people write by mistake (grouped conv, 8 -> 2048, 3x3, g=4)
    C, F, kh, kw, groups = 8, 2048, 3, 3, 4
    fan_in = C // groups * kh * kw
    wrong_fan = {"fan_in ignoring groups": C * kh * kw, "fan_in without the kernel area": C // groups}
    bound = 1 / np.sqrt(wrong_fan.get(mistake, fan_in)) * (0.5 if mistake == "halved bound" else 1.0)
    rng = np.random.default_rng(7)
    W, b = rng.uniform(-bound, bound, (F, C // groups, kh, kw)), rng.uniform(-bound, bound, F)
    if mistake == "zero biases":
        b = np.zeros(F)
    with pytest.raises(AssertionError):
        assert_torch_init(W, fan_in, "W")
        assert_torch_init(b, fan_in, "b")


def test_trace_shapes_numpy_and_torch_agree():
    tm = cnn(4, 8)
    rows_np = trace_shapes(from_torch(tm), (2, 1, 8, 8), verbose=False)
    rows_t = trace_shapes(tm, (2, 1, 8, 8), verbose=False)
    assert [s for _, s in rows_np] == [s for _, s in rows_t]
    assert [s for _, s in rows_np] == [(2, 1, 8, 8), (2, 4, 8, 8), (2, 4, 8, 8), (2, 4, 4, 4), (2, 8, 4, 4),
                                       (2, 8, 4, 4), (2, 8, 2, 2), (2, 32), (2, 10)]


def test_trace_shapes_names_the_layer_of_mistake_5(capsys):
    wrong = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 6 * 6, 10))
    with pytest.raises(ValueError, match=r"layer \(7\).*\(1, 4096\)"):
        trace_shapes(wrong, (1, 3, 32, 32))
    assert "FAILS" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"layer \(7\) Linear\(2304, 10\)"):
        trace_shapes(from_torch(wrong), (1, 3, 32, 32), verbose=False)


def test_wrong_flatten_backward_is_rejected():
    # a flatten whose backward forgets the channel axis order (transposes) is caught against torch
    torch.manual_seed(0)
    tm = cnn(2, 8)
    model = from_torch(tm)
    x = np.random.default_rng(4).standard_normal((3, 1, 8, 8))
    dout = np.random.default_rng(5).standard_normal((3, 10))
    model.forward(x)

    class WrongFlatten(Flatten):
        def backward(self, d):
            n, c, h, w = self.shape
            return d.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    model.layers[6] = WrongFlatten()
    model.forward(x)
    dx_wrong = model.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    tm(xt).backward(torch.tensor(dout))
    assert rel(dx_wrong, xt.grad.numpy()) > 1e-3


def test_sequential_collects_params_in_order():
    layers = [Conv2d(1, 2, 3, rng=np.random.default_rng(0)), ReLU(), MaxPool2d(2), Flatten(),
              Linear(2 * 3 * 3, 4, rng=np.random.default_rng(1))]
    model = Sequential(*layers)
    assert [p.shape for p in model.params] == [(2, 1, 3, 3), (2,), (4, 18), (4,)]
    assert model.params[0] is layers[0].W                              # in place: the optimizer's arrays
