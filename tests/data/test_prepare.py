"""`prepare`: sources (file, folder, jsonl) -> tokenizer + token shards + manifest, and the
errors for bad sources. Nothing is left half-written when preparation fails."""
import json

import numpy as np
import pytest

from genforge.data.prepare import prepare
from genforge.data.shards import TokenData
from genforge.data.tokenizer import EOT, Tokenizer
from genforge.errors import DataError


def decoded_split(data: TokenData, split: str) -> str:
    tok = Tokenizer.from_file(data.tokenizer_path)
    return "".join(tok.decode(np.asarray(s).tolist()) for s in data.split(split))


def test_one_file_splits_its_tail_off_for_validation(char_data, corpus_text):
    data = TokenData(char_data, verify=True)
    m = data.manifest
    assert m["format"] == 1 and m["dtype"] == "uint16" and m["tokenizer_kind"] == "char"
    assert m["eot_id"] == data.vocab_size - 1
    train, val = decoded_split(data, "train"), decoded_split(data, "val")
    assert train.endswith(EOT) and val.endswith(EOT)
    assert train[:-len(EOT)] + val[:-len(EOT)] == corpus_text  # nothing lost, nothing added
    assert len(val) - len(EOT) == len(corpus_text) - int(len(corpus_text) * 0.9)
    assert m["characters"] == {"train": len(train) - len(EOT), "val": len(val) - len(EOT)}
    for split in ("train", "val"):
        (shard,) = m["splits"][split]
        assert shard["tokens"] == data.tokens(split)


def test_folder_holds_out_every_tenth_document(tmp_path):
    src = tmp_path / "docs"
    (src / "sub").mkdir(parents=True)
    for i in range(12):
        (src / ("sub" if i % 2 else ".") / f"doc{i:02d}.txt").write_text(f"document number {i}\n")
    (src / "notes.csv").write_text("ignored,file\n")
    data = TokenData(prepare(str(src), "char", tmp_path / "out"))
    assert data.manifest["source"]["documents"] == 12
    val = decoded_split(data, "val")
    assert val.count(EOT) == 1 and "document number" in val  # the 10th of the sorted files
    assert decoded_split(data, "train").count(EOT) == 11
    assert "ignored" not in decoded_split(data, "train") + val


def test_jsonl_field(tmp_path):
    src = tmp_path / "records.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"record {i}", "id": i}) for i in range(3)) + "\n\n")
    data = TokenData(prepare(str(src), "char", tmp_path / "out", field="text"))
    assert data.manifest["source"]["documents"] == 3
    assert decoded_split(data, "train") == "record " + EOT + "record " + EOT + "record " + EOT
    assert decoded_split(data, "val") == "0" + EOT + "1" + EOT + "2" + EOT  # under 10 documents: each one's tail
    with pytest.raises(DataError, match="--field"):
        prepare(str(src), "char", tmp_path / "out2")
    with pytest.raises(DataError, match=r"records.jsonl:1: field 'body'"):
        prepare(str(src), "char", tmp_path / "out2", field="body")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        prepare(str(bad), "char", tmp_path / "out2", field="text")
    assert not (tmp_path / "out2").exists()


def test_bpe(tmp_path, corpus_file, corpus_text):
    data = TokenData(prepare(str(corpus_file), "bpe:300", tmp_path / "out"))
    assert data.vocab_size == 300 and data.manifest["tokenizer_kind"] == "bpe"
    assert data.eot_id == 299
    text = decoded_split(data, "train") + decoded_split(data, "val")
    assert text.replace(EOT, "") == corpus_text


def test_reuse_tokenizer_file(tmp_path, char_data):
    src = tmp_path / "more.txt"
    src.write_text("the lazy dog\n" * 20)
    data = TokenData(prepare(str(src), "char", tmp_path / "out", tokenizer_file=char_data / "tokenizer.json"))
    assert (data.path / "tokenizer.json").read_text() == (char_data / "tokenizer.json").read_text()
    src.write_text("the lazy dog ~\n")  # '~' is not in the reused vocabulary
    with pytest.raises(DataError, match=r"more.txt: character '~'"):
        prepare(str(src), "char", tmp_path / "out", tokenizer_file=char_data / "tokenizer.json")
    assert TokenData(tmp_path / "out").tokens("train") == data.tokens("train")  # unchanged


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        prepare(str(tmp_path / "nope.txt"), "char", tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt: empty corpus"):
        prepare(str(empty), "char", tmp_path / "out")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="folder holds no text files"):
        prepare(str(tmp_path / "folder"), "char", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "folder"]  # no output, no temp dirs


def test_invalid_utf8_names_byte_offset_and_replace_mode(tmp_path):
    src = tmp_path / "latin1.txt"
    src.write_bytes(b"caf\xe9 au lait\n" * 5)
    with pytest.raises(DataError, match=r"latin1.txt: invalid UTF-8 at byte offset 3"):
        prepare(str(src), "char", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    data = TokenData(prepare(str(src), "char", tmp_path / "out", errors="replace"))
    assert "caf\ufffd au lait" in decoded_split(data, "train")


def test_lone_surrogate_in_jsonl_is_a_bad_record(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"text": "good text here"}\n{"text": "ab\\ud800cd"}\n{"text": "\\ud83d\\ude00 pair"}\n')
    with pytest.raises(DataError, match=r"s.jsonl:2: field 'text' has a lone surrogate \\ud800 at character 2"):
        prepare(str(src), "bpe:300", tmp_path / "out", field="text")
    data = TokenData(prepare(str(src), "bpe:300", tmp_path / "out", field="text", errors="replace"))
    text = decoded_split(data, "train")  # each document's last 10 % is in val
    assert "ab\ufffdc" in text and "\U0001f600 pai" in text


def test_failure_leaves_previous_output_unchanged(tmp_path, corpus_file):
    out = prepare(str(corpus_file), "char", tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    with pytest.raises(DataError):
        prepare(str(bad), "char", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out"]


def test_replaces_previous_output_but_refuses_other_directories(tmp_path, corpus_file):
    out = prepare(str(corpus_file), "char", tmp_path / "out")
    small = tmp_path / "small.txt"
    small.write_text("abc\n" * 10)
    prepare(str(small), "char", out)
    assert TokenData(out).vocab_size == 5  # a, b, c, newline, EOT
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare(str(small), "char", precious)
    assert (precious / "thesis.txt").read_text() == "do not delete"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_small_shards(tmp_path, corpus_file, corpus_text):
    data = TokenData(prepare(str(corpus_file), "char", tmp_path / "out", shard_tokens=1000), verify=True)
    shards = data.manifest["splits"]["train"]
    assert len(shards) > 1 and all(s["tokens"] == 1000 for s in shards[:-1])
    assert decoded_split(data, "train").replace(EOT, "") + decoded_split(data, "val").replace(EOT, "") == corpus_text
