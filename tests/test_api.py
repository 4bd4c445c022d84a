"""The Python API: genforge.load(ckpt).generate / .stream."""
import pytest

import genforge
from genforge.errors import CheckpointError, DataError


@pytest.fixture(scope="module")
def lm(tiny_ckpt):
    return genforge.load(tiny_ckpt, device="cpu")


def test_generate_returns_text(lm):
    text = lm.generate("The quick", max_new_tokens=20, seed=0)
    assert isinstance(text, str) and 0 < len(text) <= 20  # a char model: one character per token
    assert text == lm.generate("The quick", max_new_tokens=20, seed=0)  # seeded: reproducible


def test_num_samples_returns_a_list(lm):
    texts = lm.generate("The quick", max_new_tokens=20, num_samples=2, seed=0)
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts[0] != texts[1]  # independent samples
    assert texts == lm.generate("The quick", max_new_tokens=20, num_samples=2, seed=0)


def test_greedy_samples_agree(lm):
    one = lm.generate("The quick", max_new_tokens=30, temperature=0.0)
    assert lm.generate("The quick", max_new_tokens=30, temperature=0.0, num_samples=2) == [one, one]


def test_stream_pieces_join_to_generate(lm):
    pieces = list(lm.stream("The quick", max_new_tokens=25, seed=3))
    assert len(pieces) > 1 and "".join(pieces) == lm.generate("The quick", max_new_tokens=25, seed=3)


def test_stop_strings(lm):
    full = lm.generate("The", max_new_tokens=40, temperature=0.0)
    stop = full[len(full) // 2:len(full) // 2 + 2]
    cut = full[:full.index(stop)]
    assert lm.generate("The", max_new_tokens=40, temperature=0.0, stop=[stop]) == cut
    assert lm.generate("The", max_new_tokens=40, temperature=0.0, stop=[stop], num_samples=2) == [cut, cut]


def test_empty_prompt_starts_a_new_document(lm):
    assert isinstance(lm.generate("", max_new_tokens=5, seed=0), str)
    assert len(lm.generate("", max_new_tokens=5, seed=0, num_samples=2)) == 2


def test_run_directory_loads_its_latest(tiny_run, tiny_ckpt, lm):
    assert genforge.load(tiny_run, device="cpu").path == tiny_ckpt
    assert lm.path == tiny_ckpt


def test_unknown_prompt_character(lm):
    with pytest.raises(DataError, match="'#'"):
        lm.generate("#", max_new_tokens=5)


def test_checkpoint_without_tokenizer(tmp_path, tiny_ckpt):
    import shutil

    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        genforge.load(ckpt, device="cpu")
