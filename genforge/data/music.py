"""Symbolic music as tokens: miditok's REMI (Huang & Yang 2020, "Pop Music Transformer"), TSD or
Structured (Hsiao et al. 2021) events after a prefix of conditioning tokens (key, meter, tempo,
instrument, style), and the training windows a GPT reads, transposed on the fly.

A sequence is [BOS, Key_*, Meter_*, Tempo_*, Instrument_*, Style_*, Begin_piece, miditok
events..., EOS]. A training window cut from a later bar keeps the piece's conditions and says so
with Begin_later, so the model never takes a middle bar for a beginning. The conditioning tokens sit after miditok's vocabulary (MusicVocab.conditions), so miditok's saved
tokenizer file stays its own and reloads with miditok; config.json keeps the condition list.
Transposition shifts Pitch_* ids and the key token together, so a window keeps its intervals
and its key stays true; shifts that leave the tokenizer's pitch range are never drawn.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genforge.data.music_sources import TICKS, Piece, read_source
from genforge.errors import ConfigError, DataError

TOKENIZERS = ("remi", "tsd", "structured")
CONDITIONS = ("key", "meter", "tempo", "instrument", "style")
PITCH_RANGE = (21, 109)  # the piano's keys, A0..C8
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEYS = tuple(NOTE_NAMES) + tuple(n + "m" for n in NOTE_NAMES)  # 12 major, 12 minor
METERS = ("2/2", "3/2", "2/4", "3/4", "4/4", "5/4", "6/4", "3/8", "6/8", "9/8", "12/8")
TEMPOS = tuple(range(40, 241, 10))  # quarter notes per minute, the tempo token's buckets
TIME_SIGNATURES = {8: [3, 6, 9, 12], 4: [1, 2, 3, 4, 5, 6, 7], 2: [1, 2, 3, 4]}
FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
# Krumhansl & Kessler (1982) probe-tone profiles, C major and C minor
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass
class MusicDataConfig:
    source: str = "builtin:chorales"  # builtin:chorales | builtin:folk | a MIDI/MusicXML/ABC file or folder
    tokenizer: Literal["remi", "tsd", "structured"] = "remi"
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))  # the prefix tokens, in this order
    transpose: int = 0  # augmentation: each window shifted by a random 0..+-N semitones (0: off)
    batch_size: int = 16
    val_fraction: float = 0.1  # pieces held out for validation
    velocities: int = 8  # velocity bins
    skip_bad: bool = False  # skip unreadable / malformed files (listed) instead of stopping at the first
    exclude: list[str] = field(default_factory=list)  # piece ids left out, e.g. ["bwv10.7", "bwv277"]
    limit: int = 0  # read only the first N files (0: all)
    style: str = ""  # the style token of these pieces (default: chorale / folk / the folder's name)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        if not 0 <= self.transpose <= 12:
            raise ConfigError(f"data.transpose={self.transpose} must be in [0, 12] semitones")
        for c in self.conditions:
            if c not in CONDITIONS:
                raise ConfigError(f"data.conditions: {c!r} is not a condition; expected some of {', '.join(CONDITIONS)}")


# --- keys -----------------------------------------------------------------------------------------

def key_of(notes: np.ndarray) -> str:
    """The key ("C", "F#m", ...) whose Krumhansl-Kessler profile best correlates with the
    duration-weighted pitch-class histogram of notes (N, 4)."""
    hist = np.bincount(notes[:, 2] % 12, weights=notes[:, 1].astype(np.float64), minlength=12)
    scores = [np.corrcoef(hist, np.roll(profile, tonic))[0, 1] for profile in (MAJOR, MINOR) for tonic in range(12)]
    return KEYS[int(np.nanargmax(scores))]


def shift_key(key: str, semitones: int) -> str:
    minor = key.endswith("m")
    tonic = NOTE_NAMES[(NOTE_NAMES.index(key.rstrip("m")) + semitones) % 12]
    return tonic + ("m" if minor else "")


def parse_key(text: str, where: str = "--key") -> str:
    """A key name as KEYS spells it: "C", "c#m", "Bb major", "A minor", "f#" (lower case: minor)."""
    raw = text.strip()
    words = raw.replace("-", " ").split()
    if not words:
        raise ConfigError(f"{where}: empty key; expected e.g. C, F#m, Bb major, A minor")
    tonic, mode = words[0], " ".join(words[1:]).lower()
    minor = mode in ("minor", "min", "m") or (tonic.endswith("m") and len(tonic) > 1) or (not mode and tonic[0].islower())
    tonic = tonic.removesuffix("m") if len(tonic) > 1 and tonic.endswith("m") else tonic
    tonic = tonic[0].upper() + tonic[1:]
    tonic = FLATS.get(tonic, tonic)
    if tonic not in NOTE_NAMES or mode not in ("", "major", "maj", "minor", "min", "m"):
        raise ConfigError(f"{where}={raw!r}: unknown key; expected a tonic and mode, e.g. C, F#m, Bb major, A minor")
    return tonic + ("m" if minor else "")


def tempo_bucket(qpm: float) -> int:
    return min(TEMPOS, key=lambda t: abs(t - qpm))


# --- the vocabulary -------------------------------------------------------------------------------

def miditok_tokenizer(kind: str, velocities: int = 8):
    """A fresh miditok tokenizer of `kind` (remi | tsd | structured) over the piano's range."""
    import miditok

    if kind not in TOKENIZERS:
        raise ConfigError(f"data.tokenizer={kind!r}: expected one of {', '.join(TOKENIZERS)}")
    cls = {"remi": miditok.REMI, "tsd": miditok.TSD, "structured": miditok.Structured}[kind]
    config = miditok.TokenizerConfig(pitch_range=PITCH_RANGE, beat_res={(0, 4): 8, (4, 12): 4}, num_velocities=velocities,
                                     special_tokens=["PAD", "BOS", "EOS"], use_time_signatures=kind != "structured",
                                     use_tempos=False, use_programs=False, time_signature_range=TIME_SIGNATURES)
    return cls(config)


