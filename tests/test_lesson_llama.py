"""aicourse.lessons.llama (notebook 24) against torch and Hugging Face: RoPE (both layouts), RMSNorm, SwiGLU,
grouped-query attention, the Llama block and model, the KV cache with RoPE."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.lessons.llama import (LLAMA_BLOCK_PARAMS, TorchLlama, TorchLlamaBlock, gqa_attention_backward,
                                    gqa_attention_forward, interleaved_to_half, kv_cache_bytes, llama_backward,
                                    llama_block_backward, llama_block_forward, llama_forward, repeat_kv,
                                    repeat_kv_backward, rms_norm_backward, rms_norm_forward, rope_backward,
                                    rope_cos_sin, rope_forward, rope_interleaved_forward, rope_inv_freq, rotate_half,
                                    silu, silu_backward, swiglu_backward, swiglu_forward, torch_rope)

TOL = 1e-10


def t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def close(ours, ref, tol=TOL):
    a = np.asarray(ours, dtype=np.float64)
    b = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.max(np.abs(a - b)) / max(1e-8, np.abs(a).max() + np.abs(b).max()) <= tol


def _randomise(module, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_((1.0 if "norm" in name else 0.0) + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def test_rope_matches_hf_and_is_relative():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((2, 3, 7, 8))
    pos = np.arange(7)
    cos, sin = rope_cos_sin(pos, 8)
    xt = t(x, True)
    ref, _ = apply_rotary_pos_emb(xt, xt.detach(), t(cos)[None], t(sin)[None])
    ref.backward(t(dy))
    close(rope_forward(x, pos), ref)
    close(rope_backward(dy, pos), xt.grad)
    close(rope_forward(x, pos), torch_rope(t(x), torch.arange(7)))
    close(rotate_half(np.arange(4.0)), [-2.0, -3.0, 0.0, 1.0])
    close(rope_inv_freq(8), 10000.0 ** (-np.arange(0, 8, 2) / 8))
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    s = lambda m, n: rope_forward(q[None], [m])[0] @ rope_forward(k[None], [n])[0]
    assert abs(s(3, 5) - s(103, 105)) < 1e-12 and abs(s(3, 5) - s(5, 3)) > 1e-6


def test_interleaved_layout_is_a_permutation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 10))
    P = interleaved_to_half(10)
    close(rope_forward(x[:, P], np.arange(5)), rope_interleaved_forward(x, np.arange(5))[:, P])
    # interleaved = complex multiplication by exp(i m w)
    z = (x[:, 0::2] + 1j * x[:, 1::2]) * np.exp(1j * np.arange(5)[:, None] * rope_inv_freq(10))
    y = rope_interleaved_forward(x, np.arange(5))
    close(y[:, 0::2], z.real)
    close(y[:, 1::2], z.imag)


@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_rms_norm_matches_torch(eps):
    rng = np.random.default_rng(2)
    x, w, dy = 1 + rng.standard_normal((3, 4, 6)), 1 + rng.standard_normal(6), rng.standard_normal((3, 4, 6))
    y, cache = rms_norm_forward(x, w, eps)
    dx, dw = rms_norm_backward(dy, cache)
    norm = nn.RMSNorm(6, eps=eps, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(t(w))
    xt = t(x, True)
    ref = norm(xt)
    ref.backward(t(dy))
    close(y, ref)
    close(dx, xt.grad)
    close(dw, norm.weight.grad)
    y0, c0 = rms_norm_forward(x, None, eps)
    close(y0, F.rms_norm(t(x), (6,), eps=eps))
    assert rms_norm_backward(dy, c0)[1] is None


def test_swiglu_matches_torch():
    rng = np.random.default_rng(3)
    p = {"gate_proj.weight": rng.standard_normal((10, 6)), "up_proj.weight": rng.standard_normal((10, 6)),
         "down_proj.weight": rng.standard_normal((6, 10))}
    x, dy = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 3, 6))
    out, cache = swiglu_forward(x, p)
    dx, g = swiglu_backward(dy, cache)
    W = {k: t(v, True) for k, v in p.items()}
    xt = t(x, True)
    ref = F.linear(F.silu(F.linear(xt, W["gate_proj.weight"])) * F.linear(xt, W["up_proj.weight"]), W["down_proj.weight"])
    ref.backward(t(dy))
    close(out, ref)
    close(dx, xt.grad)
    for k in p:
        close(g[k], W[k].grad)
    a = np.linspace(-6, 6, 13)
    at = t(a, True)
    F.silu(at).sum().backward()
    close(silu(a), F.silu(t(a)))
    close(silu_backward(np.ones(13), a), at.grad)


@pytest.mark.parametrize("H_kv", [6, 3, 2, 1])
def test_gqa_matches_sdpa(H_kv):
    rng = np.random.default_rng(4)
    q, do = rng.standard_normal((2, 6, 5, 4)), rng.standard_normal((2, 6, 5, 4))
    k, v = rng.standard_normal((2, 2, H_kv, 5, 4))
    mask = np.tril(np.ones((5, 5), dtype=bool))
    out, _, cache = gqa_attention_forward(q, k, v, mask)
    dq, dk, dv = gqa_attention_backward(do, cache)
    qt, kt, vt = t(q, True), t(k, True), t(v, True)
    ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
    ref.backward(t(do))
    for ours, theirs in ((out, ref), (dq, qt.grad), (dk, kt.grad), (dv, vt.grad)):
        close(ours, theirs)


def test_repeat_kv_is_interleaved_and_its_backward_sums():
    k = np.arange(2.0).reshape(1, 2, 1, 1)
    assert repeat_kv(k, 3).ravel().tolist() == [0, 0, 0, 1, 1, 1]
    assert repeat_kv_backward(np.ones((1, 6, 1, 1)), 3).ravel().tolist() == [3, 3]
    with pytest.raises(ValueError):
        gqa_attention_forward(np.zeros((1, 4, 2, 2)), np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))


def test_block_matches_twin_and_hf():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    rng = np.random.default_rng(5)
    cfg = LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=1, max_position_embeddings=32, attn_implementation="sdpa")
    hf = LlamaDecoderLayer(cfg, layer_idx=0).to(torch.float64)
    p = _randomise(hf, 0)
    assert set(p) == set(LLAMA_BLOCK_PARAMS)
    x, dy = rng.standard_normal((2, 6, 16)), rng.standard_normal((2, 6, 16))
    out, cache = llama_block_forward(x, p, 4, 2)
    dx, g = llama_block_backward(dy, cache)
    twin = TorchLlamaBlock(16, 4, 2, 24, dtype=torch.float64)
    twin.load_state_dict({k: t(v) for k, v in p.items()})
    xt = t(x, True)
    ref = twin(xt)
    ref.backward(t(dy))
    close(out, ref)
    close(dx, xt.grad)
    for name, param in twin.named_parameters():
        close(g[name], param.grad)
    xh = t(x, True)
    res = hf(xh, position_embeddings=LlamaRotaryEmbedding(config=cfg)(xh, torch.arange(6)[None]))
    res = res[0] if isinstance(res, tuple) else res
    close(out, res, 1e-5)                          # HF: RMSNorm and cos/sin in float32 (notebook 24, section 5)
    with pytest.raises(ValueError):
        llama_block_backward(dy, llama_block_forward(x, p, 4, 2, past=cache["present"])[1])


@pytest.mark.parametrize("tie", [False, True])
def test_model_matches_twin_and_cache(tie):
    rng = np.random.default_rng(6)
    twin = TorchLlama(13, 16, 2, 4, 1, 20, tie=tie, dtype=torch.float64)
    p = _randomise(twin, 1)
    assert ("lm_head.weight" in p) != tie
    idx, dz = rng.integers(0, 13, (2, 7)), rng.standard_normal((2, 7, 13))
    logits, cache = llama_forward(idx, p, 4, 1)
    g = llama_backward(dz, cache)
    ref = twin(torch.as_tensor(idx))
    ref.backward(t(dz))
    close(logits, ref)
    for name, param in twin.named_parameters():
        close(g[name], param.grad)
    past = llama_forward(idx[:, :4], p, 4, 1)[1]["present"]
    step, c = llama_forward(idx[:, 4:], p, 4, 1, past=past)
    close(step, logits[:, 4:])
    assert sum(k.nbytes + v.nbytes for k, v in c["present"]) == kv_cache_bytes(2, 1, 4, 7, 2, 8)


def test_model_matches_hf_causal_lm():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=2, max_position_embeddings=32, attn_implementation="sdpa")
    hf = LlamaForCausalLM(cfg).to(torch.float64)
    p = _randomise(hf, 2)
    idx = np.random.default_rng(7).integers(0, 20, (2, 6))
    close(llama_forward(idx, p, 4, 2)[0], hf(torch.as_tensor(idx)).logits, 1e-5)
