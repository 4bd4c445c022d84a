"""Tokenizers on the `tokenizers` library, saved as one tokenizer.json.

- char: every character of the corpus is a token (a BPE model with no merges, so the file loads
  in `tokenizers` and `transformers` like any other).
- bpe:VOCAB: byte-level BPE (GPT-2 style) trained on the corpus; any text encodes.
- words: every word of the corpus (lower-cased; punctuation marks are words) is a token: the
  caption vocabulary of text-to-image models, where a prompt word the model never saw is an error,
  not a guess.
All three end the vocabulary with the end-of-text token `<|endoftext|>` that separates documents.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from genforge.data.fast_bpe import FastBPE, fast_engine
from genforge.errors import DataError

EOT = "<|endoftext|>"


class Tokenizer:
    """A `tokenizers.Tokenizer` with the few things genforge needs on top."""

    def __init__(self, tok: tokenizers.Tokenizer, eos: str | None = None, bos: str | None = None):
        self.tok = tok
        eot = tok.token_to_id(EOT)
        if eot is None and eos is not None:  # an imported tokenizer ends documents with its own token
            eot = tok.token_to_id(eos)
        self.eot_id = eot
        # what the tokenizer's own config puts before a text (Llama's <s>), as transformers'
        # tokenizer(text) does: tokenizer.json's post-processor decides (transformers 5 reads only
        # it); a file without one adds `bos` (tokenizer_config.json's add_bos_token, from which
        # transformers 4 built that post-processor; "" for none). [] for genforge's own tokenizers.
        self.bos_ids = _bos_ids(tok, bos)
        model = tok.to_str()
        self.kind = "char" if _is_char(model) else "words" if _is_words(model) else "bpe"
        self._chars = {t for t in tok.get_vocab() if t != EOT} if self.kind in ("char", "words") else None
        self._fast: FastBPE | bool | None = False  # built on first use (False: not yet)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        try:
            return cls(tokenizers.Tokenizer.from_file(str(path)), _eos_token(Path(path)), _bos_token(Path(path)))
        except FileNotFoundError:
            raise DataError(f"{path}: tokenizer file not found") from None
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise DataError(f"{path}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of text; raises DataError for a character a char tokenizer does not know."""
        problem = self.unknown_char(text)
        if problem:
            raise DataError(problem)
        fast = self.fast
        return fast.encode(text).tolist() if fast else self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no vocabulary check: call unknown_char first for char)."""
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def encode_arrays(self, texts: list[str], dtype: np.dtype) -> list[np.ndarray]:
        """Token ids of each text as arrays; by tiktoken when that gives the same ids (fast_bpe.py)."""
        fast = self.fast
        if fast:
            return [fast.encode(t).astype(dtype, copy=False) for t in texts]
        return [np.array(ids, dtype=dtype) for ids in self.encode_batch(texts)]

    @property
    def fast(self) -> FastBPE | None:
        """The tiktoken engine for this tokenizer, or None where it would not give the same ids."""
        if self._fast is False:
            self._fast = fast_engine(self.tok) if self.kind == "bpe" else None
        return self._fast

    def unknown_char(self, text: str) -> str | None:
        """Why a char (words) tokenizer cannot encode text (its first unknown character (word)), or None."""
        if self._chars is None:
            return None
        if self.kind == "words":
            words = [w for w, _ in self.tok.pre_tokenizer.pre_tokenize_str(self.tok.normalizer.normalize_str(text))]
            unknown = [w for w in words if w not in self._chars]
            if not unknown:
                return None
            return (f"word {unknown[0]!r} is not in the model's vocabulary of {len(self._chars)} words "
                    f"(e.g. {', '.join(sorted(self._chars)[:8])})")
        unknown = set(text.replace(EOT, "")) - self._chars
        if not unknown:
            return None
        c = min(unknown, key=text.index)
        return f"character {c!r} (at offset {text.index(c)}) is not in the char tokenizer's vocabulary"

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))


def _is_char(spec: str) -> bool:
    """genforge's char tokenizer: a BPE model without merges whose decoder is Fuse alone (a
    SentencePiece-converted tokenizer, e.g. Llama's, also fuses, inside a Sequence, with merges)."""
    import json

    data = json.loads(spec)
    return (data.get("decoder") or {}).get("type") == "Fuse" and not (data.get("model") or {}).get("merges")


def _is_words(spec: str) -> bool:
    import json

    return (json.loads(spec).get("model") or {}).get("type") == "WordLevel"


def _eos_token(path: Path) -> str | None:
    """The end-of-sequence token that a Hugging Face tokenizer_config.json beside path names."""
    import json

    side = path.with_name("tokenizer_config.json")
    try:
        eos = json.loads(side.read_text()).get("eos_token") if side.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return eos.get("content") if isinstance(eos, dict) else eos


def _bos_token(path: Path) -> str | None:
    """The token that tokenizer_config.json's add_bos_token adds ("" when it says false), or None
    when it says nothing."""
    import json

    side = path.with_name("tokenizer_config.json")
    try:
        config = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(config.get("add_bos_token"), bool):
        return None
    bos = config.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    return (bos or "") if config["add_bos_token"] else ""


def _bos_ids(tok: tokenizers.Tokenizer, bos: str | None) -> list[int]:
    if tok.post_processor is None:
        bos_id = tok.token_to_id(bos) if bos else None
        return [] if bos_id is None else [bos_id]
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    for k in range(len(full) - len(plain) + 1):  # the special ids before the text's own
        if full[k:k + len(plain)] == plain:
            return full[:k]
    return []


def train_tokenizer(spec: str, texts: Iterable[str]) -> Tokenizer:
    """Build a tokenizer from `char` or `bpe:VOCAB` on the given texts."""
    kind, _, size = spec.partition(":")
    if kind == "char" and not size:
        seen: set[str] = set()
        for t in texts:  # a stream: one text in memory at a time
            seen.update(t)
        chars = sorted(seen)
        vocab = {c: i for i, c in enumerate(chars)}
        vocab[EOT] = len(vocab)
        tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens([EOT])
        return Tokenizer(tok)
    if kind == "words" and not size:
        normalizer, pre = normalizers.Lowercase(), pre_tokenizers.Whitespace()
        seen = set()
        for t in texts:
            seen.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
        vocab = {w: i for i, w in enumerate(sorted(seen))}
        vocab[EOT] = len(vocab)
        tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=EOT))
        tok.normalizer, tok.pre_tokenizer = normalizer, pre
        tok.add_special_tokens([EOT])
        return Tokenizer(tok)
    if kind == "bpe" and size.isdigit() and int(size) > 256:
        tok = tokenizers.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        # the trainer puts special tokens first; EOT is added after training so that it ends the
        # vocabulary, as in GPT-2 and the char tokenizer
        trainer = trainers.BpeTrainer(vocab_size=int(size) - 1, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        tok.add_special_tokens([EOT])
        return Tokenizer(tok)
    raise DataError(f"--tokenizer {spec!r}: expected char, words, or bpe:VOCAB with VOCAB > 256 (e.g. bpe:8192)")


def prompt_ids(tokenizer, prompt: str, bos: bool = True) -> list[int]:
    """Token ids of prompt, after the tokenizer's BOS where its config adds one (as transformers'
    tokenizer(prompt) does); bos=False: the text's own tokens only (a rendered chat template, which
    writes its BOS itself, as apply_chat_template). An empty prompt without BOS starts from the
    end-of-text token (a fresh document)."""
    start = list(getattr(tokenizer, "bos_ids", ())) if bos else []
    return start + tokenizer.encode(prompt) or [tokenizer.eot_id]