class MusicVocab:
    """miditok's tokenizer plus the conditioning tokens after its vocabulary."""

    def __init__(self, tokenizer, kind: str, conditions: list[str], styles: list[str], meters: list[str] = ()):
        self.tok, self.kind, self.order = tokenizer, kind, list(conditions)
        self.meters = sorted(set(METERS) | set(meters), key=lambda m: (int(m.split("/")[1]), int(m.split("/")[0])))
        self.styles = sorted(set(styles))
        names = ([f"Key_{k}" for k in KEYS] + [f"Meter_{m}" for m in self.meters] + [f"Tempo_{t}" for t in TEMPOS]
                 + [f"Instrument_{p}" for p in range(128)] + [f"Style_{s}" for s in self.styles]
                 + ["Begin_piece", "Begin_later"])
        self.conditions = names
        self.base = len(tokenizer)
        self.ids = {name: self.base + i for i, name in enumerate(names)}
        self.bos, self.eos, self.pad = tokenizer["BOS_None"], tokenizer["EOS_None"], tokenizer["PAD_None"]
        self.begin, self.later = self.ids["Begin_piece"], self.ids["Begin_later"]
        self.pitch_ids = np.array([tokenizer.vocab[f"Pitch_{p}"] for p in range(*PITCH_RANGE)])
        self.bar_id = tokenizer.vocab.get("Bar_None")

    def __len__(self) -> int:
        return self.base + len(self.conditions)

    # -- saving: miditok's own file in the checkpoint, our part in config.json
    def to_config(self) -> dict:
        return {"tokenizer": self.kind, "conditions": self.order, "styles": self.styles, "meters": self.meters,
                "vocab_size": len(self)}

    @classmethod
    def from_files(cls, tokenizer_file: Path, config: dict) -> MusicVocab:
        import miditok

        cls_ = {"remi": miditok.REMI, "tsd": miditok.TSD, "structured": miditok.Structured}[config["tokenizer"]]
        return cls(cls_(params=tokenizer_file), config["tokenizer"], config["conditions"], config["styles"], config["meters"])

    # -- pieces <-> ids
    def prefix(self, key: str | None = None, meter: str | None = None, tempo: float | None = None,
               instrument: int | None = None, style: str | None = None) -> list[int]:
        """[BOS] + the conditioning ids, in the configured order; ConfigError for a value the
        model has no token for. A condition given as None is left out (the model then chooses)."""
        given = {"key": key, "meter": meter, "tempo": tempo, "instrument": instrument, "style": style}
        ids = [self.bos]
        for name in self.order:
            value = given[name]
            if value is None:
                continue
            if name == "key":
                token = f"Key_{parse_key(str(value))}"
            elif name == "meter":
                token = f"Meter_{value}"
                if token not in self.ids:
                    raise ConfigError(f"--meter={value!r}: unknown meter; expected one of {', '.join(self.meters)}")
            elif name == "tempo":
                token = f"Tempo_{tempo_bucket(float(value))}"
            elif name == "instrument":
                if not 0 <= int(value) < 128:
                    raise ConfigError(f"--instrument={value}: a General MIDI program is 0..127")
                token = f"Instrument_{int(value)}"
            else:
                token = f"Style_{value}"
                if token not in self.ids:
                    raise ConfigError(f"--style={value!r}: unknown style; this model knows {', '.join(self.styles)}")
            ids.append(self.ids[token])
        return ids

    def piece_prefix(self, piece: Piece) -> list[int]:
        return self.prefix(piece.key or key_of(piece.notes), piece.meter, piece.tempo, piece.program, piece.style)

    def encode_body(self, piece: Piece) -> list[int]:
        """miditok's event ids of the piece's notes (no prefix, no EOS)."""
        ids = self.tok.encode(to_score(piece))
        seq = ids[0] if isinstance(ids, list) else ids
        return list(seq.ids)

    def encode(self, piece: Piece) -> np.ndarray:
        """The whole training sequence of a piece: prefix, Begin_piece, events, EOS."""
        return np.array(self.piece_prefix(piece) + [self.begin] + self.encode_body(piece) + [self.eos], dtype=np.int64)

    def decode(self, ids: list[int]):
        """(symusic Score, the conditions found) of generated ids: events up to EOS become notes;
        the tempo and instrument tokens set the score's tempo and program."""
        found: dict[str, str] = {}
        events = []
        for i in ids:
            if i == self.eos:
                break
            if i >= self.base:
                kind, _, value = self.conditions[i - self.base].partition("_")
                if kind != "Begin":
                    found.setdefault(kind.lower(), value)
            elif i not in (self.bos, self.pad):
                events.append(int(i))
        import symusic

        score = self.tok.decode([events]) if events else symusic.Score(self.tok.time_division)
        program = int(found.get("instrument", 0))
        for track in score.tracks:
            track.program = program
        score.tempos.clear()
        score.tempos.append(symusic.Tempo(0, float(found.get("tempo", 100))))
        return score, found

    def transpose_table(self, semitones: int) -> np.ndarray:
        """(V,) id map that shifts every Pitch_* id and key token by semitones."""
        table = np.arange(len(self))
        lo, hi = PITCH_RANGE
        for p in range(lo, hi):
            q = p + semitones
            if lo <= q < hi:
                table[self.pitch_ids[p - lo]] = self.pitch_ids[q - lo]
        for k in KEYS:
            table[self.ids[f"Key_{k}"]] = self.ids[f"Key_{shift_key(k, semitones)}"]
        return table


