"""Counterfactual data augmentation (CDA) for text: two-sided word swaps from a word-pair list.

Lu et al. 2018, "Gender Bias in Neural Natural Language Processing" (CDA); Webster et al. 2020
("two-sided" CDA: every pair is swapped both ways, he <-> she, so the augmented corpus holds each
context with both words). `Swapper(pairs)` rewrites a text:

- whole words only, matched without regard to case; the replacement takes the case pattern of
  the word it replaces (he -> she, He -> She, HE -> SHE);
- possessives and contractions follow the word: "nurse's" swaps "nurse" and keeps "'s"
  ("he's" -> "she's"); a pair can name the possessive forms themselves (his <-> her);
- a word that two pairs map (her: him or his) takes the first pair's mapping (a word list
  cannot tell the object "her" from the possessive one; list the pair you want first);
- every character outside a swapped word is kept as it was: a text with no listed word comes
  back byte-identical.

Pair files: one pair per line, "a<TAB>b" or "a b" (lines starting with # are comments), jsonl
{"more": a, "less": b} lines, or a bias spec YAML (its `swaps` key, genforge/eval/bias_spec.py).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError, DataError


class Swapper:
    """Two-sided swaps of whole words; `swap(text)` -> text, `count` swaps made so far."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.mapping: dict[str, str] = {}
        for a, b in pairs:
            a, b = a.strip(), b.strip()
            if not a or not b or a.lower() == b.lower():
                raise ConfigError(f"swap pair ({a!r}, {b!r}): needs two different non-empty words")
            self.mapping.setdefault(a.lower(), b)
            self.mapping.setdefault(b.lower(), a)
        if not self.mapping:
            raise ConfigError("swaps: empty list of word pairs")
        words = sorted(self.mapping, key=len, reverse=True)  # "heroine" before "hero" where both are listed
        self._pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
        self.count = 0

    def swap(self, text: str) -> str:
        """text with each listed word replaced by its partner, in that word's case pattern."""
        return self._pattern.sub(self._replace, text)

    def _replace(self, m: re.Match) -> str:
        self.count += 1
        word = m.group(0)
        return match_case(self.mapping[word.lower()], word)


def match_case(new: str, old: str) -> str:
    """new written in old's case pattern: all capitals, a capital first letter, or as listed."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    if old.islower():
        return new.lower()
    return new


def counterfactuals(texts: Iterable[str], swapper: Swapper, mode: str = "augment") -> Iterator[str]:
    """augment: each text then its counterfactual (when one differs); replace: the counterfactual only."""
    for text in texts:
        swapped = swapper.swap(text)
        if mode == "replace":
            yield swapped
        else:
            yield text
            if swapped != text:
                yield swapped


def load_swaps(source: str | Path | list) -> list[tuple[str, str]]:
    """Word pairs from an inline list, a pair file or a bias spec YAML's `swaps` key."""
    if isinstance(source, list):
        return read_pairs(source, "swaps")
    path = Path(source)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        if not path.is_file():
            raise DataError(f"{path}: no such file")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("swaps") is None:
            raise ConfigError(f"{path}: no 'swaps' key (a list of word pairs, or a pair file)")
        return read_pairs(raw["swaps"], f"{path}: swaps", path.parent)
    return read_pairs(path, "swaps")


def read_pairs(raw: Any, where: str, base: Path | None = None) -> list[tuple[str, str]]:
    """Pairs of strings: an inline list of [a, b], or a file (relative to base) of jsonl
    {"more": a, "less": b} records (also sent_more/sent_less, a/b), or of lines "a<TAB>b" (a
    pair of single words may use a space: "he she"). ConfigError for a bad inline list, DataError
    naming file:line for a line that is not a pair."""
    if isinstance(raw, list):
        out = []
        for i, p in enumerate(raw):
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) and s.strip() for s in p)):
                raise ConfigError(f"{where}[{i}]: expected a pair of non-empty strings, got {p!r}")
            out.append((p[0], p[1]))
        if not out:
            raise ConfigError(f"{where}: empty list of pairs")
        return out
    if not isinstance(raw, (str, Path)):
        raise ConfigError(f"{where}: expected a list of pairs or a file name, got {raw!r}")
    path = Path(raw) if base is None or Path(raw).is_absolute() else base / raw
    if not path.is_file():
        raise DataError(f"{where}: {path}: no such file")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append(_pair_line(line, f"{path}:{n}"))
    if not out:
        raise DataError(f"{path}: no pairs")
    return out


def _pair_line(line: str, where: str) -> tuple[str, str]:
    if line.lstrip().startswith("{"):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from None
        for a, b in (("more", "less"), ("sent_more", "sent_less"), ("a", "b")):
            if isinstance(rec.get(a), str) and isinstance(rec.get(b), str) and rec[a].strip() and rec[b].strip():
                return rec[a], rec[b]
        raise DataError(f"{where}: unpaired line: expected {{\"more\": ..., \"less\": ...}} with two non-empty strings")
    parts = line.split("\t") if "\t" in line else line.split()
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(f"{where}: unpaired line {line.strip()[:60]!r}: expected two items separated by a tab")
    return parts[0].strip(), parts[1].strip()
