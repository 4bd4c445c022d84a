"""Perplexity evaluation: windows scored once each, and the units of bits per char/byte."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genforge
from genforge.errors import DataError
from genforge.eval.perplexity import evaluate_checkpoint, evaluate_tokens


def test_evaluate_tokens_scores_each_window_once(tiny_ckpt):
    model = genforge.load(tiny_ckpt, device="cpu").model
    T = model.config.block_size
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, 3 * T + 5)
    total, count = evaluate_tokens(model, ids, batch_size=2)
    assert count == 3 * T
    with torch.no_grad():
        want = sum(F.cross_entropy(model(torch.tensor(ids[None, i * T:i * T + T]))[0][0],
                                   torch.tensor(ids[i * T + 1:i * T + T + 1]), reduction="sum").item()
                   for i in range(3))
    assert total == pytest.approx(want, rel=1e-5)
    assert evaluate_tokens(model, ids, max_windows=1)[1] == T
    with pytest.raises(DataError, match="block_size"):
        evaluate_tokens(model, ids[:T])


def test_file_and_default_data(tiny_ckpt, corpus_file, char_data):
    on_file = evaluate_checkpoint(tiny_ckpt, file=str(corpus_file), device="cpu")
    assert on_file["source"] == str(corpus_file)
    assert on_file["perplexity"] == pytest.approx(math.exp(on_file["loss"]))
    assert on_file["bits_per_char"] == pytest.approx(on_file["loss"] / math.log(2))  # one char per token
    assert 1.0 < on_file["loss"] < math.log(genforge.load(tiny_ckpt).tokenizer.vocab_size)  # learned something

    default = evaluate_checkpoint(tiny_ckpt, device="cpu")
    assert default["source"] == f"{char_data} [val]"
    assert default == evaluate_checkpoint(tiny_ckpt, data=str(char_data), device="cpu")
    assert set(default) == {"source", "loss", "perplexity", "bits_per_char", "tokens"}


def test_bpe_reports_bits_per_byte(tmp_path, tiny_config, corpus_file):
    from genforge.data.prepare import prepare
    from genforge.train.run import run

    data = prepare(str(corpus_file), "bpe:300", tmp_path / "bpe")
    ckpt = run(tiny_config(tmp_path / "run", f"data.path={data}", max_iters=2), progress=False)
    result = evaluate_checkpoint(ckpt, file=str(corpus_file), device="cpu")
    assert "bits_per_byte" in result and "bits_per_char" not in result
    text_bytes = len(corpus_file.read_text().encode())
    assert result["bits_per_byte"] < result["loss"] / math.log(2)  # several bytes per token
    assert result["tokens"] < text_bytes


def test_data_from_another_tokenizer_is_refused(tmp_path, tiny_ckpt, corpus_file):
    from genforge.data.prepare import prepare

    other = prepare(str(corpus_file), "bpe:300", tmp_path / "bpe")
    with pytest.raises(DataError, match="vocab_size 300 does not match"):
        evaluate_checkpoint(tiny_ckpt, data=str(other), device="cpu")


def test_file_errors(tmp_path, tiny_ckpt):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        evaluate_checkpoint(tiny_ckpt, file=str(tmp_path / "nope.txt"), device="cpu")
    short = tmp_path / "short.txt"
    short.write_text("the dog\n")
    with pytest.raises(DataError, match="short.txt: fewer tokens than block_size"):
        evaluate_checkpoint(tiny_ckpt, file=str(short), device="cpu")
    odd = tmp_path / "odd.txt"
    odd.write_text("the dog # " * 20)
    with pytest.raises(DataError, match="odd.txt: character '#'"):
        evaluate_checkpoint(tiny_ckpt, file=str(odd), device="cpu")
