"""`aicourse bench`: the course's exported NumPy operations timed against torch on the CPU and on a device.

A registry of operations (name -> setup returning the NumPy callable, a factory of the torch callable and
the flop count) and one loop over it. NumPy and torch on the CPU run in float64 with the same thread count
(:func:`aicourse.timing.time_it`); the device runs float32 with TF32 off. Forward rows run torch without
autograd; backward rows time the backward alone (NumPy from a stored cache, torch through a stored graph).
Every NumPy callable returns what its torch twin returns, so tests can prove both compute the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checks import tensor
from .device import device_name, env_summary, resolve_device
from .lessons import (attention, backpropagation, convolution, diffusion, encoder_decoder, flash_attention,
                      init_and_norm, llama, losses, lstm_gru, mlp_training, rnn, tokenization, transformer, vae)
from .timing import Timing, _fmt, time_it


@dataclass
class Case:
    size: str                                                        # the shapes, as the table shows them
    numpy: Callable[[], object]                                      # returns an array or a tuple of arrays
    torch: Callable[[torch.device, torch.dtype], Callable[[], object]]  # (device, dtype) -> the same computation
    flops: float | None = None                                       # matmul/convolution flops of one call


OPS: dict[str, Callable[[np.random.Generator, bool], Case]] = {}


def op(name: str):
    def register(setup):
        OPS[name] = setup
        return setup
    return register


def _no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()
    return run


def _forward(fn, *arrays):
    """Torch factory of a forward without autograd: fn(*tensors), the tensors copied from ``arrays``."""
    def make(dev, dt):
        xs = [tensor(a, dev, dt) for a in arrays]
        return _no_grad(lambda: fn(*xs))
    return make


def _backward(forward, inputs, dout):
    """Torch factory timing only the backward: autograd.grad through one stored graph, w.r.t. ``inputs``."""
    def make(dev, dt):
        xs = [tensor(a, dev, dt, grad=True) for a in inputs]
        out, d = forward(*xs), tensor(dout, dev, dt)
        return lambda: torch.autograd.grad(out, xs, d, retain_graph=True)
    return make


def _randn(rng, *shape):
    return rng.standard_normal(shape)


# ---- linear (05) --------------------------------------------------------------------------------------
def _linear(rng, small):
    N, I, O = (4, 5, 3) if small else (256, 512, 512)
    return f"x ({N},{I}) W ({O},{I})", _randn(rng, N, I), _randn(rng, O, I), _randn(rng, O), _randn(rng, N, O)


@op("linear-fwd")
def _(rng, small):
    size, x, W, b, _ = _linear(rng, small)
    return Case(size, lambda: backpropagation.linear_forward(x, W, b)[0], _forward(F.linear, x, W, b),
                2 * x.shape[0] * W.size)


@op("linear-bwd")
def _(rng, small):
    size, x, W, b, dy = _linear(rng, small)
    cache = backpropagation.linear_forward(x, W, b)[1]
    return Case(size, lambda: backpropagation.linear_backward(dy, cache), _backward(F.linear, (x, W, b), dy),
                4 * x.shape[0] * W.size)


# ---- convolution and pooling (10) ---------------------------------------------------------------------
def _conv(rng, small, naive):
    N, C, Fo, H = (2, 3, 4, 6) if small else (2, 4, 8, 16) if naive else (8, 16, 32, 32)
    x, W, b, dout = _randn(rng, N, C, H, H), _randn(rng, Fo, C, 3, 3), _randn(rng, Fo), _randn(rng, N, Fo, H, H)
    return f"x ({N},{C},{H},{H}) W ({Fo},{C},3,3) pad 1", x, W, b, dout, 2 * N * Fo * H * H * C * 9


def _conv_ops(suffix, forward, backward, naive):
    @op(f"conv2d{suffix}-fwd")
    def _(rng, small):
        size, x, W, b, _, flops = _conv(rng, small, naive)
        conv = lambda x, W, b: F.conv2d(x, W, b, padding=1)
        return Case(size, lambda: forward(x, W, b, padding=1)[0], _forward(conv, x, W, b), flops)

    @op(f"conv2d{suffix}-bwd")
    def _(rng, small):
        size, x, W, b, dout, flops = _conv(rng, small, naive)
        cache = forward(x, W, b, padding=1)[1]
        conv = lambda x, W, b: F.conv2d(x, W, b, padding=1)
        return Case(size, lambda: backward(dout, cache), _backward(conv, (x, W, b), dout), 2 * flops)


_conv_ops("-naive", convolution.conv2d_forward_naive, convolution.conv2d_backward_naive, naive=True)
_conv_ops("", convolution.conv2d_forward, convolution.conv2d_backward, naive=False)


def _pool_ops(kind, forward, backward, torch_pool):
    def data(rng, small):
        shape = (2, 3, 6, 6) if small else (8, 32, 32, 32)
        out = tuple(s // 2 if i > 1 else s for i, s in enumerate(shape))
        return f"x ({','.join(map(str, shape))}) k2 s2", _randn(rng, *shape), _randn(rng, *out)

    @op(f"{kind}-fwd")
    def _(rng, small):
        size, x, _ = data(rng, small)
        return Case(size, lambda: forward(x, 2)[0], _forward(lambda x: torch_pool(x, 2), x))

    @op(f"{kind}-bwd")
    def _(rng, small):
        size, x, dout = data(rng, small)
        cache = forward(x, 2)[1]
        return Case(size, lambda: backward(dout, cache), _backward(lambda x: torch_pool(x, 2), (x,), dout))


_pool_ops("maxpool", convolution.max_pool2d_forward, convolution.max_pool2d_backward, F.max_pool2d)
_pool_ops("avgpool", convolution.avg_pool2d_forward, convolution.avg_pool2d_backward, F.avg_pool2d)


# ---- RNN, LSTM, GRU (13, 14): one layer, time-major ----------------------------------------------------
def _recurrent_ops(kind, gates, module, forward, backward):
    def data(rng, small):
        T, N, D, H = (3, 2, 4, 5) if small else (32, 32, 128, 128)
        s = 1 / np.sqrt(H)
        G = gates * H
        params = [tuple(s * _randn(rng, *shape) for shape in ((G, D), (G, H), (G,), (G,)))]
        flops = 2 * T * N * gates * H * (D + H)
        return f"T {T}, N {N}, D {D}, H {H}", _randn(rng, T, N, D), params, _randn(rng, T, N, H), flops

    def torch_layer(params, dev, dt):
        D, H = params[0][0].shape[1], params[0][1].shape[1]
        return rnn.params_to_torch(module(D, H).to(dev, dt), params)

    @op(f"{kind}-fwd")
    def _(rng, small):
        size, x, params, _, flops = data(rng, small)
        def make(dev, dt):
            layer, xt = torch_layer(params, dev, dt), tensor(x, dev, dt)
            return _no_grad(lambda: layer(xt)[0])
        return Case(size, lambda: forward(x, params)[0], make, flops)

    @op(f"{kind}-bwd")
    def _(rng, small):
        size, x, params, dout, flops = data(rng, small)
        cache = forward(x, params)[-1]
        def numpy():
            dx, *_, grads = backward(dout, *[None] * (2 if kind == "lstm" else 1), cache)
            return (dx, *grads[0])
        def make(dev, dt):
            layer, xt, d = torch_layer(params, dev, dt), tensor(x, dev, dt, grad=True), tensor(dout, dev, dt)
            inputs = [xt, *layer.parameters()]                       # weight_ih, weight_hh, bias_ih, bias_hh
            out = layer(xt)[0]
            return lambda: torch.autograd.grad(out, inputs, d, retain_graph=True)
        return Case(size, numpy, make, 2 * flops)


_recurrent_ops("rnn", 1, torch.nn.RNN, rnn.rnn_forward, rnn.rnn_backward)
_recurrent_ops("lstm", 4, torch.nn.LSTM, lstm_gru.lstm_forward, lstm_gru.lstm_backward)
_recurrent_ops("gru", 3, torch.nn.GRU, lstm_gru.gru_forward, lstm_gru.gru_backward)


# ---- attention (16) and layer norm (17) ----------------------------------------------------------------
def _attention(rng, small):
    N, h, L, d = (2, 2, 3, 4) if small else (8, 4, 128, 64)
    q, k, v, dout = (_randn(rng, N, h, L, d) for _ in range(4))
    return f"(N, heads, L, d) = ({N},{h},{L},{d})", q, k, v, dout, 4 * N * h * L * L * d


@op("attention-fwd")
def _(rng, small):
    size, q, k, v, _, flops = _attention(rng, small)
    return Case(size, lambda: attention.scaled_dot_product_attention(q, k, v)[0],
                _forward(F.scaled_dot_product_attention, q, k, v), flops)


@op("attention-bwd")
def _(rng, small):
    size, q, k, v, dout, flops = _attention(rng, small)
    cache = attention.scaled_dot_product_attention(q, k, v)[2]
    return Case(size, lambda: attention.scaled_dot_product_attention_backward(dout, cache),
                _backward(F.scaled_dot_product_attention, (q, k, v), dout), 2 * flops)


def _layernorm(rng, small):
    R, D = (4, 6) if small else (1024, 512)
    return f"x ({R},{D})", _randn(rng, R, D), 1 + 0.1 * _randn(rng, D), _randn(rng, D), _randn(rng, R, D)


@op("layernorm-fwd")
def _(rng, small):
    size, x, g, b, _ = _layernorm(rng, small)
    norm = lambda x, g, b: F.layer_norm(x, x.shape[-1:], g, b)
    return Case(size, lambda: transformer.layer_norm_forward(x, g, b)[0], _forward(norm, x, g, b))


@op("layernorm-bwd")
def _(rng, small):
    size, x, g, b, dy = _layernorm(rng, small)
    cache = transformer.layer_norm_forward(x, g, b)[1]
    return Case(size, lambda: transformer.layer_norm_backward(dy, cache),
                _backward(lambda x, g, b: F.layer_norm(x, x.shape[-1:], g, b), (x, g, b), dy))


# ---- batch norm (09) and embedding (18) ---------------------------------------------------------------
def _batchnorm(rng, small):
    N, C, n = (3, 2, 2) if small else (64, 64, 16)
    return (f"x ({N},{C},{n},{n}), train mode", _randn(rng, N, C, n, n), 1 + 0.1 * _randn(rng, C), _randn(rng, C),
            _randn(rng, N, C, n, n))


def _bn_torch(x, g, b):
    return F.batch_norm(x, None, None, g, b, training=True)


@op("batchnorm-fwd")
def _(rng, small):
    size, x, g, b, _ = _batchnorm(rng, small)
    C = x.shape[1]
    return Case(size, lambda: init_and_norm.batchnorm_forward(x, g, b, np.zeros(C), np.ones(C))[0],
                _forward(_bn_torch, x, g, b))


@op("batchnorm-bwd")
def _(rng, small):
    size, x, g, b, dout = _batchnorm(rng, small)
    C = x.shape[1]
    cache = init_and_norm.batchnorm_forward(x, g, b, np.zeros(C), np.ones(C))[1]
    return Case(size, lambda: init_and_norm.batchnorm_backward(dout, cache), _backward(_bn_torch, (x, g, b), dout))


def _embedding(rng, small):
    V, d, N, T = (7, 3, 2, 4) if small else (10_000, 256, 64, 128)
    idx = rng.integers(0, V, (N, T))
    return f"E ({V},{d}), ids ({N},{T})", _randn(rng, V, d), idx, _randn(rng, N, T, d)


@op("embedding-fwd")
def _(rng, small):
    size, E, idx, _ = _embedding(rng, small)

    def make(dev, dt):
        Et, it = tensor(E, dev, dt), torch.as_tensor(idx, device=dev)
        return _no_grad(lambda: F.embedding(it, Et))
    return Case(size, lambda: tokenization.embedding_forward(E, idx)[0], make)


@op("embedding-bwd")
def _(rng, small):
    size, E, idx, dout = _embedding(rng, small)
    cache = tokenization.embedding_forward(E, idx)[1]

    def make(dev, dt):
        Et, it = tensor(E, dev, dt, grad=True), torch.as_tensor(idx, device=dev)
        out, d = F.embedding(it, Et), tensor(dout, dev, dt)
        return lambda: torch.autograd.grad(out, [Et], d, retain_graph=True)
    return Case(size, lambda: tokenization.embedding_backward(dout, cache), make)


# ---- one MLP training step (07) and one transformer block (17) -----------------------------------------
@op("mlp-step")
def _(rng, small):
    sizes, N, lr = ([5, 4, 3], 6, 0.01) if small else ([256, 512, 512, 10], 128, 0.01)
    x, y = _randn(rng, N, sizes[0]), rng.integers(0, sizes[-1], N)
    init = mlp_training.init_mlp(sizes, rng)
    params = [p.copy() for p in init]

    def numpy():                            # forward, loss, backward, SGD update in place: the notebook's loop
        logits, caches = mlp_training.mlp_forward(x, params)
        loss, dlogits = losses.cross_entropy(logits, y)
        for p, g in zip(params, mlp_training.mlp_backward(dlogits, caches)):
            p -= lr * g
        return (loss, *params)

    def make(dev, dt):
        ws = [tensor(p, dev, dt, grad=True) for p in init]
        xt, yt = tensor(x, dev, dt), torch.as_tensor(y, device=dev)
        opt = torch.optim.SGD(ws, lr=lr)

        def step():
            h = xt
            for i in range(0, len(ws), 2):
                h = F.linear(h, ws[i], ws[i + 1])
                h = torch.relu(h) if i + 2 < len(ws) else h
            loss = F.cross_entropy(h, yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return (loss.detach(), *[w.detach() for w in ws])
        return step
    flops = 6 * N * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return Case(f"MLP {'-'.join(map(str, sizes))}, batch {N}", numpy, make, flops)


def _block(rng, small):
    N, L, E, heads, Ff = (2, 3, 4, 2, 6) if small else (8, 64, 128, 4, 512)
    shapes = {"self_attn.in_proj_weight": (3 * E, E), "self_attn.in_proj_bias": (3 * E,),
              "self_attn.out_proj.weight": (E, E), "self_attn.out_proj.bias": (E,),
              "linear1.weight": (Ff, E), "linear1.bias": (Ff,), "linear2.weight": (E, Ff), "linear2.bias": (E,),
              "norm1.weight": (E,), "norm1.bias": (E,), "norm2.weight": (E,), "norm2.bias": (E,)}
    params = {k: (1.0 if k.startswith("norm") and k.endswith("weight") else 0.0) + 0.1 * _randn(rng, *s)
              for k, s in shapes.items()}

    def layer(dev, dt):
        mod = torch.nn.TransformerEncoderLayer(E, heads, Ff, dropout=0.0, batch_first=True, device=dev, dtype=dt)
        mod.load_state_dict({k: tensor(v, dev, dt) for k, v in params.items()})
        return mod
    flops = 2 * N * L * (4 * E * E + 2 * E * Ff) + 4 * N * L * L * E
    size = f"post-norm, N {N}, L {L}, E {E}, {heads} heads, FF {Ff}"
    return size, _randn(rng, N, L, E), _randn(rng, N, L, E), params, heads, layer, flops


@op("transformer-fwd")
def _(rng, small):
    size, x, _, params, heads, layer, flops = _block(rng, small)

    def make(dev, dt):
        mod, xt = layer(dev, dt), tensor(x, dev, dt)
        return _no_grad(lambda: mod(xt))
    return Case(size, lambda: transformer.encoder_layer_forward(x, params, heads)[0], make, flops)


@op("transformer-bwd")
def _(rng, small):
    size, x, dout, params, heads, layer, flops = _block(rng, small)
    cache = transformer.encoder_layer_forward(x, params, heads)[1]

    def numpy():
        dx, grads = transformer.encoder_layer_backward(dout, cache)
        return (dx, *[grads[k] for k in params])

    def make(dev, dt):
        mod, xt, d = layer(dev, dt), tensor(x, dev, dt, grad=True), tensor(dout, dev, dt)
        named = dict(mod.named_parameters())
        inputs = [xt, *[named[k] for k in params]]
        out = mod(xt)
        return lambda: torch.autograd.grad(out, inputs, d, retain_graph=True)
    return Case(size, numpy, make, 2 * flops)


# ---- cross-attention (20) -----------------------------------------------------------------------------
def _cross(rng, small):
    N, L, S, E, heads = (2, 3, 4, 4, 2) if small else (32, 32, 48, 128, 4)
    params = {"in_proj_weight": 0.1 * _randn(rng, 3 * E, E), "in_proj_bias": 0.1 * _randn(rng, 3 * E),
              "out_proj.weight": 0.1 * _randn(rng, E, E), "out_proj.bias": 0.1 * _randn(rng, E)}
    pad = np.zeros((N, S), bool)
    pad[0, -1] = True                                                # one padded memory position
    x, memory, dout = _randn(rng, N, L, E), _randn(rng, N, S, E), _randn(rng, N, L, E)

    def mha(dev, dt):
        mod = torch.nn.MultiheadAttention(E, heads, batch_first=True, device=dev, dtype=dt)
        mod.load_state_dict({k: tensor(v, dev, dt) for k, v in params.items()})
        return mod
    flops = 2 * N * (L * E * E + 2 * S * E * E + L * E * E) + 4 * N * L * S * E
    return f"x (N,L,E) = ({N},{L},{E}), memory S {S}, {heads} heads", x, memory, dout, params, heads, pad, mha, flops


@op("cross-attention-fwd")
def _(rng, small):
    size, x, memory, _, params, heads, pad, mha, flops = _cross(rng, small)

    def make(dev, dt):
        mod, xt, mt, pt = mha(dev, dt), tensor(x, dev, dt), tensor(memory, dev, dt), torch.as_tensor(pad, device=dev)
        return _no_grad(lambda: mod(xt, mt, mt, key_padding_mask=pt, need_weights=False)[0])
    return Case(size, lambda: encoder_decoder.cross_attention_forward(x, memory, params, heads,
                                                                      memory_key_padding_mask=pad)[0], make, flops)


@op("cross-attention-bwd")
def _(rng, small):
    size, x, memory, dout, params, heads, pad, mha, flops = _cross(rng, small)
    cache = encoder_decoder.cross_attention_forward(x, memory, params, heads, memory_key_padding_mask=pad)[2]

    def numpy():
        dx, dmemory, grads = encoder_decoder.cross_attention_backward(dout, cache)
        return (dx, dmemory, *[grads[k] for k in params])

    def make(dev, dt):
        mod, pt, d = mha(dev, dt), torch.as_tensor(pad, device=dev), tensor(dout, dev, dt)
        xt, mt = tensor(x, dev, dt, grad=True), tensor(memory, dev, dt, grad=True)
        named = dict(mod.named_parameters())
        out = mod(xt, mt, mt, key_padding_mask=pt, need_weights=False)[0]
        return lambda: torch.autograd.grad(out, [xt, mt, *[named[k] for k in params]], d, retain_graph=True)
    return Case(size, numpy, make, 2 * flops)


# ---- RoPE and RMSNorm (24) ----------------------------------------------------------------------------
def _rope(rng, small):
    N, H, T, d = (2, 2, 3, 4) if small else (8, 4, 128, 64)
    return f"(N, heads, T, d) = ({N},{H},{T},{d})", _randn(rng, N, H, T, d), _randn(rng, N, H, T, d), np.arange(T)


@op("rope-fwd")
def _(rng, small):
    size, x, _, pos = _rope(rng, small)
    return Case(size, lambda: llama.rope_forward(x, pos), _forward(lambda x: llama.torch_rope(x, torch.as_tensor(pos, device=x.device)), x))


@op("rope-bwd")
def _(rng, small):
    size, x, dy, pos = _rope(rng, small)
    return Case(size, lambda: llama.rope_backward(dy, pos),
                _backward(lambda x: llama.torch_rope(x, torch.as_tensor(pos, device=x.device)), (x,), dy))


def _rmsnorm(rng, small):
    R, D = (4, 6) if small else (1024, 512)
    return f"x ({R},{D})", _randn(rng, R, D), 1 + 0.1 * _randn(rng, D), _randn(rng, R, D)


def _torch_rms(x, w):
    return F.rms_norm(x, x.shape[-1:], w, eps=1e-6)


@op("rmsnorm-fwd")
def _(rng, small):
    size, x, w, _ = _rmsnorm(rng, small)
    return Case(size, lambda: llama.rms_norm_forward(x, w)[0], _forward(_torch_rms, x, w))


@op("rmsnorm-bwd")
def _(rng, small):
    size, x, w, dy = _rmsnorm(rng, small)
    cache = llama.rms_norm_forward(x, w)[1]
    return Case(size, lambda: llama.rms_norm_backward(dy, cache), _backward(_torch_rms, (x, w), dy))


# ---- flash attention (25) -----------------------------------------------------------------------------
def _flash_sdpa(q, k, v):
    """SDPA with only the flash kernel on the CPU; on a GPU in float32 (flash: half precision only) any kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kinds = [SDPBackend.FLASH_ATTENTION] if q.device.type == "cpu" else \
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(kinds):
        return F.scaled_dot_product_attention(q, k, v)


