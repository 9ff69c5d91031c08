"""aicourse.lessons.compression (notebook 27): quantisation codes against torch's quantised tensors, integer for
integer; the int8 linear layer; pruning masks against torch.nn.utils.prune; the distillation loss against
F.kl_div and autograd."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

from aicourse.lessons.compression import (affine_qparams, dequantize, distillation_loss, global_magnitude_masks,
                                          int8_mlp_forward, kd_loss, magnitude_mask, near_ties, quantize_mlp,
                                          quantize_per_channel, quantize_per_tensor, quantized_linear,
                                          symmetric_qparams, torch_zero_point_first)

pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions")


def test_qparams_match_torch_observers():
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver
    rng = np.random.default_rng(0)
    for shift in (-1.0, 0.5, 3.0):
        x = (rng.standard_normal(500) + shift).astype(np.float32)
        obs = MinMaxObserver(dtype=torch.quint8)
        obs(torch.from_numpy(x))
        s_t, z_t = obs.calculate_qparams()
        s, z = affine_qparams(x.min(), x.max(), 0, 255)
        assert s == s_t.item() and z == z_t.item()
    W = rng.standard_normal((7, 9)).astype(np.float32)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(torch.from_numpy(W))
    s_t, z_t = obs.calculate_qparams()
    s, z = symmetric_qparams(W.min(1), W.max(1), -128, 127)
    np.testing.assert_array_equal(s, s_t.numpy())
    np.testing.assert_array_equal(z, z_t.numpy())


def assert_codes_agree(ours, theirs, near):
    """Identical codes away from near-ties, at most one apart at them (the notebook's rule on random values)."""
    ours, theirs = np.asarray(ours, np.int64), np.asarray(theirs, np.int64)
    np.testing.assert_array_equal(ours[~near], theirs[~near])
    assert np.abs(ours - theirs).max(initial=0) <= 1


def test_quantize_per_tensor_equals_torch_codes_ties_clamp_and_random():
    rng = np.random.default_rng(1)
    s_tie = 2.0 ** -3
    ties = ((np.arange(-300, 300) + 0.5) * s_tie).astype(np.float32)          # exact ties, many out of range
    rand = (rng.standard_normal(100_003) * 3).astype(np.float32)
    for zp, dt, qmin, qmax in ((0, torch.qint8, -128, 127), (9, torch.quint8, 0, 255), (-5, torch.qint8, -128, 127)):
        ref = torch.quantize_per_tensor(torch.from_numpy(ties), s_tie, zp, dt).int_repr().numpy()
        np.testing.assert_array_equal(quantize_per_tensor(ties, s_tie, zp, qmin, qmax), ref)       # None: ask torch
        np.testing.assert_array_equal(quantize_per_tensor(ties, s_tie, zp, qmin, qmax, torch_zero_point_first()), ref)
        scale = float(affine_qparams(rand.min(), rand.max(), qmin, qmax)[0])
        ref = torch.quantize_per_tensor(torch.from_numpy(rand), scale, zp, dt).int_repr().numpy()
        assert_codes_agree(quantize_per_tensor(rand, scale, zp, qmin, qmax), ref, near_ties(rand, scale, zp))
    # ties go to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    np.testing.assert_array_equal(quantize_per_tensor(np.array([0.5, 1.5, 2.5, -0.5, -1.5]), 1.0, 0, -128, 127),
                                  [0, 2, 2, 0, -2])


