"""`genforge audit DATA [--spec bias.yaml]`: what a dataset holds before a model learns it.

DATA is one of
- prepared token data (a directory with manifest.json, genforge/data/shards.py): the shards are
  decoded back to documents (split at end-of-text) in chunks;
- raw text: text files, folders, globs, .jsonl (the text under --field, default "text"; other
  keys are fields an attribute can be read from), .parquet, saved datasets, builtin:shakespeare;
- an image dataset (anything data.source of an image model takes: builtin:digits, IDX, class
  folders, .npz): its label distribution;
- a captioned dataset (builtin:scenes, metadata.jsonl / .txt folders, .npz with captions):
  captions are the documents, so colour, shape and position words are attributes like any other.

Per attribute of the spec (genforge/eval/bias_spec.py): counts, shares, TV distance and entropy
against its target; per co-occurrence pair, PMI and NPMI of every value pair with counts and
intervals; for documents, exact and near duplicates (audit_stats.py). Text streams: memory does
not grow with the corpus (duplicate signatures go to a temporary file). `write_report` writes
audit.md, audit.json and one PNG bar chart per attribute and pair.

The spec object is the one bias_spec.load_spec returns (this layer does not import it): it
needs .attributes (name -> .values, .field, .target, .word_map()), .cooccurrence, .window and
.duplicates (.threshold, .num_perm, .shingle).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genforge.data.audit_stats import Cooccurrence, Distribution, Duplicates
from genforge.errors import ConfigError, DataError

KINDS = ("tokens", "text", "images", "captions")
WORD = re.compile(r"\w+(?:'\w+)?")
TOKEN_CHUNK = 1 << 20  # tokens decoded at a time from a prepared shard


def words_of(text: str) -> list[str]:
    """Lower-cased words; a possessive or contraction stays on its word ("nurse's")."""
    return [w.lower() for w in WORD.findall(text)]


def _base(word: str) -> str:
    """The word without a possessive/contraction ending: nurse's -> nurse."""
    return word.split("'", 1)[0]


class WordMatcher:
    """Finds an attribute's values in a list of words (phrases of several words too)."""

    def __init__(self, attribute):
        self.values = list(attribute.values)
        index = {v: i for i, v in enumerate(self.values)}
        self.phrases: dict[tuple[str, ...], int] = {}
        for word, value in attribute.word_map().items():
            self.phrases[tuple(words_of(word))] = index[value]
        self.longest = max(len(p) for p in self.phrases)

    def find(self, words: list[str]) -> list[tuple[int, int]]:
        """(position, value index) of each mention; the longest listed phrase at a position wins,
        and a word matches with its possessive or contraction ending too (nurse's: nurse)."""
        out = []
        for i in range(len(words)):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                key = tuple(words[i:i + n - 1]) + (words[i + n - 1],)
                hit = self.phrases.get(key)
                if hit is None:
                    hit = self.phrases.get(key[:-1] + (_base(key[-1]),))
                if hit is not None:
                    out.append((i, hit))
                    break
        return out


def detect_kind(data: str) -> str:
    """tokens, text, images or captions, from what DATA looks like; ConfigError when it cannot tell."""
    from genforge.data import captions, images

    if data.startswith("builtin:"):
        if data == "builtin:scenes" or data.startswith("builtin:scenes:"):
            return "captions"
        if data in ("builtin:digits",) or data.startswith("builtin:glyphs"):
            return "images"
        return "text"
    path = Path(data)
    if path.is_dir() and (path / "manifest.json").is_file():
        return "tokens"
    if path.suffix == ".npz" and path.is_file():
        return "captions" if captions.is_captioned(path) else "images"
    if path.is_dir():
        has_images = next(images.image_files(path, recursive=True), None) is not None
        if has_images:
            if (path / "metadata.jsonl").is_file() or captions._is_saved_dataset(path):
                return "captions"
            if images.find_idx(path, "train") or any(p.is_dir() for p in path.iterdir()):
                return "images"
            return "captions"
        if images.find_idx(path, "train"):
            return "images"
    return "text"


def documents(data: str, kind: str, field: str | None = None) -> Iterator[tuple[str, str, dict | None]]:
    """(where, text, record or None) of each document of DATA, lazily."""
    if kind == "tokens":
        yield from _token_documents(Path(data))
    elif kind == "captions":
        for i, caption in enumerate(_captions(data)):
            yield f"{data}[{i}]", caption, None
    elif kind == "text":
        yield from _text_documents(data, field)
    else:
        raise ConfigError(f"--kind {kind}: images have labels, not documents")


