"""Checkpoint directories: save/load round trips, run directories' latest, and refusal of
pickles and of corrupted or truncated safetensors files, for every family in the table."""
import dataclasses
import json
import shutil
import struct

import pytest
import torch

from genforge import checkpoint as ckpt_io
from genforge.errors import CheckpointError
from genforge.models.gpt import GPT, GPTConfig


def make_model(flavour: str) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(flavour=flavour, vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=32))


def save(path, model, state=None):
    config = {"family": "gpt", "model": dataclasses.asdict(model.config), "step": 3}
    return ckpt_io.save_checkpoint(path, config, {"model": model}, state=state)


@pytest.fixture
def ckpt(tmp_path):
    return save(tmp_path / "ckpt", make_model("gpt2"))


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_save_load_round_trip(tmp_path, flavour):
    model = make_model(flavour)
    state = {"trainer": {"step": 3, "data": {"step": 3, "seed": 1}},
             "optimizer": {"0.exp_avg": torch.randn(4, 3), "0.step": torch.tensor(3.0)},
             "tied": {"a": model.transformer.wte.weight, "b": model.lm_head.weight}}  # shared memory
    path = save(tmp_path / "ckpt", model, state)
    out = ckpt_io.load(path)
    loaded, config, where = out.model, out.config, out.path
    assert where == path and config["step"] == 3
    assert loaded.config == model.config
    want = model.state_dict()
    assert loaded.state_dict().keys() == want.keys()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, want[k]), k
    idx = torch.randint(0, 29, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model.eval()(idx)[0])
    assert ckpt_io.load_state(path, "trainer") == state["trainer"]
    opt = ckpt_io.load_state(path, "optimizer")
    assert all(torch.equal(opt[k], state["optimizer"][k]) for k in opt)
    assert torch.equal(ckpt_io.load_state(path, "tied")["b"], model.lm_head.weight)
    with pytest.raises(CheckpointError, match="state/missing missing"):
        ckpt_io.load_state(path, "missing")


def test_tied_weights_stored_once(ckpt):
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert ("lm_head.weight" in keys) != ("transformer.wte.weight" in keys)


def test_save_replaces_atomically_and_leaves_no_temp_dirs(tmp_path):
    first = save(tmp_path / "ckpt", make_model("gpt2"))
    (first / "stale.txt").write_text("from an older save")
    second = save(tmp_path / "ckpt", make_model("llama"))
    assert second == first and not (second / "stale.txt").exists()
    assert json.loads((second / "config.json").read_text())["model"]["flavour"] == "llama"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_failed_save_leaves_previous_checkpoint(tmp_path):
    path = save(tmp_path / "ckpt", make_model("gpt2"))
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(TypeError):
        save(path, make_model("llama"), state={"bad": {"x": object()}})  # not JSON: fails mid-write
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_run_directory_resolves_to_latest(tmp_path):
    run = tmp_path / "run"
    a = save(run / "step-0000001", make_model("gpt2"))
    ckpt_io.mark_latest(run, a)
    b = save(run / "step-0000002", make_model("gpt2"))
    ckpt_io.mark_latest(run, b)
    assert ckpt_io.resolve(run) == b.resolve()
    assert ckpt_io.resolve(a) == a
    save(run / "step-0000003", make_model("gpt2"))
    ckpt_io.prune(run, keep=1)
    assert sorted(p.name for p in run.glob("step-*")) == ["step-0000002", "step-0000003"]  # latest is kept


