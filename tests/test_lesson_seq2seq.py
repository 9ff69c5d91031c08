"""aicourse.lessons.seq2seq (notebook 19) against torch: the bidirectional encoders, the attention decoder step,
the whole teacher-forced model, greedy decoding and beam search (against exhaustive search)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from aicourse.lessons.lstm_gru import gru_layer_forward
from aicourse.lessons.seq2seq import (beam_search, bigru_backward, bigru_forward, bilstm_backward, bilstm_forward,
                                      decoder_step_backward, decoder_step_forward, encode, greedy_decode,
                                      seq2seq_backward, seq2seq_forward, seq2seq_loss, sequence_log_prob,
                                      shift_right)

from lesson_tools import TOL, rel, t
GATES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def close(ours, ref, tol=TOL):
    assert rel(ours, ref) <= tol


class Seq2Seq(nn.Module):
    """The notebook's torch twin (same parameter names)."""

    def __init__(self, V_src, V_tgt, D_e, H, H_dec, A):
        super().__init__()
        self.src_emb = nn.Embedding(V_src, D_e)
        self.encoder = nn.GRU(D_e, H, bidirectional=True, batch_first=True)
        self.bridge = nn.Linear(2 * H, H_dec)
        self.W_q = nn.Parameter(torch.randn(A, H_dec) / H_dec ** 0.5)
        self.W_k = nn.Parameter(torch.randn(A, 2 * H) / (2 * H) ** 0.5)
        self.w_v = nn.Parameter(torch.randn(A) / A ** 0.5)
        self.tgt_emb = nn.Embedding(V_tgt + 1, D_e)
        self.cell = nn.GRUCell(D_e + 2 * H, H_dec)
        self.out = nn.Linear(H_dec + 2 * H, V_tgt)

    def encode(self, src, pad=0):
        mask = src != pad
        packed = pack_padded_sequence(self.src_emb(src), mask.sum(dim=1), batch_first=True, enforce_sorted=False)
        enc, h_n = self.encoder(packed)
        enc, _ = pad_packed_sequence(enc, batch_first=True, total_length=src.shape[1])
        return enc, torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=1))), mask

    def step(self, y_prev, s, enc, mask):
        e = torch.tanh((s @ self.W_q.T)[:, None, :] + enc @ self.W_k.T) @ self.w_v
        alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)
        ctx = (alpha[:, :, None] * enc).sum(dim=1)
        s = self.cell(torch.cat([self.tgt_emb(y_prev), ctx], dim=1), s)
        return self.out(torch.cat([s, ctx], dim=1)), s, alpha

    def forward(self, src, tgt_in):
        enc, s, mask = self.encode(src)
        logits = []
        for k in range(tgt_in.shape[1]):
            z, s, _ = self.step(tgt_in[:, k], s, enc, mask)
            logits.append(z)
        return torch.stack(logits, dim=1)


SIZES = dict(V_src=6, V_tgt=4, D_e=3, H=3, H_dec=5, A=4)


def model_and_params(seed, scale=1.0, sizes=SIZES):
    torch.manual_seed(seed)
    model = Seq2Seq(**sizes).double()
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(scale)
    return model, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def directions(rnn):
    return ([getattr(rnn, f"{n}_l0").detach().numpy() for n in GATES],
            [getattr(rnn, f"{n}_l0_reverse").detach().numpy() for n in GATES])


@pytest.mark.parametrize("T,N,D,H", [(1, 1, 2, 3), (5, 3, 4, 6), (7, 2, 3, 2)])
def test_bigru_matches_nn_gru(T, N, D, H):
    rng = np.random.default_rng(T)
    x, dout = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, 2 * H))
    h0, dh_n = rng.standard_normal((2, N, H)), rng.standard_normal((2, N, H))
    torch.manual_seed(0)
    rnn = nn.GRU(D, H, bidirectional=True).double()
    out, h_n, cache = bigru_forward(x, *directions(rnn), h0)
    dx, dh0, g_f, g_b = bigru_backward(dout, dh_n, cache)
    xt, h0t = t(x, True), t(h0, True)
    out_t, h_n_t = rnn(xt, h0t)
    ((out_t * t(dout)).sum() + (h_n_t * t(dh_n)).sum()).backward()
    close(out, out_t); close(h_n, h_n_t); close(dx, xt.grad); close(dh0, h0t.grad)
    for n, gf, gb in zip(GATES, g_f, g_b):
        close(gf, getattr(rnn, f"{n}_l0").grad)
        close(gb, getattr(rnn, f"{n}_l0_reverse").grad)