def _text_documents(data: str, field: str | None) -> Iterator[tuple[str, str, dict | None]]:
    from genforge.data.jsonl import jsonl_records
    from genforge.data.readers import expand_sources, iter_records

    key = field or "text"
    for src in expand_sources([data], key):
        if src.endswith(".jsonl"):
            for where, rec in jsonl_records(Path(src)):
                if not isinstance(rec, dict) or not isinstance(rec.get(key), str):
                    raise DataError(f"{where}: expected an object with a string {key!r} (--field names the text's key)")
                yield where, rec[key], rec
            continue
        for rec in iter_records([src], key):
            if rec.text is None:
                raise DataError(rec.bad_message())
            yield rec.where, rec.text, None


def _token_documents(path: Path) -> Iterator[tuple[str, str, None]]:
    from genforge.data.shards import TokenData
    from genforge.data.tokenizer import Tokenizer

    data = TokenData(path)
    tok = Tokenizer.from_file(path / "tokenizer.json")
    specials = {tok.eot_id, *getattr(tok, "bos_ids", ())}
    n = 0
    for split in ("train", "val"):
        for shard in data.split(split):
            carry = np.zeros(0, shard.dtype)
            for start in range(0, len(shard), TOKEN_CHUNK):
                chunk = np.concatenate([carry, np.asarray(shard[start:start + TOKEN_CHUNK])])
                ends = np.flatnonzero(chunk == tok.eot_id)
                last = 0
                for end in ends:
                    doc = chunk[last:end]
                    last = end + 1
                    if len(doc):
                        yield f"{path} [{split}] document {n}", tok.decode([int(t) for t in doc if t not in specials]), None
                        n += 1
                carry = chunk[last:]
                if len(carry) > TOKEN_CHUNK:  # a document longer than a chunk is audited in pieces
                    yield f"{path} [{split}] document {n}", tok.decode([int(t) for t in carry if t not in specials]), None
                    n += 1
                    carry = carry[:0]
            if len(carry):
                yield f"{path} [{split}] document {n}", tok.decode([int(t) for t in carry if t not in specials]), None
                n += 1


def _captions(data: str) -> list[str]:
    from genforge.data.caption_batches import CaptionDataConfig, open_captioned

    train, _ = open_captioned(CaptionDataConfig(source=data, val_fraction=0.0))
    return train.captions


def _image_labels(data: str) -> tuple[np.ndarray, list[str]]:
    from genforge.data.image_batches import ImageDataConfig, open_images

    train, _ = open_images(ImageDataConfig(source=data, val_fraction=0.0))
    if train.num_classes < 1 or (train.labels < 0).all():
        raise DataError(f"{data}: the images have no class labels; an image dataset is audited by its labels")
    return train.labels, train.class_names


def audit(data: str, spec=None, kind: str | None = None, field: str | None = None,
          duplicates: bool = True) -> dict:
    """The audit report of DATA as a dict (see the module docstring). ConfigError for a spec that
    does not fit the data (an attribute the data lacks), DataError for unreadable data."""
    kind = kind or detect_kind(data)
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind}: expected one of {', '.join(KINDS)}")
    if kind == "images":
        return _audit_images(data, spec)
    attrs = list(spec.attributes.values()) if spec is not None else []
    by_field = [a for a in attrs if a.field is not None]
    if by_field and kind != "text":
        raise ConfigError(f"attribute {by_field[0].name!r} reads field {by_field[0].field!r}, but {kind} data has "
                          "no fields (only .jsonl records do); find it by its words instead")
    by_words = [a for a in attrs if a.field is None]
    matchers = {a.name: WordMatcher(a) for a in by_words}
    dists = {a.name: Distribution(list(a.values), a.target) for a in attrs}
    pairs = [Cooccurrence(a, b, list(spec.attributes[a].values), list(spec.attributes[b].values))
             for a, b in (spec.cooccurrence if spec is not None else [])]
    window = spec.window if spec is not None else 0
    dup = None
    if duplicates:
        d = spec.duplicates if spec is not None else None
        dup = Duplicates(d.threshold, d.num_perm, d.shingle) if d is not None else Duplicates()
    n_docs = n_words = 0
    field_seen = dict.fromkeys(a.name for a in by_field)
    for where, text, record in documents(data, kind, field):
        words = words_of(text)
        n_docs += 1
        n_words += len(words)
        found = {name: m.find(words) for name, m in matchers.items()}
        for name, hits in found.items():
            dists[name].add(Counter(i for _, i in hits))
        for a in by_field:
            _count_field(a, record, where, dists[a.name], field_seen)
        for pair in pairs:
            _add_units(pair, found[pair.first], found[pair.second], len(words), window)
        if dup is not None:
            dup.add(text, words)
    if n_docs == 0:
        raise DataError(f"{data}: no documents")
    report = {"data": data, "kind": kind, "documents": n_docs, "words": n_words}
    report["attributes"] = {name: d.result() for name, d in dists.items()}
    for a in by_words:
        if report["attributes"][a.name]["total"] == 0:
            words = ", ".join(w for ws in a.values.values() for w in ws[:2])
            raise ConfigError(f"attribute {a.name!r}: none of its words ({words}, ...) appear in {data}; "
                              "the spec names an attribute the data does not have")
    for a in by_field:
        if field_seen[a.name] is None:
            raise ConfigError(f"attribute {a.name!r}: no record of {data} has the field {a.field!r}")
    report["cooccurrence"] = [p.result() for p in pairs]
    if dup is not None:
        report["duplicates"] = dup.result()
    return report