def _flash(rng, small):
    N, h, L, d, B = (2, 2, 5, 4, 2) if small else (8, 4, 128, 64, 64)
    q, k, v, dout = (_randn(rng, N, h, L, d) for _ in range(4))
    return f"(N, heads, L, d) = ({N},{h},{L},{d}), blocks {B}", q, k, v, dout, B, 4 * N * h * L * L * d


@op("flash-attention-fwd")
def _(rng, small):
    size, q, k, v, _, B, flops = _flash(rng, small)
    return Case(size, lambda: flash_attention.flash_attention_forward(q, k, v, block_q=B, block_k=B)[0],
                _forward(_flash_sdpa, q, k, v), flops)


@op("flash-attention-bwd")
def _(rng, small):
    size, q, k, v, dout, B, flops = _flash(rng, small)
    cache = flash_attention.flash_attention_forward(q, k, v, block_q=B, block_k=B)[2]
    return Case(size, lambda: flash_attention.flash_attention_backward(dout, cache),
                _backward(_flash_sdpa, (q, k, v), dout), 2.5 * flops)   # 5 products: the scores recomputed


# ---- the VAE's loss (32) -----------------------------------------------------------------------------
def _vae(rng, small):
    N, D, H, L = (4, 6, 5, 2) if small else (256, 784, 400, 20)     # large: Kingma and Welling's MNIST sizes
    shapes = [(H, D), (H,), (2 * L, H), (2 * L,), (H, L), (H,), (D, H), (D,)]
    params = {name: 0.1 * _randn(rng, *shape) for name, shape in zip(vae.VAE_PARAMS, shapes)}
    size = f"x ({N},{D}) hidden {H} latent {L}"
    return size, rng.random((N, D)), _randn(rng, N, L), params, 2 * N * (D * H + H * 2 * L + L * H + H * D)


