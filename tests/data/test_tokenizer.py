"""Tokenizers: char and byte-level BPE round trips, unknown characters, the end-of-text id."""
import pytest

from genforge.data.tokenizer import EOT, Tokenizer, train_tokenizer
from genforge.errors import DataError

SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


@pytest.fixture(scope="module")
def char_tok():
    return train_tokenizer("char", [SAMPLE])


@pytest.fixture(scope="module")
def bpe_tok():
    return train_tokenizer("bpe:300", [SAMPLE])


def test_char_round_trip(char_tok, tmp_path):
    assert char_tok.kind == "char"
    assert char_tok.vocab_size == len(set(SAMPLE)) + 1
    ids = char_tok.encode(SAMPLE)
    assert len(ids) == len(SAMPLE)  # one token per character
    assert char_tok.decode(ids) == SAMPLE
    char_tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.kind == "char" and again.encode(SAMPLE) == ids and again.decode(ids) == SAMPLE


@pytest.mark.parametrize("text", [SAMPLE, "  leading and trailing  \n", "Zebra quartz: 123 \t ÿ 雪 😀\n", ""])
def test_bpe_round_trip_of_any_text(bpe_tok, text, tmp_path):
    assert bpe_tok.kind == "bpe"
    assert bpe_tok.decode(bpe_tok.encode(text)) == text
    bpe_tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.kind == "bpe" and again.decode(again.encode(text)) == text


def test_bpe_vocab_size_and_merges(bpe_tok):
    assert bpe_tok.vocab_size == 300
    assert len(bpe_tok.encode(SAMPLE)) < len(SAMPLE.encode()) / 2  # merges learned from the corpus


def test_char_unknown_character_raises_data_error(char_tok):
    with pytest.raises(DataError, match=r"'Z'.*offset 6"):
        char_tok.encode("Speak Zounds")


@pytest.mark.parametrize("name", ["char_tok", "bpe_tok"])
def test_eot_is_the_last_id_and_round_trips(name, request):
    tok = request.getfixturevalue(name)
    assert tok.eot_id == tok.vocab_size - 1
    assert tok.tok.id_to_token(tok.eot_id) == EOT
    ids = tok.encode("hear me" + EOT + "speak")
    assert ids.count(tok.eot_id) == 1  # the marker is one token, never split into characters
    assert tok.decode(ids) == "hear me" + EOT + "speak"


def test_bad_specs_and_files(tmp_path):
    for spec in ("bpe", "bpe:100", "bpe:abc", "word", "char:5"):
        with pytest.raises(DataError, match="--tokenizer"):
            train_tokenizer(spec, [SAMPLE])
    with pytest.raises(DataError, match="missing.json"):
        Tokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        Tokenizer.from_file(bad)
