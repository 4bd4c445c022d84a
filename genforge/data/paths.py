"""Paths that a data directory's own files name (a manifest's shards and tokenizer, a metadata
file's images, a checkpoint's file list) must stay inside that directory.

A manifest is input like any other: `"file": "/etc/passwd"`, `"../../secret"` or a shard that is a
symlink to somewhere else would otherwise be read as training data, or its size printed in an
error. `inside` resolves the name (symlinks included) and refuses one that lands outside, with a
message that says nothing about the target: not whether it exists, nor its size or content.
"""
from __future__ import annotations

from pathlib import Path

from genforge.errors import DataError, GenforgeError


def inside(root: str | Path, name: object, what: str, error: type[GenforgeError] = DataError) -> Path:
    """root / name, resolved, when it lies inside root (after following symlinks); `error` (a
    DataError unless given) naming `what` (the file and entry that holds the name) otherwise,
    and for a name that is not a non-empty string."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise error(f"{what}: expected a file name inside {root}, got {name!r}")
    try:
        base = Path(root).resolve()
        target = (base / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        target = base = None
    if target is None or target == base or not target.is_relative_to(base):
        raise error(f"{what}: {name!r} is not a file inside {root}; "
                    "the files it names must lie inside that directory")
    return target
