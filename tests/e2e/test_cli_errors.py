"""Bad input at the CLI: a one-line error naming the file or key, exit status 2, and nothing
half-written (the output directory absent, or unchanged)."""
import json
import shutil
import struct

import pytest
import torch

from genforge.cli import main


def fails(capsys, argv, *needles) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"genforge {argv[0]}: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- prepare ------------------------------------------------------------------------------

def test_prepare_missing_file(tmp_path, capsys):
    fails(capsys, ["prepare", tmp_path / "missing.txt", "--out", tmp_path / "out"], "missing.txt", "no such file")
    assert not (tmp_path / "out").exists()


def test_prepare_empty_corpus(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    fails(capsys, ["prepare", tmp_path / "empty.txt", "--out", tmp_path / "out"], "empty.txt", "empty corpus")
    assert not (tmp_path / "out").exists()


def test_prepare_non_utf8_then_errors_replace(tmp_path, capsys):
    src = tmp_path / "latin1.txt"
    src.write_bytes(b"Les mis" + b"\xe9rables\n" * 30)
    fails(capsys, ["prepare", src, "--out", tmp_path / "out"], "latin1.txt", "byte offset 7", "--errors replace")
    assert not (tmp_path / "out").exists()
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--errors", "replace"]) == 0
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_prepare_failure_leaves_existing_output_unchanged(tmp_path, char_data, capsys):
    out = shutil.copytree(char_data, tmp_path / "out")
    before = snapshot(out)
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff")
    fails(capsys, ["prepare", tmp_path / "bad.txt", "--out", out], "bad.txt", "byte offset 5")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out"]  # no temporary directory left


@pytest.mark.parametrize("args, needles", [
    (["--tokenizer", "bpe:100"], ["--tokenizer", "bpe:100"]),
    (["--val-fraction", "1.5"], ["--val-fraction"]),
])
def test_prepare_bad_options(tmp_path, corpus_file, capsys, args, needles):
    fails(capsys, ["prepare", corpus_file, "--out", tmp_path / "out", *args], *needles)
    assert not (tmp_path / "out").exists()


def test_prepare_jsonl_problems(tmp_path, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "a"}\n{"title": "b"}\n')
    fails(capsys, ["prepare", src, "--out", tmp_path / "out"], "docs.jsonl", "--field")
    fails(capsys, ["prepare", src, "--field", "text", "--out", tmp_path / "out"], "docs.jsonl:2", "'text'")
    assert not (tmp_path / "out").exists()


# --- train --------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}\n"
                    "train: {max_iters: 2, device: cpu, dtype: float32, eval_iters: 1}\n")
    return path


def train_fails(capsys, config, data, out, overrides=(), needles=()):
    fails(capsys, ["train", config, f"data.path={data}", f"train.out_dir={out}", *overrides, "--no-progress"], *needles)
    assert not out.exists()


def test_train_unknown_config_key(tmp_path, config, char_data, capsys):
    train_fails(capsys, config, char_data, tmp_path / "run", ["model.n_layr=3"],
                ["model.n_layr", "did you mean n_layer"])