@pytest.mark.parametrize("lengths", [[5, 3, 1], [1, 5, 2], [5, 5, 5]])
def test_bigru_with_lengths_matches_packed_nn_gru(lengths):
    """Padded sequences: both directions read only the real tokens, as a packed nn.GRU does."""
    rng = np.random.default_rng(sum(lengths))
    T, N, D, H = 5, 3, 4, 3
    x, dout = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, 2 * H))
    h0, dh_n = rng.standard_normal((2, N, H)), rng.standard_normal((2, N, H))
    torch.manual_seed(0)
    rnn = nn.GRU(D, H, bidirectional=True).double()
    out, h_n, cache = bigru_forward(x, *directions(rnn), h0, lengths=np.array(lengths))
    dx, dh0, g_f, g_b = bigru_backward(dout, dh_n, cache)
    xt, h0t = t(x, True), t(h0, True)
    out_t, h_n_t = rnn(pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False), h0t)
    out_t = pad_packed_sequence(out_t, total_length=T)[0]
    ((out_t * t(dout)).sum() + (h_n_t * t(dh_n)).sum()).backward()
    close(out, out_t); close(h_n, h_n_t); close(dx, xt.grad); close(dh0, h0t.grad)
    for n, gf, gb in zip(GATES, g_f, g_b):
        close(gf, getattr(rnn, f"{n}_l0").grad)
        close(gb, getattr(rnn, f"{n}_l0_reverse").grad)
    real = np.arange(T)[:, None] < np.array(lengths)
    assert np.all(out[~real] == 0) and np.all(dx[~real] == 0)      # padding: no output, no gradient
    if min(lengths) < T:   # reading the padding (no lengths) gives other outputs at the real positions
        assert rel(bigru_forward(x, *directions(rnn), h0)[0] * real[..., None], out_t) > 1e-3


def test_bigru_rejects_impossible_lengths_and_encode_rejects_left_padding():
    x = np.zeros((4, 2, 3))
    rnn = nn.GRU(3, 2, bidirectional=True).double()
    for lengths in ([0, 4], [5, 1], [4]):
        with pytest.raises(ValueError, match="lengths must hold"):
            bigru_forward(x, *directions(rnn), lengths=np.array(lengths))
    _, p = model_and_params(0)
    with pytest.raises(ValueError, match="padding must come after"):
        encode(np.array([[0, 1, 2], [1, 2, 3]]), p)


def test_bilstm_matches_nn_lstm():
    rng = np.random.default_rng(1)
    T, N, D, H = 6, 2, 3, 4
    x, dout = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, 2 * H))
    h0, c0, dh_n, dc_n = (rng.standard_normal((2, N, H)) for _ in range(4))
    torch.manual_seed(0)
    rnn = nn.LSTM(D, H, bidirectional=True).double()
    out, (h_n, c_n), cache = bilstm_forward(x, *directions(rnn), (h0, c0))
    dx, dh0, dc0, g_f, g_b = bilstm_backward(dout, dh_n, dc_n, cache)
    xt, h0t, c0t = t(x, True), t(h0, True), t(c0, True)
    out_t, (h_n_t, c_n_t) = rnn(xt, (h0t, c0t))
    ((out_t * t(dout)).sum() + (h_n_t * t(dh_n)).sum() + (c_n_t * t(dc_n)).sum()).backward()
    for ours, ref in ((out, out_t), (h_n, h_n_t), (c_n, c_n_t), (dx, xt.grad), (dh0, h0t.grad), (dc0, c0t.grad)):
        close(ours, ref)
    for n, gf, gb in zip(GATES, g_f, g_b):
        close(gf, getattr(rnn, f"{n}_l0").grad)
        close(gb, getattr(rnn, f"{n}_l0_reverse").grad)
    # no initial state and no gradient on the final states: zeros, like torch
    out0, _, cache0 = bilstm_forward(x, *directions(rnn))
    close(out0, rnn(t(x))[0])
    assert bilstm_backward(dout, None, None, cache0)[0].shape == x.shape


