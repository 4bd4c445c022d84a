"""The tiktoken engine (data/fast_bpe.py) gives exactly the ids of `tokenizers`, or is not used."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import tiktoken
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers

from genforge.data import fast_bpe
from genforge.data.fast_bpe import GPT2_PATTERN, byte_decoder, fast_engine, why_not
from genforge.data.prepare import prepare
from genforge.data.shards import TokenData
from genforge.data.tokenizer import EOT, Tokenizer, train_tokenizer
from tests.conftest import make_text

CODE = '''def f(x: int) -> list[str]:\n\treturn [str(i) for i in range(x)]  # 42\n\n\n    if a != b: pass\r\n'''
ODD = ["", " ", "\n\n\n", "   a  b   ", "don't it's we'll I'M they're", "x" * 3000, "ab" * 2000, "=" * 700,
       "1234567890 3.14159 1e-9", "Zebra quartz: 123 \t ÿ 雪 😀\n", "naïve café Ωμέγα ﬁ ＡＢＣ", "\u200b\u00a0\u3000 x"]


def corpus(seed: int = 0) -> list[str]:
    """English-like lines, code, and odd strings."""
    return [make_text(40, seed), CODE * 5, *ODD]


def varied_texts(seed: int = 0) -> list[str]:
    """Text unlike the training corpus too: random Unicode, shuffled and mangled words, specials."""
    rng = random.Random(seed)
    words = make_text(200, seed + 1).split()
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    return [
        *corpus(seed + 2), *make_text(60, seed + 3).split("\n"),
        *("".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 80))) for _ in range(100)),
        *(" ".join(rng.choice(words) for _ in range(30)) for _ in range(50)),
        *("".join(rng.choice(words)[rng.randint(0, 3):] + rng.choice(["", " ", "  ", "'s", "\n", "\t "])
                  for _ in range(30)) for _ in range(50)),
        # a sample of all code points, each after a letter, a digit, a space, a tab and itself
        *("".join(f"a{chr(c)}1{chr(c)} {chr(c)}\t{chr(c)}{chr(c)}x'{chr(c)} " for c in cps[i:i + 400:53])
          for i in range(0, len(cps), 400)),
        f"a{EOT}b", EOT, f" {EOT} x", f"x{EOT}{EOT}\n\n y", "<|endoftext", f"{EOT}\n",
    ]


def hf_ids(tok: tokenizers.Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def assert_same_ids(tok: tokenizers.Tokenizer, texts: list[str]) -> None:
    fast = fast_engine(tok)
    assert fast is not None, why_not(json.loads(tok.to_str()))
    for text, ids in zip(texts, hf_ids(tok, texts)):
        assert fast.encode(text).tolist() == ids, text[:80]


@pytest.mark.parametrize("vocab", [300, 1000, 4000])
def test_trained_bpe_same_ids_as_tokenizers(vocab):
    tok = train_tokenizer(f"bpe:{vocab}", corpus() * 3)
    assert_same_ids(tok.tok, varied_texts())
    text = make_text(30, 9) + EOT + CODE
    assert tok.fast is not None and tok.encode(text) == hf_ids(tok.tok, [text])[0]
    assert tok.decode(tok.encode(text)) == text


def test_prefix_space_setting():
    tok = train_tokenizer("bpe:600", corpus()).tok
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert fast_engine(tok).prefix_space
    assert_same_ids(tok, varied_texts(1) + [f"{EOT}b", f"a{EOT}b", f"x{EOT} b{EOT}", "\nhi", " hi"])


def hand_made(merges: list[tuple[str, str]], **bpe) -> tokenizers.Tokenizer:
    """A byte-level BPE with the given merges over the 256 byte characters."""
    vocab = {c: i for i, c in enumerate(sorted(byte_decoder()))}  # byte tokens not in byte order
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, **bpe))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tok


def naive(tok: tokenizers.Tokenizer) -> tiktoken.Encoding:
    """A straight conversion: every merged token, ranked in rule order (what the check adds to)."""
    data, alphabet = json.loads(tok.to_str()), byte_decoder()
    ranks = {bytes([alphabet[c]]): i for c, i in data["model"]["vocab"].items() if len(c) == 1}
    for a, b in data["model"]["merges"]:
        ranks[bytes(alphabet[c] for c in a + b)] = data["model"]["vocab"][a + b]
    return tiktoken.Encoding("naive", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})


def test_token_that_merges_cannot_make_is_left_out():
    # "abc" is made by (a, bc), but on its own bytes a+b merges first and (ab, c) is no rule:
    # tokenizers never outputs it; tiktoken with every token would merge ab+c into it
    tok = hand_made([("a", "b"), ("b", "c"), ("a", "bc")])
    vocab = tok.get_vocab()
    assert hf_ids(tok, ["abc"])[0] == [vocab["ab"], vocab["c"]]
    assert naive(tok).encode("abc") == [vocab["abc"]]  # the divergence the check exists for
    assert fast_engine(tok).encode("abc").tolist() == [vocab["ab"], vocab["c"]]
    assert_same_ids(tok, ["abc", "abcabc", " abc", "bcabc", "aabcc", "xabcx"])


def test_random_merge_lists_same_ids():
    """Random merge lists make many tokens that merges cannot reach; ids still agree."""
    left_out = diverged = 0
    for seed in range(25):
        rng = random.Random(seed)
        tokens, merges = ["a", "b", "c", "Ġ"], []
        for _ in range(40):
            a, b = rng.choice(tokens), rng.choice(tokens)
            if a + b not in tokens and len(a + b) <= 8:
                tokens.append(a + b)
                merges.append((a, b))
        tok = hand_made(merges)
        texts = ["".join(rng.choice("abc ") for _ in range(rng.randint(1, 40))) for _ in range(60)]
        texts += ["".join(rng.choice("abc") for _ in range(rng.randint(500, 900))) for _ in range(5)]  # long words
        assert_same_ids(tok, texts)
        left_out += len(merges) + 256 - len(fast_engine(tok).encoding._mergeable_ranks)
        straight = naive(tok)
        diverged += sum(straight.encode(t) != ids for t, ids in zip(texts, hf_ids(tok, texts)))
    assert left_out > 0 and diverged > 0  # the cases above are the ones that need the check


@pytest.mark.parametrize("change, reason", [
    (lambda t: setattr(t, "normalizer", normalizers.NFC()), "normalizer"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()), "pre-tokenizer"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(use_regex=False)), "pre-tokenizer"),
    (lambda t: setattr(t.model, "dropout", 0.1), "dropout"),
    (lambda t: setattr(t.model, "ignore_merges", True), "ignore_merges"),
    (lambda t: t.add_tokens([tokenizers.AddedToken("<x>", lstrip=True)]), "lstrip"),
    (lambda t: t.add_special_tokens([EOT + "!"]), "prefix"),
    (lambda t: t.enable_truncation(8), "truncates"),
    (lambda t: t.enable_padding(length=8), "pads"),
])
def test_other_tokenizers_keep_the_tokenizers_engine(change, reason):
    tok = train_tokenizer("bpe:300", corpus()).tok
    change(tok)
    assert reason in why_not(json.loads(tok.to_str()))
    assert fast_engine(tok) is None


def test_two_rules_for_one_token_and_char_tokenizer_keep_the_tokenizers_engine():
    tok = hand_made([("a", "b"), ("ab", "c"), ("b", "c"), ("a", "bc")])  # "abc" twice
    assert "two merge rules" in why_not(json.loads(tok.to_str()))
    assert train_tokenizer("char", corpus()).fast is None


def test_environment_turns_it_off(monkeypatch):
    tok = train_tokenizer("bpe:300", corpus())
    monkeypatch.setenv(fast_bpe.ENGINE_ENV, "tokenizers")
    assert fast_engine(tok.tok) is None
    assert Tokenizer(tok.tok).fast is None


def test_prepare_writes_the_same_shards_with_either_engine(tmp_path, monkeypatch):
    docs = [make_text(20, s) + ("" if s % 3 else f" {EOT} ") + CODE for s in range(12)]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    fast = prepare(str(src), "bpe:500", tmp_path / "fast", field="text")
    monkeypatch.setenv(fast_bpe.ENGINE_ENV, "tokenizers")
    slow = prepare(str(src), "bpe:500", tmp_path / "slow", field="text", tokenizer_file=fast / "tokenizer.json")
    for split in ("train", "val"):
        a, b = (np.concatenate(TokenData(d).split(split)) for d in (fast, slow))
        assert a.size > 0 and np.array_equal(a, b)