def _torch_vae_loss(x, eps, W1, b1, W2, b2, W3, b3, W4, b4):
    """The negative ELBO as the notebook's torch twin computes it: Normal, kl_divergence, BCE with logits."""
    from torch.distributions import Normal, kl_divergence
    mu, logvar = F.linear(torch.tanh(F.linear(x, W1, b1)), W2, b2).chunk(2, dim=-1)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = q.loc + q.scale * eps
    u = F.linear(torch.tanh(F.linear(z, W3, b3)), W4, b4)
    recon = F.binary_cross_entropy_with_logits(u, x, reduction="none").sum(-1)
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    return (recon + kl).mean()


@op("vae-loss-fwd")
def _(rng, small):
    size, x, eps, params, flops = _vae(rng, small)
    return Case(size, lambda: np.asarray(vae.vae_forward(x, eps, params)[0]),
                _forward(_torch_vae_loss, x, eps, *params.values()), flops)


@op("vae-loss-bwd")
def _(rng, small):
    size, x, eps, params, flops = _vae(rng, small)
    cache = vae.vae_forward(x, eps, params)[2]

    def make(dev, dt):
        xs = [tensor(a, dev, dt) for a in (x, eps)]
        ws = [tensor(a, dev, dt, grad=True) for a in params.values()]
        loss = _torch_vae_loss(*xs, *ws)
        return lambda: torch.autograd.grad(loss, ws, retain_graph=True)
    return Case(size, lambda: tuple(vae.vae_backward(cache).values()), make, 2 * flops)


