"""`genforge prepare`: SOURCE... -> tokenizer.json + train/val token shards + manifest.json.

A streaming pipeline: documents are read lazily (readers.py), tokenized in `workers` processes
(encode.py) and written in input order to shards of at most `shard_tokens` tokens, so memory does
not grow with the corpus and the output does not depend on the number of workers.

Passes: the tokenizer is trained first, on the whole stream or on its first `tokenizer_sample`
bytes of text (the char tokenizer then knows only the sample's characters: a document with
another character is a bad record); then the stream is read again and tokenized.

Documents are separated by the end-of-text token. The validation split holds every tenth
document when there are at least ten (held-out documents), else the last `val_fraction` of each
document (as nanoGPT does for one file). Deciding needs only the first ten documents, which are
held back until the tenth arrives.

Bad records (invalid UTF-8, a line that is not JSON, a missing field, an unknown character) stop
preparation with a DataError naming file and line or byte offset; with on_bad_record="skip" each
is logged to stderr and skipped, until more than `max_bad_ratio` of the records are bad.

Output goes to a temporary directory `.OUT.tmp-PID-*` (shards as NAME.partial until complete)
that replaces `out` only when complete; the manifest, written last, is what makes it data.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genforge.data.cda import Swapper
from genforge.data.encode import encode_stream, split_text
from genforge.data.readers import Record, expand_sources, iter_records
from genforge.data.shards import FORMAT, ShardWriter, replace_prepared_dir, token_dtype, write_manifest
from genforge.data.tokenizer import Tokenizer, train_tokenizer
from genforge.errors import DataError

DEFAULT_SHARD_TOKENS = 100_000_000
# ratios are only judged once this many records were seen (one bad record of three is no trend),
# and always at the end
MIN_RECORDS_FOR_RATIO = 100


def prepare(source: str | list[str], tokenizer: str, out: str | Path, field: str | None = None,
            errors: str = "strict", val_fraction: float = 0.1, shard_tokens: int = DEFAULT_SHARD_TOKENS,
            tokenizer_file: str | Path | None = None, *, workers: int = 1, tokenizer_sample: int | None = None,
            on_bad_record: str = "error", max_bad_ratio: float = 0.01, progress: bool = False,
            cda: list[tuple[str, str]] | None = None, cda_mode: str = "augment") -> Path:
    """Tokenize the source(s) into `out`; return out. With tokenizer_file, reuse that tokenizer.
    cda: word pairs of counterfactual data augmentation (data/cda.py) applied to the train split
    only (validation stays the data as it is): augment adds each train document's counterfactual
    after it, replace writes the counterfactual instead.
    Raises DataError for a missing or empty source, bad records (see module docstring), bad options."""
    out = Path(out)
    specs = [source] if isinstance(source, str) else list(source)
    if len(specs) == 1 and specs[0].startswith("jsb:"):  # JSB Chorales: frames in their own encoding (data/jsb.py)
        from genforge.data.jsb import prepare_jsb

        return prepare_jsb(specs[0], out)
    _check_options(specs, val_fraction, shard_tokens, workers, tokenizer_sample, on_bad_record, max_bad_ratio)
    _remove_stale_temporaries(out)
    sources = expand_sources(specs, field)
    bad = BadRecords(on_bad_record, max_bad_ratio)
    swapper = None
    if cda:
        if cda_mode not in ("augment", "replace"):
            raise DataError(f"cda_mode={cda_mode!r}: expected augment or replace")
        swapper = Swapper(cda)
    if tokenizer_file:
        tok = Tokenizer.from_file(tokenizer_file)
    else:
        records = iter_records(sources, field, errors)
        if swapper is not None:  # the tokenizer learns the counterfactuals' characters too
            records = _with_counterfactuals(records, swapper)
        tok = _train(tokenizer, records, specs, tokenizer_sample, on_bad_record, progress)
    if swapper is not None:
        swapper.count = 0  # the manifest counts the swaps written
    dtype = token_dtype(tok.vocab_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
        docs = _good_records(iter_records(sources, field, errors), bad)
        split_docs = _assign_splits(docs, val_fraction)
        if swapper is not None:
            split_docs = _cda_train(split_docs, swapper, cda_mode)
        chars, written = _write(tok, split_docs, writers, bad, workers, progress)
        bad.finish()
        if not any(chars.values()):
            skipped = f" ({bad.bad} bad records skipped)" if bad.bad else ""
            if bad.bad and bad.bad == bad.seen:
                raise DataError(f"{' '.join(specs)}: every record is bad ({bad.bad} skipped under --on-bad-record "
                                f"skip, no text left); the first: {bad.first}")
            raise DataError(f"{' '.join(specs)}: empty corpus (no text found){skipped}")
        tok.save(tmp / "tokenizer.json")
        manifest = {
            "format": FORMAT, "dtype": dtype.name, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
            "tokenizer": "tokenizer.json", "tokenizer_kind": tok.kind,
            "splits": {s: w.finish() for s, w in writers.items()},
            "characters": chars,
            "source": {"spec": specs[0] if len(specs) == 1 else specs, "files": len(sources),
                       "documents": written, "skipped": bad.bad, "field": field, "errors": errors,
                       "tokenizer_sample": tokenizer_sample},
        }
        if swapper is not None:
            manifest["cda"] = {"mode": cda_mode, "pairs": [list(p) for p in cda], "swaps": swapper.count}
        write_manifest(tmp, manifest)
        replace_prepared_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _train(spec: str, records: Iterable[Record], specs: list[str], sample: int | None, on_bad_record: str,
           progress: bool) -> Tokenizer:
    """The tokenizer pass: train on the stream's texts, or on its first `sample` bytes."""
    bad: list[str] = []
    texts = _good_texts(records, on_bad_record, bad)
    if sample:
        texts = _first_bytes(texts, sample)
    texts = (part for text in texts for part in split_text(text))  # the trainer too holds a text's every token
    counted = _Counted(_with_bar(texts, "tokenizer pass", progress))
    tok = train_tokenizer(spec, counted)
    if not counted.n and bad:
        raise DataError(f"{' '.join(specs)}: every record is bad ({len(bad)} skipped under --on-bad-record skip, "
                        f"no text left); the first: {bad[0]}")
    if not counted.n:
        raise DataError(f"{' '.join(specs)}: empty corpus (no text found)")
    return tok


