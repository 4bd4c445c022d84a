"""JSB Chorales (Boulanger-Lewandowski et al., ICML 2012) as token data for the GPT.

The data: czhuang/JSB-Chorales-dataset's `jsb-chorales-quarter.json`, the 382 Bach chorales of
Allan & Williams (2005) transposed to C and sampled at quarter-note frames, in the standard split
of the polyphonic-music literature: 229 train / 76 valid / 77 test chorales (13,807 / 4,602 /
4,725 frames). A piece is a list of frames; a frame is the sorted list of sounding MIDI pitches
(0 to 4 of them), a subset of the piano's 88 keys (21..108).

The encoding is one-to-one: each frame is its pitches in ascending order, one token per pitch
(token id = pitch - 21), then the frame delimiter FRAME; each piece is preceded by the
end-of-text token EOT. So P(frame | past) is the product of its tokens' probabilities, delimiter
included: the JSB protocol's NLL per frame (genforge/eval/jsb_nll.py). The tokenizer.json is a
word-level one whose words are the pitch numbers and "|", so sampled text reads `60 64 67 72 |`.

`prepare_jsb` writes a genforge token directory (train, val = JSB's valid, test) that `genforge
train` reads like any other; `genforge prepare jsb:PATH --out DIR` reaches it.

music21's bundled Bach chorales contain most of JSB's valid and test pieces:
`jsb_heldout_fingerprints()` gives their soprano fingerprints (`soprano_fingerprint`), so a
corpus built from music21 can leave them out before anything trained on it is compared on JSB.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genforge.data.shards import FORMAT, ShardWriter, replace_prepared_dir, write_manifest
from genforge.errors import DataError

FILE = "jsb-chorales-quarter.json"
PREFIX = "jsb:"  # `genforge prepare jsb:PATH`, data.source: jsb:PATH
SPLITS = {"train": 229, "valid": 76, "test": 77}  # chorales per split, Boulanger-Lewandowski et al. 2012
FRAMES = {"train": 13_807, "valid": 4_602, "test": 4_725}  # quarter-note frames per split
TOKEN_SPLITS = {"train": "train", "valid": "val", "test": "test"}  # JSB's split -> the token directory's
LOWEST, N_PITCHES = 21, 88  # the piano's keys: MIDI 21 (A0) .. 108 (C8)
FRAME = N_PITCHES  # the frame delimiter's token id
EOT = N_PITCHES + 1  # before each piece
VOCAB_SIZE = N_PITCHES + 2
DELIMITER_WORD = "|"
FINGERPRINT_INTERVALS = 8

Piece = list[tuple[int, ...]]  # frames, each its sorted MIDI pitches


def jsb_file(source: str | Path) -> Path:
    """The JSON file that `source` names: the file itself or the folder holding FILE."""
    path = Path(str(source).removeprefix(PREFIX))
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected the JSB Chorales JSON, {FILE}, "
                        "from github.com/czhuang/JSB-Chorales-dataset)")
    return path


def load_jsb(source: str | Path) -> dict[str, list[Piece]]:
    """{"train", "valid", "test"} -> pieces, read from the JSB JSON (or its folder). Raises
    DataError naming the file for a missing split, a malformed frame or a pitch off the piano."""
    path = jsb_file(source)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e.__class__.__name__}: {e})") from None
    if not isinstance(raw, dict) or set(SPLITS) - set(raw):
        raise DataError(f"{path}: expected a JSON object with the splits {', '.join(SPLITS)}")
    out: dict[str, list[Piece]] = {}
    for split in SPLITS:
        pieces = raw[split]
        if not isinstance(pieces, list):
            raise DataError(f"{path}: {split} is not a list of pieces")
        out[split] = [_piece(p, f"{path}: {split}[{i}]") for i, p in enumerate(pieces)]
    return out


def _piece(frames, where: str) -> Piece:
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{where}: a piece must be a non-empty list of frames")
    out = []
    for t, frame in enumerate(frames):
        if not isinstance(frame, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in frame):
            raise DataError(f"{where}, frame {t}: expected a list of MIDI pitch numbers, got {frame!r}")
        pitches = sorted(set(frame))
        if pitches and not (pitches[0] >= LOWEST and pitches[-1] < LOWEST + N_PITCHES):
            raise DataError(f"{where}, frame {t}: pitch outside the piano's {LOWEST}..{LOWEST + N_PITCHES - 1}: {frame}")
        out.append(tuple(pitches))
    return out


def encode_piece(piece: Sequence[Sequence[int]]) -> np.ndarray:
    """Token ids of a piece: per frame its pitches ascending (id = pitch - 21), then FRAME. No EOT."""
    ids: list[int] = []
    for frame in piece:
        ids += [p - LOWEST for p in sorted(frame)]
        ids.append(FRAME)
    return np.array(ids, dtype=np.int64)


def decode_tokens(ids: Sequence[int]) -> Piece:
    """The frames that token ids encode (the inverse of encode_piece; EOT tokens are skipped, a
    trailing unfinished frame is dropped). Raises DataError for ids that no frame encodes: a
    pitch not above the one before it in its frame, or an id outside the vocabulary."""
    frames: Piece = []
    frame: list[int] = []
    for i, t in enumerate(int(x) for x in ids):
        if t == FRAME:
            frames.append(tuple(frame))
            frame = []
        elif t == EOT:
            frame = []
        elif 0 <= t < N_PITCHES:
            if frame and t + LOWEST <= frame[-1]:
                raise DataError(f"token {i}: pitch {t + LOWEST} after {frame[-1]} in one frame "
                                "(a frame's pitches are encoded in ascending order)")
            frame.append(t + LOWEST)
        else:
            raise DataError(f"token {i}: id {t} is not a JSB token (0..{VOCAB_SIZE - 1})")
    return frames


def frame_bits(piece: Sequence[Sequence[int]]) -> np.ndarray:
    """The piano roll of a piece: (frames, 88) of 0/1, column k = MIDI pitch 21 + k."""
    roll = np.zeros((len(piece), N_PITCHES), dtype=np.float32)
    for t, frame in enumerate(piece):
        roll[t, [p - LOWEST for p in frame]] = 1.0
    return roll


def tokenizer():
    """The word-level tokenizer of the encoding: words "21".."108" (ids 0..87), "|" and EOT."""
    import tokenizers
    from tokenizers import models, normalizers, pre_tokenizers

    from genforge.data.tokenizer import EOT as EOT_WORD
    from genforge.data.tokenizer import Tokenizer

    vocab = {str(LOWEST + k): k for k in range(N_PITCHES)}
    vocab[DELIMITER_WORD], vocab[EOT_WORD] = FRAME, EOT
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=EOT_WORD))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([EOT_WORD])
    return Tokenizer(tok)


def prepare_jsb(source: str | Path, out: str | Path) -> Path:
    """Write the JSB splits as a token directory `out` (splits train, val, test; each piece
    preceded by EOT) with its tokenizer.json and manifest; return out. Raises DataError as load_jsb."""
    path, out = jsb_file(source), Path(out)
    pieces = load_jsb(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        splits = {}
        for split, name in TOKEN_SPLITS.items():
            writer = ShardWriter(tmp, name, np.dtype(np.uint16), 1 << 30)
            for piece in pieces[split]:
                writer.write(np.concatenate([[EOT], encode_piece(piece)]), str(path))
            splits[name] = writer.finish()
        tokenizer().save(tmp / "tokenizer.json")
        write_manifest(tmp, {
            "format": FORMAT, "dtype": "uint16", "vocab_size": VOCAB_SIZE, "eot_id": EOT,
            "tokenizer": "tokenizer.json", "tokenizer_kind": "words",
            "splits": splits,
            "source": {"spec": f"{PREFIX}{path}", "files": 1, "format": "jsb",
                       "pieces": {s: len(p) for s, p in pieces.items()},
                       "frames": {s: sum(map(len, p)) for s, p in pieces.items()}},
        })
        replace_prepared_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def soprano_fingerprint(soprano: Sequence[int | None], n: int = FINGERPRINT_INTERVALS) -> tuple[int, ...]:
    """The first n melodic intervals (semitones) of a soprano line, transposition-invariant:
    `soprano` is the top sounding pitch at each quarter-note beat (None or absent at a rest);
    rests are dropped and repeated pitches merged (quarter frames cannot tell a held note from a
    struck one). From a music21 chorale: the soprano part's pitch sounding at offsets 0, 1, 2, ...
    quarter notes (`part.flatten().notes.getElementAtOrBefore(q)`), its top pitch's `.midi`.
    A line with fewer than n intervals gives all it has."""
    line: list[int] = []
    for p in soprano:
        if p is not None and (not line or p != line[-1]):
            line.append(int(p))
    return tuple(b - a for a, b in itertools.pairwise(line))[:n]


def piece_fingerprint(piece: Sequence[Sequence[int]], n: int = FINGERPRINT_INTERVALS) -> tuple[int, ...]:
    """soprano_fingerprint of a JSB piece (its highest pitch per frame)."""
    return soprano_fingerprint([max(f) if f else None for f in piece], n)


def compute_heldout_fingerprints(source: str | Path, n: int = FINGERPRINT_INTERVALS) -> frozenset[tuple[int, ...]]:
    """piece_fingerprint of every valid and test chorale of the JSB file at source."""
    pieces = load_jsb(source)
    return frozenset(piece_fingerprint(p, n) for split in ("valid", "test") for p in pieces[split])


def jsb_heldout_fingerprints() -> frozenset[tuple[int, ...]]:
    """The soprano fingerprints (soprano_fingerprint, first 8 intervals) of JSB's 76 valid and
    77 test chorales: 121 distinct ones, shipped here so no JSB file is needed.

    A symbolic-music corpus that may contain JSB's held-out pieces (music21's Bach chorales hold
    at least 44 of the 77 test and 46 of the 76 valid ones, not transposed) drops every piece
    whose `soprano_fingerprint` is in this set before a model trained on it is compared with
    anything on JSB. Bach harmonised many tunes more than once, so this also drops some
    harmonisations of held-out tunes that JSB puts in train (42 of the 121 fingerprints occur in
    JSB's train split too): the exclusion errs on the safe side. Measured on music21's 413 Bach
    chorales (soprano = parts[0], sampled as soprano_fingerprint says): 71 of the 76 valid and 70
    of the 77 test chorales match one of them, and 225 of the 413 match a held-out fingerprint
    (188 are left). tests/data/test_jsb.py checks the set against the JSB file where one is
    available."""
    return HELDOUT_FINGERPRINTS


def split_pieces(ids: np.ndarray) -> list[np.ndarray]:
    """The pieces of a token split written by prepare_jsb: its ids cut at each EOT, each piece's
    tokens without the EOT. Raises DataError when the split does not start with EOT."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and ids[0] != EOT:
        raise DataError(f"token split does not start with EOT ({EOT}): not JSB token data made by prepare_jsb")
    starts = np.flatnonzero(ids == EOT)
    return [ids[s + 1:e] for s, e in zip(starts, [*starts[1:], ids.size])]


# compute_heldout_fingerprints(jsb-chorales-quarter.json), sorted
HELDOUT_FINGERPRINTS = frozenset({
    (-7, 2, 3, -2, -1, -2, 5, 2), (-5, 1, 2, -2, -1, -2, 3, -1), (-5, 2, 2, 1, 2, 2, -4, 4),
    (-5, 2, 3, 4, -2, -2, -1, 1), (-5, 4, 1, -3, -2, 5, -1, -2), (-5, 5, -2, -1, -2, -4, 4, -2),
    (-5, 5, 2, 1, 2, -3, -2, 3), (-5, 5, 2, 2, -4, 4, 3, 4), (-4, -1, -3, 1, -1, 8, 1, -1),
    (-4, -1, 1, -3, 3, 2, 2, 3), (-4, 2, -2, 4, -4, 2, 2, 3), (-4, 2, 2, -4, -1, -2, 7, -2),
    (-4, 2, 2, -4, -1, 1, -3, 8), (-4, 2, 2, 1, -3, -2, -1, 1), (-4, 2, 2, 1, -1, -2, -2, -1),
    (-4, 2, 2, 2, 1, -5, 2, 1), (-4, 2, 2, 3, -2, -1, 3, -5), (-4, 2, 2, 3, -2, -1, 3, -2),
    (-3, -2, 5, 2, -7, 5, -2, -1), (-3, -2, 5, 2, 2, -2, 2, 1), (-3, 2, 1, 2, -2, -1, -2, 2),
    (-3, 3, 2, -7, 5, -2, -1, -4), (-3, 3, 2, -2, -2, -1, -2, 2), (-3, 3, 4, -2, -2, -1, -2, 3),
    (-3, 3, 4, -2, -2, -1, 1, 2), (-3, 5, -2, -7, 2, 2, 1, 2), (-3, 5, 2, 1, -1, -2, 3, -5),
    (-2, -3, 3, 2, 2, -2, -1, 1), (-2, -3, 5, -2, -3, 1, 4, -2), (-2, -2, -1, -2, 3, 4, -2, -2),
    (-2, -2, -1, -2, 7, 2, 2, 1), (-2, -2, -1, 1, 2, -2, -1, -2), (-2, -2, -1, 1, 2, 2, -2, -2),
    (-2, -2, 2, 2, 1, 2, 2, -2), (-2, 2, 3, 2, -5, -4, 4, -4), (-2, 4, 2, 1, -1, -2, 3, -5),
    (-2, 5, -1, -2, 3, 2, -2, 2), (-1, -4, 2, 2, 1, -1, -2, -2), (-1, -4, 5, 2, 1, 2, -2, -1),
    (-1, -2, -2, -3, 5, -2, 5, -1), (-1, -2, -2, -2, 4, -2, 5, -1), (-1, -2, -2, 5, 2, 2, -2, -2),
    (-1, -2, -2, 5, 2, 2, -2, 2), (-1, -2, 2, -4, 2, 2, 1, -5), (-1, 1, 2, -2, 2, 2, 1, -1),
    (-1, 1, 2, 1, -1, -2, 2, 5), (-1, 1, 3, -1, -2, 3, 2, 2), (-1, 1, 4, 3, -2, -1, -2, -7),
    (-1, 4, -1, -2, -1, 1, -3, 2), (1, -1, -2, 2, 3, 2, -2, -2), (1, -1, -2, 7, -4, -1, 3, -2),
    (1, 2, -7, 2, 2, 5, 2, 1), (2, -4, -1, -2, 7, 2, -2, -2), (2, -2, -3, -2, 2, 2, 1, 4),
    (2, -2, -3, 1, -1, -2, 2, -2), (2, -2, -3, 3, -5, 2, 2, 1), (2, -2, -1, -4, 2, 3, 2, -2),
    (2, -2, 5, 2, -2, -1, 3, 2), (2, 1, -3, 7, -2, -2, -1, -2), (2, 1, -1, 5, 2, 1, 2, -3),
    (2, 1, 2, -3, -4, 2, 2, -7), (2, 1, 2, -2, -1, 1, 2, 2), (2, 1, 2, 2, -4, 2, -3, 1), (2, 1, 2, 2, -2, -2, 2, -3),
    (2, 1, 2, 2, 5, -1, 1, 2), (2, 2, -7, 2, 1, 2, -2, 2), (2, 2, -4, 2, 2, 1, -1, 1), (2, 2, -2, -2, -1, -2, -2, 5),
    (2, 2, -2, 3, -1, -2, -2, 2), (2, 2, -2, 3, -1, -2, -2, 4), (2, 2, 1, -3, -2, 2, -5, 2),
    (2, 2, 1, -1, -2, 2, 1, 2), (2, 2, 1, -1, -2, 3, -5, -3), (2, 2, 1, 2, -2, -1, -2, -2),
    (2, 2, 1, 4, -2, -2, -1, -2), (2, 2, 2, 1, -5, 3, -1, -2), (2, 2, 3, -7, -1, -2, -2, 2),
    (2, 2, 3, -1, 1, -3, 1, -1), (3, -3, -4, 2, 2, 1, -1, -2), (3, -3, -2, 2, -4, 4, 3, -3),
    (3, -3, -2, 2, 1, -3, -2, -1), (3, -3, 1, -1, -2, -2, 4, 3), (3, -1, -2, -2, -2, -1, 2, 2),
    (3, -1, -2, -2, 2, -3, -4, 4), (3, -1, -2, 7, -2, -2, -1, 1), (3, -1, 5, -2, -2, -1, 1, -3),
    (3, 1, 1, 2, -2, -1, 1, -2), (3, 2, -2, -2, -1, 3, 2, 2), (3, 2, -2, 5, -1, 1, -1, -2),
    (3, 2, 2, -7, 5, -2, -1, 3), (3, 2, 2, -2, 5, -1, -2, -2), (3, 2, 2, 1, -1, -2, 5, -2),
    (4, -2, -2, 2, 2, -4, 4, 1), (4, -2, 2, 1, 2, -3, 5, -2), (4, 1, 2, -2, -5, 4, 1, 2),
    (4, 1, 2, -2, -1, -2, 2, -2), (4, 1, 2, 2, -2, 2, 2, 1), (4, 3, -5, 2, 2, 1, -2, -1), (4, 3, -3, -4, 2, 2, -4, 7),
    (4, 3, 2, -2, 5, -5, 5, 2), (4, 3, 17, -5, 5, 2, 2, 3), (5, -5, 2, -2, -2, -1, -2, 5),
    (5, -2, -2, -1, -4, 2, 2, 1), (5, -2, -2, -1, -2, 2, -2, -2), (5, -2, -2, -1, -2, 2, 7, 1),
    (5, -1, 1, 2, -4, -3, -2, 5), (5, 2, 1, -1, -2, 2, -3, -4), (5, 2, 1, 2, -3, -4, 2, 2),
    (5, 2, 2, -2, -2, -1, -2, 2), (5, 2, 2, -2, -2, 2, 2, 1), (5, 2, 2, 1, 2, -3, 5, -2),
    (7, -3, -4, -1, -4, 5, 2, 2), (7, -3, -4, -1, 1, -3, 3, 2), (7, -3, -4, 4, -2, 2, 3, -2),
    (7, -3, -4, 7, 2, -2, 2, 2), (7, -3, -2, 2, 2, 1, -3, 3), (7, -2, -3, 2, 1, -3, -2, 2),
    (7, 2, -2, -3, -2, 2, 3, 2), (7, 2, 2, 1, -1, 3, -7, 5), (7, 3, -3, -4, 2, 3, -1, -2),
    (9, 3, -2, -3, 2, -2, -2, 4),
})
