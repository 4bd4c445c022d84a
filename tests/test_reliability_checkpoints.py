"""Issue 21, items 6-8: a full disk while saving is one line (the previous checkpoint intact); a
flipped byte in the weights is caught at load by sha256.json, with a fast path for files already
checked; and the bad inputs that used to end in tracebacks are one-line errors."""
import errno
import json
import os
import shutil

import pytest
from safetensors import SafetensorError

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.errors import CheckpointError


@pytest.fixture(autouse=True)
def verified_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "verified"


def fails(capsys, argv, *needles) -> str:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"genforge {argv[0]}: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


def config_file(tmp_path) -> str:
    path = tmp_path / "gpt.yaml"
    path.write_text("family: gpt\n")
    return str(path)


def flip_weights(ckpt, n: int = 64):
    """Flip n bytes at the end of model.safetensors: tensor data, not its header."""
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    for i in range(len(data) - n, len(data)):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))


# --- 6: disk full -------------------------------------------------------------------------

NO_SPACE = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


@pytest.mark.parametrize("error", [SafetensorError(NO_SPACE), OSError(errno.ENOSPC, "No space left on device")],
                         ids=["safetensors", "os"])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, tiny_overrides, capsys,
                                                                                monkeypatch, error):
    run = tmp_path / "run"
    overrides = [config_file(tmp_path), *tiny_overrides(run, 5), "train.eval_interval=5", "--no-progress"]
    assert main(["train", *overrides]) == 0
    before = {p.name: p.read_bytes() for p in (run / "step-0000005").iterdir() if p.is_file()}

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt_io, "save_file", full)  # the state files (optimizer, rng)
    err = fails(capsys, ["train", *overrides, "train.max_iters=10", "--resume"], f"{run}: no space left on device",
                "to save step-0000010", "needs about ")
    need = int(err.split("needs about ")[1].split(" bytes")[0].replace(",", ""))
    assert need >= (run / "step-0000005" / "model.safetensors").stat().st_size
    assert (run / "latest").resolve().name == "step-0000005"
    assert {p.name: p.read_bytes() for p in (run / "step-0000005").iterdir() if p.is_file()} == before
    assert not list(run.glob(".*tmp*")) and not (run / "step-0000010").exists()
    ckpt_io.verify(run)


def test_other_save_errors_are_not_called_disk_full(tmp_path, tiny_ckpt, monkeypatch):
    monkeypatch.setattr(ckpt_io, "save_model", lambda *a, **k: (_ for _ in ()).throw(SafetensorError("other")))
    loaded = ckpt_io.load(tiny_ckpt)
    with pytest.raises(SafetensorError, match="other"):
        ckpt_io.save_checkpoint(tmp_path / "c", loaded.config, {"model": loaded.model})
    assert not list(tmp_path.glob(".c.tmp-*"))


# --- 7: corruption is caught at load -------------------------------------------------------

@pytest.mark.parametrize("verb", [["generate", "--max-new-tokens", "3"], ["eval"]], ids=["generate", "eval"])
def test_flipped_bytes_in_the_weights_are_a_one_line_error(tmp_path, tiny_ckpt, capsys, verb):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    flip_weights(ckpt)
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted or truncated: its sha256 differs"):
        ckpt_io.load(ckpt)
    ckpt_io.load(ckpt, verify_files=False)  # the bytes still parse: only the sha256 tells
    fails(capsys, [verb[0], ckpt, *verb[1:], "--device", "cpu"], ckpt / "model.safetensors", "sha256 differs")


def test_a_server_refuses_a_corrupted_checkpoint_at_start(tmp_path, tiny_ckpt, capsys):
    pytest.importorskip("fastapi")
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    flip_weights(ckpt, 1)
    fails(capsys, ["serve", ckpt, "--device", "cpu", "--port", "1"], "model.safetensors", "sha256 differs")


def test_weights_are_hashed_once_then_trusted_while_unchanged(tmp_path, tiny_ckpt, monkeypatch, verified_cache):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    hashed = []
    real = ckpt_io._sha256
    monkeypatch.setattr(ckpt_io, "_sha256", lambda f: hashed.append(f.name) or real(f))
    ckpt_io.load(ckpt)
    assert hashed == ["model.safetensors"] and len(list(verified_cache.iterdir())) == 1
    ckpt_io.load(ckpt)
    assert hashed == ["model.safetensors"]  # the fast path: size, mtime and inode unchanged
    ckpt_io.verify(ckpt)  # verify() always hashes everything
    assert len(hashed) == 1 + len(json.loads((ckpt / "sha256.json").read_text()))
    flip_weights(ckpt, 1)  # a write: a new mtime
    with pytest.raises(CheckpointError, match="sha256 differs"):
        ckpt_io.load(ckpt)


def test_a_cache_that_cannot_be_written_only_costs_hashing(tmp_path, tiny_ckpt, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "file"))  # not a directory
    ckpt_io.load(tiny_ckpt)


def test_resume_checks_every_file_of_the_checkpoint(tmp_path, tiny_overrides, capsys):
    run = tmp_path / "run"
    overrides = [config_file(tmp_path), *tiny_overrides(run, 5), "train.eval_interval=5", "--no-progress"]
    assert main(["train", *overrides]) == 0
    opt = run / "step-0000005" / "state" / "optimizer-main.safetensors"
    data = bytearray(opt.read_bytes())
    data[-1] ^= 0x01
    opt.write_bytes(bytes(data))
    fails(capsys, ["train", *overrides, "train.max_iters=10", "--resume"], "state/optimizer-main.safetensors",
          "sha256 differs")


