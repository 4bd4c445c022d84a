"""Records of a small .jsonl file (fine-tuning, preference and labelled data), one per line."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from genforge.errors import DataError


def jsonl_records(path: Path) -> Iterator[tuple[str, object]]:
    """(where, record) for each non-blank line, where = "file:line"; DataError naming the line
    for one that is not JSON. The record is whatever the line holds: callers check its shape."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            yield f"{path}:{n}", record