def test_missing_and_non_checkpoint_paths(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere: no such checkpoint"):
        ckpt_io.resolve(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        ckpt_io.resolve(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt: expected a checkpoint directory"):
        ckpt_io.resolve(tmp_path / "notes.txt")


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "model.bin", "innocent.dat"])
def test_pickle_files_are_refused_without_unpickling(tmp_path, name, monkeypatch):
    path = tmp_path / name
    torch.save(make_model("gpt2").state_dict(), path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on a pickle"))
    with pytest.raises(CheckpointError, match=rf"{name}: a PyTorch pickle file"):
        ckpt_io.load(path)


def test_pickle_inside_checkpoint_directory_is_refused(ckpt):
    torch.save(make_model("gpt2").state_dict(), ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted or truncated: its sha256 differs"):
        ckpt_io.load(ckpt)
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted or truncated"):
        ckpt_io.load(ckpt, verify_files=False)


def header_length(path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.mark.parametrize("where", ["length", "json-start", "json-middle", "json-end"])
def test_flipped_header_bytes(ckpt, where):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    n = header_length(f)
    at = {"length": 0, "json-start": 8, "json-middle": 8 + n // 2, "json-end": 8 + n - 3}[where]
    for i in range(at, at + 3):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: "):
        ckpt_io.load(ckpt, verify_files=False)  # the reader's own checks; by default the sha256 fails first


@pytest.mark.parametrize("keep", ["empty", "4 bytes", "half header", "header only", "all but 1 byte"])
def test_truncated_weights(ckpt, keep):
    f = ckpt / "model.safetensors"
    data = f.read_bytes()
    n = 8 + header_length(f)
    size = {"empty": 0, "4 bytes": 4, "half header": n // 2, "header only": n, "all but 1 byte": len(data) - 1}[keep]
    f.write_bytes(data[:size])
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupted or truncated"):
        ckpt_io.load(ckpt, verify_files=False)


def test_missing_weights_and_mismatched_config(ckpt, tmp_path):
    other = shutil.copytree(ckpt, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["model"]["n_embd"] = 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors: weights do not fit"):
        ckpt_io.load(other)
    config["model"]["n_embd"], config["model"]["n_layer"] = 32, 3
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not match config.json \(missing"):
        ckpt_io.load(other)
    (ckpt / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="config.json: unreadable"):
        ckpt_io.load(ckpt)
    (other / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        ckpt_io.load(other)


def family_checkpoint(tmp_path, name):
    """A freshly initialised checkpoint of family `name`, saved the way its runs save it."""
    from genforge.config import from_dict
    from genforge.families import FAMILIES
    from genforge.models.gpt import GPTConfig

    small = {"gpt": {"vocab_size": 29, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
             "music": {"vocab_size": 29, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
             "encoder": {"vocab_size": 29, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
             "vae": {"image_size": 8, "channels": 1, "num_classes": 10},
             "vqvae": {"image_size": 8, "channels": 1, "num_classes": 10, "width": 8, "codebook_size": 16, "code_dim": 4},
             "gan": {"image_size": 8, "channels": 1, "num_classes": 10},
             "classifier": {"image_size": 8, "channels": 1, "num_classes": 10},
             "diffusion": {"image_size": 8, "channels": 3, "patch": 4, "n_layer": 1, "n_head": 2, "n_embd": 16,
                           "text_vocab": 12, "text_len": 6, "text_pad": 11, "text_layers": 1, "text_width": 16,
                           "text_heads": 2},
             "dalle": {"image_size": 8, "channels": 3, "text_vocab": 12, "text_len": 6, "text_pad": 11, "n_layer": 1,
                       "n_head": 2, "n_embd": 16,
                       "vqvae_config": {"image_size": 8, "channels": 3, "width": 8, "codebook_size": 16, "code_dim": 4}},
             "clip": {"image_size": 8, "channels": 3, "text_vocab": 12, "text_len": 6, "text_pad": 11, "embed_dim": 8,
                      "width": 8, "text_layers": 1, "text_width": 16, "text_heads": 2},
             "codec": {"channels": 2, "strides": [2, 2], "dilations": [1], "code_dim": 4, "n_q": 2, "codebook_size": 8,
                       "context": 2, "head_hidden": 8},
             "audio_lm": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16,
                          "codec_config": {"channels": 2, "strides": [2, 2], "dilations": [1], "code_dim": 4, "n_q": 2,
                                           "codebook_size": 8, "context": 2, "head_hidden": 8}},
             "vocoder": {"dim": 16, "hidden": 32, "n_layer": 1, "d_width": 2, "periods": [2], "scales": 1},
             "tts": {"phonemes": ["a", "b"], "voices": ["en-us"], "n_embd": 16, "n_head": 2, "n_enc_layer": 1,
                     "n_dec_layer": 1, "dur_filter": 16},
             "reward": {"gpt": dataclasses.asdict(GPTConfig(vocab_size=29, block_size=16, n_layer=1, n_head=2, n_embd=16))}}
    fam = FAMILIES[name]
    model = fam.build(from_dict(fam.config, small[name], "model"))
    modules = dict(model.named_children()) if fam.part else {"model": model}
    config = {"family": name, "model": dataclasses.asdict(model.config) if hasattr(model, "config") else small[name]}
    return ckpt_io.save_checkpoint(tmp_path / name, config, modules), fam


def test_every_family_in_the_table_has_a_test_here():
    from genforge.families import FAMILIES

    assert set(FAMILIES) == set(FAMILY_NAMES)


FAMILY_NAMES = ["gpt", "encoder", "vae", "vqvae", "gan", "classifier", "reward", "diffusion", "dalle", "clip", "vocoder", "tts",
                "music", "codec", "audio_lm"]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_family_loads_and_refuses_pickles_and_truncated_files(tmp_path, name, monkeypatch):
    ckpt, fam = family_checkpoint(tmp_path, name)
    loaded = ckpt_io.load(ckpt)
    assert loaded.family is fam and not loaded.model.training
    assert ckpt_io.verify(ckpt) == ckpt
    weights = ckpt / f"{fam.part or 'model'}.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=f"{weights.name}: corrupted or truncated"):
        ckpt_io.load(ckpt, verify_files=False)
    with pytest.raises(CheckpointError, match=f"{weights.name}: corrupted or truncated: its sha256 differs"):
        ckpt_io.load(ckpt)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on a pickle"))
    torch.save({"w": torch.zeros(2)}, weights)
    with pytest.raises(CheckpointError, match=f"{weights.name}: corrupted or truncated"):
        ckpt_io.load(ckpt, verify_files=False)
    torch.save({"w": torch.zeros(2)}, tmp_path / f"{name}.pt")
    with pytest.raises(CheckpointError, match="a PyTorch pickle file"):
        ckpt_io.load(tmp_path / f"{name}.pt")


def test_unknown_family_is_a_checkpoint_error(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    config["family"] = "gtp"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: family='gtp': unknown model family \(did you mean gpt\?\)"):
        ckpt_io.load(ckpt)
