"""TokenData refuses data that does not match its manifest, naming the file at fault."""
import json
import shutil

import numpy as np
import pytest

from genforge.data.shards import TokenData
from genforge.errors import DataError


@pytest.fixture
def data_copy(tmp_path, char_data):
    return shutil.copytree(char_data, tmp_path / "data")


def edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_opens_and_reads_tokens(char_data):
    data = TokenData(char_data, verify=True)
    train = data.split("train")[0]
    assert isinstance(train, np.memmap) and train.dtype == np.uint16
    assert int(train.max()) < data.vocab_size


def test_not_a_data_directory(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        TokenData(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="malformed manifest"):
        TokenData(tmp_path)


def test_vocab_size_mismatch_with_tokenizer(data_copy):
    vocab = TokenData(data_copy).vocab_size
    edit_manifest(data_copy, vocab_size=vocab + 1)
    with pytest.raises(DataError, match=rf"tokenizer.json: tokenizer has {vocab} tokens.*vocab_size={vocab + 1}"):
        TokenData(data_copy)


@pytest.mark.parametrize("cut", [1, 2, 100])
def test_truncated_shard(data_copy, cut):
    shard = data_copy / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-cut])
    with pytest.raises(DataError, match=r"train-00000.bin: \d+ bytes, manifest says .*truncated"):
        TokenData(data_copy)


def test_missing_shard(data_copy):
    (data_copy / "val-00000.bin").unlink()
    with pytest.raises(DataError, match="val-00000.bin: shard listed in manifest.json is missing"):
        TokenData(data_copy)


def test_changed_shard_fails_checksum_and_bad_id_is_located(data_copy):
    shard = data_copy / "train-00000.bin"
    ids = np.fromfile(shard, dtype=np.uint16)
    ids[7] = (ids[7] + 1) % TokenData(data_copy).vocab_size
    ids.tofile(shard)
    TokenData(data_copy)  # same size, valid ids: only the checksum can tell
    with pytest.raises(DataError, match="train-00000.bin: sha256 does not match"):
        TokenData(data_copy, verify=True)
    ids[9] = 60000
    ids.tofile(shard)
    with pytest.raises(DataError, match=r"train-00000.bin: token id 60000 >= vocab_size \d+ at byte offset 18"):
        TokenData(data_copy)


def test_unknown_split(char_data):
    with pytest.raises(DataError, match="no 'test' split"):
        TokenData(char_data).split("test")
