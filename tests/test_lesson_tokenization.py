"""aicourse.lessons.tokenization (notebook 18) against nn.Embedding and Hugging Face's BPE trainer."""

import numpy as np
import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from aicourse.lessons.tokenization import (PRE_TOKEN, bpe_decode, bpe_encode, bpe_train, char_vocab,
                                           embedding_backward, embedding_forward, words_of)

LINES = ["the cat sat on the mat", "that hat is a hat  that  sat", "aaa aaaa a aa", "the theme then there",
         "  indented line, with punctuation!"]


def test_embedding_forward_backward_match_torch():
    rng = np.random.default_rng(0)
    E, idx = rng.standard_normal((6, 3)), np.array([[1, 1, 5], [0, 1, 2]])
    dout = rng.standard_normal((2, 3, 3))
    for pad in (None, 1):
        emb = torch.nn.Embedding(6, 3, padding_idx=pad).double()
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(E))
        out_t = emb(torch.from_numpy(idx))
        (out_t * torch.from_numpy(dout)).sum().backward()
        out, cache = embedding_forward(E, idx)
        np.testing.assert_array_equal(out, out_t.detach().numpy())
        np.testing.assert_allclose(embedding_backward(dout, cache, pad), emb.weight.grad.numpy(), rtol=1e-14)


def test_char_vocab_round_trip():
    itos, stoi = char_vocab("hello world")
    assert itos == sorted(set("hello world")) and "".join(itos[stoi[c]] for c in "world") == "world"


def test_bpe_matches_tokenizers_merges_and_ids():
    itos, merges = bpe_train(words_of(LINES), 25)
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKEN), behavior="isolated")
    n_alpha = len(itos) - len(merges)
    hf.train_from_iterator(LINES, trainers.BpeTrainer(vocab_size=len(itos), special_tokens=[], show_progress=False))
    vocab = hf.get_vocab()
    assert [vocab[s] for s in itos] == list(range(len(itos))) and n_alpha + len(merges) == len(vocab)
    for line in LINES:
        ids = bpe_encode(line, itos, merges)
        assert ids == hf.encode(line).ids
        assert bpe_decode(ids, itos) == line


def test_overlapping_pairs_merge_left_to_right():
    itos, merges = bpe_train({"aaa": 1}, 1)
    assert itos[-1] == "aa" and bpe_encode("aaa", itos, merges) == [1, 0]


def test_bpe_encode_names_a_character_it_has_no_id_for():
    """A character the training text never had: one sentence naming it, not a bare KeyError."""
    itos, merges = bpe_train(words_of(LINES), 10)
    with pytest.raises(ValueError, match=r"character 'Z' \(U\+005A\) has no id: the training text"):
        bpe_encode("the Zebra", itos, merges)
    assert bpe_decode(bpe_encode("the cat", itos, merges), itos) == "the cat"      # known characters still encode
