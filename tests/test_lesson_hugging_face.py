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
                                           gpt2_lm_params, gpt2_lm_to_hf, bert_pair, pad_batch,
                                           position_ids_from_mask, greedy_generate_padded, gpt_params_from_gpt2_lm,
                                           hf_kv_cache, hf_cache_of, hf_cache_kwarg, train_wordpiece_tokenizer,
                                           train_byte_bpe_tokenizer)
from aicourse.lessons.gpt import gpt_forward  # noqa: E402

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


# ----------------------------------------------------------------------------- the tokenizer pipeline (sections 8-10)
def _texts():
    import pydoc_data.topics
    return [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:12]]


PAIRS = [("The for statement iterates.", "Each item is assigned to the target."), ("Names refer to objects.", "Yes.")]


@pytest.fixture(scope="module")
def bert_tok():
    return train_wordpiece_tokenizer(_texts(), vocab_size=300)


@pytest.fixture(scope="module")
def gpt_tok():
    return train_byte_bpe_tokenizer(_texts(), vocab_size=300)


def test_tokenizers_trained_offline(bert_tok, gpt_tok):
    assert [bert_tok.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert bert_tok.pad_token_id == BertConfig().pad_token_id                          # the embedding's padding_idx
    assert len(bert_tok) <= 300 and len(gpt_tok) <= 300
    text = "Naïve £ loops"                                                             # bytes: nothing unknown
    assert gpt_tok.decode(gpt_tok(text)["input_ids"]) == text
    assert gpt_tok.pad_token_id == gpt_tok.eos_token_id


def test_bert_pair_and_pad_batch_equal_the_tokenizer(bert_tok):
    enc = bert_tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="np")
    pieces = [bert_pair(bert_tok(a, add_special_tokens=False)["input_ids"],
                        bert_tok(b, add_special_tokens=False)["input_ids"], bert_tok.cls_token_id, bert_tok.sep_token_id)
              for a, b in PAIRS]
    ids, mask = pad_batch([i for i, _ in pieces], bert_tok.pad_token_id)
    types, _ = pad_batch([t for _, t in pieces], 0)
    np.testing.assert_array_equal(ids, enc["input_ids"])
    np.testing.assert_array_equal(types, enc["token_type_ids"])
    np.testing.assert_array_equal(mask, enc["attention_mask"])
    assert types.any() and not types[:, 0].any()                                       # B is 1, [CLS] is 0
    bert_tok.padding_side = "left"
    left = bert_tok([a for a, _ in PAIRS], padding=True, return_tensors="np")
    bert_tok.padding_side = "right"
    ids_l, mask_l = pad_batch([bert_tok(a)["input_ids"] for a, _ in PAIRS], bert_tok.pad_token_id, side="left")
    np.testing.assert_array_equal(ids_l, left["input_ids"])
    np.testing.assert_array_equal(mask_l, left["attention_mask"])
    with pytest.raises(ValueError):
        pad_batch([[1]], 0, side="middle")


def test_right_padded_pairs_equal_each_pair_alone(bert):
    """On the real tokens a right-padded batch gives the outputs of each sequence alone (to rounding), with the mask."""
    rng = np.random.default_rng(6)
    seqs = [rng.integers(5, V, n) for n in (T, 3, 4)]
    types = [(np.arange(len(s)) >= 2).astype(np.int64) for s in seqs]
    ids, mask = pad_batch(seqs, 0)
    tt, _ = pad_batch(types, 0)
    p, real = bert_model_params(bert), mask.astype(bool)
    alone = np.concatenate([bert_model_forward(s[None], p, HEADS, None, t[None])[0][0] for s, t in zip(seqs, types)])
    assert close(bert_model_forward(ids, p, HEADS, mask, tt)[0][real], alone)
    assert not close(bert_model_forward(ids, p, HEADS, None, tt)[0][real], alone, tol=1e-3)     # no mask: leaks
    assert not close(bert_model_forward(ids, p, HEADS, mask)[0][real], alone, tol=1e-3)         # types all 0