# ---- a diffusion sampler's step (34) ------------------------------------------------------------------
@op("ddim-step")
def _(rng, small):
    """DDIM's step at eta = 1 (= DDPM's ancestral step, 34) with its noise given: the same on every device."""
    from diffusers import DDIMScheduler

    shape, S = ((2, 3) if small else (16, 3, 64, 64)), 50
    x, out, noise = _randn(rng, *shape), _randn(rng, *shape), _randn(rng, *shape)
    config = dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False, thresholding=False,
                  prediction_type="epsilon", timestep_spacing="trailing", set_alpha_to_one=False)
    betas = DDIMScheduler(**config).betas.double().numpy()      # diffusers' float32 betas, in float64
    abar = diffusion.alpha_bar(betas)
    t, t_prev = diffusion.ddim_timesteps(1000, S)[1:3]

    def make(dev, dt):
        sched = DDIMScheduler(**config)
        sched.alphas_cumprod = torch.as_tensor(abar)              # the same cumulative product as ours
        sched.set_timesteps(S)
        o, xs, z = (tensor(a, dev, dt) for a in (out, x, noise))
        return _no_grad(lambda: sched.step(o, int(t), xs, eta=1.0, variance_noise=z).prev_sample)

    return Case(f"x {shape}, t {t} -> {t_prev} of {S} steps",
                lambda: diffusion.ddim_step(out, x, abar[t], abar[t_prev], eta=1.0, noise=noise)[0], make)


