"""aicourse.lessons.residual_networks (notebook 12): the bias-free convolution, batch-norm layer, residual block,
pools and from_torch against torch (a BasicBlock written here as torchvision writes it), the gradient norms
against autograd, and the transposed convolution against F.conv_transpose2d / nn.ConvTranspose2d."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.checks import rel_error
from aicourse.lessons.convolution import conv2d_backward, conv2d_forward
from aicourse.lessons.residual_networks import (AvgPool2d, BatchNorm2d, Conv2d, GlobalAvgPool, ResidualBlock,
                                                basic_block, conv_grad_norms, conv_transpose2d_as_conv,
                                                conv_transpose2d_backward, conv_transpose2d_forward,
                                                conv_transpose_output_size, from_torch, set_training, sublayers)

TOL = 1e-10


def rel(a, b):
    """The course's relative error (aicourse.checks.rel_error), shapes required to match."""
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return rel_error(a, b)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (expansion 1), written out: torchvision is not a dependency."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(torch.rand(m.bias.shape, generator=g, dtype=m.bias.dtype) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype))


# ------------------------------------------------------------------------------------------ transposed conv
CONFIGS = [dict(stride=1, padding=0, output_padding=0, dilation=1, k=3),
           dict(stride=2, padding=1, output_padding=1, dilation=1, k=3),
           dict(stride=2, padding=0, output_padding=0, dilation=1, k=2),
           dict(stride=3, padding=1, output_padding=2, dilation=1, k=4),
           dict(stride=2, padding=1, output_padding=1, dilation=2, k=3),
           dict(stride=2, padding=3, output_padding=0, dilation=1, k=3),
           dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=(1, 2), k=3)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_forward_backward_vs_torch(cfg, bias):
    rng = np.random.default_rng(0)
    hp = {k: v for k, v in cfg.items() if k != "k"}
    x = rng.standard_normal((2, 3, 4, 5))
    W = rng.standard_normal((3, 4, cfg["k"], cfg["k"]))
    b = rng.standard_normal(4) if bias else None
    out, cache = conv_transpose2d_forward(x, W, b, **hp)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    ref = F.conv_transpose2d(xt, Wt, bt, **hp)
    assert rel(out, ref) < TOL
    dout = rng.standard_normal(out.shape)
    ref.backward(torch.tensor(dout))
    dx, dW, db = conv_transpose2d_backward(dout, cache)
    assert rel(dx, xt.grad) < TOL and rel(dW, Wt.grad) < TOL
    assert (db is None) if not bias else rel(db, bt.grad) < TOL
    assert rel(conv_transpose2d_as_conv(x, W, b, **hp), ref) < TOL


def test_conv_transpose2d_vs_module():
    torch.manual_seed(0)
    m = nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1).double()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    out, _ = conv_transpose2d_forward(x, m.weight.detach().numpy(), m.bias.detach().numpy(), 2, 1, 1)
    assert rel(out, m(torch.tensor(x))) < TOL


def test_conv_transpose2d_is_conv2d_backward():
    rng = np.random.default_rng(2)
    x, W = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 4, 3, 3))
    out = conv_transpose2d_forward(x, W, None, 2, 1, 1)[0]
    _, cache = conv2d_forward(np.zeros(out.shape), W, None, 2, 1)
    assert rel(conv2d_backward(x, cache)[0], out) < TOL


@pytest.mark.parametrize("n,k,s,p,op,d", [(3, 3, 2, 1, 0, 1), (3, 3, 2, 1, 1, 1), (5, 4, 3, 2, 2, 1), (4, 3, 1, 0, 0, 2),
                                          (4, 3, 1, 0, 1, 2)])
def test_conv_transpose_output_size_vs_torch(n, k, s, p, op, d):
    m = nn.ConvTranspose2d(1, 1, k, s, p, output_padding=op, dilation=d)
    assert conv_transpose_output_size(n, k, s, p, op, d) == m(torch.zeros(1, 1, n, n)).shape[-1]


