"""Where symbolic music comes from: MIDI files and folders, MusicXML / ABC / Humdrum scores read
through music21, and music21's bundled corpus (the Bach chorales, O'Neill's 1850 Irish folk
tunes; the Essen folk songs are left out, their licence is non-commercial).

Every source becomes a list of Piece: its notes in ticks (TICKS per quarter), its meter, tempo,
program and style. Scores are expanded (repeats played out) and their ties merged; one that
cannot be expanded or read is malformed: a DataError naming it, or, with skip_bad, skipped and
listed. Corpus pieces are cached as JSON under $GENFORGE_CACHE/music (music21 parses a chorale in
~0.3 s; the cache reads it in a millisecond).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genforge.config import cache_root
from genforge.errors import DataError

TICKS = 480  # per quarter note
MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".abc", ".krn")
# builtin:NAME -> (corpus folders, the style token its pieces get)
BUILTIN = {"chorales": (("bach",), "chorale"), "folk": (("oneills1850",), "folk")}
CACHE_VERSION = "2"


@dataclass
class Piece:
    name: str  # the file (or corpus path), "#N" for the N-th tune of a book of tunes
    notes: np.ndarray  # (N, 4) int64: start tick, duration ticks, MIDI pitch, velocity; sorted by start
    meter: str = "4/4"
    tempo: float = 100.0  # quarter notes per minute
    program: int = 0  # General MIDI program (0: acoustic grand piano)
    style: str = ""
    key: str = ""  # filled by music.key_of when empty

    def transposed(self, semitones: int) -> Piece:
        notes = self.notes.copy()
        notes[:, 2] += semitones
        return Piece(self.name, notes, self.meter, self.tempo, self.program, self.style, "")


@dataclass
class Skipped:
    pieces: list[Piece] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # "name: why" of each skipped file or tune of a book
    duplicates: list[str] = field(default_factory=list)  # "name = first" of each piece dropped as a copy


def read_source(source: str, skip_bad: bool = False, exclude: tuple[str, ...] = (), limit: int = 0,
                style: str = "") -> Skipped:
    """The pieces of `source` (builtin:chorales, builtin:folk, a file or a folder) and the files
    skipped as unreadable (only with skip_bad; otherwise the first one raises DataError naming it).
    `exclude` drops pieces whose name holds one of the ids (e.g. BWV numbers "bwv10.7");
    `limit` keeps the first N files (0: all)."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN:
            raise DataError(f"data.source={source!r}: unknown builtin music source; expected one of "
                            + ", ".join(f"builtin:{k}" for k in BUILTIN))
        folders, default_style = BUILTIN[name]
        files = corpus_files(folders)
        style = style or default_style
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"data.source={source}: no such file or folder")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES + SCORE_SUFFIXES) \
            if path.is_dir() else [path]
        if not files:
            raise DataError(f"data.source={source}: the folder holds no MIDI (.mid, .midi) or score "
                            f"({', '.join(SCORE_SUFFIXES)}) files")
        style = style or (path.name if path.is_dir() else path.parent.name) or "music"
    files = [f for f in files if not _excluded(f, exclude)]
    if limit:
        files = files[:limit]
    out = Skipped()
    for f in files:
        try:
            read = read_file(f, style)
        except DataError as e:
            if not skip_bad:
                raise DataError(f"{e}; pass data.skip_bad=true to skip such files") from None
            out.bad.append(str(e))
            continue
        if read.bad and not skip_bad:  # a book of tunes: the others are kept only with the flag
            more = f" (and {len(read.bad) - 1} more of its tunes)" if len(read.bad) > 1 else ""
            raise DataError(f"{read.bad[0]}{more}; pass data.skip_bad=true to skip such tunes")
        out.bad += read.bad
        out.pieces += [p for p in read.pieces if not _excluded(Path(p.name), exclude)]
    if not out.pieces:
        raise DataError(f"data.source={source}: no readable music" + (f" ({len(out.bad)} files skipped)" if out.bad else ""))
    out.pieces, out.duplicates = _unique(out.pieces)
    return out


def _unique(pieces: list[Piece]) -> tuple[list[Piece], list[str]]:
    """The pieces without exact copies of an earlier one (the same onsets, durations and pitches),
    and "copy = original" for each dropped: corpora repeat tunes across books (O'Neill's 1850 in
    music21 holds 50 tunes twice), and a copy on both sides of the split would leak."""
    first: dict[bytes, str] = {}
    kept, dropped = [], []
    for p in pieces:
        digest = hashlib.sha1(np.ascontiguousarray(p.notes[:, :3]).tobytes()).digest()
        if digest in first:
            dropped.append(f"{p.name} = {first[digest]}")
            continue
        first[digest] = p.name
        kept.append(p)
    return kept, dropped


def _excluded(path: Path, exclude: tuple[str, ...]) -> bool:
    stem = path.name.split("#")[0]
    stem = stem[: -len(path.suffix)] if path.suffix and stem.endswith(path.suffix) else stem
    return stem.lower() in {e.lower().removesuffix(".mxl").removesuffix(".xml") for e in exclude}


def corpus_files(folders: tuple[str, ...]) -> list[Path]:
    """music21's bundled corpus files under folders (chorales: bwv*.mxl/.xml/.krn)."""
    import music21

    root = Path(music21.__file__).parent / "corpus"
    files = []
    for folder in folders:
        files += sorted(p for p in (root / folder).iterdir()
                        if p.suffix in SCORE_SUFFIXES and (folder != "bach" or p.name.startswith("bwv")))
    if not files:
        raise DataError(f"{root}: music21's corpus is missing (pip install music21 ships it)")
    return files