# ---- the loop -----------------------------------------------------------------------------------------
@dataclass
class Row:
    op: str
    size: str
    numpy: Timing
    cpu: Timing
    device: Timing | None


def select(names: list[str] | None) -> list[str]:
    """The ops to run: a name selects itself, a family (``conv2d``, ``lstm``) every op whose name starts name-."""
    if not names:
        return list(OPS)
    chosen = []
    for name in names:
        hits = [o for o in OPS if o == name or o.startswith(name + "-")]
        if not hits:
            raise ValueError(f"Unknown op {name!r}: choose from {', '.join(OPS)} (or a family such as conv2d, lstm).")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def run(names: list[str] | None = None, device: str = "auto", threads: int | None = None,
        out: str | Path = "executed/bench", *, quick: bool = False, progress: bool = True) -> list[Row]:
    """Time the selected ops; write ``out/bench.md`` and ``out/bench.png``. Bad input raises before anything runs."""
    ops = select(names)
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, not {threads}.")
    threads = threads or torch.get_num_threads()
    min_time = 0.01 if quick else 0.2
    rows = []
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_num_threads()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(threads)                                  # as the Timer does; the table's header says so
    try:
        for name in tqdm(ops, desc="aicourse bench", unit="op", disable=not progress):
            case = OPS[name](np.random.default_rng(0), quick)
            timed = lambda label, fn: time_it(f"{name} {label}", fn, threads=threads, flops=case.flops,
                                              min_run_time=min_time)
            rows.append(Row(name, case.size, timed("numpy", case.numpy),
                            timed("torch cpu", case.torch(torch.device("cpu"), torch.float64)),
                            None if dev.type == "cpu" else timed(f"torch {dev}", case.torch(dev, torch.float32))))
        text = table(rows, dev, threads)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_num_threads(saved[2])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text)
    figure(rows, dev, out / "bench.png")
    return rows