def test_backward_direction_must_be_re_reversed():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2, 3))
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, bidirectional=True).double()
    fwd, bwd = directions(rnn)
    hs_f, _ = gru_layer_forward(x, np.zeros((2, 4)), *fwd)
    hs_b, _ = gru_layer_forward(x[::-1], np.zeros((2, 4)), *bwd)
    assert rel(np.concatenate([hs_f, hs_b], axis=-1), rnn(t(x))[0]) > 1e-3


def test_decoder_step_matches_autograd():
    rng = np.random.default_rng(3)
    model, p = model_and_params(0)
    N, T = 4, 5
    enc, s_prev = rng.standard_normal((N, T, 2 * SIZES["H"])), rng.standard_normal((N, SIZES["H_dec"]))
    mask = np.ones((N, T), dtype=bool); mask[1, 3:] = False
    y_prev = np.array([1, SIZES["V_tgt"], 1, 0])
    dz, ds = rng.standard_normal((N, SIZES["V_tgt"])), rng.standard_normal((N, SIZES["H_dec"]))
    z, s, alpha, cache = decoder_step_forward(y_prev, s_prev, enc, mask, p)
    ds_prev, denc, grads = decoder_step_backward(dz, ds, cache, p)
    st, et = t(s_prev, True), t(enc, True)
    z_t, s_t, a_t = model.step(torch.as_tensor(y_prev), st, et, torch.as_tensor(mask))
    ((z_t * t(dz)).sum() + (s_t * t(ds)).sum()).backward()
    close(z, z_t); close(s, s_t); close(alpha, a_t); close(ds_prev, st.grad); close(denc, et.grad)
    assert np.all(alpha[1, 3:] == 0)
    named = dict(model.named_parameters())
    for name, g in grads.items():
        close(g, named[name].grad)


def test_shift_right():
    tgt = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(shift_right(tgt, 9), [[9, 1, 2], [9, 4, 5]])


def _batch(rng, N=3, T=6, T_out=4):
    src = rng.integers(1, SIZES["V_src"], (N, T))
    src[1, 4:] = 0
    src[2, 2:] = 0
    return src, rng.integers(0, SIZES["V_tgt"], (N, T_out))


def test_whole_model_matches_autograd():
    rng = np.random.default_rng(4)
    model, p = model_and_params(1)
    src, tgt = _batch(rng)
    bos = SIZES["V_tgt"]
    loss, grads = seq2seq_loss(src, tgt, p, bos)
    logits_t = model(torch.as_tensor(src), torch.as_tensor(shift_right(tgt, bos)))
    loss_t = F.cross_entropy(logits_t.reshape(-1, SIZES["V_tgt"]), torch.as_tensor(tgt).reshape(-1))
    loss_t.backward()
    close(loss, loss_t)
    close(seq2seq_forward(src, shift_right(tgt, bos), p)[0], logits_t)
    named = dict(model.named_parameters())
    assert set(grads) == set(named)
    for name, g in grads.items():
        close(g, named[name].grad)


def test_encode_matches_torch():
    rng = np.random.default_rng(5)
    model, p = model_and_params(2)
    src, _ = _batch(rng)
    enc, s0, mask, _ = encode(src, p)
    enc_t, s0_t, mask_t = model.encode(torch.as_tensor(src))
    close(enc, enc_t); close(s0, s0_t)
    np.testing.assert_array_equal(mask, mask_t.numpy())


