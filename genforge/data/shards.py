"""Token data on disk: flat binary shards of uint16/uint32 ids and a manifest.json.

    DIR/manifest.json   {"format": 1, "dtype", "vocab_size", "eot_id", "tokenizer",
                         "splits": {"train": [{"file", "dtype", "tokens", "sha256", "sources"}], "val": [...]},
                         "source"}
    DIR/tokenizer.json
    DIR/train-00000.bin ...

A shard is written as NAME.partial and renamed when complete; the manifest is written last,
atomically: a directory without one is not data. Shards are
read through np.memmap, so memory does not grow with the corpus.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from genforge.data.paths import inside
from genforge.errors import DataError

FORMAT = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


class ShardWriter:
    """Append token arrays to `{split}-NNNNN.bin` files of at most `shard_tokens` tokens each,
    noting which source files went into each."""

    def __init__(self, out: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.out, self.split, self.dtype, self.shard_tokens = out, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self._file = None

    def write(self, ids: np.ndarray, source: str | None = None) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while ids.size:
            if self._file is None:
                self._open()
            if source is not None and source not in self._sources:
                self._sources[source] = None
            room = self.shard_tokens - self._tokens
            part, ids = ids[:room], ids[room:]
            data = part.tobytes()
            self._file.write(data)
            self._hash.update(data)
            self._tokens += part.size
            if self._tokens == self.shard_tokens:
                self._close()

    def finish(self) -> list[dict]:
        if self._file is not None:
            self._close()
        return self.shards

    def _open(self) -> None:
        self._name = f"{self.split}-{len(self.shards):05d}.bin"
        self._file = open(self.out / f"{self._name}.partial", "wb")  # noqa: SIM115 (open until the shard is full)
        self._hash, self._tokens, self._sources = hashlib.sha256(), 0, {}

    def _close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.out / f"{self._name}.partial", self.out / self._name)
        self.shards.append({"file": self._name, "dtype": self.dtype.name, "tokens": self._tokens,
                            "sha256": self._hash.hexdigest(), "sources": list(self._sources)})


def write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / "manifest.json.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(manifest, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / "manifest.json")


def tokenizer_vocab_size(path: Path) -> int:
    """Vocabulary size of a tokenizer.json (model vocabulary plus added tokens), read as JSON:
    training never needs the `tokenizers` library itself in memory."""
    try:
        tok = json.loads(path.read_text())
        ids = set(tok["model"]["vocab"].values()) | {t["id"] for t in tok.get("added_tokens") or []}
    except FileNotFoundError:
        raise DataError(f"{path}: tokenizer file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a valid tokenizer.json ({e.__class__.__name__}: {e})") from None
    return len(ids)


class TokenData:
    """A prepared token directory, opened and checked: shard sizes match the manifest, the
    tokenizer matches the vocabulary, and every id is below vocab_size."""

    def __init__(self, path: str | Path, verify: bool = False):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(f"{self.path}: no manifest.json (not a prepared data directory; run `genforge prepare`)")
        try:
            self.manifest = m = json.loads(manifest_path.read_text())
            self.vocab_size, self.dtype = int(m["vocab_size"]), np.dtype(m["dtype"])
            self.eot_id = m.get("eot_id")
            splits = m["splits"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{manifest_path}: malformed manifest ({e.__class__.__name__}: {e})") from None
        if self.dtype not in (np.uint16, np.uint32):
            raise DataError(f"{manifest_path}: dtype {self.dtype} is not uint16 or uint32")
        self.tokenizer_path = None
        if m.get("tokenizer"):
            inside(self.path, m["tokenizer"], f"{manifest_path}: tokenizer")
            self.tokenizer_path = self.path / m["tokenizer"]
        if self.tokenizer_path is not None:
            tok_vocab = tokenizer_vocab_size(self.tokenizer_path)
            if tok_vocab != self.vocab_size:
                raise DataError(f"{self.tokenizer_path}: tokenizer has {tok_vocab} tokens but "
                                f"{manifest_path} says vocab_size={self.vocab_size}")
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise DataError(f"{manifest_path}: malformed manifest (splits must map each split to a list of shards)")
        self.splits = {name: [self._open(s, verify, f"{manifest_path}: splits.{name}[{i}].file")
                              for i, s in enumerate(shards)] for name, shards in splits.items()}

    def _open(self, shard: dict, verify: bool, what: str) -> np.memmap:
        if not isinstance(shard, dict) or not isinstance(shard.get("tokens"), int):
            raise DataError(f"{what.removesuffix('.file')}: malformed shard entry (expected file, tokens, sha256)")
        inside(self.path, shard.get("file"), what)
        f = self.path / shard["file"]
        if not f.is_file():
            raise DataError(f"{f}: shard listed in manifest.json is missing")
        expected = shard["tokens"] * self.dtype.itemsize
        if f.stat().st_size != expected:
            raise DataError(f"{f}: {f.stat().st_size} bytes, manifest says {shard['tokens']} {self.dtype} "
                            f"tokens ({expected} bytes); the shard is truncated or from another run")
        if shard["tokens"] == 0:
            return np.zeros(0, dtype=self.dtype)
        self._check(f, shard, verify)
        data = np.memmap(f, dtype=self.dtype, mode="r")
        return data

    def _check(self, f: Path, shard: dict, verify: bool) -> None:
        """Every id below vocab_size (and the sha256 when verify), read in chunks through plain
        reads: scanning through the memmap would keep every page of the shard resident."""
        digest = hashlib.sha256() if verify else None
        chunk_bytes = (1 << 22) * self.dtype.itemsize
        with open(f, "rb") as fh:
            offset = 0
            while raw := fh.read(chunk_bytes):
                if digest is not None:
                    digest.update(raw)
                ids = np.frombuffer(raw, dtype=self.dtype)
                if ids.max() >= self.vocab_size:
                    bad = int(np.argmax(ids >= self.vocab_size))
                    raise DataError(f"{f}: token id {int(ids[bad])} >= vocab_size {self.vocab_size} "
                                    f"at byte offset {offset + bad * self.dtype.itemsize}")
                offset += len(raw)
        if digest is not None and digest.hexdigest() != shard.get("sha256"):
            raise DataError(f"{f}: sha256 does not match manifest.json (the file changed)")

    def tokens(self, split: str) -> int:
        return sum(len(s) for s in self.split(split))

    def split(self, name: str) -> list[np.ndarray]:
        if name not in self.splits:
            raise DataError(f"{self.path}: no {name!r} split (has {', '.join(self.splits)})")
        return self.splits[name]


def replace_prepared_dir(new: Path, out: Path) -> None:
    """Put the finished directory `new` in place of `out`; a directory that is not prepared data
    (no manifest.json, not empty) is never replaced."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists()):
            raise DataError(f"{out}: exists and is not a prepared data directory; refusing to overwrite it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