def test_position_ids_from_mask_is_hf_formula():
    m = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1]])
    mt = torch.tensor(m)
    ref = (mt.long().cumsum(-1) - 1).masked_fill(mt == 0, 1)                          # transformers 4.46's GPT-2
    np.testing.assert_array_equal(position_ids_from_mask(m), ref.numpy())
    np.testing.assert_array_equal(position_ids_from_mask(m, fill=0)[0], [0, 0, 0, 1, 2])


def test_position_fill_changes_only_padded_positions(gpt):
    """The value at the padding is never read: fill 0 and fill 1 give the same logits at the real positions."""
    ids = np.random.default_rng(7).integers(0, V, (N, T))
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    p, real = gpt_params_from_gpt2_lm(gpt2_lm_params(gpt)), mask.astype(bool)
    l0, l1 = (gpt_forward(ids, p, HEADS, attention_mask=mask, positions=position_ids_from_mask(mask, fill=f))[0]
              for f in (0, 1))
    assert close(l0[real], l1[real]) and not close(l0[~real], l1[~real], tol=1e-3)
    l0n, l1n = (gpt_forward(ids, p, HEADS, positions=position_ids_from_mask(mask, fill=f))[0] for f in (0, 1))
    assert not close(l0n[real], l1n[real], tol=1e-3)                                  # without the mask it matters


@pytest.fixture(scope="module")
def gpt_gen(gpt_tok):
    torch.manual_seed(0)
    eos = gpt_tok.eos_token_id
    cfg = GPT2Config(vocab_size=len(gpt_tok), n_embd=E, n_layer=LAYERS, n_head=HEADS, n_positions=32,
                     bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, attn_implementation="eager")
    return randomize(GPT2LMHeadModel(cfg).double().eval())


PROMPTS = ["The for statement", "Names", "A class definition defines"]


def test_gpt_params_from_gpt2_lm_run_22s_forward(gpt):
    ids = np.random.default_rng(4).integers(0, V, (N, T))
    with torch.no_grad():
        ref = gpt(input_ids=torch.tensor(ids)).logits
    assert close(gpt_forward(ids, gpt_params_from_gpt2_lm(gpt2_lm_params(gpt)), HEADS)[0], ref)


def test_greedy_generate_padded_equals_generate(gpt_gen, gpt_tok):
    eos, n_new = gpt_tok.eos_token_id, 6
    seqs = [gpt_tok(p)["input_ids"] for p in PROMPTS]
    ids, mask = pad_batch(seqs, eos, side="left")
    p = gpt_params_from_gpt2_lm(gpt2_lm_params(gpt_gen))
    ours, logits = greedy_generate_padded(p, ids, mask, n_new, HEADS, eos_id=eos, pad_id=eos)
    with torch.no_grad():
        ref = gpt_gen.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                               max_new_tokens=n_new, pad_token_id=eos, output_scores=True,
                               return_dict_in_generate=True)
    np.testing.assert_array_equal(ours, ref.sequences.numpy())
    assert close(logits, torch.stack(ref.scores), tol=1e-6)                            # generate scores in float32
    for n, s in enumerate(seqs):                                                       # each row = its prompt alone
        alone = greedy_generate_padded(p, np.array([s]), np.ones((1, len(s))), n_new, HEADS, eos_id=eos,
                                       pad_id=eos)[0][0]
        np.testing.assert_array_equal(ours[n, ids.shape[1] - len(s):][:len(alone)], alone)
    no_pos = greedy_generate_padded(p, ids, mask, n_new, HEADS, use_position_ids=False)[0]
    assert not np.array_equal(no_pos, ours)                                            # the mistake changes tokens


