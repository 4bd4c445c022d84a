"""Counterfactual data augmentation: two-sided swaps, case and possessives, untouched text kept
byte for byte, the prepare switch (train split only), and bad pair files."""
import json

import numpy as np
import pytest

from genforge.data.cda import Swapper, load_swaps, read_pairs
from genforge.data.prepare import prepare
from genforge.data.shards import TokenData
from genforge.data.tokenizer import Tokenizer
from genforge.errors import ConfigError, DataError

PAIRS = [("he", "she"), ("him", "her"), ("his", "her"), ("man", "woman"), ("king", "queen")]


def test_swaps_both_ways_with_case_and_possessives():
    s = Swapper(PAIRS)
    assert s.swap("he told her") == "she told him"
    assert s.swap("She told him") == "He told her"
    assert s.swap("HE SAW THE KING") == "SHE SAW THE QUEEN"
    assert s.swap("the man's hat; he's here") == "the woman's hat; she's here"
    assert s.swap("his book") == "her book"
    assert s.swap("her book") == "him book"  # 'her' is in two pairs: the first wins
    assert s.count == 10


def test_whole_words_only_and_untouched_text_byte_identical():
    s = Swapper(PAIRS)
    text = "The\tthemes  of hero-ism,\r\nshell, heath, manly; caf\u00e9 \u2014 \U0001F600\n"
    assert s.swap(text) == text  # no listed word: nothing changes (not 'the', 'shell', 'manly')
    mixed = "A\u00a0he\u00a0B  her-self\n"
    assert s.swap(mixed) == "A\u00a0she\u00a0B  him-self\n"  # only the words change, every other byte stays
    assert s.swap(s.swap("he and she and him")) == "he and she and him"


def test_bad_pairs(tmp_path):
    with pytest.raises(ConfigError, match="two different"):
        Swapper([("he", "He")])
    with pytest.raises(ConfigError, match="empty list"):
        Swapper([])
    f = tmp_path / "pairs.txt"
    f.write_text("he she\n# a comment\nking\n")
    with pytest.raises(DataError, match=r"pairs.txt:3: unpaired line 'king'"):
        read_pairs(f, "swaps")
    f.write_text('{"more": "a", "less": ""}\n')
    with pytest.raises(DataError, match=r"pairs.txt:1: unpaired line"):
        load_swaps(f)
    y = tmp_path / "spec.yaml"
    y.write_text("swaps: [[he, she]]\n")
    assert load_swaps(y) == [("he", "she")]
    y.write_text("attributes: {}\n")
    with pytest.raises(ConfigError, match="no 'swaps' key"):
        load_swaps(y)


def _docs(out, split):
    """The documents of a prepared split, each without its end-of-text."""
    data, tok = TokenData(out), Tokenizer.from_file(out / "tokenizer.json")
    ids = np.concatenate([np.asarray(a) for a in data.split(split)])
    cuts = np.where(ids == tok.eot_id)[0]
    return [tok.decode([int(t) for t in d]) for d in np.split(ids, cuts + 1) if len(d) > 1 or (len(d) and d[0] != tok.eot_id)]


@pytest.mark.parametrize("mode", ["augment", "replace"])
def test_prepare_cda_train_split_only(tmp_path, mode):
    docs = [f"doc {i}: he said that his friend is here.\n" if i % 2 else f"doc {i}: nothing to swap.\n"
            for i in range(20)]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = prepare(str(src), "char", tmp_path / "out", field="text", cda=[("he", "she"), ("his", "her")], cda_mode=mode)
    eot = Tokenizer.from_file(out / "tokenizer.json").decode([TokenData(out).eot_id])
    train = [t.replace(eot, "") for t in _docs(out, "train")]
    val = [t.replace(eot, "") for t in _docs(out, "val")]
    train_docs = [d for i, d in enumerate(docs) if i % 10 != 9]
    cf = [d.replace("he said", "she said").replace("his friend", "her friend") for d in train_docs]
    if mode == "augment":
        expected = [x for d, c in zip(train_docs, cf) for x in ([d, c] if c != d else [d])]
    else:
        expected = cf
    assert train == expected
    assert val == [docs[9], docs[19]]  # held-out documents as they are
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cda"]["mode"] == mode and manifest["cda"]["swaps"] == 2 * sum(c != d for d, c in zip(train_docs, cf))
