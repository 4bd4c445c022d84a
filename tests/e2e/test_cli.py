"""Each CLI verb end to end on a tiny config: prepare, train, generate, eval."""
import json
import sys

import pytest

from genforge.cli import main
from genforge.data.shards import TokenData
from genforge.train.log import read_metrics

TINY_YAML = """\
family: gpt
model: {flavour: gpt2, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}
data: {batch_size: 4}
train: {max_iters: 20, warmup_iters: 5, lr: 3e-3, eval_interval: 10, eval_iters: 2, log_interval: 5,
        device: cpu, dtype: float32}
"""


def ok(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


# --- prepare ------------------------------------------------------------------------------

def test_prepare_text_file(tmp_path, corpus_file, capsys):
    out = ok(capsys, ["prepare", corpus_file, "--out", tmp_path / "data"])
    data = TokenData(tmp_path / "data", verify=True)
    assert out.strip() == (f"{tmp_path / 'data'}: vocab {data.vocab_size}, {data.tokens('train'):,} train + "
                           f"{data.tokens('val'):,} val tokens (uint16)")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "manifest.json", "tokenizer.json", "train-00000.bin", "val-00000.bin"]


def test_prepare_folder(tmp_path, corpus_text, capsys):
    src = tmp_path / "plays"
    (src / "act2").mkdir(parents=True)
    lines = corpus_text.splitlines(keepends=True)
    for i in range(20):
        (src / ("act2" if i >= 10 else ".") / f"scene{i:02d}.txt").write_text("".join(lines[i * 20:(i + 1) * 20]))
    ok(capsys, ["prepare", src, "--out", tmp_path / "data", "--val-fraction", "0.1"])
    data = TokenData(tmp_path / "data")
    assert data.manifest["source"]["documents"] == 20
    assert data.tokens("val") > 0 and data.tokens("train") > 8 * data.tokens("val")


def test_prepare_jsonl_field(tmp_path, corpus_text, capsys):
    src = tmp_path / "docs.jsonl"
    lines = corpus_text.splitlines()
    src.write_text("".join(json.dumps({"body": line, "n": i}) + "\n" for i, line in enumerate(lines)))
    ok(capsys, ["prepare", src, "--field", "body", "--out", tmp_path / "data"])
    data = TokenData(tmp_path / "data")
    assert data.manifest["source"]["documents"] == len(corpus_text.splitlines())
    assert data.manifest["source"]["field"] == "body"


def test_prepare_bpe(tmp_path, corpus_file, capsys):
    out = ok(capsys, ["prepare", corpus_file, "--tokenizer", "bpe:300", "--out", tmp_path / "data"])
    assert "vocab 300," in out
    data = TokenData(tmp_path / "data")
    assert data.manifest["tokenizer_kind"] == "bpe" and data.eot_id == 299


# --- train --------------------------------------------------------------------------------

