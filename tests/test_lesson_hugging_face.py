"""aicourse.lessons.hugging_face (notebook 23) against Hugging Face transformers' BERT and GPT-2, float64."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel  # noqa: E402

from aicourse.lessons.hugging_face import (bert_extended_mask, bert_key_padding_mask, bert_layer_backward,  # noqa: E402
                                           bert_layer_forward, bert_layer_params, bert_layer_to_hf,
                                           bert_model_backward, bert_model_forward, bert_model_params,
                                           bert_model_to_hf, conv1d_to_linear, gpt2_block_backward,
                                           gpt2_block_forward, gpt2_block_params, gpt2_block_to_hf,
                                           gpt2_causal_mask, gpt2_lm_backward, gpt2_lm_forward, gpt2_lm_loss,
                                           gpt2_lm_params, gpt2_lm_to_hf)

TOL = 1e-10
E, HEADS, LAYERS, V, N, T = 16, 2, 2, 30, 2, 5
transformers.logging.set_verbosity_error()


def close(ours, ref, tol=TOL):
    a = np.asarray(ours, dtype=np.float64)
    b = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape
    return np.max(np.abs(a - b)) <= tol * max(1e-8, np.abs(a).max() + np.abs(b).max())


def randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = name.endswith("weight") and ("LayerNorm" in name or ".ln_" in name)
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if scale else 0.0))
    return model


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=V, hidden_size=E, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=4 * E, max_position_embeddings=16, attn_implementation="eager")
    return randomize(BertModel(cfg, add_pooling_layer=False).double().eval())


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_embd=E, n_layer=LAYERS, n_head=HEADS, n_positions=16, bos_token_id=V - 1,
                     eos_token_id=V - 1, attn_implementation="eager")
    return randomize(GPT2LMHeadModel(cfg).double().eval())


AM = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


def test_masks():
    assert (bert_key_padding_mask(AM) == (AM == 0)).all()
    m = bert_extended_mask(AM)
    assert m.shape == (N, 1, 1, T) and (m[AM[:, None, None, :] == 1] == 0).all()
    assert (m[AM[:, None, None, :] == 0] == np.finfo(np.float64).min).all()
    c = gpt2_causal_mask(T)
    assert c.shape == (1, 1, T, T) and (c[0, 0][np.tril(np.ones((T, T), bool))] == 0).all()
    assert (c[0, 0][~np.tril(np.ones((T, T), bool))] == np.finfo(np.float64).min).all()


def test_conv1d_to_linear():
    W, b = np.arange(6.0).reshape(2, 3), np.ones(3)
    x = np.array([[1.0, -2.0]])
    Wl, bl = conv1d_to_linear(W, b)
    assert Wl.shape == (3, 2) and np.allclose(x @ Wl.T + bl, x @ W + b)


def test_bert_layer_matches_hf(bert):
    layer = copy.deepcopy(bert.encoder.layer[0])
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((N, T, E)), rng.standard_normal((N, T, E))
    p = bert_layer_params(layer)
    y, cache = bert_layer_forward(x, p, HEADS, AM)
    dx, g = bert_layer_backward(dout, cache)
    g = bert_layer_to_hf(g)
    xt = torch.tensor(x, requires_grad=True)
    out = first(layer(xt, attention_mask=torch.tensor(bert_extended_mask(AM))))
    (out * torch.tensor(dout)).sum().backward()
    assert close(y, out) and close(dx, xt.grad)
    for name, prm in layer.named_parameters():
        if name.endswith("key.bias"):                       # exactly zero: both sides are rounding noise
            assert np.abs(g[name]).max() < 1e-12 and prm.grad.abs().max() < 1e-12
        else:
            assert close(g[name], prm.grad), name
    assert not close(bert_layer_forward(x, p, HEADS, 1 - AM)[0], out)                  # mask polarity
    assert not close(bert_layer_forward(x, p, HEADS, AM, eps=1e-5)[0], out)            # eps
    # round trip of the conversion
    back = bert_layer_to_hf(p)
    assert all(np.array_equal(back[k], v.detach().numpy()) for k, v in layer.state_dict().items())


def test_flipped_additive_mask_makes_an_unpadded_row_uniform(bert):
    """S + finfo.min rounds to finfo.min: with the mask flipped, every score of an unpadded row is the same number."""
    from aicourse.lessons.transformer import encoder_layer_forward
    layer = bert.encoder.layer[0]
    x = np.random.default_rng(7).standard_normal((N, T, E))
    p = bert_layer_params(layer)
    fmin = np.finfo(np.float64).min
    with torch.no_grad():
        hf_flip = first(layer(torch.tensor(x), attention_mask=torch.tensor(bert_extended_mask(1 - AM))))
    ours, cache = encoder_layer_forward(x, p, HEADS, activation="gelu", eps=1e-12, batch_first=True,
                                        src_key_padding_mask=np.where(AM == 1, fmin, 0.0))
    assert close(ours, hf_flip)
    np.testing.assert_array_equal(cache["attn"][1], np.full((HEADS, T, T), 1 / T))      # row 1 has no padding
    assert not close(hf_flip[1], bert_layer_forward(x, p, HEADS, AM)[0][1])             # and it moved


def test_bert_model_matches_hf(bert):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, (N, T))
    ids[:, 2] = 0                                           # padding_idx appears in the input
    tt = np.array([[0, 0, 1, 1, 1]] * N)
    p = bert_model_params(bert)
    h, cache = bert_model_forward(ids, p, HEADS, AM, tt, pad_token_id=bert.config.pad_token_id)
    dh = rng.standard_normal(h.shape)
    g = bert_model_to_hf(bert_model_backward(dh, cache))
    model = copy.deepcopy(bert)
    out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(AM),
                token_type_ids=torch.tensor(tt)).last_hidden_state
    (out * torch.tensor(dh)).sum().backward()
    assert close(h, out)
    for name, prm in model.named_parameters():
        if not name.endswith("key.bias"):
            assert close(g[name], prm.grad), name
    _, c_wrong = bert_model_forward(ids, p, HEADS, AM, tt, pad_token_id=None)
    w = bert_model_backward(dh, c_wrong)["embeddings.word_embeddings.weight"]
    assert not close(w, model.embeddings.word_embeddings.weight.grad)


def test_gpt2_block_matches_hf(gpt):
    block = copy.deepcopy(gpt.transformer.h[1])
    rng = np.random.default_rng(2)
    x, dout = rng.standard_normal((N, T, E)), rng.standard_normal((N, T, E))
    p = gpt2_block_params(block)
    y, cache = gpt2_block_forward(x, p, HEADS)
    dx, g = gpt2_block_backward(dout, cache)
    g = gpt2_block_to_hf(g)
    xt = torch.tensor(x, requires_grad=True)
    out = first(block(xt, attention_mask=torch.tensor(gpt2_causal_mask(T))))
    (out * torch.tensor(dout)).sum().backward()
    assert close(y, out) and close(dx, xt.grad)
    for name, prm in block.named_parameters():
        assert close(g[name], prm.grad), name
    assert not close(gpt2_block_forward(x, p, HEADS, approximate="none")[0], out)       # GELU variant
    wrong = dict(p, **{"self_attn.out_proj.weight": block.attn.c_proj.weight.detach().numpy()})
    assert not close(gpt2_block_forward(x, wrong, HEADS)[0], out)                       # Conv1D not transposed
    back = gpt2_block_to_hf(p)
    assert all(np.array_equal(back[k], v.detach().numpy()) for k, v in block.state_dict().items() if k in back)


def test_gpt2_lm_matches_hf(gpt):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, V, (N, T))
    p = gpt2_lm_params(gpt)
    logits, cache = gpt2_lm_forward(ids, p, HEADS)
    loss, dlogits = gpt2_lm_loss(logits, ids)
    g = gpt2_lm_to_hf(gpt2_lm_backward(dlogits, cache))
    model = copy.deepcopy(gpt)
    ids_t = torch.tensor(ids)
    out = model(input_ids=ids_t)
    loss_t = F.cross_entropy(out.logits[:, :-1].reshape(-1, V), ids_t[:, 1:].reshape(-1))
    loss_t.backward()
    assert close(logits, out.logits) and close(loss, loss_t)
    for name, prm in model.named_parameters():
        assert close(g[name], prm.grad), name
    assert np.all(dlogits[:, -1] == 0)                      # the last position predicts nothing
