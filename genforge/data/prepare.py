"""`genforge prepare`: SOURCE -> tokenizer.json + train/val token shards + manifest.json.

Documents are separated by the end-of-text token. The validation split holds every tenth
document when there are at least ten (held-out documents), else the last `val_fraction` of each
document (as nanoGPT does for one file). Output goes to a temporary directory that replaces
`out` only when complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from genforge.data.readers import iter_documents
from genforge.data.shards import FORMAT, ShardWriter, token_dtype, write_manifest
from genforge.data.tokenizer import Tokenizer, train_tokenizer
from genforge.errors import DataError

DEFAULT_SHARD_TOKENS = 100_000_000


def prepare(source: str, tokenizer: str, out: str | Path, field: str | None = None, errors: str = "strict",
            val_fraction: float = 0.1, shard_tokens: int = DEFAULT_SHARD_TOKENS,
            tokenizer_file: str | Path | None = None) -> Path:
    """Tokenize source into `out`; return out. With tokenizer_file, reuse that tokenizer."""
    out = Path(out)
    docs = [(name, text) for name, text in iter_documents(source, field, errors) if text]
    if not docs:
        raise DataError(f"{source}: empty corpus (no text found)")
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: expected a fraction between 0 and 1")
    tok = Tokenizer.from_file(tokenizer_file) if tokenizer_file else train_tokenizer(tokenizer, (t for _, t in docs))
    dtype = token_dtype(tok.vocab_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
        chars = {"train": 0, "val": 0}
        for i, (name, text) in enumerate(docs):
            for split, part in _split(i, text, len(docs), val_fraction):
                try:
                    ids = tok.encode(part)
                except DataError as e:
                    raise DataError(f"{name}: {e}") from None
                writers[split].write(np.array(ids + [tok.eot_id], dtype=np.int64))
                chars[split] += len(part)
        tok.save(tmp / "tokenizer.json")
        manifest = {
            "format": FORMAT, "dtype": dtype.name, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
            "tokenizer": "tokenizer.json", "tokenizer_kind": tok.kind,
            "splits": {s: w.finish() for s, w in writers.items()},
            "characters": chars,
            "source": {"spec": source, "documents": len(docs), "field": field, "errors": errors},
        }
        write_manifest(tmp, manifest)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _split(i: int, text: str, n_docs: int, val_fraction: float):
    if n_docs >= 10:
        every = max(2, round(1 / val_fraction))
        yield ("val" if i % every == every - 1 else "train"), text
        return
    cut = int(len(text) * (1 - val_fraction))
    yield "train", text[:cut]
    if cut < len(text):
        yield "val", text[cut:]


def _replace_dir(new: Path, out: Path) -> None:
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists()):
            raise DataError(f"{out}: exists and is not a prepared data directory; refusing to overwrite it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