# --- 8: tracebacks that became one-line errors ----------------------------------------------

@pytest.mark.parametrize("content, needle", [(os.urandom(64) + b"\xff\xfe", "unreadable (not text"),
                                             (b"[1, 2, 3]", "expected a JSON object, got list"),
                                             (b"{oops", "not valid JSON")], ids=["random bytes", "a list", "broken"])
def test_an_unreadable_config_json_is_one_line(tmp_path, tiny_ckpt, capsys, content, needle):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    (ckpt / "config.json").write_bytes(content)
    for verb in (["generate", "--max-new-tokens", "2"], ["eval"]):
        fails(capsys, [verb[0], ckpt, *verb[1:], "--device", "cpu"], ckpt / "config.json", needle)


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path, tiny_overrides, capsys):
    run = tmp_path / "run"
    fails(capsys, ["train", config_file(tmp_path), *tiny_overrides(run, 5), "model.n_embd=10000000", "--no-progress"],
          "model: ", "parameters need", "to train", "more than the")
    assert not list(run.glob("step-*"))


def test_an_image_model_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    fails(capsys, ["train", "vae/digits", "model.arch=mlp", "model.hidden=100000000", f"train.out_dir={tmp_path / 'r'}",
                   "train.device=cpu", "--no-progress"], "model: ", "parameters need", "to train")


def test_a_checkpoint_config_too_large_for_memory_is_refused(tmp_path, tiny_ckpt):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["n_embd"] = 10_000_000
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: model: .* parameters need .* to load"):
        ckpt_io.load(ckpt)


@pytest.mark.parametrize("content", [b"{not json", b"\x80\x81binary", b'{"step": "many"}', b'["step"]'])
def test_an_unreadable_trainer_state_on_resume_is_one_line(tmp_path, tiny_overrides, capsys, content):
    run = tmp_path / "run"
    overrides = [config_file(tmp_path), *tiny_overrides(run, 5), "train.eval_interval=5", "--no-progress"]
    assert main(["train", *overrides]) == 0
    trainer = run / "step-0000005" / "state" / "trainer.json"
    trainer.write_bytes(content)
    sums = json.loads((run / "step-0000005" / "sha256.json").read_text())
    sums["state/trainer.json"] = ckpt_io._sha256(trainer)  # past the sha256 check, to the parser
    (run / "step-0000005" / "sha256.json").write_text(json.dumps(sums))
    fails(capsys, ["train", *overrides, "train.max_iters=10", "--resume"], "state/trainer.json",
          "cannot resume training")


def test_merge_refuses_a_pickled_adapter_before_peft_sees_it(tmp_path, tiny_ckpt, capsys, monkeypatch):
    peft = pytest.importorskip("peft")
    monkeypatch.setattr(peft.PeftModel, "from_pretrained", lambda *a, **k: pytest.fail("PEFT read the adapter"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    fails(capsys, ["merge", tiny_ckpt, "--adapter", adapter, "--out", tmp_path / "out"], "adapter_model.bin",
          "pickle", "safetensors")
    (adapter / "adapter_model.bin").unlink()
    (adapter / "adapter_model.safetensors").symlink_to(tiny_ckpt / "model.safetensors")
    fails(capsys, ["merge", tiny_ckpt, "--adapter", adapter, "--out", tmp_path / "out"], "is not a file inside")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tokenizer_file", [False, True], ids=["tokenizer pass", "encoding pass"])
def test_a_corpus_of_only_bad_records_says_so(tmp_path, char_data, capsys, tokenizer_file):
    src = tmp_path / "bad.jsonl"
    src.write_text("not json\n{\"title\": 1}\n[1]\n")
    extra = ["--tokenizer-file", char_data / "tokenizer.json"] if tokenizer_file else []
    capsys.readouterr()
    assert main([str(a) for a in ["prepare", src, "--field", "text", "--on-bad-record", "skip",
                                  "--out", tmp_path / "out", *extra]]) == 2
    *skipped, last = capsys.readouterr().err.splitlines()  # each skipped record is logged as it goes by
    assert all(line.startswith("genforge prepare: skipped ") for line in skipped)
    assert last.startswith("genforge prepare: error: ") and "every record" in last, last
    assert "3 " in last and "the first: " in last and "bad.jsonl:1: not valid JSON" in last
    assert not (tmp_path / "out").exists()


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(os.urandom(32) + b"\xff\xfe")
    fails(capsys, ["train", cfg, "--no-progress"], "run.yaml", "invalid UTF-8")


def test_a_jsonl_file_that_is_not_utf8_names_its_line(tmp_path):
    from genforge.data.jsonl import jsonl_records
    from genforge.errors import DataError

    path = tmp_path / "sft.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"sft.jsonl:2: invalid UTF-8 at byte 15 of the line"):
        list(jsonl_records(path))
    with pytest.raises(DataError, match="missing.jsonl: cannot read"):
        list(jsonl_records(tmp_path / "missing.jsonl"))