def test_conv_transpose_output_size_rejects_output_padding_too_large():
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(3, 3, 2, 1, 2)
    with pytest.raises(ValueError, match="channels"):
        conv_transpose2d_forward(np.zeros((1, 2, 3, 3)), np.zeros((3, 1, 3, 3)))


def test_unflipped_kernel_is_wrong():
    """The common mistake of the notebook: the same construction without the flip differs from torch."""
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    right = conv_transpose2d_as_conv(x, W, None, 2, 1, 1)
    wrong = conv_transpose2d_as_conv(x, W[:, :, ::-1, ::-1], None, 2, 1, 1)   # flipping twice = not flipping
    ref = F.conv_transpose2d(torch.tensor(x), torch.tensor(W), stride=2, padding=1, output_padding=1)
    assert rel(right, ref) < TOL and rel(wrong, ref) > 1e-2


# ------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_layer_with_and_without_bias(bias):
    torch.manual_seed(0)
    m = nn.Conv2d(3, 4, 3, 2, 1, bias=bias).double()
    layer = from_torch(m)
    assert isinstance(layer, Conv2d) and len(layer.params) == (2 if bias else 1)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7))
    xt = torch.tensor(x, requires_grad=True)
    y = layer.forward(x)
    yt = m(xt)
    dout = np.random.default_rng(1).standard_normal(y.shape)
    yt.backward(torch.tensor(dout))
    dx = layer.backward(dout)
    assert rel(y, yt) < TOL and rel(dx, xt.grad) < TOL
    for g, p in zip(layer.grads, m.parameters()):
        assert rel(g, p.grad) < TOL


def test_batchnorm2d_layer_train_and_eval():
    torch.manual_seed(0)
    m = nn.BatchNorm2d(3, momentum=0.3).double()
    randomise_bn(m)
    layer = from_torch(m)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
        xt = torch.tensor(x, requires_grad=True)
        y, yt = layer.forward(x), m(xt)
        dout = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(dout))
        dx = layer.backward(dout)
        assert rel(y, yt) < TOL and rel(dx, xt.grad) < TOL
        assert rel(layer.grads[0], m.weight.grad) < TOL and rel(layer.grads[1], m.bias.grad) < TOL
        m.zero_grad()
    assert rel(layer.running_mean, m.running_mean) < TOL and rel(layer.running_var, m.running_var) < TOL
    set_training(layer, False)
    m.eval()
    x = rng.standard_normal((2, 3, 5, 5))
    assert rel(layer.forward(x), m(torch.tensor(x))) < TOL


@pytest.mark.parametrize("c_in,c_out,stride,n", [(4, 4, 1, 6), (4, 8, 2, 7), (3, 5, 1, 5)])
def test_residual_block_vs_basic_block(c_in, c_out, stride, n):
    torch.manual_seed(0)
    ref = BasicBlock(c_in, c_out, stride).double()
    randomise_bn(ref)
    block = from_torch(ref)
    assert isinstance(block, ResidualBlock) and (block.shortcut is None) == (ref.downsample is None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, c_in, n, n))
    xt = torch.tensor(x, requires_grad=True)
    y, yt = block.forward(x), ref(xt)
    assert rel(y, yt) < TOL
    dout = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dout))
    dx = block.backward(dout)
    assert rel(dx, xt.grad) < TOL
    assert len(block.grads) == len(list(ref.parameters()))
    for g, p in zip(block.grads, ref.parameters()):
        assert rel(g, p.grad) < TOL
    bns = [layer for layer in sublayers(block) if isinstance(layer, BatchNorm2d)]
    bns_t = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn, bn_t in zip(bns, bns_t):
        assert rel(bn.running_mean, bn_t.running_mean) < TOL and rel(bn.running_var, bn_t.running_var) < TOL
    set_training(block, False)
    ref.eval()
    with torch.no_grad():
        assert rel(block.forward(x), ref(torch.tensor(x))) < TOL


def test_residual_block_refuses_an_identity_skip_of_another_shape():
    block = basic_block(4, 8, 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="projection"):
        ResidualBlock(block.branch, None).forward(np.zeros((2, 4, 6, 6)))