def test_train_writes_checkpoint_logs_and_plot(tmp_path, char_data, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    run_dir = tmp_path / "run"
    out = ok(capsys, ["train", config, f"data.path={char_data}", f"train.out_dir={run_dir}", "--no-progress"])
    ckpt = run_dir / "step-0000020"
    assert out.strip().endswith(f"checkpoint: {ckpt}")
    assert (run_dir / "latest").resolve() == ckpt
    assert {p.name for p in ckpt.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "state", "sha256.json"}
    assert {p.name for p in (ckpt / "state").iterdir()} >= {"trainer.json", "rng.safetensors",
                                                           "optimizer-main.safetensors"}
    config_json = json.loads((ckpt / "config.json").read_text())
    assert config_json["step"] == 20 and config_json["family"] == "gpt"
    assert config_json["model"]["n_embd"] == 32 and config_json["run"]["train"]["lr"] == 3e-3
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_metrics(run_dir / "metrics.csv")
    assert [s for s, n, _ in rows if n == "loss"] == [5, 10, 15, 20]
    assert [s for s, n, _ in rows if n == "val_loss"] == [10, 20]
    losses = [v for _, n, v in rows if n == "loss"]
    assert losses[-1] < losses[0]
    assert sorted(p.name for p in run_dir.glob("step-*")) == ["step-0000010", "step-0000020"]


def test_train_prepares_data_source_on_first_use(tmp_path, corpus_file, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    data = tmp_path / "data"
    out = ok(capsys, ["train", config, f"data.path={data}", f"data.source={corpus_file}", "train.max_iters=2",
                      f"train.out_dir={tmp_path / 'run'}", "--no-progress"])
    assert f"preparing {corpus_file} -> {data}" in out
    assert (data / "manifest.json").is_file() and (tmp_path / "run" / "step-0000002").is_dir()


# --- generate -----------------------------------------------------------------------------

class Recorder:
    """A stdout that remembers each write, to see text arrive piece by piece."""

    def __init__(self):
        self.writes = []

    def write(self, s):
        self.writes.append(s)

    def flush(self):
        pass


def test_generate_streams(tiny_run, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(sys, "stdout", rec)
    assert main(["generate", str(tiny_run), "--prompt", "The", "--max-new-tokens", "30", "--seed", "1",
                 "--device", "cpu"]) == 0
    text = "".join(rec.writes)
    assert text.startswith("The") and text.endswith("\n") and len(text) > len("The\n")
    assert len(rec.writes) > 5  # the continuation arrived in pieces, not at the end


def generate(capsys, ckpt, *args) -> str:
    return ok(capsys, ["generate", ckpt, "--prompt", "The", "--max-new-tokens", "40", "--device", "cpu", *args])


def test_generate_seed_reproducible(tiny_ckpt, capsys):
    a = generate(capsys, tiny_ckpt, "--seed", "3", "--temperature", "1.0")
    assert a == generate(capsys, tiny_ckpt, "--seed", "3", "--temperature", "1.0")
    assert a != generate(capsys, tiny_ckpt, "--seed", "4", "--temperature", "1.0")


def test_generate_stop(tiny_ckpt, capsys):
    full = generate(capsys, tiny_ckpt, "--seed", "3")
    continuation = full[len("The"):-1]
    stop = continuation[10:12]
    cut = continuation.index(stop)
    stopped = generate(capsys, tiny_ckpt, "--seed", "3", "--stop", stop)
    assert stopped == "The" + continuation[:cut] + "\n"
    assert generate(capsys, tiny_ckpt, "--seed", "3", "--stop", "###", "--stop", stop) == stopped


def test_generate_num_samples(tiny_ckpt, capsys):
    out = generate(capsys, tiny_ckpt, "--num-samples", "2", "--seed", "5")
    first, second = out.split("--- sample 2 ---\n")
    assert first.startswith("--- sample 1 ---\nThe") and second.startswith("The")
    assert first != "--- sample 1 ---\n" + second  # different samples
    single = generate(capsys, tiny_ckpt, "--seed", "6")
    assert second == single  # sample i uses seed + i


def test_generate_empty_prompt(tiny_ckpt, capsys):
    out = ok(capsys, ["generate", tiny_ckpt, "--prompt", "", "--max-new-tokens", "10", "--seed", "0"])
    assert 1 < len(out) <= 11


def test_generate_options(tiny_ckpt, capsys):
    out = generate(capsys, tiny_ckpt, "--temperature", "0", "--top-k", "5", "--top-p", "0.9",
                   "--repetition-penalty", "1.2")
    assert out.startswith("The") and out == generate(capsys, tiny_ckpt, "--temperature", "0", "--top-k", "5",
                                                     "--top-p", "0.9", "--repetition-penalty", "1.2")


# --- eval ---------------------------------------------------------------------------------

def test_eval_default_data_and_file(tiny_ckpt, char_data, corpus_file, capsys):
    out = ok(capsys, ["eval", tiny_ckpt, "--device", "cpu"])
    assert out.startswith(f"source {char_data} [val]  loss ")
    for key in ("loss", "perplexity", "bits_per_char", "tokens"):
        assert f"  {key} " in out
    result = json.loads(ok(capsys, ["eval", tiny_ckpt, "--file", corpus_file, "--json", "--device", "cpu"]))
    assert result["source"] == str(corpus_file)
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["loss"], rel=1e-6)
    assert result["bits_per_char"] > 0
    split = json.loads(ok(capsys, ["eval", tiny_ckpt, "--data", char_data, "--split", "train", "--json"]))
    assert split["source"] == f"{char_data} [train]" and split["tokens"] > result["tokens"] / 2