def test_quantize_per_channel_equals_torch_codes():
    rng = np.random.default_rng(2)
    s_tie = np.array([2.0 ** -3, 2.0 ** -4])
    ties = ((np.arange(-200, 200) + 0.5) * s_tie[:, None]).astype(np.float32)   # exact ties in both rows
    z_tie = np.array([3, -7])
    ref = torch.quantize_per_channel(torch.from_numpy(ties), torch.tensor(s_tie), torch.tensor(z_tie), 0,
                                     torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(quantize_per_channel(ties, s_tie, z_tie, 0, -128, 127), ref)
    for axis in (0, 1):
        W = (rng.standard_normal((30, 200)) * 2).astype(np.float32)
        W = W if axis == 0 else np.ascontiguousarray(W.T)
        lo, hi = W.min(axis=1 - axis), W.max(axis=1 - axis)
        s, z = affine_qparams(lo, hi, -128, 127)
        ref = torch.quantize_per_channel(torch.from_numpy(W), torch.tensor(s, dtype=torch.float64), torch.tensor(z),
                                         axis, torch.qint8).int_repr().numpy()
        shape = (-1, 1) if axis == 0 else (1, -1)
        assert_codes_agree(quantize_per_channel(W, s, z, axis, -128, 127), ref,
                           near_ties(W, s.reshape(shape), z.reshape(shape)))
        deq = torch.quantize_per_channel(torch.from_numpy(W), torch.tensor(s, dtype=torch.float64), torch.tensor(z),
                                         axis, torch.qint8).dequantize().numpy()
        np.testing.assert_allclose(dequantize(ref, s, z, axis=axis), deq, rtol=1e-6, atol=1e-7)   # torch's codes


def test_near_ties_marks_half_integers_only():
    s = 0.1
    x = np.array([0.05, 0.15, 0.1, 0.125, -0.25, 12.35], dtype=np.float32)    # x / s near 0.5, 1.5, -2.5, 123.5
    np.testing.assert_array_equal(near_ties(x, s), [True, True, False, False, True, True])
    # the ulp is taken where the kernel rounds, at x / s + z: 1e-6 off a tie is far at 0.5, near at 200.5
    off = np.float32(0.5 * s + 1e-7)
    assert not near_ties(off, s)[()] and near_ties(off, s, 200)[()]


def test_quantized_linear_on_torch_codes_equals_f_linear():
    """The int32 accumulate-and-rescale on the codes torch made, against F.linear on those codes dequantised."""
    rng = np.random.default_rng(6)
    x, W, b = rng.uniform(-1, 2, (9, 50)), rng.standard_normal((7, 50)), rng.standard_normal(7)
    s_x, z_x = affine_qparams(x.min(), x.max(), 0, 255)
    s_w, _ = symmetric_qparams(W.min(1), W.max(1), -128, 127)
    qx_t = torch.quantize_per_tensor(torch.tensor(x, dtype=torch.float32), float(s_x), int(z_x), torch.quint8)
    qW_t = torch.quantize_per_channel(torch.tensor(W, dtype=torch.float32), torch.tensor(s_w, dtype=torch.float64),
                                      torch.zeros(7, dtype=torch.long), 0, torch.qint8)
    qx, qW = qx_t.int_repr().numpy(), qW_t.int_repr().numpy()
    y, acc = quantized_linear(qx, qx_t.q_scale(), qx_t.q_zero_point(), qW, s_w, b)
    np.testing.assert_array_equal(acc, (qx.astype(np.int64) - int(z_x)) @ qW.astype(np.int64).T)
    ref = F.linear((torch.from_numpy(qx).double() - qx_t.q_zero_point()) * qx_t.q_scale(),
                   torch.from_numpy(qW).double() * qW_t.q_per_channel_scales()[:, None], torch.tensor(b))
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-10, atol=0)


