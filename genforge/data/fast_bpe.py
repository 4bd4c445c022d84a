"""A faster engine for plain byte-level BPE tokenizer.json files: `tiktoken`, with ids that are
exactly those of `tokenizers` whenever `fast_engine` accepts the file.

The two libraries merge differently. `tokenizers` merges the adjacent pair (x, y) with the lowest
MERGE-RULE rank, and only pairs that are a merge rule; tiktoken merges the adjacent pair whose
CONCATENATION has the lowest rank, whatever split it came from, and maps a pre-token that is
itself a token straight to it. They agree on every input when:

1. each token made by merges is made by exactly one rule, and tiktoken ranks tokens in rule order
   (so a rule pair has the same priority in both, ties go to the leftmost pair in both), and
2. tiktoken knows only the tokens t that `tokenizers` gives for t's own bytes ("self-consistent").

Proof sketch. Run both on one pre-token; suppose tiktoken's first step that `tokenizers` would not
take merges (x, y) into t with (x, y) not t's rule (a rule merge tiktoken picks first is also the
first for `tokenizers`: its candidates are a subset with the same ranks). Before that step both
states are equal, and no merge crossed the edges of t's span, so the merges inside the span were
those of `tokenizers` run on t's bytes alone, in the same order: that run reaches [x, y] and stops
there, as (x, y) is no rule, so t is not self-consistent, contradicting 2. The same argument shows
that `tokenizers` never outputs a token that is not self-consistent (it would have to reach [a, b]
= t's rule on t's bytes alone, then merge), so leaving those out of tiktoken loses nothing.
tiktoken's whole-pre-token shortcut gives t where `tokenizers` gives [t] by 2.

The rest is checked on the file: byte-level pre-tokenizer with the GPT-2 regex, no normalizer,
plain BPE (no dropout, prefixes, suffixes, byte fallback or ignore_merges), all 256 bytes in the
vocabulary, added tokens matched as plain strings (none a prefix of another). Not provable here:
the regex's Unicode classes (\\p{L}, \\p{N}, \\s) come from two regex engines (Oniguruma,
fancy-regex) and their Unicode tables; with tokenizers 0.23 and tiktoken 0.14 they agree on every
code point (`bench/bpe_engines.py --all-code-points`), and tests/data/test_fast_bpe.py checks a
sample of code points with the installed versions.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import tokenizers

# the ByteLevel pre-tokenizer's regex (tokenizers/src/pre_tokenizers/byte_level.rs)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GENFORGE_BPE_ENGINE=tokenizers turns the fast engine off (to compare, or to rule it out)
ENGINE_ENV = "GENFORGE_BPE_ENGINE"


def byte_decoder() -> dict[str, int]:
    """The byte-level alphabet (GPT-2's bytes_to_unicode) back to bytes: character -> byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


class FastBPE:
    """tiktoken encoding of a tokenizer.json; `encode` returns the `tokenizers` ids."""

    def __init__(self, encoding, to_id: np.ndarray | None, prefix_space: bool, specials: list[str]):
        self.encoding = encoding
        self.to_id = to_id  # tiktoken rank -> tokenizer.json id (None: the same)
        self.prefix_space = prefix_space
        self._specials = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._allowed = encoding.special_tokens_set

    def encode(self, text: str) -> np.ndarray:
        """Token ids of text, as `tokenizers` encodes it without post-processing: (n,) int64."""
        if self.prefix_space:
            return np.concatenate([self._encode(t) for t in self._with_prefix_spaces(text)] or [np.zeros(0, np.int64)])
        return self._encode(text)

    def _encode(self, text: str) -> np.ndarray:
        ranks = self.encoding.encode_to_numpy(text, allowed_special=self._allowed, disallowed_special=())
        return ranks.astype(np.int64) if self.to_id is None else self.to_id[ranks]

    def _with_prefix_spaces(self, text: str) -> list[str]:
        """`tokenizers` adds the prefix space to each stretch of text between added tokens."""
        parts, at = [], 0
        for m in self._specials.finditer(text) if self._specials else ():
            parts += [text[at:m.start()], m.group()]
            at = m.end()
        parts.append(text[at:])
        specials = set(self._allowed)
        return [p if p in specials or p.startswith(" ") else " " + p for p in parts if p]


def fast_engine(tok: tokenizers.Tokenizer) -> FastBPE | None:
    """A FastBPE giving exactly tok's ids, or None when tok is not a plain byte-level BPE (see
    why_not) or the engine is turned off."""
    if os.environ.get(ENGINE_ENV, "auto") == "tokenizers":
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    data = json.loads(tok.to_str())
    if why_not(data):
        return None
    ranks, to_id = _ranks(tok, data)
    specials = {a["content"]: len(to_id) + i for i, a in enumerate(data["added_tokens"])}
    to_id = np.array(to_id + [a["id"] for a in data["added_tokens"]], dtype=np.int64)
    encoding = tiktoken.Encoding("genforge-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    identity = np.array_equal(to_id, np.arange(len(to_id)))
    return FastBPE(encoding, None if identity else to_id, data["pre_tokenizer"]["add_prefix_space"], list(specials))


def why_not(data: dict) -> str | None:
    """Why a tokenizer.json (parsed) is not one FastBPE reproduces exactly, or None."""
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    if data.get("normalizer") is not None:
        return "it has a normalizer"
    if data.get("truncation") or data.get("padding"):
        return "it truncates or pads"
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        return "its pre-tokenizer is not ByteLevel with the GPT-2 regex"
    if model.get("type") != "BPE":
        return "its model is not BPE"
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback", "ignore_merges"):
        if model.get(key):
            return f"its BPE model sets {key}"
    alphabet = byte_decoder()
    vocab = model.get("vocab") or {}
    if not set(alphabet) <= set(vocab):
        return "its vocabulary lacks some of the 256 bytes"
    added = data.get("added_tokens") or []
    for a in added:
        if a.get("single_word") or a.get("lstrip") or a.get("rstrip"):
            return f"added token {a['content']!r} is matched with single_word/lstrip/rstrip"
    contents = [a["content"] for a in added]
    if any(a != b and b.startswith(a) for a in contents for b in contents):
        return "one added token is a prefix of another"
    made: set[str] = set()
    for merge in model.get("merges") or []:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a not in vocab or b not in vocab or a + b not in vocab:
            return f"merge {a!r} {b!r} names a token not in the vocabulary"
        if a + b in made:
            return f"token {a + b!r} is made by two merge rules"
        made.add(a + b)
    if any(set(t) - set(alphabet) for t in vocab):
        return "a token is not in the byte-level alphabet"
    return None


def _ranks(tok: tokenizers.Tokenizer, data: dict) -> tuple[dict[bytes, int], list[int]]:
    """tiktoken ranks: the 256 bytes first, then the merged tokens in rule order, leaving out those
    that are not self-consistent; and rank -> id."""
    alphabet, vocab = byte_decoder(), data["model"]["vocab"]
    ranks = {bytes([b]): b for b in range(256)}
    to_id = [vocab[c] for c in sorted(alphabet, key=alphabet.get)]
    model = tok.model
    for merge in data["model"]["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = a + b
        if [t.id for t in model.tokenize(token)] == [vocab[token]]:  # self-consistent (the module docstring)
            ranks[bytes(alphabet[c] for c in token)] = len(to_id)
            to_id.append(vocab[token])
    return ranks, to_id
