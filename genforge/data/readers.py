"""Readers that turn a SOURCE into (name, text) documents.

SOURCE: a .txt/.md file, a folder of them (recursively, sorted), a .jsonl file with a text
`field`, or `builtin:NAME`. Text must be UTF-8: by default a bad byte is an error naming the file
and byte offset; errors="replace" substitutes U+FFFD instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from genforge.data.builtin import builtin_documents
from genforge.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".text")


def iter_documents(source: str, field: str | None = None, errors: str = "strict") -> Iterator[tuple[str, str]]:
    """Yield (name, text) for every document in source."""
    if source.startswith("builtin:"):
        yield from builtin_documents(source.removeprefix("builtin:"))
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{source}: folder holds no text files ({', '.join(TEXT_SUFFIXES)})")
        for f in files:
            yield str(f), read_text(f, errors)
    elif path.suffix == ".jsonl":
        if not field:
            raise DataError(f"{source}: a .jsonl source needs --field NAME (the key holding the text)")
        yield from _jsonl_documents(path, field, errors)
    else:
        yield str(path), read_text(path, errors)


def read_text(path: Path, errors: str = "strict") -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 at byte offset {e.start} "
                        f"(fix the file or pass --errors replace)") from None


def _jsonl_documents(path: Path, field: str, errors: str) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8", errors=errors)
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line "
                                f"(fix the file or pass --errors replace)") from None
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{path}:{lineno}: field {field!r} missing or not a string")
            yield f"{path}:{lineno}", text