def test_quantized_linear_is_float_math_on_the_codes():
    rng = np.random.default_rng(3)
    x, W, b = rng.uniform(-1, 2, (5, 40)), rng.standard_normal((7, 40)), rng.standard_normal(7)
    s_x, z_x = affine_qparams(x.min(), x.max(), 0, 255)
    assert z_x != 0
    s_w, _ = symmetric_qparams(W.min(1), W.max(1), -128, 127)
    qx, qW = quantize_per_tensor(x, s_x, z_x, 0, 255), quantize_per_channel(W, s_w, np.zeros(7, int), 0, -128, 127)
    assert qx.dtype == np.uint8 and qW.dtype == np.int8
    y, acc = quantized_linear(qx, s_x, z_x, qW, s_w, b)
    assert acc.dtype == np.int32
    ref = F.linear(torch.tensor(dequantize(qx, s_x, z_x)), torch.tensor(dequantize(qW, s_w, 0, axis=0)),
                   torch.tensor(b)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_int8_mlp_close_to_float_mlp():
    rng = np.random.default_rng(4)
    params = [rng.standard_normal((16, 8)) / 3, rng.standard_normal(16) / 10, rng.standard_normal((3, 16)) / 4,
              rng.standard_normal(3) / 10]
    x = rng.uniform(0, 1, (50, 8))
    h = np.maximum(x @ params[0].T + params[1], 0) @ params[2].T + params[3]
    layers = quantize_mlp(params, x)
    out = int8_mlp_forward(x, layers)
    assert np.abs(out - h).max() < 0.02 * np.abs(h).max()
    assert np.abs(int8_mlp_forward(x, quantize_mlp(params, x, w_bits=2)) - h).max() > np.abs(out - h).max()


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.8337])
def test_magnitude_masks_equal_torch_prune(amount):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    lin = copy.deepcopy(model[0])
    prune.l1_unstructured(lin, "weight", amount=amount)
    np.testing.assert_array_equal(magnitude_mask(model[0].weight.detach().numpy(), amount), lin.weight_mask.numpy())
    m = copy.deepcopy(model)
    prune.global_unstructured([(m[0], "weight"), (m[2], "weight")], pruning_method=prune.L1Unstructured, amount=amount)
    masks = global_magnitude_masks([model[0].weight.detach().numpy(), model[2].weight.detach().numpy()], amount)
    np.testing.assert_array_equal(masks[0], m[0].weight_mask.numpy())
    np.testing.assert_array_equal(masks[1], m[2].weight_mask.numpy())


@pytest.mark.parametrize("T,alpha", [(1.0, 1.0), (4.0, 0.9), (10.0, 0.3)])
def test_distillation_loss_and_gradient_match_kl_div(T, alpha):
    rng = np.random.default_rng(5)
    zs, zt, y = rng.standard_normal((6, 4)) * 2, rng.standard_normal((6, 4)) * 2, rng.integers(0, 4, 6)
    loss, dzs = distillation_loss(zs, zt, y, T, alpha)
    zs_t = torch.tensor(zs, requires_grad=True)
    kd = T * T * F.kl_div(F.log_softmax(zs_t / T, 1), F.softmax(torch.tensor(zt) / T, 1), reduction="batchmean")
    lt = alpha * kd + (1 - alpha) * F.cross_entropy(zs_t, torch.tensor(y))
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(dzs, zs_t.grad.numpy(), rtol=1e-10, atol=1e-14)
    l_kd, d_kd = kd_loss(zs, zt, T)
    np.testing.assert_allclose(l_kd, kd.item(), rtol=1e-12)


def test_both_zero_point_conventions_and_the_probe():
    """Adding z before or after rounding differ only on exact ties; the probe answers with a bool."""
    s = 2.0 ** -4
    ties = ((np.arange(-20, 20) + 0.5) * s).astype(np.float32)
    first = quantize_per_tensor(ties, s, 3, 0, 255, zero_point_first=True)
    after = quantize_per_tensor(ties, s, 3, 0, 255, zero_point_first=False)
    np.testing.assert_array_equal(after, np.clip(np.rint(ties / np.float32(s)) + 3, 0, 255))
    assert np.all(np.abs(first.astype(int) - after.astype(int)) <= 1) and np.any(first != after)
    np.testing.assert_array_equal(quantize_per_tensor(ties, s, 0, -128, 127, zero_point_first=True),
                                  quantize_per_tensor(ties, s, 0, -128, 127, zero_point_first=False))
    pc = quantize_per_channel(ties[None, :], np.array([s]), np.array([3]), 0, 0, 255, zero_point_first=False)
    np.testing.assert_array_equal(pc[0], after)
    assert isinstance(torch_zero_point_first(), bool) and isinstance(torch_zero_point_first(per_channel=True), bool)
    # None asks this torch; with z = 0 both conventions agree and no question is needed
    np.testing.assert_array_equal(quantize_per_tensor(ties, s, 3, 0, 255, None),
                                  first if torch_zero_point_first() else after)
    np.testing.assert_array_equal(int8_mlp_forward(ties[None, :4], [(np.eye(4, dtype=np.int8), np.ones(4), np.zeros(4),
                                                                     s, 3)], None),
                                  int8_mlp_forward(ties[None, :4], [(np.eye(4, dtype=np.int8), np.ones(4), np.zeros(4),
                                                                     s, 3)], torch_zero_point_first()))