def read_file(path: Path, style: str) -> Skipped:
    """The pieces of one file (a book of ABC tunes holds many) and the tunes of a book that could
    not be read ("book#7: why"); DataError naming the file when nothing in it is readable."""
    if path.suffix.lower() in MIDI_SUFFIXES:
        return Skipped([read_midi(path, style)])
    cached = _cache_file(path)
    if cached is not None and cached.is_file():
        return _from_cache(cached, style)
    try:
        read = read_score(path, style)
    except DataError as e:  # malformed corpus files stay malformed: remember why
        if cached is not None:
            _write_atomic(cached, json.dumps({"error": str(e)}))
        raise
    if cached is not None:
        _to_cache(cached, read)
    return read


def read_midi(path: Path, style: str) -> Piece:
    import symusic

    try:
        score = symusic.Score(str(path))
    except Exception as e:  # symusic's messages name the chunk; keep the file in front
        raise DataError(f"{path}: unreadable MIDI ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return from_score(score, str(path), style)


def from_score(score, name: str, style: str) -> Piece:
    """A Piece of a symusic Score (any tick rate): every non-drum track merged into one voice list."""
    score = score.resample(TICKS, min_dur=1) if score.ticks_per_quarter != TICKS else score
    rows, programs = [], []
    for track in score.tracks:
        if track.is_drum:
            continue
        programs += [track.program] * len(track.notes)
        rows += [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]
    if not rows:
        raise DataError(f"{name}: holds no notes")
    notes = _sorted(np.array(rows, dtype=np.int64))
    meter = f"{score.time_signatures[0].numerator}/{score.time_signatures[0].denominator}" if len(score.time_signatures) else "4/4"
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    program = int(np.bincount(programs).argmax())
    return Piece(name, notes, meter, tempo, program, style)


def read_score(path: Path, style: str) -> Skipped:
    """MusicXML, ABC or Humdrum through music21: repeats expanded, ties merged. A book of tunes
    keeps the tunes it can read and names the others (DataError when it can read none)."""
    from music21 import converter, stream

    try:
        parsed = converter.parse(str(path))
    except Exception as e:
        raise DataError(f"{path}: unreadable score ({_first_line(e)})") from None
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    if len(scores) == 1:
        return Skipped([_score_piece(scores[0], _corpus_name(path), style)])
    out = Skipped()
    for i, score in enumerate(scores):
        try:
            out.pieces.append(_score_piece(score, f"{_corpus_name(path)}#{i + 1}", style))
        except DataError as e:
            out.bad.append(str(e))
    if not out.pieces:
        raise DataError(f"{path}: none of its {len(scores)} tunes is readable ({out.bad[0]})")
    return out


def _score_piece(score, name: str, style: str) -> Piece:
    try:
        score = score.expandRepeats()
    except Exception as e:  # music21's ExpanderException, or what a broken repeat structure trips
        raise DataError(f"{name}: malformed score (cannot expand its repeats: {_first_line(e)})") from None
    score = score.stripTies()
    rows = []
    for n in score.recurse().notes:
        start, dur = float(n.getOffsetInHierarchy(score)), float(n.quarterLength)
        if dur <= 0:  # grace notes
            continue
        rows += [(round(start * TICKS), max(1, round(dur * TICKS)), p.midi, 80) for p in n.pitches]
    if not rows:
        raise DataError(f"{name}: holds no notes")
    meters = list(score.recurse().getElementsByClass("TimeSignature"))
    marks = list(score.recurse().getElementsByClass("MetronomeMark"))
    tempo = float(marks[0].getQuarterBPM() or 100.0) if marks else 100.0
    return Piece(name, _sorted(np.array(rows, dtype=np.int64)), meters[0].ratioString if meters else "4/4", tempo, 0, style)


def _sorted(notes: np.ndarray) -> np.ndarray:
    notes[:, 0] -= notes[:, 0].min()  # pieces start at their first note (no pickup silence)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _corpus_name(path: Path) -> str:
    """bach/bwv1.6.mxl for a corpus file, the path itself for any other."""
    parts = path.parts
    if "corpus" in parts and "music21" in parts:
        return "/".join(parts[parts.index("corpus") + 1:])
    return str(path)


# --- the corpus cache -----------------------------------------------------------------------------

def _cache_file(path: Path) -> Path | None:
    name = _corpus_name(path)
    if name == str(path):  # a user's own score: read each time
        return None
    import music21

    return cache_root() / "music" / f"{CACHE_VERSION}-music21-{music21.__version__}" / (re.sub(r"[^\w.-]", "_", name) + ".json")


def _from_cache(file: Path, style: str) -> Skipped:
    data = json.loads(file.read_text())
    if "error" in data:
        raise DataError(data["error"])
    return Skipped([Piece(p["name"], np.array(p["notes"], dtype=np.int64).reshape(-1, 4), p["meter"], p["tempo"],
                          p["program"], style) for p in data["pieces"]], data["bad"])


def _to_cache(file: Path, read: Skipped) -> None:
    data = {"pieces": [{"name": p.name, "notes": p.notes.tolist(), "meter": p.meter, "tempo": p.tempo,
                        "program": p.program} for p in read.pieces], "bad": read.bad}
    _write_atomic(file, json.dumps(data))


def _write_atomic(file: Path, text: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, file)  # two processes filling the cache write the same bytes; the last one wins