def _count_field(a, record: dict | None, where: str, dist: Distribution, seen: dict) -> None:
    if record is None or a.field not in record:
        return
    value = str(record[a.field])
    if value not in a.values:
        raise ConfigError(f"{where}: {a.field}={record[a.field]!r} is not a value of attribute {a.name!r} "
                          f"({', '.join(a.values)})")
    seen[a.name] = True
    dist.add({list(a.values).index(value): 1})


def _add_units(pair: Cooccurrence, hits1: list, hits2: list, n_words: int, window: int) -> None:
    """The document as one unit (window 0) or as consecutive spans of `window` words."""
    if window <= 0 or n_words <= window:
        pair.add({i for _, i in hits1}, {j for _, j in hits2})
        return
    for start in range(0, n_words, window):
        pair.add({i for p, i in hits1 if start <= p < start + window}, {j for p, j in hits2 if start <= p < start + window})


def _audit_images(data: str, spec) -> dict:
    labels, names = _image_labels(data)
    attrs = list(spec.attributes.values()) if spec is not None else []
    if not attrs:
        from types import SimpleNamespace

        attrs = [SimpleNamespace(name="label", field="label", values={n: [] for n in names}, target=None)]
    report = {"data": data, "kind": "images", "images": len(labels), "classes": names, "attributes": {}}
    for a in attrs:
        if a.field is None:
            raise ConfigError(f"attribute {a.name!r} is found by words, but {data} is an image dataset: "
                              f"give it field: label (its values are the class labels)")
        if a.field != "label":
            raise ConfigError(f"attribute {a.name!r}: field {a.field!r}; an image dataset has only 'label'")
        index = []
        for v in a.values:
            if v in names:
                index.append(names.index(v))
            elif v.lstrip("-").isdigit() and 0 <= int(v) < len(names):
                index.append(int(v))
            else:
                raise ConfigError(f"attribute {a.name!r}: value {v!r} is not a class of {data} "
                                  f"(classes: {', '.join(names)})")
        missing = sorted(set(range(len(names))) - set(index))
        if missing:
            raise ConfigError(f"attribute {a.name!r} leaves out classes {', '.join(names[i] for i in missing)} of {data}; "
                              "list every class (a target of 0 is allowed)")
        counts = np.bincount(labels[labels >= 0], minlength=len(names))
        dist = Distribution(list(a.values), a.target)
        dist.add({k: int(counts[c]) for k, c in enumerate(index) if counts[c]})
        report["attributes"][a.name] = dist.result()
    return report


def summary(report: dict) -> dict[str, float]:
    """The report's headline numbers, flat: documents, tv_ATTR, entropy_bits_ATTR,
    max_abs_npmi_A_B (the strongest association of a value pair), duplicates."""
    out: dict[str, float] = {"documents": report.get("documents", report.get("images"))}
    for name, a in report["attributes"].items():
        if a["tv"] is not None:
            out[f"tv_{name}"], out[f"entropy_bits_{name}"] = a["tv"], a["entropy_bits"]
    for pair in report.get("cooccurrence", []):
        npmi = [abs(c["npmi"]) for c in pair["cells"] if c["npmi"] is not None]
        if npmi:
            out["max_abs_npmi_" + "_".join(pair["attributes"])] = max(npmi)
    if d := report.get("duplicates"):
        out["exact_duplicates"], out["near_duplicates"] = d["exact_duplicates"], d["near_duplicates"]
    return out


