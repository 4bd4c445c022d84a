"""Readers that turn SOURCE specs into a lazy stream of records, one document each.

A SOURCE is a file, a folder (its supported files, recursively, sorted), a glob
('corpus/*.txt', 'data/**/*.jsonl.gz'), a Hugging Face `datasets` directory made by
`save_to_disk`, or `builtin:NAME`. Files:

- text (.txt .md .text, optionally .gz or .zst compressed): the whole file is one document; one
  larger than CHUNK_BYTES comes in records of about that size cut after a line break
  (`offset`/`last` say where each sits), so a 50 GB single-file corpus streams in bounded memory;
- .jsonl (optionally .gz/.zst): one document per line, the text under `field`;
- .parquet: one document per row, the text in column `field` (needs pyarrow).

Nothing reads more than one document ahead. Text must be UTF-8: a bad byte, a line that is not
JSON, or a missing field gives a bad record (text None, with a reason and a location: file and
byte offset or line) that the caller turns into an error or skips; errors="replace"
substitutes U+FFFD for bad bytes instead.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from genforge.data.builtin import builtin_documents
from genforge.data.encode import seam
from genforge.data.paths import inside
from genforge.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".text")
COMPRESSED = (".gz", ".zst")
FIELD_SUFFIXES = (".jsonl", ".parquet")
CHUNK_BYTES = 4 << 20  # a smaller file is one record (its tail goes to val); in-flight records cost ~3x this


class Record(NamedTuple):
    """One document, or a bad one: text is None and error says why."""

    file: str  # the source file, as the manifest lists it
    where: str  # where in it: "a.jsonl:12", "a.txt" ...
    text: str | None
    error: str | None = None
    nbytes: int = 0  # raw bytes consumed, for the progress bar
    offset: int = 0  # byte offset of this record's text in its document (text files come in pieces)
    last: bool = True  # the document ends with this record

    def bad_message(self) -> str:
        return f"{self.where}: {self.error}"


def expand_sources(specs: list[str], field: str | None = None) -> list[str]:
    """The files, dataset directories and builtin specs that specs name, in order.
    Raises DataError for a spec that matches nothing."""
    out: list[str] = []
    for spec in specs:
        if spec.startswith("builtin:"):
            out.append(spec)
            continue
        if any(c in spec for c in "*?["):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(f"{spec}: no files match this pattern")
            out += matches
            continue
        path = Path(spec)
        if not path.exists():
            raise DataError(f"{spec}: no such file or directory")
        if path.is_dir() and not is_hf_dataset(path):
            files = sorted(str(p) for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not files:
                raise DataError(f"{spec}: folder holds no text files "
                                f"({', '.join(TEXT_SUFFIXES + FIELD_SUFFIXES)}, optionally .gz or .zst)")
            out += files
        else:
            out.append(spec)
    for src in out:  # fail before any work, not after hours of it
        if not src.startswith("builtin:") and _kind(Path(src)) in ("jsonl", "parquet", "hf") and not field:
            raise DataError(f"{src}: a .jsonl, .parquet or datasets source needs --field NAME "
                            f"(the key or column holding the text)")
    return out


def iter_records(sources: list[str], field: str | None = None, errors: str = "strict") -> Iterator[Record]:
    """Records of every source from expand_sources, lazily, in order."""
    for src in sources:
        if src.startswith("builtin:"):
            for name, text in builtin_documents(src.removeprefix("builtin:")):
                yield Record(src, name, text, nbytes=len(text))
            continue
        path = Path(src)
        kind = _kind(path)
        if kind == "jsonl":
            yield from _jsonl_records(path, field, errors)
        elif kind == "parquet":
            yield from _parquet_records(path, field, errors)
        elif kind == "hf":
            yield from _hf_records(path, field, errors)
        else:
            yield from _text_records(path, errors)


def iter_documents(source: str, field: str | None = None, errors: str = "strict") -> Iterator[tuple[str, str]]:
    """Yield (name, text) for every document of one SOURCE spec; a bad record raises DataError."""
    parts: list[str] = []
    for r in iter_records(expand_sources([source], field), field, errors):
        if r.text is None:
            raise DataError(r.bad_message())
        parts.append(r.text)
        if r.last:
            yield r.where, "".join(parts)
            parts = []


def read_text(path: Path, errors: str = "strict") -> str:
    """One text file (optionally .gz/.zst) as a string; raises DataError for invalid UTF-8."""
    parts = []
    for rec in _text_records(Path(path), errors):
        if rec.text is None:
            raise DataError(rec.bad_message())
        parts.append(rec.text)
    return "".join(parts)


def is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def check_hf_paths(path: Path) -> None:
    """The split folders of a saved dataset's dataset_dict.json and the Arrow files of each
    state.json lie inside it (datasets itself would open whatever they name); DataError if not."""
    dicts = path / "dataset_dict.json"
    folders = [path]
    if dicts.is_file():
        splits = _json_file(dicts).get("splits")
        if not isinstance(splits, list):
            raise DataError(f"{dicts}: no list of 'splits'")
        folders = [inside(path, s, f"{dicts}: splits[{i}]") for i, s in enumerate(splits)]
    for folder in folders:
        state = folder / "state.json"
        if not state.is_file():
            continue
        files = _json_file(state).get("_data_files") or []
        if not isinstance(files, list):
            raise DataError(f"{state}: '_data_files' is not a list")
        for i, entry in enumerate(files):
            name = entry.get("filename") if isinstance(entry, dict) else None
            inside(folder, name, f"{state}: _data_files[{i}].filename")


def _json_file(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{path}: unreadable ({e.__class__.__name__})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def _kind(path: Path) -> str | None:
    if is_hf_dataset(path):
        return "hf"
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".jsonl":
        return "jsonl"
    if last == ".parquet" and path.suffix.lower() not in COMPRESSED:
        return "parquet"
    if last in TEXT_SUFFIXES:
        return "text"
    return None


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed on the fly for .gz and .zst."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{path}: reading .zst files needs the zstandard package: "
                            f"pip install 'genforge[data]' (or pip install zstandard)") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _offset_note(path: Path) -> str:
    return " of the decompressed text" if path.suffix.lower() in COMPRESSED else ""


def _text_records(path: Path, errors: str) -> Iterator[Record]:
    """A text file as records of about CHUNK_BYTES (one record unless it is larger), each cut where
    tokenizing the pieces gives the same tokens as tokenizing the whole (see seam); the last one
    has last=True."""
    start, data = 0, b""
    try:
        with open_binary(path) as f:
            data = f.read(CHUNK_BYTES)
            while more := f.read(CHUNK_BYTES):
                data += more
                cut = seam(data, len(data) - len(more))
                yield _text_piece(path, data[:cut], start, errors, last=False)
                start, data = start + cut, data[cut:]
    except (OSError, EOFError) as e:  # gzip/zstd raise these for a damaged file
        yield Record(str(path), str(path), None, f"cannot read ({e})", offset=start)
        return
    yield _text_piece(path, data, start, errors, last=True)


def _text_piece(path: Path, data: bytes, start: int, errors: str, last: bool) -> Record:
    n = len(data)
    try:
        return Record(str(path), str(path), data.decode("utf-8", errors=errors), nbytes=n, offset=start, last=last)
    except UnicodeDecodeError as e:
        return Record(str(path), str(path), None, f"invalid UTF-8 at byte offset {start + e.start}{_offset_note(path)} "
                      f"(fix the file or pass --errors replace)", n, offset=start, last=last)


def _jsonl_records(path: Path, field: str, errors: str) -> Iterator[Record]:
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                yield _jsonl_record(path, lineno, raw, field, errors)
    except (OSError, EOFError) as e:
        yield Record(str(path), str(path), None, f"cannot read ({e})")


def _jsonl_record(path: Path, lineno: int, raw: bytes, field: str, errors: str) -> Record:
    where, n = f"{path}:{lineno}", len(raw)
    if not raw.strip():
        return Record(str(path), where, "", nbytes=n)  # blank lines are empty documents, dropped
    try:
        line = raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        return Record(str(path), where, None, f"invalid UTF-8 at byte {e.start} of the line "
                      f"(fix the file or pass --errors replace)", n)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return Record(str(path), where, None, f"not valid JSON ({e.msg})", n)
    text = record.get(field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        return Record(str(path), where, None, f"field {field!r} missing or not a string", n)
    if "\\u" in line and (m := _LONE_SURROGATE.search(text)):  # a \ud800 escape: no character, no UTF-8
        if errors != "replace":
            return Record(str(path), where, None, f"field {field!r} has a lone surrogate \\u{ord(m.group()):04x} at "
                          f"character {m.start()} (fix the file or pass --errors replace)", n)
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return Record(str(path), where, text, nbytes=n)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _cell_record(file: str, where: str, value, field: str, errors: str) -> Record:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            return Record(file, where, None, f"invalid UTF-8 at byte {e.start} of column {field!r}", len(value))
    if not isinstance(value, str):
        return Record(file, where, None, f"column {field!r} is {type(value).__name__}, not a string")
    return Record(file, where, value, nbytes=len(value))


def _parquet_records(path: Path, field: str, errors: str) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading .parquet files needs pyarrow: "
                        f"pip install 'genforge[data]' (or pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid and OSError
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    if field not in pf.schema_arrow.names:
        raise DataError(f"{path}: no column {field!r} (has {', '.join(pf.schema_arrow.names)})")
    row = 0
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            yield _cell_record(str(path), f"{path}:row {row}", value, field, errors)
            row += 1


def _hf_records(path: Path, field: str, errors: str) -> Iterator[Record]:
    check_hf_paths(path)
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path}: reading a saved Hugging Face dataset needs the datasets package: "
                        f"pip install datasets") from None
    loaded = datasets.load_from_disk(str(path))  # memory-mapped Arrow files: rows are read on demand
    parts = ([(f"[{k}]", loaded[k]) for k in sorted(loaded)] if isinstance(loaded, datasets.DatasetDict)
             else [("", loaded)])
    for split, ds in parts:
        if field not in ds.column_names:
            raise DataError(f"{path}{split}: no column {field!r} (has {', '.join(ds.column_names)})")
        row = 0
        for batch in ds.select_columns([field]).iter(batch_size=1024):
            for value in batch[field]:
                yield _cell_record(str(path), f"{path}{split}:row {row}", value, field, errors)
                row += 1
