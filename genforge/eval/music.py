"""Offline metrics of generated symbolic music against the pieces a model trained on.

novelty: a piece is a list of notes ordered by onset then pitch; an n-gram is n consecutive notes
written transposition-free (each note's interval to the one before, its inter-onset interval and
duration, on a sixteenth-of-a-beat grid: 30 ticks of 480 a quarter). The copy rate is the share of
the samples' 8-grams found anywhere in the training pieces (whose transpositions the model saw);
the longest copied span of a sample is its longest run of notes that occurs, as one run, in the
training set. The same rate between the training set's two halves (second half against first)
says what a piece of this style shares with others by idiom alone.

pitch / rhythm: total-variation distance (half the L1 distance, 0 = the same, 1 = disjoint)
between the samples' and the data's histograms of pitch class (12 bins), of scale degree (the
pitch class relative to each piece's tonic, found with the Krumhansl-Kessler profiles: a model
trained with transposition draws keys the data does not have, which the plain pitch classes count
against it and scale degrees do not), inter-onset interval and
duration (sixteenth-note bins up to a whole note, one bin beyond), each beside the distance
between the data's halves.
"""
from __future__ import annotations

import numpy as np

from genforge.data.music import NOTE_NAMES, key_of
from genforge.errors import ConfigError

GRID = 30  # ticks (of 480 a quarter) per grid step when comparing notes
NGRAM = 8
SIXTEENTH = 120  # ticks
RHYTHM_BINS = 17  # IOI / duration in sixteenths: 0..15, and >= a whole note
METRICS = ("novelty", "pitch", "rhythm")


