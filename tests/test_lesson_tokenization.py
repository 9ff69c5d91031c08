"""aicourse.lessons.tokenization (notebook 18) against nn.Embedding and Hugging Face's BPE and byte-level BPE."""

import json

import numpy as np
import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from aicourse.lessons.tokenization import (BYTE_TO_UNICODE, PRE_TOKEN, UNICODE_TO_BYTE, bpe_decode, bpe_encode,
                                           bpe_train, bytelevel_bpe_train, bytelevel_decode, bytelevel_encode,
                                           bytes_to_unicode, char_vocab, embedding_backward, embedding_forward,
                                           gpt2_pretokenize, split_special, words_of)

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


# --- byte-level BPE (GPT-2) and special tokens -------------------------------------------------------------------

SPECIAL = ["<|endoftext|>", "[PAD]", "[CLS]", "[SEP]"]
BYTE_LINES = LINES + ["It's 2024: they'll pay 1999.99 (don't!)", "naïve café — Привет, мир! 你好 😀👍🏽 e\u0301",
                      "\x00\x7f\u00a0\u00ad\ttab  two  spaces\n\n  x", "the cat's hat, the mat's cat"]


def _hf_byte(lines, n_merges, special=SPECIAL):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=len(special) + 256 + n_merges, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return tok


def test_bytes_to_unicode_is_gpt2s_printable_map():
    assert set(BYTE_TO_UNICODE.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert bytes_to_unicode() == BYTE_TO_UNICODE and len(set(BYTE_TO_UNICODE.values())) == 256
    assert BYTE_TO_UNICODE[ord(" ")] == "Ġ" and BYTE_TO_UNICODE[ord("\n")] == "Ċ" and BYTE_TO_UNICODE[ord("a")] == "a"
    assert all(UNICODE_TO_BYTE[c] == b for b, c in BYTE_TO_UNICODE.items())


def test_bytes_to_unicode_matches_bytelevel_byte_by_byte():
    # a character for every byte value that UTF-8 text can hold (all but C0, C1, F5-FF): a set check misses a swap
    probe = "".join(map(chr, [*range(256), *range(0x100, 0x800, 0x40), 0x800, *range(0x1000, 0x10000, 0x1000),
                              0x10000, *range(0x40000, 0x110000, 0x40000)]))
    data = probe.encode("utf-8")
    assert len(set(data)) == 243
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf = "".join(p for p, _ in byte_level.pre_tokenize_str(probe))
    assert "".join(BYTE_TO_UNICODE[b] for b in data) == hf


def test_gpt2_pretokenize_matches_bytelevel():
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for line in BYTE_LINES:
        assert gpt2_pretokenize(line) == [p for p, _ in byte_level.pre_tokenize_str(line)], line


def test_bytelevel_bpe_matches_tokenizers_merges_ids_and_decode():
    itos, merges = bytelevel_bpe_train(BYTE_LINES, 40, SPECIAL)
    hf = _hf_byte(BYTE_LINES, 40)
    vocab = hf.get_vocab()
    assert [vocab[s] for s in itos] == list(range(len(itos))) and len(itos) == len(vocab) == 4 + 256 + 40
    hf_merges = json.loads(hf.to_str())["model"]["merges"]
    hf_merges = [m.split(" ") if isinstance(m, str) else m for m in hf_merges]
    assert [(itos[a], itos[b]) for a, b in merges] == [tuple(m) for m in hf_merges]
    for line in BYTE_LINES:
        ids = bytelevel_encode(line, itos, merges, SPECIAL)
        assert ids == hf.encode(line).ids, line
        assert bytelevel_decode(ids, itos, SPECIAL) == line == hf.decode(ids)


def test_special_tokens_are_never_split_or_merged():
    itos, merges = bytelevel_bpe_train(["a.<|endoftext|>b." * 20, "a cat."], 10, SPECIAL)
    assert all("<" not in s and "|" not in s for s in itos[4 + 256:])          # nothing learned across or inside
    hf = _hf_byte(["a cat.", "a.", "b."], 10)
    text = "the cat.<|endoftext|>[CLS] x[SEP][PAD][PAD]<|endoftext|>"
    itos, merges = bytelevel_bpe_train(["a cat.", "a.", "b."], 10, SPECIAL)
    ids = bytelevel_encode(text, itos, merges, SPECIAL)
    assert ids == hf.encode(text).ids and ids.count(0) == 2 and ids[-3:] == [1, 1, 0]
    assert bytelevel_decode(ids, itos, SPECIAL, skip_special_tokens=True) == hf.decode(ids) == "the cat. x"
    assert bytelevel_decode(ids, itos, SPECIAL) == hf.decode(ids, skip_special_tokens=False) == text
    assert split_special("[CLS][CLS]x", SPECIAL) == [("[CLS]", True), ("[CLS]", True), ("x", False)]


def test_bytelevel_decode_replaces_invalid_utf8_as_tokenizers_does():
    itos, merges = bytelevel_bpe_train(BYTE_LINES, 20, SPECIAL)
    hf = _hf_byte(BYTE_LINES, 20)
    rng = np.random.default_rng(0)
    for _ in range(300):
        ids = [int(i) for i in rng.integers(0, len(itos), size=rng.integers(1, 7))]
        assert bytelevel_decode(ids, itos, SPECIAL) == hf.decode(ids, skip_special_tokens=False), ids
    emoji = bytelevel_encode("😀", itos, merges)
    assert bytelevel_decode(emoji[:1], itos) == "\ufffd" and bytelevel_decode(emoji, itos) == "😀"


def test_the_longer_special_token_wins_where_two_start_at_one_place():
    """As tokenizers' added vocabulary (leftmost, then longest match): '<s><s>' is one token, not two '<s>'."""
    special = ["<s>", "<s><s>"]
    itos, merges = bytelevel_bpe_train(["a b", "b a"], 2, special)
    hf = _hf_byte(["a b", "b a"], 2, special)
    for text in ("a<s><s>b", "<s><s><s>a", "<s>a<s><s>"):
        assert bytelevel_encode(text, itos, merges, special) == hf.encode(text).ids, text
    assert split_special("x<s><s><s>", special) == [("x", False), ("<s><s>", True), ("<s>", True)]
