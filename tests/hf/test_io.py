"""`genforge import hf` / `export hf`: imported GPT-2, Llama and BERT compute what `transformers`
computes; exports load with from_pretrained and compute the same; import -> export -> import is
exact; bad directories give one clear error naming the file."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.errors import CheckpointError
from genforge.hf.io import export_hf, import_hf, read_hf_dir
from genforge.sample.text import generate_ids

transformers = pytest.importorskip("transformers")
CLASSES = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM, "bert": transformers.BertModel}


def edit_json(file, **changes) -> None:
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def outputs(model, kind, idx):
    with torch.no_grad():
        if kind == "bert":
            mask = torch.ones_like(idx)
            mask[1, 7:] = 0
            got = model(input_ids=idx, attention_mask=mask).last_hidden_state if isinstance(model, transformers.PreTrainedModel) \
                else model(idx, mask)
            return got[mask.bool()]
        return model(idx).logits if isinstance(model, transformers.PreTrainedModel) else model(idx)[0]


def ids(vocab: int) -> torch.Tensor:
    return torch.randint(5, vocab, (2, 12), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_import_matches_transformers(tmp_path, hf_dirs, kind, capsys):
    assert main(["import", "hf", str(hf_dirs[kind]), "--out", str(tmp_path / "ckpt")]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    loaded = ckpt_io.load(tmp_path / "ckpt", trainable=True)
    ours, config, _ = loaded.model, loaded.config, loaded.path
    ref = CLASSES[kind].from_pretrained(hf_dirs[kind]).eval()
    idx = ids(ref.config.vocab_size)
    torch.testing.assert_close(outputs(ours.eval(), kind, idx), outputs(ref, kind, idx), atol=1e-4, rtol=1e-4)
    assert config["family"] == ("encoder" if kind == "bert" else "gpt")
    if kind != "bert":  # the same greedy tokens
        prompt = idx[:1, :4]
        want = ref.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt))
        assert generate_ids(ours, prompt, 20, temperature=0.0).tolist() == want[:, 4:].tolist()


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_export_loads_in_transformers_and_round_trips(tmp_path, hf_dirs, kind):
    ckpt = import_hf(hf_dirs[kind], tmp_path / "ckpt")
    out = export_hf(ckpt, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    if kind != "bert":
        assert (out / "generation_config.json").is_file()
    ref = CLASSES[kind].from_pretrained(hf_dirs[kind]).eval()
    back = CLASSES[kind].from_pretrained(out).eval()
    idx = ids(ref.config.vocab_size)
    torch.testing.assert_close(outputs(back, kind, idx), outputs(ref, kind, idx), atol=1e-5, rtol=1e-5)
    again = import_hf(out, tmp_path / "ckpt2")
    loaded = ckpt_io.load(ckpt, trainable=True)
    a, _, _ = loaded.model, loaded.config, loaded.path
    loaded = ckpt_io.load(again, trainable=True)
    b, _, _ = loaded.model, loaded.config, loaded.path
    assert a.config == b.config
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_sharded_export_and_import(tmp_path, hf_dirs, capsys):
    ckpt = import_hf(hf_dirs["llama"], tmp_path / "ckpt")
    assert main(["export", "hf", str(ckpt), "--out", str(tmp_path / "hf"), "--max-shard-size", "20KB"]) == 0
    shards = sorted(p.name for p in (tmp_path / "hf").glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    ref = transformers.LlamaForCausalLM.from_pretrained(hf_dirs["llama"]).eval()
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = ids(ref.config.vocab_size)
    torch.testing.assert_close(back(idx).logits, ref(idx).logits, atol=1e-5, rtol=1e-5)
    model, _, _ = read_hf_dir(tmp_path / "hf")
    torch.testing.assert_close(model.eval()(idx)[0], ref(idx).logits, atol=1e-4, rtol=1e-4)


def test_exported_tokenizer_loads_in_transformers(tmp_path, hf_dirs):
    out = export_hf(import_hf(hf_dirs["gpt2"], tmp_path / "ckpt"), tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("the quick fox")["input_ids"]) == "the quick fox"


# --- bad input ----------------------------------------------------------------------------

def copy(hf_dirs, kind, tmp_path):
    return shutil.copytree(hf_dirs[kind], tmp_path / "bad")


def error(tmp_path, folder, capsys) -> str:
    assert main(["import", "hf", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_not_an_hf_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "no config.json" in error(tmp_path, tmp_path / "empty", capsys)


def test_unsupported_architecture(tmp_path, hf_dirs, capsys):
    folder = copy(hf_dirs, "gpt2", tmp_path)
    edit_json(folder / "config.json", architectures=["T5ForConditionalGeneration"], model_type="t5")
    err = error(tmp_path, folder, capsys)
    assert "config.json" in err and "T5ForConditionalGeneration" in err and "not supported" in err


def test_shape_mismatch(tmp_path, hf_dirs, capsys):
    for kind in ("gpt2", "bert"):
        folder = copy(hf_dirs, kind, tmp_path)
        edit_json(folder / "config.json", vocab_size=500)
        assert "shape" in error(tmp_path, folder, capsys)
        shutil.rmtree(folder)


def test_tokenizer_missing(tmp_path, hf_dirs, capsys):
    folder = copy(hf_dirs, "llama", tmp_path)
    (folder / "tokenizer.json").unlink()
    err = error(tmp_path, folder, capsys)
    assert "tokenizer.json" in err and "tokenizer missing" in err


def test_pickle_weights_refused(tmp_path, hf_dirs, capsys):
    folder = copy(hf_dirs, "gpt2", tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    assert "pickle" in error(tmp_path, folder, capsys)


def test_missing_shard(tmp_path, hf_dirs):
    out = export_hf(import_hf(hf_dirs["llama"], tmp_path / "ckpt"), tmp_path / "hf", max_shard_bytes=20_000)
    next(out.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="model-00002-.*missing"):
        read_hf_dir(out)


def test_hub_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = error(tmp_path, "some-org/some-model", capsys)
    assert "some-org/some-model" in err and "local" in err


def test_genforge_trained_model_exports_to_transformers(tmp_path, tiny_ckpt):
    """A model genforge trained from scratch (char tokenizer) goes out in the HF layout whole:
    transformers loads weights and tokenizer and computes the same logits; generation stops at EOT."""
    out = export_hf(tiny_ckpt, tmp_path / "hf")
    loaded = ckpt_io.load(tiny_ckpt, trainable=True)
    ours, _, _ = loaded.model, loaded.config, loaded.path
    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    idx = torch.tensor([tok("The quick brown fox")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(idx)[0], ref(idx).logits, atol=1e-4, rtol=1e-4)
    assert tok.eos_token == "<|endoftext|>" and ref.generation_config.eos_token_id == tok.eos_token_id


def test_sentencepiece_style_tokenizer_is_not_taken_for_char(tmp_path):
    """Llama's tokenizer.json (BPE with merges, a decoder Sequence that contains Fuse) encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from genforge.data.tokenizer import Tokenizer as GenforgeTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20,
                            trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    ours = GenforgeTokenizer.from_file(tmp_path / "tokenizer.json")
    assert ours.kind == "bpe" and ours.eot_id == tok.token_to_id("</s>")
    assert ours.decode(ours.encode("the lazy fox")) == "the lazy fox"


def test_bert_with_only_vocab_txt(tmp_path, hf_dirs):
    """Older BERT checkpoints ship vocab.txt, not tokenizer.json: the WordPiece tokenizer is built from it."""
    folder = copy(hf_dirs, "bert", tmp_path)
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
    (folder / "tokenizer.json").unlink()
    ckpt = import_hf(folder, tmp_path / "ckpt")
    from genforge.hf.tokenizer import encode_batch, load_tokenizer

    idx, _ = encode_batch(load_tokenizer(ckpt), ["The lazy DOG"], 16)
    want, _ = encode_batch(load_tokenizer(hf_dirs["bert"]), ["The lazy DOG"], 16)
    assert idx.tolist() == want.tolist()
