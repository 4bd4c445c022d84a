"""Training over several shards: a run resumed mid-shard reads exactly the windows the
uninterrupted run read, and `--verify` catches a shard whose bytes changed."""
import shutil

import pytest
import torch

from genforge.cli import main
from genforge.data.batches import TokenBatches
from genforge.data.prepare import prepare
from genforge.data.shards import TokenData
from genforge.errors import DataError


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, corpus_file):
    out = prepare(str(corpus_file), "char", tmp_path_factory.mktemp("sharded") / "data", shard_tokens=3000)
    assert len(TokenData(out).split("train")) >= 4
    return out


def test_resume_mid_shard_reads_the_same_windows(sharded):
    data = TokenData(sharded)
    straight = TokenBatches(data, 4, 32, seed=11)
    seen = [next(straight) for _ in range(20)]
    first = TokenBatches(data, 4, 32, seed=11)
    for _ in range(7):
        next(first)
    resumed = TokenBatches(TokenData(sharded), 4, 32, seed=11)
    resumed.load_state_dict(first.state_dict())
    for (x, y), (rx, ry) in zip(seen[7:], (next(resumed) for _ in range(13))):
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_verify_catches_changed_shard(sharded, tmp_path, capsys):
    copy = tmp_path / "data"
    shutil.copytree(sharded, copy)
    shard = copy / "train-00001.bin"
    raw = bytearray(shard.read_bytes())
    raw[10], raw[11] = raw[12], raw[13]  # same size, same ids < vocab: only the hash can tell
    raw[12], raw[13] = (raw[10] + 1) % 2, 0
    shard.write_bytes(bytes(raw))
    TokenData(copy)  # size, dtype and id checks pass
    with pytest.raises(DataError, match="sha256"):
        TokenData(copy, verify=True)
    config = tmp_path / "c.yaml"
    config.write_text("family: gpt\n")
    rc = main(["train", str(config), f"data.path={copy}", f"train.out_dir={tmp_path / 'run'}", "--verify",
               "model.n_layer=1", "model.n_head=1", "model.n_embd=8", "model.block_size=16", "train.max_iters=1"])
    assert rc == 2
    assert "sha256" in capsys.readouterr().err
