"""Tokenizers of Hugging Face checkpoints: tokenizer.json read with `tokenizers`, plus what
tokenizer_config.json says (special tokens, chat template). Encoder inputs are padded here."""
from __future__ import annotations

import json
from pathlib import Path

import tokenizers
import torch

from genforge.errors import CheckpointError


def load_tokenizer(folder: Path) -> tokenizers.Tokenizer:
    """The folder's tokenizer.json (or, for older BERT checkpoints, one built from vocab.txt);
    CheckpointError naming the file when it is missing or bad."""
    file = Path(folder) / "tokenizer.json"
    if not file.is_file() and (Path(folder) / "vocab.txt").is_file():
        return _wordpiece(Path(folder))
    if not file.is_file():
        raise CheckpointError(f"{file}: tokenizer missing (genforge reads the fast-tokenizer file tokenizer.json; "
                              "save one with AutoTokenizer.from_pretrained(...).save_pretrained(DIR))")
    try:
        tok = tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise CheckpointError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
    tok.no_padding()  # padding and truncation are chosen per call (encode_batch), not by the file
    tok.no_truncation()
    return tok


def _wordpiece(folder: Path) -> tokenizers.Tokenizer:
    """BERT's WordPiece tokenizer from vocab.txt, lower-casing as tokenizer_config.json says."""
    from tokenizers.implementations import BertWordPieceTokenizer

    lower = tokenizer_config(folder).get("do_lower_case", True)
    try:
        return BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)._tokenizer
    except Exception as e:  # tokenizers raises bare Exceptions
        raise CheckpointError(f"{folder / 'vocab.txt'}: not a WordPiece vocabulary ({str(e).splitlines()[0]})") from None


def tokenizer_config(folder: Path) -> dict:
    """tokenizer_config.json of folder ({} when absent); special tokens given as dicts become strings."""
    file = Path(folder) / "tokenizer_config.json"
    if not file.is_file():
        return {}
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    for key in ("bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token"):
        if isinstance(raw.get(key), dict):
            raw[key] = raw[key].get("content")
    return raw


def encode_batch(tok: tokenizers.Tokenizer, texts: list[str], max_len: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (B, T) for an encoder: special tokens added ([CLS] ... [SEP]), rows
    truncated to max_len (keeping the final [SEP]) and right-padded with pad_id."""
    rows = []
    for enc in tok.encode_batch(texts, add_special_tokens=True):
        ids = enc.ids
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + ids[-1:]
        rows.append(ids)
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return idx, mask