def _cell(t: Timing) -> str:
    return _fmt(t.median_s) + (f" ({t.gflops:.3g} GFLOP/s)" if t.gflops else "")


def table(rows: list[Row], dev: torch.device, threads: int) -> str:
    on_device = dev.type != "cpu"
    head = ["op", "size", "NumPy f64", "torch cpu f64", "NumPy / torch cpu"] + ([f"torch {dev} f32"] * on_device)
    lines = [f"# aicourse bench\n\n{env_summary(dev)}\n",
             f"CPU: {device_name('cpu')}" + (f"; device: {device_name(dev)}" if on_device else "") + ". "
             f"NumPy (the course's exported functions) and torch on the CPU in float64, {threads} thread(s) each"
             + (f"; torch on {dev} in float32, TF32 off" if on_device else "") + ". Median of "
             "torch.utils.benchmark blocked runs; forward rows run torch without autograd, backward rows time "
             "the backward alone; GFLOP/s counts matmul/convolution flops only.\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r.op, r.size, _cell(r.numpy), _cell(r.cpu), f"{r.numpy.median_s / r.cpu.median_s:.2f}×"]
        lines.append("| " + " | ".join(cells + ([_cell(r.device)] if r.device else [])) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[Row], dev: torch.device, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = [("NumPy f64", [r.numpy for r in rows]), ("torch cpu f64", [r.cpu for r in rows])]
    if rows and rows[0].device:
        series.append((f"torch {dev} f32", [r.device for r in rows]))
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.35 * len(rows) * len(series) / 2), layout="constrained")
    y, h = np.arange(len(rows)), 0.8 / len(series)
    for i, (label, times) in enumerate(series):
        ax.barh(y + (i - (len(series) - 1) / 2) * h, [t.median_s for t in times], h, label=label)
    ax.set_yticks(y, [r.op for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per call (s, log scale)")
    fig.legend(loc="outside lower center", ncol=len(series), frameon=False)
    ax.set_title("aicourse bench: the course's NumPy vs torch")
    fig.savefig(path, dpi=120)
    plt.close(fig)