def _write(tok: Tokenizer, docs: Iterable[tuple[Record, list]], writers: dict[str, ShardWriter], bad: BadRecords,
           workers: int, progress: bool) -> tuple[dict[str, int], int]:
    """The encoding pass: tokenize (record, pieces) in workers, write in order; return the
    characters per split and the number of documents written. A document read in several records
    gets its end-of-text once, at its end, or wherever a split's text stops being contiguous."""
    chars, written, tokens = {"train": 0, "val": 0}, 0, 0
    eot = np.array([tok.eot_id], dtype=next(iter(writers.values())).dtype)
    seams: dict[str, tuple[str, int]] = {}  # split -> (file, byte offset) its open document continues at
    items = ((rec, rec.text, pieces) for rec, pieces in docs)
    start = shown = time.perf_counter()
    with tqdm(desc="prepare", unit="B", unit_scale=True, disable=None if progress else True, file=sys.stderr) as bar:
        for rec, pieces, result in encode_stream(tok, items, workers, eot.dtype):
            if isinstance(result, str):
                bad.skip(rec.where, result, seen=True)
            else:
                written += rec.last
                for (split, a, b), ids in zip(pieces, result):
                    seam = seams.pop(split, None)
                    if seam is not None and (seam != (rec.file, rec.offset) or a != 0):
                        writers[split].write(eot, seam[0])
                    if not rec.last and b == len(rec.text):  # the document goes on in the next record
                        ids = ids[:-1]
                        seams[split] = (rec.file, rec.offset + rec.nbytes)
                    writers[split].write(ids, rec.file)
                    chars[split] += b - a
                    tokens += ids.size
            bar.update(rec.nbytes)
            if time.perf_counter() - shown > 1:
                shown = time.perf_counter()
                bar.set_postfix_str(f"{tokens / (shown - start):,.0f} tokens/s", refresh=False)
    for split, (file, _) in seams.items():
        writers[split].write(eot, file)
    return chars, written


def _with_bar(texts: Iterable[str], desc: str, progress: bool) -> Iterator[str]:
    with tqdm(desc=desc, unit="B", unit_scale=True, disable=None if progress else True, file=sys.stderr) as bar:
        for text in texts:
            yield text
            bar.update(len(text))  # characters: close enough to bytes for a rate


class BadRecords:
    """Counts records and applies the --on-bad-record policy to bad ones."""

    def __init__(self, mode: str, max_ratio: float):
        self.mode, self.max_ratio, self.seen, self.bad = mode, max_ratio, 0, 0
        self.first = ""  # the first bad record's message

    def good(self) -> None:
        self.seen += 1

    def skip(self, where: str, reason: str, seen: bool = False) -> None:
        """Raise, or log and count a bad record (seen: it was counted as good when read)."""
        if self.mode == "error":
            raise DataError(f"{where}: {reason} (or pass --on-bad-record skip)")
        self.seen += not seen
        self.bad += 1
        self.first = self.first or f"{where}: {reason}"
        tqdm.write(f"genforge prepare: skipped {where}: {reason}", file=sys.stderr)
        if self.seen >= MIN_RECORDS_FOR_RATIO:
            self.finish()

    def finish(self) -> None:
        if self.seen and self.bad == self.seen:
            raise DataError(f"every record read is bad ({self.bad} of {self.seen}, skipped under --on-bad-record skip); "
                            f"the first: {self.first}")
        if self.seen and self.bad > self.max_ratio * self.seen:
            raise DataError(f"{self.bad} of {self.seen} records were bad ({self.bad / self.seen:.1%}), more than "
                            f"--max-bad-ratio {self.max_ratio}; fix the data or raise the ratio")


class _Counted:
    """Pass-through iterator that counts its items."""

    def __init__(self, items: Iterable):
        self.items, self.n = iter(items), 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item


