"""JSB Chorales: the loader reproduces the standard split, the frame encoding is one-to-one, the
token directory holds the pieces, and the shipped held-out fingerprints are the file's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genforge.data import jsb
from genforge.data.shards import TokenData
from genforge.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsb-chorales"
needs_jsb = pytest.mark.skipif(not (SHARED / jsb.FILE).is_file(),
                               reason=f"JSB Chorales reference data absent ({SHARED / jsb.FILE}; see ../shared/data/README.md)")


def random_piece(rng: np.random.Generator, frames: int) -> list[tuple[int, ...]]:
    """Frames of 0..6 distinct pitches anywhere on the piano, the lowest and highest keys included."""
    out = []
    for _ in range(frames):
        k = int(rng.integers(0, 7))
        out.append(tuple(sorted(int(p) for p in rng.choice(np.arange(21, 109), size=k, replace=False))))
    return out + [(21, 108), ()]


def write_json(path: Path, splits: dict) -> Path:
    path.write_text(json.dumps({k: [[list(f) for f in p] for p in v] for k, v in splits.items()}))
    return path


@needs_jsb
def test_loader_reproduces_the_standard_split_and_frame_counts():
    pieces = jsb.load_jsb(SHARED)
    assert {k: len(v) for k, v in pieces.items()} == {"train": 229, "valid": 76, "test": 77}
    assert {k: sum(map(len, v)) for k, v in pieces.items()} == {"train": 13_807, "valid": 4_602, "test": 4_725}
    pitches = {p for v in pieces.values() for piece in v for f in piece for p in f}
    assert (min(pitches), max(pitches)) == (43, 96)
    assert max(len(f) for v in pieces.values() for piece in v for f in piece) == 4


@needs_jsb
def test_prepared_token_directory_holds_every_piece_exactly(tmp_path):
    out = jsb.prepare_jsb(f"jsb:{SHARED}", tmp_path / "jsb")
    data, pieces = TokenData(out), jsb.load_jsb(SHARED)
    assert data.vocab_size == jsb.VOCAB_SIZE and data.eot_id == jsb.EOT
    for split, name in jsb.TOKEN_SPLITS.items():
        ids = np.concatenate([np.asarray(s) for s in data.split(name)])
        notes = sum(len(f) for p in pieces[split] for f in p)
        assert len(ids) == jsb.FRAMES[split] + notes + jsb.SPLITS[split]  # pitches, delimiters, one EOT a piece
        assert [jsb.decode_tokens(p) for p in jsb.split_pieces(ids)] == pieces[split]
    assert data.manifest["source"]["frames"] == jsb.FRAMES
    assert len(np.asarray(data.split("train")[0])) == 67_860  # the issue's ~68k training tokens


@needs_jsb
def test_shipped_heldout_fingerprints_are_the_files():
    assert jsb.jsb_heldout_fingerprints() == jsb.compute_heldout_fingerprints(SHARED)
    assert len(jsb.jsb_heldout_fingerprints()) == 121


def test_encoding_round_trips_frames_exactly():
    rng = np.random.default_rng(0)
    for n in (1, 5, 60):
        piece = random_piece(rng, n)
        ids = jsb.encode_piece(piece)
        assert (ids == jsb.FRAME).sum() == len(piece)
        assert jsb.decode_tokens(ids) == piece
        assert jsb.decode_tokens(np.concatenate([[jsb.EOT], ids])) == piece
        roll = jsb.frame_bits(piece)
        assert [tuple(int(k) + 21 for k in np.flatnonzero(r)) for r in roll] == piece


def test_encoding_is_ascending_pitches_then_the_delimiter_and_its_text_reads_as_pitches():
    ids = jsb.encode_piece([(67, 60, 64), ()])
    assert ids.tolist() == [60 - 21, 64 - 21, 67 - 21, jsb.FRAME, jsb.FRAME]
    tok = jsb.tokenizer()
    assert tok.decode(ids) == "60 64 67 | |"
    assert tok.encode("60 64 67 | |") == ids.tolist()
    assert tok.vocab_size == jsb.VOCAB_SIZE and tok.eot_id == jsb.EOT


def test_decode_refuses_ids_that_encode_no_frame():
    with pytest.raises(DataError, match="pitch 60 after 64"):
        jsb.decode_tokens([64 - 21, 60 - 21, jsb.FRAME])
    with pytest.raises(DataError, match="pitch 60 after 60"):
        jsb.decode_tokens([39, 39, jsb.FRAME])
    with pytest.raises(DataError, match="id 90 is not a JSB token"):
        jsb.decode_tokens([90])
    assert jsb.decode_tokens([39, jsb.FRAME, 40]) == [(60,)]  # an unfinished last frame is dropped


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        jsb.load_jsb(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a JSON file"):
        jsb.load_jsb(bad)
    with pytest.raises(DataError, match="splits train, valid, test"):
        jsb.load_jsb(write_json(tmp_path / "split.json", {"train": [[[60]]], "valid": [[[60]]]}))
    off = write_json(tmp_path / "off.json", {"train": [[[60]]], "valid": [[[60]]], "test": [[[60], [120]]]})
    with pytest.raises(DataError, match=r"off.json: test\[0\], frame 1: pitch outside the piano"):
        jsb.load_jsb(off)
    text = tmp_path / "text.json"
    text.write_text(json.dumps({"train": [[["C4"]]], "valid": [], "test": []}))
    with pytest.raises(DataError, match="expected a list of MIDI pitch numbers"):
        jsb.load_jsb(text)


def test_prepare_cli_writes_train_val_and_test(tmp_path, capsys):
    from genforge.cli import main

    rng = np.random.default_rng(1)
    splits = {s: [random_piece(rng, 10) for _ in range(n)] for s, n in (("train", 3), ("valid", 2), ("test", 2))}
    src = write_json(tmp_path / jsb.FILE, splits)
    assert main(["prepare", f"jsb:{tmp_path}", "--out", str(tmp_path / "data")]) == 0
    data = TokenData(tmp_path / "data")
    assert set(data.splits) == {"train", "val", "test"}
    for split, name in jsb.TOKEN_SPLITS.items():
        ids = np.asarray(data.split(name)[0])
        assert [jsb.decode_tokens(p) for p in jsb.split_pieces(ids)] == splits[split]
    assert data.manifest["source"]["spec"] == f"jsb:{src}"
    assert main(["prepare", f"jsb:{tmp_path / 'none'}", "--out", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_soprano_fingerprint_is_transposition_invariant_and_merges_repeats():
    line = [72, 72, None, 74, 76, 76, 74, 72, 71, 72, 74, 76, 77]
    fp = jsb.soprano_fingerprint(line)
    assert fp == (2, 2, -2, -2, -1, 1, 2, 2)
    assert jsb.soprano_fingerprint([p + 5 if p else p for p in line]) == fp
    assert jsb.soprano_fingerprint([60, 62]) == (2,)
    assert jsb.piece_fingerprint([(48, 60, 64, 72), (72,), (), (50, 74)]) == (2,)
