"""Records of a small .jsonl file (fine-tuning, preference and labelled data), one per line."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from genforge.errors import DataError


def jsonl_records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record) for each non-blank line, where = "file:line"; DataError naming the line
    for one that is not UTF-8 or not JSON, or for a file that cannot be read. The record is
    whatever the line holds: callers check its shape."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; bytes, so a bad byte is named by its line)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: invalid UTF-8 at byte {e.start} of the line") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            yield f"{path}:{n}", record
