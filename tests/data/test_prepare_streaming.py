"""`prepare` as a streaming pipeline: many sources (globs, folders, compressed text, jsonl,
parquet, saved datasets), worker processes that do not change the output, shards that decode back
to the input, bad records (error, skip, ratio), and a kill -9 that leaves no data that looks
complete."""
import gzip
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_text

from genforge.cli import main
from genforge.data import encode
from genforge.data.prepare import parse_bytes, prepare
from genforge.data.shards import TokenData
from genforge.data.tokenizer import EOT, Tokenizer
from genforge.errors import DataError
from tests.conftest import wait_until


def documents(data: TokenData, split: str) -> list[str]:
    """The split's documents, decoded and cut at the end-of-text tokens."""
    tok = Tokenizer.from_file(data.tokenizer_path)
    ids = np.concatenate([np.asarray(s) for s in data.split(split)]).tolist() if data.split(split) else []
    text = tok.decode(ids)
    assert not text or text.endswith(EOT)
    return text.split(EOT)[:-1]


def all_files(path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def write_docs(folder, n, suffix=".txt", lines=3):
    folder.mkdir(parents=True, exist_ok=True)
    texts = [make_text(lines, seed=i) for i in range(n)]
    for i, t in enumerate(texts):
        (folder / f"doc{i:03d}{suffix}").write_text(t)
    return texts


def test_globs_folders_and_several_sources(tmp_path):
    a = write_docs(tmp_path / "a", 6)
    b = write_docs(tmp_path / "b", 5, suffix=".md")
    (tmp_path / "a" / "skip.csv").write_text("not matched by the glob\n")
    data = TokenData(prepare([str(tmp_path / "a" / "*.txt"), str(tmp_path / "b")], "char", tmp_path / "out"))
    m = data.manifest
    assert m["source"]["spec"] == [str(tmp_path / "a" / "*.txt"), str(tmp_path / "b")]
    assert m["source"]["files"] == 11 and m["source"]["documents"] == 11
    docs = a + b
    assert documents(data, "val") == [docs[9]]  # every tenth document, in source order
    assert documents(data, "train") == docs[:9] + docs[10:]
    with pytest.raises(DataError, match=r"nothing\*.txt: no files match"):
        prepare([str(tmp_path / "nothing*.txt")], "char", tmp_path / "out2")


def test_compressed_text_and_jsonl_round_trip(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    texts = [make_text(4, seed=i) for i in range(3)] + [make_text(10, seed=3)]
    (tmp_path / "plain.txt").write_text(texts[0])
    (tmp_path / "one.txt.gz").write_bytes(gzip.compress(texts[1].encode()))
    (tmp_path / "two.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(texts[2].encode()))
    lines = texts[3].splitlines()
    (tmp_path / "recs.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"text": t}) + "\n" for t in lines[:2]).encode()))
    (tmp_path / "recs.jsonl.gz").write_bytes(gzip.compress(
        "".join(json.dumps({"text": t}) + "\n" for t in lines[2:]).encode()))
    sources = [str(tmp_path / n) for n in ("plain.txt", "one.txt.gz", "two.txt.zst", "recs.jsonl.zst", "recs.jsonl.gz")]
    data = TokenData(prepare(sources, "bpe:300", tmp_path / "out", field="text", val_fraction=0.5), verify=True)
    expected = texts[:3] + lines
    assert data.manifest["source"]["documents"] == len(expected) >= 10
    assert documents(data, "train") + documents(data, "val") == (
        [d for i, d in enumerate(expected) if i % 2 == 0] + [d for i, d in enumerate(expected) if i % 2 == 1])


def test_invalid_utf8_in_compressed_text_names_file_and_offset(tmp_path):
    (tmp_path / "bad.txt.gz").write_bytes(gzip.compress(b"good text\xff more"))
    with pytest.raises(DataError, match=r"bad.txt.gz: invalid UTF-8 at byte offset 9 of the decompressed text"):
        prepare(str(tmp_path / "bad.txt.gz"), "char", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parquet_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [make_text(2, seed=i) for i in range(12)]
    pq.write_table(pa.table({"id": list(range(12)), "content": rows}), tmp_path / "rows.parquet")
    data = TokenData(prepare(str(tmp_path / "rows.parquet"), "char", tmp_path / "out", field="content"))
    assert documents(data, "val") == [rows[9]]
    assert documents(data, "train") == rows[:9] + rows[10:]
    with pytest.raises(DataError, match=r"rows.parquet: no column 'text' \(has id, content\)"):
        prepare(str(tmp_path / "rows.parquet"), "char", tmp_path / "out2", field="text")
    with pytest.raises(DataError, match=r"rows.parquet: a .jsonl, .parquet or datasets source needs --field"):
        prepare(str(tmp_path / "rows.parquet"), "char", tmp_path / "out2")


def test_saved_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [make_text(2, seed=i) for i in range(5)]
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / "ds"))
    data = TokenData(prepare(str(tmp_path / "ds"), "char", tmp_path / "out", field="text"))
    assert data.manifest["source"]["documents"] == 5
    train, val = documents(data, "train"), documents(data, "val")  # under ten: each one's tail
    assert [t + v for t, v in zip(train, val)] == rows


def test_bad_jsonl_line_error_skip_and_ratio(tmp_path, capsys):
    src = tmp_path / "recs.jsonl"
    good = [json.dumps({"text": f"record {i}\n"}) for i in range(199)]
    src.write_text("\n".join(good[:50] + ['{"text": oops}'] + good[50:]) + "\n")
    with pytest.raises(DataError, match=r"recs.jsonl:51: not valid JSON .*--on-bad-record skip"):
        prepare(str(src), "char", tmp_path / "out", field="text")
    data = TokenData(prepare(str(src), "char", tmp_path / "out", field="text", on_bad_record="skip"))
    assert f"skipped {src}:51: not valid JSON" in capsys.readouterr().err
    assert data.manifest["source"]["documents"] == 199 and data.manifest["source"]["skipped"] == 1
    assert len(documents(data, "train")) + len(documents(data, "val")) == 199
    with pytest.raises(DataError, match=r"1 of 200 records were bad \(0.5%\), more than --max-bad-ratio 0.001"):
        prepare(str(src), "char", tmp_path / "out2", field="text", on_bad_record="skip", max_bad_ratio=0.001)
    assert not (tmp_path / "out2").exists()


def test_skip_logs_each_record_to_stderr(tmp_path, capsys):
    src = tmp_path / "recs.jsonl"
    src.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n{"title": "b"}\n' + b'{"text": "ok"}\n' * 200)
    prepare(str(src), "char", tmp_path / "out", field="text", on_bad_record="skip")
    err = capsys.readouterr().err
    assert f"skipped {src}:2: invalid UTF-8 at byte 13 of the line" in err
    assert f"skipped {src}:3: field 'text' missing" in err


def test_workers_do_not_change_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(encode, "BATCH_BYTES", 300)  # many small batches in flight
    write_docs(tmp_path / "docs", 40)
    one = prepare(str(tmp_path / "docs"), "bpe:300", tmp_path / "one", shard_tokens=500, workers=1)
    two = prepare(str(tmp_path / "docs"), "bpe:300", tmp_path / "two", shard_tokens=500, workers=2)
    assert len(TokenData(one).manifest["splits"]["train"]) > 3
    assert all_files(one) == all_files(two)


def test_small_shards_list_their_sources(tmp_path):
    texts = write_docs(tmp_path / "docs", 12, lines=10)
    data = TokenData(prepare(str(tmp_path / "docs"), "char", tmp_path / "out", shard_tokens=200), verify=True)
    shards = data.manifest["splits"]["train"]
    assert [s["file"] for s in shards] == [f"train-{i:05d}.bin" for i in range(len(shards))]
    assert len(shards) > 5 and all(s["tokens"] == 200 for s in shards[:-1])
    assert sorted(p.name for p in data.path.iterdir()) == sorted(
        ["manifest.json", "tokenizer.json"] + [s["file"] for s in shards + data.manifest["splits"]["val"]])
    assert shards[0]["sources"] == [str(tmp_path / "docs" / "doc000.txt")] and shards[0]["dtype"] == "uint16"
    listed = [f for s in shards for f in s["sources"]]
    assert sorted(set(listed)) == [str(tmp_path / "docs" / f"doc{i:03d}.txt") for i in range(12) if i != 9]
    assert documents(data, "train") == texts[:9] + texts[10:]


def test_tokenizer_sample(tmp_path):
    texts = write_docs(tmp_path / "docs", 12)
    (tmp_path / "docs" / "doc011.txt").write_text("Zebra ~ tilde\n")
    sample = sum(len(t.encode()) for t in texts[:11]) + len("Zebra ")  # '~' comes just after the sample
    data = TokenData(prepare(str(tmp_path / "docs"), "bpe:300", tmp_path / "bpe", tokenizer_sample=sample))
    assert data.manifest["source"]["tokenizer_sample"] == sample
    assert documents(data, "train") == texts[:9] + texts[10:11] + ["Zebra ~ tilde\n"]  # byte-level: any text
    with pytest.raises(DataError, match=r"doc011.txt: character '~' .* not in the char tokenizer"):
        prepare(str(tmp_path / "docs"), "char", tmp_path / "char", tokenizer_sample=sample)
    data = TokenData(prepare(str(tmp_path / "docs"), "char", tmp_path / "char", tokenizer_sample=sample,
                             on_bad_record="skip", max_bad_ratio=0.1))
    assert data.manifest["source"]["skipped"] == 1
    assert "~" not in Tokenizer.from_file(data.tokenizer_path).tok.get_vocab()


def test_parse_bytes():
    assert parse_bytes("5000") == 5000 and parse_bytes("100MB") == 100_000_000
    assert parse_bytes("1GiB") == 1 << 30 and parse_bytes("1.5k") == 1500
    with pytest.raises(DataError, match="expected a size"):
        parse_bytes("lots")


def test_cli_flags(tmp_path, capsys):
    write_docs(tmp_path / "a", 6)
    write_docs(tmp_path / "b", 6)
    argv = ["prepare", str(tmp_path / "a" / "*.txt"), "--out", str(tmp_path / "out"), str(tmp_path / "b"),
            "--tokenizer", "bpe:300", "--workers", "2", "--shard-tokens", "300", "--tokenizer-sample", "1kB",
            "--on-bad-record", "skip", "--max-bad-ratio", "0.2"]
    assert main(argv) == 0, capsys.readouterr().err
    m = TokenData(tmp_path / "out").manifest
    assert m["source"]["documents"] == 12 and m["source"]["tokenizer_sample"] == 1000 and len(m["splits"]["train"]) > 1


KILLED_RUN = """
import sys
from genforge.data.prepare import prepare
prepare(sys.argv[1], "char", sys.argv[2], shard_tokens=20_000)
"""


def test_kill_9_leaves_no_data_that_looks_complete(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    block = make_text(2000)
    for i in range(200):  # ~16 MB of text, 800+ shards: seconds of work
        (big / f"part{i:03d}.txt").write_text(block)
    (tmp_path / "small.txt").write_text(block[:5000])
    out = prepare(str(tmp_path / "small.txt"), "char", tmp_path / "out")
    before = all_files(out)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(big), str(out)], cwd=os.getcwd())
    try:
        wait_until(lambda: proc.poll() is not None or any(tmp.glob("train-*.bin") for tmp in tmp_path.glob(".out.tmp-*")),
                   120, "prepare to write its first shard")
        assert proc.poll() is None, "prepare finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert all_files(out) == before  # the previous complete version
    (tmp,) = tmp_path.glob(".out.tmp-*")  # what the killed run left: not data
    assert not (tmp / "manifest.json").exists()
    with pytest.raises(DataError, match="no manifest.json"):
        TokenData(tmp)
    prepare(str(tmp_path / "small.txt"), "char", tmp_path / "out")  # the next run removes the leftovers
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_skip_stops_early_once_the_ratio_is_clearly_exceeded(tmp_path, capsys):
    src = tmp_path / "half.jsonl"
    src.write_text("".join('{"text": "ok"}\n' if i % 2 else "not json\n" for i in range(10_000)))
    with pytest.raises(DataError, match=r"51 of 101 records were bad \(50.5%\), more than --max-bad-ratio 0.01"):
        prepare(str(src), "char", tmp_path / "out", field="text", on_bad_record="skip")
    assert capsys.readouterr().err.count("skipped") == 51  # stopped after 101 records, not 10000


@pytest.mark.parametrize("module, name, needle", [
    ("zstandard", "a.txt.zst", "needs the zstandard package"),
    ("pyarrow", "a.parquet", "needs pyarrow"),
    ("datasets", "ds", "needs the datasets package"),
])
def test_missing_optional_package_is_a_clear_error(tmp_path, monkeypatch, module, name, needle):
    if name == "ds":
        (tmp_path / "ds").mkdir()
        (tmp_path / "ds" / "state.json").write_text("{}")
    else:
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, f"{module}.parquet", None)
    with pytest.raises(DataError, match=needle):
        prepare(str(tmp_path / name), "char", tmp_path / "out", field="text")


def test_output_moved_aside_by_a_killed_run_is_put_back(tmp_path, corpus_file):
    out = prepare(str(corpus_file), "char", tmp_path / "out")
    before = all_files(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is no longer running
    os.replace(out, tmp_path / f".out.old-{dead.pid}")  # killed between moving out aside and renaming the new one
    (tmp_path / "bad.txt").write_bytes(b"\xff")
    with pytest.raises(DataError, match="invalid UTF-8"):
        prepare(str(tmp_path / "bad.txt"), "char", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out"]
    assert all_files(out) == before


def test_big_text_file_streams_in_pieces_with_one_end_of_text(tmp_path, monkeypatch):
    """A text file larger than a read chunk is read in pieces that workers tokenize in parallel;
    each split gets an end-of-text only where its text stops being contiguous and at the end."""
    from genforge.data import readers

    monkeypatch.setattr(readers, "CHUNK_BYTES", 512)
    text = "".join(make_text(1, seed=i) + ("\n\n  indented line\n" if i % 7 == 0 else "") for i in range(400))
    files = [tmp_path / "big.txt", tmp_path / "small.txt"]
    files[0].write_text(text)
    files[1].write_text("a second, short document\n")
    records = list(readers.iter_records([str(f) for f in files]))
    assert len(records) > 20 and sum(r.last for r in records) == 2
    expected = {"train": "", "val": ""}
    for i, r in enumerate(records):  # every fifth record to val; a piece continues its predecessor's text
        split = "val" if i % 5 == 4 else "train"
        continues = i > 0 and not records[i - 1].last and (i - 1) % 5 == i % 5 - 1 if split == "train" else False
        expected[split] = (expected[split] if continues or not expected[split] else expected[split] + EOT) + r.text
    expected = {k: v + EOT for k, v in expected.items()}
    for spec in ("char", "bpe:300"):
        outs = []
        for workers in (1, 2):
            outs.append(tmp_path / f"{spec.replace(':', '')}-{workers}")
            data = TokenData(prepare([str(f) for f in files], spec, outs[-1], workers=workers, val_fraction=0.2))
            assert data.manifest["source"]["documents"] == 2
            tok = Tokenizer.from_file(data.tokenizer_path)
            for split in ("train", "val"):
                ids = np.concatenate([np.asarray(s) for s in data.split(split)]).tolist()
                assert tok.decode(ids) == expected[split], (spec, split)
        assert all_files(outs[0]) == all_files(outs[1])


def test_big_text_file_tokens_equal_whole_file_tokens(tmp_path, monkeypatch):
    from genforge.data import readers

    text = "".join(make_text(1, seed=i) + ("\n\n  indented line\n" if i % 7 == 0 else "") for i in range(300))
    (tmp_path / "big.txt").write_text(text)
    whole = TokenData(prepare(str(tmp_path / "big.txt"), "bpe:300", tmp_path / "whole", val_fraction=0.01))
    monkeypatch.setattr(readers, "CHUNK_BYTES", 700)
    pieces = list(readers.iter_records([str(tmp_path / "big.txt")]))
    assert len(pieces) > 10 and [r.last for r in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(r.text for r in pieces) == text
    tok = Tokenizer.from_file(whole.tokenizer_path)
    assert [i for ids in tok.encode_batch([r.text for r in pieces]) for i in ids] == tok.encode(text)
    monkeypatch.setattr(readers, "CHUNK_BYTES", 1 << 20)
    monkeypatch.setattr(encode, "ENCODE_CHARS", 300)  # long texts are encoded in parts: same tokens
    parts = TokenData(prepare(str(tmp_path / "big.txt"), "bpe:300", tmp_path / "parts", val_fraction=0.01,
                              tokenizer_file=whole.tokenizer_path))
    assert all_files(parts.path) == all_files(whole.path)


def test_bad_utf8_in_a_later_piece_names_its_file_offset(tmp_path, monkeypatch):
    from genforge.data import readers

    monkeypatch.setattr(readers, "CHUNK_BYTES", 256)
    good = ("line of text\n" * 100).encode()
    (tmp_path / "big.txt").write_bytes(good + b"\xff" + good)
    with pytest.raises(DataError, match=rf"big.txt: invalid UTF-8 at byte offset {len(good)}\b"):
        prepare(str(tmp_path / "big.txt"), "char", tmp_path / "out")