def note_words(notes: np.ndarray) -> list[tuple[int, int, int]]:
    """(interval to the previous note, inter-onset interval, duration) per note of (N, 4) notes
    sorted by onset then pitch; the first note's interval and IOI are 0."""
    if len(notes) == 0:
        return []
    notes = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    pitch, onset = notes[:, 2], notes[:, 0] // GRID
    interval = np.diff(pitch, prepend=pitch[0])
    ioi = np.diff(onset, prepend=onset[0])
    dur = np.maximum(1, notes[:, 1] // GRID)
    return list(zip(interval.tolist(), ioi.tolist(), dur.tolist()))


def ngrams(words: list, n: int) -> list[tuple]:
    # the first note of an n-gram carries no interval to what came before it
    return [((0, 0, words[i][2]),) + tuple(words[i + 1:i + n]) for i in range(len(words) - n + 1)]


BASE = 0x9E3779B97F4A7C15  # odd: the polynomial hash's base, mod 2**64 (uint64 arithmetic wraps)
MASK = (1 << 64) - 1


class NgramIndex:
    """The n-grams of a set of pieces, for any n, each one 64-bit polynomial hash of its notes
    (ngrams' form: the first note by its duration alone), from prefix hashes of the pieces laid
    end to end, so an n-gram costs 8 bytes whatever n is (sets of n-note tuples took GBs for the
    long runs longest_copy asks about). Only the NGRAM-note table is kept; a false match between
    distinct n-grams has odds of about 2**-64 per pair compared."""

    def __init__(self, pieces: list[np.ndarray]):
        self.ids: dict[tuple, int] = {}  # a note word, or ("first", duration), -> its id (from 1)
        seqs = [self._encode(note_words(p)) for p in pieces]
        self.full = np.concatenate([f for f, _ in seqs]) if seqs else np.zeros(0, np.uint64)
        self.first = np.concatenate([h for _, h in seqs]) if seqs else np.zeros(0, np.uint64)
        self.prefix = prefix_hashes(self.full)
        ends = np.cumsum([len(f) for f, _ in seqs], dtype=np.int64)
        self.end = np.repeat(ends, [len(f) for f, _ in seqs])  # each note's piece's end
        self._tables: dict[int, np.ndarray] = {}

    def _encode(self, words: list) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the words, ids of their first-note forms), (len(words),) uint64 each."""
        full = [self.ids.setdefault(w, len(self.ids) + 1) for w in words]
        first = [self.ids.setdefault(("first", w[2]), len(self.ids) + 1) for w in words]
        return np.array(full, np.uint64), np.array(first, np.uint64)

    def table(self, n: int) -> np.ndarray:
        """The sorted hashes of the indexed pieces' n-grams (those inside one piece)."""
        if n in self._tables:
            return self._tables[n]
        starts = np.flatnonzero(np.arange(len(self.full)) + n <= self.end)
        out = np.sort(gram_hashes(self.first, self.prefix, starts, n))
        if n == NGRAM:
            self._tables[n] = out
        return out

    def query(self, words: list) -> tuple[np.ndarray, np.ndarray]:
        """(first-form ids, prefix hashes) of words: what `has` reads, made once per piece asked about."""
        full, first = self._encode(words)
        return first, prefix_hashes(full)

    def has(self, words: list | tuple, n: int) -> np.ndarray:
        """(len(words) - n + 1,) bool: whether each of the n-grams of words (or of a `query` of
        them) is in the pieces."""
        first, prefix = words if isinstance(words, tuple) else self.query(words)
        if len(first) < n or n < 1:
            return np.zeros(0, bool)
        hashes = gram_hashes(first, prefix, np.arange(len(first) - n + 1), n)
        table = self.table(n)
        at = np.minimum(np.searchsorted(table, hashes), max(len(table) - 1, 0))
        return table[at] == hashes if len(table) else np.zeros(len(hashes), bool)

    def copy_rate(self, pieces_words: list[list], n: int = NGRAM) -> float:
        found = np.concatenate([self.has(w, n) for w in pieces_words]) if pieces_words else np.zeros(0, bool)
        return float(found.mean()) if len(found) else float("nan")

    def longest_copy(self, words: list) -> int:
        """The most consecutive notes of `words` found as one run in the indexed pieces (a
        binary search over the length: a copied run of L notes holds copied runs of every
        shorter length)."""
        lo, hi, asked = 0, len(words), self.query(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.has(asked, mid).any():
                lo = mid
            else:
                hi = mid - 1
        return lo


def prefix_hashes(ids: np.ndarray) -> np.ndarray:
    """(len(ids) + 1,) uint64: entry j is the polynomial hash of ids[:j] (base BASE, mod 2**64)."""
    out, h = [0], 0
    for x in ids.tolist():
        h = (h * BASE + x) & MASK
        out.append(h)
    return np.array(out, np.uint64)


def gram_hashes(first: np.ndarray, prefix: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """The hashes of the n-grams starting at `starts`: the first note's first-form id, then the
    next n - 1 notes' ids (the hash of ids[i+1:i+n] is prefix[i+n] - prefix[i+1] * BASE**(n-1))."""
    power = np.uint64(pow(BASE, n - 1, 1 << 64))
    with np.errstate(over="ignore"):
        return first[starts] * power + (prefix[starts + n] - prefix[starts + 1] * power)


def halves(pieces: list[np.ndarray]) -> tuple[list, list]:
    """The pieces split into two halves by a fixed shuffle."""
    order = np.random.default_rng(0).permutation(len(pieces))
    half = len(pieces) // 2
    return [pieces[i] for i in order[:half]], [pieces[i] for i in order[half:]]


def novelty(samples: list[np.ndarray], train: list[np.ndarray], n: int = NGRAM) -> dict[str, float]:
    """copy_rate (share of the samples' n-grams in the training set), the longest copied span of
    each sample (mean and max, in notes; and the median sample's length), and train_halves_rate:
    the second half of the training pieces' n-grams found in the first half."""
    index = NgramIndex(train)
    words = [note_words(s) for s in samples]
    spans = [index.longest_copy(w) for w in words]
    first, second = halves(train)
    return {f"copy_rate_{n}": index.copy_rate(words, n),
            f"train_halves_rate_{n}": NgramIndex(first).copy_rate([note_words(p) for p in second], n),
            "longest_copy_mean": float(np.mean(spans)) if spans else float("nan"),
            "longest_copy_max": int(max(spans, default=0)),
            "sample_notes_median": float(np.median([len(w) for w in words])) if words else 0.0}


def pitch_classes(pieces: list[np.ndarray], relative: bool = False) -> np.ndarray:
    """The share of notes in each pitch class (relative: in each scale degree, from the piece's tonic)."""
    def classes(p):
        tonic = NOTE_NAMES.index(key_of(p).rstrip("m")) if relative else 0
        return (p[:, 2] - tonic) % 12

    counts = np.bincount(np.concatenate([classes(p) for p in pieces]) if pieces else [], minlength=12)
    return counts / max(counts.sum(), 1)


def rhythm(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of inter-onset intervals (between distinct onsets) and durations, in sixteenths."""
    iois, durs = [], []
    for p in pieces:
        onsets = np.unique(p[:, 0])
        iois.append(np.diff(onsets) // SIXTEENTH)
        durs.append(p[:, 1] // SIXTEENTH)
    hist = []
    for values in (iois, durs):
        v = np.minimum(np.concatenate(values).astype(np.int64), RHYTHM_BINS - 1) if values else np.array([], dtype=np.int64)
        h = np.bincount(v, minlength=RHYTHM_BINS).astype(np.float64)
        hist.append(h / max(h.sum(), 1))
    return hist[0], hist[1]


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def histogram_distances(samples: list[np.ndarray], data: list[np.ndarray], metrics=("pitch", "rhythm")) -> dict[str, float]:
    """Total-variation distances of the samples' histograms to the data's, and of the data's halves."""
    first, second = halves(data)
    out: dict[str, float] = {}
    if "pitch" in metrics:
        out["pitch_class_tv"] = tv(pitch_classes(samples), pitch_classes(data))
        out["pitch_class_tv_halves"] = tv(pitch_classes(first), pitch_classes(second))
        out["scale_degree_tv"] = tv(pitch_classes(samples, True), pitch_classes(data, True))
        out["scale_degree_tv_halves"] = tv(pitch_classes(first, True), pitch_classes(second, True))
    if "rhythm" in metrics:
        (si, sd), (di, dd), (fi, fd), (hi, hd) = rhythm(samples), rhythm(data), rhythm(first), rhythm(second)
        out.update({"ioi_tv": tv(si, di), "ioi_tv_halves": tv(fi, hi),
                    "duration_tv": tv(sd, dd), "duration_tv_halves": tv(fd, hd)})
    return out


def evaluate(samples: list[np.ndarray], train: list[np.ndarray], metrics=METRICS) -> dict[str, float]:
    """The metrics asked (some of novelty, pitch, rhythm) of sample notes against training notes
    ((N, 4) arrays: start, duration, pitch, velocity in ticks of 480 a quarter); ConfigError for an
    unknown metric."""
    for m in metrics:
        if m not in METRICS:
            raise ConfigError(f"--metrics {m}: a music model has {', '.join(METRICS)}")
    out: dict[str, float] = {"n": len(samples)}
    if "novelty" in metrics:
        out.update(novelty(samples, train))
    out.update(histogram_distances(samples, train, metrics))
    return out
