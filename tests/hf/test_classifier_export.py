"""A fine-tuned encoder classifier exports with its head: `genforge export hf` writes
BertForSequenceClassification, which `transformers` loads and which computes genforge's logits
and names its labels; `genforge import hf` of that directory gives the classifier back."""
from __future__ import annotations

import json

import pytest
import torch

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.hf.tokenizer import encode_batch, load_tokenizer

transformers = pytest.importorskip("transformers")
TEXTS = ["the quick fox", "the lazy dog", "the dog jumps over", "quick brown fox"]


def classifier(tmp_path, hf_dirs):
    from genforge.finetune.run import FinetuneOptions, finetune
    from genforge.hf.io import import_hf

    base = import_hf(hf_dirs["bert"], tmp_path / "base")
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": "fox" if "fox" in t else "dog"}) + "\n" for t in TEXTS * 4))
    return finetune(base, data, tmp_path / "run", FinetuneOptions(batch_size=4, max_len=16), progress=False,
                    overrides=["train.max_iters=2", "train.eval_interval=2", "train.eval_iters=1", "train.device=cpu",
                               "train.dtype=float32", "train.warmup_iters=1", "train.lr=1e-2"])


def logits(model, ckpt):
    idx, mask = encode_batch(load_tokenizer(ckpt), TEXTS, max_len=16)
    with torch.no_grad():
        if isinstance(model, transformers.PreTrainedModel):
            return model(input_ids=idx, attention_mask=mask).logits
        return model.logits(idx, mask)


def test_export_and_import_keep_the_head(tmp_path, hf_dirs, capsys):
    ckpt = classifier(tmp_path, hf_dirs)
    ours = ckpt_io.load(ckpt).model.eval()
    assert ours.config.head_pool == "cls" and ours.config.n_labels == 2
    assert main(["export", "hf", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing was dropped

    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label == {0: "dog", 1: "fox"}
    expected = logits(ours, ckpt)
    torch.testing.assert_close(logits(hf, tmp_path / "hf"), expected, atol=1e-5, rtol=1e-4)

    assert main(["import", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    back = ckpt_io.load(tmp_path / "back")
    assert back.config["hf"]["architecture"] == "BertForSequenceClassification"
    assert back.config["hf"]["labels"] == ["dog", "fox"]
    assert back.model.config == ours.config
    torch.testing.assert_close(logits(back.model.eval(), tmp_path / "back"), expected, atol=0, rtol=0)
