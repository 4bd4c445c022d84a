"""The bias spec: one YAML file that says which attributes to audit, measure and balance.

`genforge audit DATA --spec bias.yaml` (data), `genforge eval CKPT --metrics bias --spec
bias.yaml` (outputs) and the text mitigations read it. Every key is optional but `attributes`:

    attributes:
      gender:                        # an attribute found in text by its words
        values:
          male: [he, him, his, man, men]
          female: [she, her, hers, woman, women]
        target: uniform              # or {male: 0.5, female: 0.5}, or [0.5, 0.5] in values' order
      occupation:
        values:
          nurse: [nurse, nurses]
          engineer: [engineer, engineers]
      label:                         # an attribute read from a record field (a jsonl key, an
        field: label                 # image dataset's class label): values are its labels, no words
        values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        target: {0: 0.1, 1: 0.1, ...}   # unnormalised weights are normalised
    cooccurrence:                    # attribute pairs whose word co-occurrence (PMI/NPMI) is counted
      - [gender, occupation]
    window: 0                        # co-occurrence units: spans of this many words; 0: whole documents
    templates:                       # likelihood gaps of a text model (genforge eval --metrics bias)
      - "The {occupation} said that"
    contrast: [she, he]              # gap = log p(" she" | template) - log p(" he" | template)
    pairs: crows.jsonl               # CrowS-style pairs: {"more": ..., "less": ...} per line, or
                                     # "more<TAB>less" lines; a list of [more, less] inline
    swaps:                           # counterfactual data augmentation: two-sided word swaps
      - [he, she]
      - [him, her]
      - [his, her]                   # later pairs never overwrite an earlier mapping: her -> him
    duplicates: {threshold: 0.8, num_perm: 128, shingle: 5}   # near duplicates: MinHash Jaccard

A value named in `{occupation}` of a template is filled with that value's first word. `target`
is what TV distance and entropy are measured against (uniform when absent); an image spec uses
the same `target` per attribute (its values are the class labels). Loading checks what it can
alone (an empty word list, a target naming a value that does not exist, weights that are not
positive, a pair file with a line that has no pair); whether the data has the attributes is
checked where the data is read. Pair files are read by genforge/data/cda.py's read_pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any

import yaml

from genforge.data.cda import read_pairs
from genforge.errors import ConfigError

KEYS = ("attributes", "cooccurrence", "window", "templates", "contrast", "pairs", "swaps", "duplicates")


@dataclass
class Attribute:
    """One attribute: its values, the words that show each value in text (empty for a field
    attribute), the field it is read from (None: found by words), and the target shares."""

    name: str
    values: dict[str, list[str]]
    field: str | None = None
    target: dict[str, float] = _field(default_factory=dict)  # normalised, one share per value

    def word_map(self) -> dict[str, str]:
        """Lower-cased word -> value."""
        return {w.lower(): v for v, words in self.values.items() for w in words}


@dataclass
class Duplicates:
    threshold: float = 0.8  # estimated Jaccard similarity of word shingles above which two documents are near duplicates
    num_perm: int = 128
    shingle: int = 5  # words per shingle


@dataclass
class BiasSpec:
    attributes: dict[str, Attribute]
    cooccurrence: list[tuple[str, str]] = _field(default_factory=list)
    window: int = 0
    templates: list[str] = _field(default_factory=list)
    contrast: tuple[str, str] | None = None
    pairs: list[tuple[str, str]] = _field(default_factory=list)
    swaps: list[tuple[str, str]] = _field(default_factory=list)
    duplicates: Duplicates = _field(default_factory=Duplicates)
    path: str = "spec"

    def attribute(self, name: str) -> Attribute:
        if name not in self.attributes:
            raise ConfigError(f"{self.path}: no attribute {name!r} (it has {', '.join(self.attributes) or 'none'})")
        return self.attributes[name]

    def word_attributes(self) -> list[Attribute]:
        return [a for a in self.attributes.values() if a.field is None]


def load_spec(path: str | Path) -> BiasSpec:
    """The spec in a YAML file; ConfigError (DataError for a pair file) naming the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--spec {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_spec(raw, str(path), path.parent)


def parse_spec(raw: Any, where: str = "spec", base: Path | None = None) -> BiasSpec:
    """A BiasSpec from the parsed YAML mapping raw; relative pair files are read from base."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with an 'attributes' key")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(KEYS)})")
    attrs = raw.get("attributes")
    if not isinstance(attrs, dict) or not attrs:
        raise ConfigError(f"{where}: attributes: expected a mapping of attribute name to its values")
    spec = BiasSpec({str(n): _attribute(str(n), a, f"{where}: attributes.{n}") for n, a in attrs.items()}, path=where)
    for i, pair in enumerate(raw.get("cooccurrence") or []):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ConfigError(f"{where}: cooccurrence[{i}]: expected a pair of attribute names, got {pair!r}")
        a, b = (spec.attribute(str(n)) for n in pair)
        if a.field is not None or b.field is not None:
            raise ConfigError(f"{where}: cooccurrence[{i}]: {a.name if a.field else b.name} is read from a field; "
                              "co-occurrence counts attributes found by their words")
        spec.cooccurrence.append((a.name, b.name))
    window = raw.get("window", 0)
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ConfigError(f"{where}: window={window!r}: expected an integer >= 0 (0: the whole document)")
    spec.window = window
    templates = raw.get("templates") or []
    if not isinstance(templates, list) or not all(isinstance(t, str) and t.strip() for t in templates):
        raise ConfigError(f"{where}: templates: expected a list of non-empty strings")
    for t in templates:
        for name in _placeholders(t):
            spec.attribute(name)
    spec.templates = templates
    if (contrast := raw.get("contrast")) is not None:
        if not (isinstance(contrast, list) and len(contrast) == 2 and all(isinstance(w, str) and w.strip() for w in contrast)):
            raise ConfigError(f"{where}: contrast: expected two words, e.g. [she, he], got {contrast!r}")
        spec.contrast = (contrast[0].strip(), contrast[1].strip())
    if (pairs := raw.get("pairs")) is not None:
        spec.pairs = read_pairs(pairs, f"{where}: pairs", base)
    if (swaps := raw.get("swaps")) is not None:
        spec.swaps = read_pairs(swaps, f"{where}: swaps", base)
    dup = raw.get("duplicates") or {}
    if not isinstance(dup, dict) or set(dup) - {"threshold", "num_perm", "shingle"}:
        raise ConfigError(f"{where}: duplicates: expected a mapping of threshold, num_perm, shingle")
    spec.duplicates = Duplicates(**dup)
    d = spec.duplicates
    if not 0 < d.threshold <= 1 or d.num_perm < 16 or d.shingle < 1:
        raise ConfigError(f"{where}: duplicates: need 0 < threshold <= 1, num_perm >= 16, shingle >= 1")
    return spec


def _attribute(name: str, raw: Any, where: str) -> Attribute:
    if not isinstance(raw, dict) or "values" not in raw:
        raise ConfigError(f"{where}: expected a mapping with 'values' (and optionally 'target', 'field')")
    unknown = sorted(set(raw) - {"values", "target", "field"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected values, target, field)")
    fld, values = raw.get("field"), raw["values"]
    if fld is not None and not isinstance(fld, str):
        raise ConfigError(f"{where}.field: expected a field name, got {fld!r}")
    if isinstance(values, list) and fld is not None:
        values = {str(v): [] for v in values}
    elif isinstance(values, list):
        raise ConfigError(f"{where}.values: a list of names needs a 'field' to read them from; "
                          "an attribute found in text maps each value to its words")
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"{where}.values: expected a non-empty mapping of value to its words")
    parsed: dict[str, list[str]] = {}
    for v, words in values.items():
        words = [] if words is None and fld is not None else words
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"{where}.values.{v}: expected a list of words, got {words!r}")
        if fld is None and not words:
            raise ConfigError(f"{where}.values.{v}: empty word list (an attribute found in text needs its words)")
        parsed[str(v)] = [w.strip() for w in words]
    seen: dict[str, str] = {}
    for v, words in parsed.items():
        for w in words:
            if seen.setdefault(w.lower(), v) != v:
                raise ConfigError(f"{where}: the word {w!r} belongs to both {seen[w.lower()]!r} and {v!r}")
    return Attribute(name, parsed, fld, _target(raw.get("target"), list(parsed), f"{where}.target"))


def _target(raw: Any, values: list[str], where: str) -> dict[str, float]:
    """Normalised shares per value; uniform for None or 'uniform'."""
    if raw is None or raw == "uniform":
        return {v: 1 / len(values) for v in values}
    if isinstance(raw, list):
        if len(raw) != len(values):
            raise ConfigError(f"{where}: {len(raw)} weights for {len(values)} values")
        raw = dict(zip(values, raw))
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected 'uniform', a mapping of value to weight, or a list of weights")
    raw = {str(k): w for k, w in raw.items()}
    for k, w in raw.items():
        if k not in values:
            raise ConfigError(f"{where}: {k!r} is not one of the values ({', '.join(values)})")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{where}.{k}: weight {w!r} must be a number >= 0")
    total = sum(raw.values())
    if total <= 0:
        raise ConfigError(f"{where}: weights sum to 0")
    return {v: raw.get(v, 0) / total for v in values}


def _placeholders(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]