def to_score(piece: Piece):
    """A one-track symusic Score of a piece (TICKS per quarter)."""
    import symusic

    score = symusic.Score(TICKS)
    track = symusic.Track("music", piece.program, False)
    for start, dur, pitch, vel in piece.notes.tolist():
        if PITCH_RANGE[0] <= pitch < PITCH_RANGE[1]:
            track.notes.append(symusic.Note(int(start), int(dur), int(pitch), int(vel)))
    score.tracks.append(track)
    num, den = (int(x) for x in piece.meter.split("/"))
    score.time_signatures.append(symusic.TimeSignature(0, num, den))
    score.tempos.append(symusic.Tempo(0, float(piece.tempo)))
    return score


def first_bars(piece: Piece, bars: int) -> Piece:
    """The piece cut to its first `bars` bars (notes starting before their end)."""
    num, den = (int(x) for x in piece.meter.split("/"))
    end = bars * num * TICKS * 4 // den
    keep = piece.notes[piece.notes[:, 0] < end]
    if len(keep) == 0:
        raise DataError(f"{piece.name}: no notes in its first {bars} bars")
    return dataclasses.replace(piece, notes=keep)


# --- the data a run trains on -----------------------------------------------------------------------

@dataclass
class MusicSet:
    """Token sequences of pieces: (prefix length, ids) each, and the transpositions each allows."""
    names: list[str]
    seqs: list[np.ndarray]
    prefix_lens: list[int]
    shifts: list[tuple[int, int]]  # (lowest, highest) semitone shift keeping every pitch in range

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def tokens(self) -> int:
        return int(sum(len(s) for s in self.seqs))