def test_greedy_and_sequence_log_prob():
    rng = np.random.default_rng(6)
    model, p = model_and_params(3, scale=2.0)
    src, _ = _batch(rng)
    bos, T_out = SIZES["V_tgt"], 4
    tokens, alphas = greedy_decode(src, p, T_out, bos)
    with torch.no_grad():   # torch greedy, step by step
        enc, s, mask = model.encode(torch.as_tensor(src))
        y, ref = torch.full((len(src),), bos), []
        for _ in range(T_out):
            z, s, _ = model.step(y, s, enc, mask)
            y = z.argmax(dim=1)
            ref.append(y)
    np.testing.assert_array_equal(tokens, torch.stack(ref, dim=1).numpy())
    np.testing.assert_allclose(alphas.sum(-1), 1.0, atol=1e-12)
    logits = model(torch.as_tensor(src), torch.as_tensor(shift_right(tokens, bos)))
    ref_lp = -F.cross_entropy(logits.reshape(-1, SIZES["V_tgt"]), torch.as_tensor(tokens).reshape(-1),
                              reduction="none").reshape(tokens.shape).sum(dim=1)
    close(sequence_log_prob(src, tokens, p, bos), ref_lp)


def _exhaustive(src, p, V, L):
    seqs = np.array(list(itertools.product(range(V), repeat=L)))
    return seqs, sequence_log_prob(np.repeat(src[None], len(seqs), axis=0), seqs, p, V)


@pytest.mark.parametrize("seed", range(6))
def test_beam_search_equals_exhaustive_search(seed):
    sizes = dict(V_src=5, V_tgt=3, D_e=4, H=4, H_dec=6, A=5)
    _, p = model_and_params(seed, scale=2.0, sizes=sizes)
    V, L = 3, 4
    src = np.random.default_rng(seed).integers(1, 5, 6)
    seqs, logp = _exhaustive(src, p, V, L)
    for width in (V ** (L - 1), 50, V ** L):
        beam, scores = beam_search(src, p, L, V, width)
        np.testing.assert_array_equal(beam[0], seqs[logp.argmax()])
        assert abs(scores[0] - logp.max()) <= 1e-12 * abs(logp.max())
        assert np.all(np.diff(scores) <= 0)                            # best first
    for width in (1, 2, 3):
        beam, scores = beam_search(src, p, L, V, width)
        close(scores, sequence_log_prob(np.repeat(src[None], len(beam), axis=0), beam, p, V))
        assert scores[0] <= logp.max() + 1e-12
    np.testing.assert_array_equal(beam_search(src, p, L, V, 1)[0][0], greedy_decode(src[None], p, L, V)[0][0])


def test_beam_search_without_state_reordering_is_caught():
    """Continuing each survivor from the wrong state gives a non-optimal or mis-scored beam on some model."""
    from aicourse.lessons.floating_point import log_softmax
    sizes = dict(V_src=5, V_tgt=3, D_e=4, H=4, H_dec=6, A=5)
    V, L, found = 3, 4, False
    for seed in range(10):
        _, p = model_and_params(seed, scale=2.0, sizes=sizes)
        src = np.random.default_rng(seed).integers(1, 5, 6)
        _, logp = _exhaustive(src, p, V, L)
        enc, s, mask, _ = encode(src[None], p)
        seqs, scores, y = np.zeros((1, 0), dtype=int), np.zeros(1), np.array([V])
        for _ in range(L):
            k = len(seqs)
            z, s_new, _, _ = decoder_step_forward(y, s, np.repeat(enc, k, 0), np.repeat(mask, k, 0), p)
            total = (scores[:, None] + log_softmax(z, axis=1)).ravel()
            best = np.argsort(-total, kind="stable")[:V ** L]
            parent, token = np.divmod(best, V)
            seqs = np.concatenate([seqs[parent], token[:, None]], axis=1)
            scores, s, y = total[best], s_new[np.arange(len(best)) % k], token      # the mistake
        found |= abs(scores[0] - logp.max()) > 1e-6
    assert found