@pytest.mark.parametrize("c_in,c_out,stride", [(4, 4, 1), (4, 8, 2), (4, 8, 1)])
def test_basic_block_has_torchvision_layout(c_in, c_out, stride):
    block = basic_block(c_in, c_out, stride, rng=np.random.default_rng(0))
    ref = BasicBlock(c_in, c_out, stride)
    assert [p.shape for p in block.params] == [tuple(p.shape) for p in ref.parameters()]
    assert (block.shortcut is None) == (ref.downsample is None)
    y = block.forward(np.random.default_rng(1).standard_normal((2, c_in, 6, 6)))
    assert y.shape == tuple(ref(torch.zeros(2, c_in, 6, 6)).shape) and (y >= 0).all()


def test_pools_vs_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4))
    dout = rng.standard_normal((2, 3))
    for layer, ref in ((GlobalAvgPool(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
                       (from_torch(nn.Sequential(nn.AvgPool2d(4), nn.Flatten())), nn.Sequential(nn.AvgPool2d(4),
                                                                                              nn.Flatten()))):
        xt = torch.tensor(x, requires_grad=True)
        y, yt = layer.forward(x), ref(xt)
        yt.backward(torch.tensor(dout))
        assert rel(y, yt) < TOL and rel(layer.backward(dout), xt.grad) < TOL
    assert isinstance(from_torch(nn.AdaptiveAvgPool2d(1)), GlobalAvgPool)
    assert isinstance(from_torch(nn.AvgPool2d(2)), AvgPool2d)


def small_resnet(bn=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4) if bn else nn.Identity(),
                         nn.ReLU(), BasicBlock(4, 4), BasicBlock(4, 8, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10)).double()


def test_from_torch_resnet_forward_backward():
    ref = small_resnet()
    randomise_bn(ref)
    net = from_torch(ref)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8))
    xt = torch.tensor(x, requires_grad=True)
    y, yt = net.forward(x), ref(xt)
    assert rel(y, yt) < TOL
    dout = np.random.default_rng(1).standard_normal(y.shape)
    yt.backward(torch.tensor(dout))
    assert rel(net.backward(dout), xt.grad) < TOL
    assert len(net.grads) == len(list(ref.parameters()))
    for g, p in zip(net.grads, ref.parameters()):
        assert rel(g, p.grad) < TOL
    set_training(net, False)
    ref.eval()
    with torch.no_grad():
        assert rel(net.forward(x), ref(torch.tensor(x))) < TOL


def test_from_torch_drops_identity_and_refuses_unknown_modules():
    net = from_torch(small_resnet(bn=False))
    assert not any(isinstance(layer, BatchNorm2d) for layer in sublayers(net)[:2])
    with pytest.raises(ValueError):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3, groups=1, dilation=2)))
    with pytest.raises(ValueError):
        from_torch(nn.GELU())


@pytest.mark.parametrize("bn", [True, False])
def test_conv_grad_norms_vs_autograd(bn):
    ref = small_resnet(bn)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 10, 6)
    norms = conv_grad_norms(from_torch(ref), x, y)
    F.cross_entropy(ref(torch.tensor(x)), torch.tensor(y)).backward()
    ref_norms = [m.weight.grad.norm().item() for m in ref.modules() if isinstance(m, nn.Conv2d)]
    assert rel(norms, np.array(ref_norms)) < TOL


def test_twin_training_steps_agree():
    """Three Adam steps from the same weights on the same batches: NumPy and torch stay equal."""
    from aicourse.lessons.losses import cross_entropy
    from aicourse.lessons.optimizers import Adam

    ref = small_resnet()
    net = from_torch(ref)
    opt, opt_t = Adam(net.params, lr=0.01), torch.optim.Adam(ref.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)
        loss, dz = cross_entropy(net.forward(x), y)
        net.backward(dz)
        opt.step(net.grads)
        opt_t.zero_grad()
        loss_t = F.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        loss_t.backward()
        opt_t.step()
        assert rel(loss, loss_t) < TOL
    for p, p_t in zip(net.params, ref.parameters()):
        assert rel(p, p_t) < TOL