def open_music(cfg: MusicDataConfig, log=print) -> tuple[MusicVocab, MusicSet, MusicSet, list[Piece]]:
    """(vocab, train set, validation set, the training pieces) of cfg; the pieces are split by a
    fixed shuffle (a set of one piece validates on itself). The files skipped with skip_bad are
    logged in one line."""
    read = read_source(cfg.source, cfg.skip_bad, tuple(cfg.exclude), cfg.limit, cfg.style)
    if read.bad:
        log(f"skipped {len(read.bad)} unreadable file(s): " + "; ".join(read.bad))
    if read.duplicates:
        log(f"dropped {len(read.duplicates)} exact copies of earlier pieces: " + "; ".join(read.duplicates[:5])
            + ("; ..." if len(read.duplicates) > 5 else ""))
    pieces = read.pieces
    for p in pieces:
        p.key = p.key or key_of(p.notes)
    vocab = MusicVocab(miditok_tokenizer(cfg.tokenizer, cfg.velocities), cfg.tokenizer, cfg.conditions,
                       [p.style for p in pieces], [p.meter for p in pieces])
    order = np.random.default_rng(0).permutation(len(pieces))
    n_val = round(cfg.val_fraction * len(pieces)) if len(pieces) > 1 else 0
    val_idx = set(order[:n_val].tolist())
    train_p = [p for i, p in enumerate(pieces) if i not in val_idx]
    val_p = [p for i, p in enumerate(pieces) if i in val_idx] or train_p
    return vocab, encode_set(vocab, train_p), encode_set(vocab, val_p), train_p


def encode_set(vocab: MusicVocab, pieces: list[Piece]) -> MusicSet:
    lo, hi = PITCH_RANGE
    seqs, lens, shifts = [], [], []
    for p in pieces:
        seqs.append(vocab.encode(p))
        lens.append(len(vocab.piece_prefix(p)))
        inside = p.notes[(p.notes[:, 2] >= lo) & (p.notes[:, 2] < hi), 2]
        shifts.append((lo - int(inside.min()), hi - 1 - int(inside.max())) if len(inside) else (0, 0))
    return MusicSet([p.name for p in pieces], seqs, lens, shifts)


class MusicBatches:
    """Training windows of block_size + 1 tokens: a piece's prefix, then its events from a random
    bar (REMI) or note (TSD, Structured) on, transposed by a random shift in +-transpose. Short
    windows are padded (targets -100, which the loss ignores). Batch n is drawn from its own
    generator seeded by (seed, n), so resuming at n draws what an uninterrupted run would have."""

    def __init__(self, vocab: MusicVocab, train: MusicSet, val: MusicSet, batch_size: int, block_size: int,
                 transpose: int = 0, seed: int = 0, device: str | torch.device = "cpu"):
        self.vocab, self.train, self.val = vocab, train, val
        self.batch_size, self.block_size, self.transpose = batch_size, block_size, transpose
        self.seed, self.device, self.step = seed, torch.device(device), 0
        self.tables = {s: vocab.transpose_table(s) for s in range(-transpose, transpose + 1)}
        for name, n in zip(train.names, train.prefix_lens):
            if n + 1 >= block_size:
                raise ConfigError(f"model.block_size={block_size} leaves no room for the music after {name}'s "
                                  f"{n} conditioning tokens")
        self._starts = [self._event_starts(s, n) for s, n in zip(train.seqs, train.prefix_lens)]
        self._val_starts = [self._event_starts(s, n) for s, n in zip(val.seqs, val.prefix_lens)]
        self._weights = np.array([len(s) for s in train.seqs], dtype=np.float64)
        self._weights /= self._weights.sum()

    def _event_starts(self, seq: np.ndarray, n: int) -> np.ndarray:
        body = seq[n + 1:]
        mark = body == self.vocab.bar_id if self.vocab.bar_id is not None else np.isin(body, self.vocab.pitch_ids)
        starts = np.flatnonzero(mark)
        starts = np.union1d(starts, [0])
        return starts[starts < max(1, len(body) - 1)]

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        return self._draw(rng, self.train, self._starts, self.transpose, self._weights)

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same n validation batches every time (untransposed)."""
        weights = np.array([len(s) for s in self.val.seqs], dtype=np.float64)
        return [self._draw(np.random.default_rng([self.seed, 1 << 30, i]), self.val, self._val_starts, 0,
                           weights / weights.sum()) for i in range(n)]

    def _draw(self, rng, data: MusicSet, starts, transpose: int, weights) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.block_size
        x = np.full((self.batch_size, T), self.vocab.pad, dtype=np.int64)
        y = np.full((self.batch_size, T), -100, dtype=np.int64)
        for b in range(self.batch_size):
            i = int(rng.choice(len(data), p=weights))
            seq, n = data.seqs[i], data.prefix_lens[i]
            start = int(rng.choice(starts[i]))
            begin = [self.vocab.begin if start == 0 else self.vocab.later]
            window = np.concatenate([seq[:n], begin, seq[n + 1 + start: n + 1 + start + T - n]])
            if transpose:
                lo, hi = data.shifts[i]
                shift = int(rng.integers(max(-transpose, lo), min(transpose, hi) + 1))
                window = self.tables[shift][window]
            x[b, :len(window) - 1] = window[:-1]
            y[b, :len(window) - 1] = window[1:]
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
