"""The numbers of `genforge audit`, each a streaming accumulator over documents.

- `Distribution`: counts per value of an attribute; shares, total-variation distance
  TV(p, t) = 1/2 sum |p_i - t_i| and entropy H(p) in bits against a target t (uniform by default).
- `Cooccurrence`: for two attributes found by words, the 2x2 table of every value pair over
  units (documents, or spans of `window` words): PMI = log p(a, b) / (p(a) p(b)), NPMI =
  PMI / -log p(a, b) (Bouma 2009, in [-1, 1]: -1 never together, 0 independent, 1 only
  together), with a 95 % interval from the multinomial delta method (below).
- `Duplicates`: exact duplicates (an 8-byte BLAKE2b hash of the text) and near duplicates
  (MinHash of word shingles, Broder 1997, banded LSH, then the estimated Jaccard similarity of
  each candidate to its band-mate checked against the threshold; `datasketch` makes the
  signatures). Signatures and band keys are written to a temporary file, not kept in memory:
  memory holds one band's keys (8 bytes a document) at the end, not the corpus.

Delta method for PMI: with cell probabilities p11, p10, p01 (p00 the rest) of N units,
PMI = log p11 - log(p11 + p10) - log(p11 + p01); its gradient g over the cells gives
Var(PMI) ~ (sum_c g_c^2 p_c - (sum_c g_c p_c)^2) / N = (sum_c g_c^2 p_c - 1) / N.
NPMI's interval is PMI's ends divided by -log p11 (its denominator held fixed).
"""
from __future__ import annotations

import hashlib
import math
import struct
import tempfile
from pathlib import Path

import numpy as np

from genforge.errors import ConfigError

Z95 = 1.959964


def tv_distance(p: np.ndarray, t: np.ndarray) -> float:
    """Total-variation distance between two distributions over the same values."""
    return float(0.5 * np.abs(np.asarray(p, float) - np.asarray(t, float)).sum())


def entropy_bits(p: np.ndarray) -> float:
    p = np.asarray(p, float)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0


class Distribution:
    """Counts of an attribute's values; `result()` compares their shares with the target."""

    def __init__(self, values: list[str], target: dict[str, float] | None = None):
        self.values = list(values)
        self.target = np.array([(target or {}).get(v, 1 / len(values)) for v in self.values])
        self.counts = np.zeros(len(values), np.int64)
        self.docs = np.zeros(len(values), np.int64)  # documents with at least one mention

    def add(self, counts: dict[int, int]) -> None:
        for i, n in counts.items():
            self.counts[i] += n
            self.docs[i] += 1

    def result(self) -> dict:
        total = int(self.counts.sum())
        shares = self.counts / total if total else np.zeros(len(self.values))
        return {"values": self.values, "counts": self.counts.tolist(), "documents": self.docs.tolist(),
                "total": total, "shares": shares.tolist(), "target": self.target.tolist(),
                "tv": tv_distance(shares, self.target) if total else None,
                "entropy_bits": entropy_bits(shares) if total else None,
                "target_entropy_bits": entropy_bits(self.target)}


def pmi_stats(n11: int, n1: int, n2: int, n: int) -> dict:
    """PMI, NPMI and their 95 % intervals of a value pair seen together in n11 of n units, the
    first value in n1 and the second in n2. PMI is -inf (NPMI -1, no interval) when never together."""
    out = {"together": n11, "first": n1, "second": n2, "units": n}
    if n == 0 or n1 == 0 or n2 == 0:
        return out | {"pmi": None, "npmi": None, "pmi_ci": None, "npmi_ci": None}
    if n11 == 0:
        return out | {"pmi": -math.inf, "npmi": -1.0, "pmi_ci": None, "npmi_ci": None}
    p11, p10, p01 = n11 / n, (n1 - n11) / n, (n2 - n11) / n
    p1, p2 = p11 + p10, p11 + p01
    pmi = math.log(p11 / (p1 * p2))
    g11, g10, g01 = 1 / p11 - 1 / p1 - 1 / p2, -1 / p1, -1 / p2
    var = max(0.0, (g11 ** 2 * p11 + g10 ** 2 * p10 + g01 ** 2 * p01 - 1) / n)
    half = Z95 * math.sqrt(var)
    denom = -math.log(p11)
    if denom == 0:  # together in every unit: independent by definition, NPMI undefined
        return out | {"pmi": pmi, "npmi": None, "pmi_ci": [pmi - half, pmi + half], "npmi_ci": None}
    return out | {"pmi": pmi, "npmi": pmi / denom, "pmi_ci": [pmi - half, pmi + half],
                  "npmi_ci": [max(-1.0, (pmi - half) / denom), min(1.0, (pmi + half) / denom)]}