def write_report(report: dict, out: str | Path) -> list[Path]:
    """audit.json, audit.md and a PNG bar chart per attribute and co-occurrence pair in out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(as_json(report, indent=2) + "\n")
    charts = _charts(report, out)
    (out / "audit.md").write_text(markdown(report, [c.name for c in charts]))
    return [out / "audit.md", out / "audit.json", *charts]


def as_json(report: dict, indent: int | None = None) -> str:
    """The report as JSON (an infinite PMI, of a pair never seen together, as the string "-inf")."""
    return json.dumps(_finite(report), indent=indent)


def _finite(x):
    """x with infinite floats (PMI of a pair never seen together) written as strings: JSON has no -inf."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-inf" if x == float("-inf") else f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict, charts: list[str] = ()) -> str:
    """The report as Markdown tables."""
    n = report.get("documents", report.get("images"))
    lines = [f"# Audit of {report['data']}", "", f"{report['kind']}: {n:,} {'images' if report['kind'] == 'images' else 'documents'}"
             + (f", {report['words']:,} words" if "words" in report else ""), ""]
    for name, a in report["attributes"].items():
        lines += [f"## Attribute `{name}`", "",
                  f"TV distance from the target {_fmt(a['tv'])}, entropy {_fmt(a['entropy_bits'])} bits "
                  f"(target {_fmt(a['target_entropy_bits'])}), {a['total']:,} mentions", "",
                  "| value | count | share | target |", "|---|---:|---:|---:|"]
        lines += [f"| {v} | {c:,} | {s:.3f} | {t:.3f} |" for v, c, s, t in zip(a["values"], a["counts"], a["shares"], a["target"])]
        lines.append("")
    for pair in report.get("cooccurrence", []):
        a, b = pair["attributes"]
        lines += [f"## Co-occurrence `{a}` x `{b}`", "", f"{pair['units']:,} units", "",
                  f"| {a} | {b} | together | {a} | {b} | PMI | NPMI | NPMI 95 % |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for c in pair["cells"]:
            ci = "-" if c["npmi_ci"] is None else f"[{c['npmi_ci'][0]:.3f}, {c['npmi_ci'][1]:.3f}]"
            lines.append(f"| {c[a]} | {c[b]} | {c['together']:,} | {c['first']:,} | {c['second']:,} | {_fmt(c['pmi'])} "
                         f"| {_fmt(c['npmi'])} | {ci} |")
        lines.append("")
    if d := report.get("duplicates"):
        lines += ["## Duplicates", "", f"exact duplicates: {d['exact_duplicates']:,} of {d['documents']:,} documents; "
                  f"near duplicates (MinHash Jaccard >= {d['threshold']}, {d['num_perm']} permutations, "
                  f"{d['shingle']}-word shingles): {d['near_duplicates']:,} documents in {d['near_duplicate_pairs']:,} pairs", ""]
        for e in d.get("exact_examples", []):
            lines.append(f"- document {e['document']} is a copy of document {e['copy_of']}")
        for e in d["examples"]:
            lines.append(f"- document {e['document']} resembles document {e['like']} (Jaccard ~ {e['jaccard']:.2f})")
        lines.append("")
    lines += [f"![{c}]({c})" for c in charts]
    return "\n".join(lines) + "\n"


def _charts(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, a in report["attributes"].items():
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(a["values"]) + 2), 3))
        x = np.arange(len(a["values"]))
        ax.bar(x - 0.2, a["shares"], 0.4, label="data")
        ax.bar(x + 0.2, a["target"], 0.4, label="target")
        ax.set_xticks(x, a["values"], rotation=45 if len(a["values"]) > 6 else 0, ha="right" if len(a["values"]) > 6 else "center")
        ax.set_ylabel("share")
        ax.set_title(f"{name}: TV {_fmt(a['tv'])}")
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"attribute_{_safe(name)}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    for pair in report.get("cooccurrence", []):
        a, b = pair["attributes"]
        cells = pair["cells"]
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(cells) + 2), 3))
        ax.bar(range(len(cells)), [c["npmi"] if c["npmi"] is not None else 0 for c in cells])
        ax.set_xticks(range(len(cells)), [f"{c[a]}/{c[b]}" for c in cells], rotation=45, ha="right")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylim(-1, 1)
        ax.set_ylabel("NPMI")
        ax.set_title(f"{a} x {b}")
        fig.tight_layout()
        paths.append(out / f"cooccurrence_{_safe(a)}_{_safe(b)}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)