def test_train_unknown_key_in_yaml(tmp_path, char_data, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("train:\n  max_iter: 2\n")
    train_fails(capsys, config, char_data, tmp_path / "run", needles=["train.max_iter", "max_iters"])


def test_train_n_embd_not_divisible_by_n_head(tmp_path, config, char_data, capsys):
    train_fails(capsys, config, char_data, tmp_path / "run", ["model.n_embd=30", "model.n_head=4"],
                ["n_embd=30", "n_head=4"])


def test_train_wrong_type(tmp_path, config, char_data, capsys):
    train_fails(capsys, config, char_data, tmp_path / "run", ["train.lr=fast"], ["train.lr", "float"])


def test_train_missing_config_file(tmp_path, char_data, capsys):
    train_fails(capsys, tmp_path / "nope.yaml", char_data, tmp_path / "run", needles=["nope.yaml"])


def test_train_missing_data(tmp_path, config, capsys):
    train_fails(capsys, config, tmp_path / "nodata", tmp_path / "run", needles=["nodata", "manifest.json"])


def test_train_vocab_size_mismatch(tmp_path, config, char_data, capsys):
    data = shutil.copytree(char_data, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["vocab_size"] += 3
    (data / "manifest.json").write_text(json.dumps(manifest))
    train_fails(capsys, config, data, tmp_path / "run", needles=["tokenizer.json", "manifest.json",
                                                               f"vocab_size={manifest['vocab_size']}"])


def test_train_truncated_shard(tmp_path, config, char_data, capsys):
    data = shutil.copytree(char_data, tmp_path / "data")
    shard = data / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    train_fails(capsys, config, data, tmp_path / "run", needles=["train-00000.bin", "truncated"])


def test_train_resume_without_checkpoint(tmp_path, config, char_data, capsys):
    fails(capsys, ["train", config, f"data.path={char_data}", f"train.out_dir={tmp_path / 'run'}", "--resume",
                   "--no-progress"], "run", "no such checkpoint")
    assert not (tmp_path / "run").exists()


def test_train_model_vocab_smaller_than_data(tmp_path, config, char_data, capsys):
    train_fails(capsys, config, char_data, tmp_path / "run", ["model.vocab_size=5"], ["model.vocab_size=5"])


# --- generate / eval ----------------------------------------------------------------------

VERBS = [["generate", "--max-new-tokens", "3"], ["eval"]]


def flip_header(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    n = struct.unpack("<Q", bytes(data[:8]))[0]
    for i in range(8 + n // 2, 8 + n // 2 + 4):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))


def truncate(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


@pytest.mark.parametrize("damage", [flip_header, truncate], ids=["corrupted", "truncated"])
@pytest.mark.parametrize("verb", VERBS, ids=["generate", "eval"])
def test_damaged_checkpoint(tmp_path, tiny_ckpt, capsys, verb, damage):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    damage(ckpt)
    before = snapshot(ckpt)
    fails(capsys, [verb[0], ckpt, *verb[1:]], ckpt / "model.safetensors", "corrupted or truncated")
    assert snapshot(ckpt) == before


@pytest.mark.parametrize("verb", VERBS, ids=["generate", "eval"])
def test_pickle_is_refused(tmp_path, tiny_ckpt, capsys, verb, monkeypatch):
    import genforge

    lm = genforge.load(tiny_ckpt, device="cpu")
    pt = tmp_path / "model.pt"
    torch.save({"model": lm.model.state_dict()}, pt)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on a pickle"))
    fails(capsys, [verb[0], pt, *verb[1:]], "model.pt", "pickle")


@pytest.mark.parametrize("verb", VERBS, ids=["generate", "eval"])
def test_missing_checkpoint(tmp_path, capsys, verb):
    fails(capsys, [verb[0], tmp_path / "nothing", *verb[1:]], "nothing", "no such checkpoint")


@pytest.mark.parametrize("args, needle", [
    (["--temperature", "-1"], "--temperature"), (["--top-k", "0"], "--top-k"), (["--top-p", "0"], "--top-p"),
    (["--num-samples", "0"], "--num-samples"), (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--max-new-tokens", "-1"], "--max-new-tokens"), (["--prompt", "#"], "'#'"),
])
def test_generate_bad_options(tiny_ckpt, capsys, args, needle):
    fails(capsys, ["generate", tiny_ckpt, *args], needle)


def test_eval_bad_inputs(tmp_path, tiny_ckpt, char_data, corpus_file, capsys):
    fails(capsys, ["eval", tiny_ckpt, "--file", tmp_path / "none.txt"], "none.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the lazy dog \xff")
    fails(capsys, ["eval", tiny_ckpt, "--file", bad], "bad.txt", "byte offset 13")
    data = shutil.copytree(char_data, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["vocab_size"] -= 1
    (data / "manifest.json").write_text(json.dumps(manifest))
    fails(capsys, ["eval", tiny_ckpt, "--data", data], "tokenizer.json", "manifest.json")
    shard = shutil.copytree(char_data, tmp_path / "data2") / "val-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    fails(capsys, ["eval", tiny_ckpt, "--data", shard.parent], "val-00000.bin")