class Cooccurrence:
    """Units in which values of two attributes appear, alone and together."""

    def __init__(self, first: str, second: str, values1: list[str], values2: list[str]):
        self.first, self.second, self.values1, self.values2 = first, second, values1, values2
        self.n1 = np.zeros(len(values1), np.int64)
        self.n2 = np.zeros(len(values2), np.int64)
        self.n11 = np.zeros((len(values1), len(values2)), np.int64)
        self.units = 0

    def add(self, present1: set[int], present2: set[int]) -> None:
        """One unit, with the value indices of each attribute found in it."""
        self.units += 1
        for i in present1:
            self.n1[i] += 1
        for j in present2:
            self.n2[j] += 1
        for i in present1:
            for j in present2:
                self.n11[i, j] += 1

    def result(self) -> dict:
        cells = [{self.first: a, self.second: b, **pmi_stats(int(self.n11[i, j]), int(self.n1[i]), int(self.n2[j]),
                                                              self.units)}
                 for i, a in enumerate(self.values1) for j, b in enumerate(self.values2)]
        return {"attributes": [self.first, self.second], "units": self.units, "cells": cells}


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the false positive plus false
    negative probability mass of banded LSH at this Jaccard threshold (as datasketch does)."""
    xs = np.linspace(0, 1, 201)
    best, arg = math.inf, (1, num_perm)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            hit = 1 - (1 - xs ** r) ** b
            fp = np.trapezoid(np.where(xs < threshold, hit, 0), xs)
            fn = np.trapezoid(np.where(xs >= threshold, 1 - hit, 0), xs)
            if fp + fn < best:
                best, arg = fp + fn, (b, r)
    return arg


class Duplicates:
    """Exact and near duplicates among documents, in reading order. Signatures go to a
    temporary file (num_perm x 8 bytes, plus 8 bytes a band and 8 for the exact hash, a document)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, examples: int = 10):
        try:
            from datasketch import MinHash
        except ImportError:
            raise ConfigError("the near-duplicate search needs datasketch: pip install 'genforge[audit]' "
                              "(or audit with --no-duplicates)") from None

        self.threshold, self.num_perm, self.shingle, self.examples = threshold, num_perm, shingle, examples
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        self._minhash = MinHash
        self._template = MinHash(num_perm=num_perm, seed=1)  # permutations drawn once, copied per document
        self._dir = tempfile.TemporaryDirectory(prefix="genforge-audit-")
        self._sig = open(Path(self._dir.name) / "sig.bin", "wb")  # noqa: SIM115 (closed in result)
        self._keys = open(Path(self._dir.name) / "keys.bin", "wb")  # noqa: SIM115
        self.n = 0

    def add(self, text: str, words: list[str]) -> None:
        exact = _hash64(text.encode("utf-8", "surrogatepass"))
        k = self.shingle
        shingles = {" ".join(words[i:i + k]).encode() for i in range(max(1, len(words) - k + 1))} if words else {b""}
        m = self._minhash(num_perm=self.num_perm, seed=1, permutations=self._template.permutations,
                          scheme=self._template.scheme)
        m.update_batch(list(shingles))
        sig = m.hashvalues.astype(np.uint64)
        r = self.rows
        keys = [exact] + [_hash64(sig[b * r:(b + 1) * r].tobytes()) for b in range(self.bands)]
        self._sig.write(sig.tobytes())
        self._keys.write(struct.pack(f"<{len(keys)}Q", *keys))
        self.n += 1

    def result(self) -> dict:
        self._sig.close()
        self._keys.close()
        n, cols = self.n, 1 + self.bands
        out = {"documents": n, "threshold": self.threshold, "num_perm": self.num_perm, "shingle": self.shingle,
               "bands": self.bands, "rows": self.rows}
        if n == 0:
            self._dir.cleanup()
            return out | {"exact_duplicates": 0, "near_duplicate_pairs": 0, "near_duplicates": 0, "examples": []}
        keys = np.memmap(Path(self._dir.name) / "keys.bin", np.uint64, "r", shape=(n, cols))
        sigs = np.memmap(Path(self._dir.name) / "sig.bin", np.uint64, "r", shape=(n, self.num_perm))
        exact_of = _groups(np.array(keys[:, 0]))  # a copy -> the first document with its text
        near: dict[int, int] = {}  # a near duplicate -> an earlier document it resembles
        examples, pairs = [], set()
        for b in range(1, cols):
            for doc, first in _groups(np.array(keys[:, b])).items():
                if doc in exact_of or (doc, first) in pairs:
                    continue
                j = float((sigs[doc] == sigs[first]).mean())
                if j >= self.threshold:
                    pairs.add((doc, first))
                    near.setdefault(doc, first)
                    if len(examples) < self.examples:
                        examples.append({"document": doc, "like": first, "jaccard": j})
        del keys, sigs
        self._dir.cleanup()
        exact_examples = [{"document": d, "copy_of": f} for d, f in sorted(exact_of.items())[: self.examples]]
        return out | {"exact_duplicates": len(exact_of), "exact_examples": exact_examples,
                      "near_duplicate_pairs": len(pairs), "near_duplicates": len(near),
                      "examples": sorted(examples, key=lambda e: e["document"])}


def _groups(keys: np.ndarray) -> dict[int, int]:
    """Each document whose key an earlier one has -> the first document with that key."""
    order = np.argsort(keys, kind="stable")  # equal keys keep reading order
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    first = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    dup = ~starts
    return dict(zip(order[dup].tolist(), first[dup].tolist()))


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