def _good_records(records: Iterable[Record], bad: BadRecords) -> Iterator[Record]:
    for rec in records:
        if rec.text is None:
            bad.skip(rec.where, rec.error)
        elif rec.text:
            bad.good()
            yield rec


def _good_texts(records: Iterable[Record], on_bad_record: str, bad: list[str]) -> Iterator[str]:
    """Texts for the tokenizer pass. Bad records stop it in error mode; in skip mode they are
    dropped quietly here (their messages appended to bad) and logged and counted by the encoding pass."""
    for rec in records:
        if rec.text is None and on_bad_record == "error":
            raise DataError(f"{rec.bad_message()} (or pass --on-bad-record skip)")
        if rec.text is None:
            bad.append(rec.bad_message())
        elif rec.text:
            yield rec.text


def _first_bytes(texts: Iterable[str], limit: int) -> Iterator[str]:
    """The first `limit` bytes (UTF-8) of the stream of texts; the last one cut to fit."""
    left = limit
    for text in texts:
        data = text.encode("utf-8")
        if len(data) >= left:
            yield data[:left].decode("utf-8", errors="ignore")
            return
        left -= len(data)
        yield text


def _with_counterfactuals(records: Iterable[Record], swapper: Swapper) -> Iterator[Record]:
    """Each record, then its counterfactual where one differs (the tokenizer pass)."""
    for rec in records:
        yield rec
        if rec.text is not None and (swapped := swapper.swap(rec.text)) != rec.text:
            yield rec._replace(text=swapped, nbytes=0)


def _cda_train(docs: Iterable[tuple[Record, list]], swapper: Swapper, mode: str) -> Iterator[tuple[Record, list]]:
    """CDA on the train pieces of (record, pieces). augment: the record as it is, then a document
    of its train text's counterfactual (its own document: the original's pieces of a large file
    then end where the copy starts); replace: the record with its train pieces swapped."""
    for rec, pieces in docs:
        if mode == "augment":
            yield rec, pieces
            train = "".join(rec.text[a:b] for split, a, b in pieces if split == "train")
            if train and (swapped := swapper.swap(train)) != train:
                copy = rec._replace(file=f"{rec.file} (counterfactual)", where=f"{rec.where} (counterfactual)",
                                    text=swapped, nbytes=0, offset=0, last=True)
                yield copy, [("train", 0, len(swapped))]
            continue
        text, new = "", []
        for split, a, b in pieces:
            part = swapper.swap(rec.text[a:b]) if split == "train" else rec.text[a:b]
            new.append((split, len(text), len(text) + len(part)))
            text += part
        yield rec._replace(text=text), new


def _assign_splits(docs: Iterable[Record], val_fraction: float) -> Iterator[tuple[Record, list]]:
    """(record, pieces) with pieces [(split, start, end)]: every tenth document to val if there are
    at least ten, else each document's tail. Only the first ten are held back to decide."""
    docs = iter(docs)
    head = []
    for rec in docs:
        head.append(rec)
        if len(head) == 10:
            break
    if len(head) < 10:
        for rec in head:
            cut = int(len(rec.text) * (1 - val_fraction))
            yield rec, [("train", 0, cut)] + ([("val", cut, len(rec.text))] if cut < len(rec.text) else [])
        return
    every = max(2, round(1 / val_fraction))
    for i, rec in enumerate(chain(head, docs)):
        yield rec, [("val" if i % every == every - 1 else "train", 0, len(rec.text))]


def _check_options(specs, val_fraction, shard_tokens, workers, tokenizer_sample, on_bad_record, max_bad_ratio):
    if not specs:
        raise DataError("no SOURCE given")
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: expected a fraction between 0 and 1")
    if shard_tokens < 1:
        raise DataError(f"--shard-tokens {shard_tokens}: must be >= 1")
    if workers < 1:
        raise DataError(f"--workers {workers}: must be >= 1")
    if tokenizer_sample is not None and tokenizer_sample < 1:
        raise DataError(f"--tokenizer-sample {tokenizer_sample}: must be >= 1 byte")
    if on_bad_record not in ("error", "skip"):
        raise DataError(f"--on-bad-record {on_bad_record!r}: expected error or skip")
    if not 0 <= max_bad_ratio <= 1:
        raise DataError(f"--max-bad-ratio {max_bad_ratio}: expected a fraction between 0 and 1")


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'100MB' -> 100_000_000, '1GiB' -> 1_073_741_824, '5000' -> 5000; raises DataError."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise DataError(f"{text!r}: expected a size like 5000, 100MB or 1GiB")
    base = 1024 if "i" in text.lower() else 1000
    return int(float(m.group(1)) * base ** " kmgt".index(m.group(2).lower() or " "))


def _remove_stale_temporaries(out: Path) -> None:
    """Clean up after runs that were killed (kill -9, power loss): remove their temporary
    directories, and put back a previous output a run had moved aside to replace it."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*-*"):
        pid = tmp.name.removeprefix(f".{out.name}.tmp-").split("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and not (tmp / "manifest.json").exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in out.parent.glob(f".{out.name}.old-*"):
        pid = old.name.removeprefix(f".{out.name}.old-")
        if pid.isdigit() and not _alive(int(pid)):
            if out.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