def test_eos_finishes_rows_as_generate_does(gpt_gen, gpt_tok):
    pad, n_new = gpt_tok.eos_token_id, 6
    ids, mask = pad_batch([gpt_tok(p)["input_ids"] for p in PROMPTS], pad, side="left")
    p = gpt_params_from_gpt2_lm(gpt2_lm_params(gpt_gen))
    plain = greedy_generate_padded(p, ids, mask, n_new, HEADS)[0]
    stop = int(plain[0, ids.shape[1] + 1])                                             # row 0's second new token
    ours = greedy_generate_padded(p, ids, mask, n_new, HEADS, eos_id=stop, pad_id=pad)[0]
    with torch.no_grad():
        ref = gpt_gen.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                               max_new_tokens=n_new, pad_token_id=pad, eos_token_id=stop)
    np.testing.assert_array_equal(ours, ref.numpy())
    new = ours[0, ids.shape[1]:]
    first = int(np.argmax(new == stop))                                                # row 0 finishes by step 1
    assert new[first] == stop and first <= 1 and (new[first + 1:] == pad).all()


def test_hf_kv_cache_equals_22s_present(gpt_gen, gpt_tok):
    eos = gpt_tok.eos_token_id
    ids, mask = pad_batch([gpt_tok(p)["input_ids"] for p in PROMPTS], eos, side="left")
    pos = position_ids_from_mask(mask)
    p = gpt_params_from_gpt2_lm(gpt2_lm_params(gpt_gen))
    logits, cache = gpt_forward(ids, p, HEADS, attention_mask=mask, positions=pos)
    with torch.no_grad():
        out = gpt_gen(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos),
                      use_cache=True)
    past = hf_cache_of(out)
    kv = hf_kv_cache(past)
    real = mask.astype(bool)
    assert len(kv) == len(cache["present"]) == LAYERS
    for (k, v), (k2, v2) in zip(cache["present"], kv):
        assert k.shape == k2.shape
        assert close(k.transpose(0, 2, 1, 3)[real], k2.transpose(0, 2, 1, 3)[real])
        assert close(v.transpose(0, 2, 1, 3)[real], v2.transpose(0, 2, 1, 3)[real])
    nxt = logits[:, -1].argmax(-1)[:, None]
    mask2, pos2 = np.concatenate([mask, np.ones_like(nxt)], 1), pos[:, -1:] + 1
    with torch.no_grad():
        out2 = gpt_gen(input_ids=torch.tensor(nxt), attention_mask=torch.tensor(mask2),
                       position_ids=torch.tensor(pos2), use_cache=True, **{hf_cache_kwarg(gpt_gen): past})
    logits2, _ = gpt_forward(nxt, p, HEADS, attention_mask=mask2, positions=pos2, past=cache["present"])
    assert close(logits2, out2.logits)


def test_hf_kv_cache_reads_every_container():
    """The containers of past_key_values across transformers versions give the same list of (k, v)."""
    rng = np.random.default_rng(5)
    pairs = [(torch.tensor(rng.standard_normal((1, 2, 3, 4))), torch.tensor(rng.standard_normal((1, 2, 3, 4))))
             for _ in range(2)]

    class Layer:
        def __init__(self, k, v):
            self.keys, self.values = k, v

    class WithLayers:                                    # DynamicCache, late 4.x and 5.x
        layers = [Layer(k, v) for k, v in pairs]

    class WithLists:                                     # DynamicCache, earlier 4.x
        key_cache, value_cache = [k for k, _ in pairs], [v for _, v in pairs]

    class WithLegacy:                                    # any Cache with to_legacy_cache()
        def to_legacy_cache(self):
            return tuple(pairs)

    want = [(k.numpy(), v.numpy()) for k, v in pairs]
    for past in (tuple(pairs), WithLayers(), WithLists(), WithLegacy()):
        got = hf_kv_cache(past)
        assert len(got) == 2 and all(np.array_equal(a, b) for g, w in zip(got, want) for a, b in zip(g, w))
    assert hf_cache_of({"past_key_values": 1}) == 1 and hf_cache_of({"cache": 2, "logits": 0}) == 2
