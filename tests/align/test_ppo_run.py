"""PPO in the one loop on the tiny checkpoint: a reward function (a plain callable) is raised and
the result is a plain decoder checkpoint; a run resumed half-way (part-way through a rollout
batch) ends bitwise where an uninterrupted one does; gradient accumulation over half-size
minibatches gives the full minibatch's update; a reward model with another tokenizer is refused."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from align_helpers import rl_overrides, write_prompts

from genforge import checkpoint as ckpt_io
from genforge.align.rewards import check_same_tokenizer
from genforge.errors import DataError
from genforge.run_config import load_config
from genforge.sample.text import stream_text
from genforge.train.log import read_metrics
from genforge.train.run import run


def _cfg(tmp_path, tiny_ckpt, out, iters, *extra):
    prompts = write_prompts(tmp_path / "prompts.txt")
    return load_config("ppo/shakespeare", [*rl_overrides("ppo", tiny_ckpt, prompts, tmp_path / out, iters), *extra])


def _metric(run_dir, name):
    return [v for _, key, v in read_metrics(run_dir / "metrics.csv") if key == name]


def _weights(run_dir, module="model"):
    return ckpt_io.load_tensors(ckpt_io.resolve(run_dir) / f"{module}.safetensors")


def test_ppo_raises_a_callable_reward(tmp_path, tiny_ckpt):
    # 4 prompts x 2 samples = 8 rows, one minibatch, 2 epochs: 2 loop steps a rollout batch, 15 batches
    out = run(_cfg(tmp_path, tiny_ckpt, "ppo", 30, "ppo.kl_coef=0.01", "ppo.value_lr_scale=1", "train.eval_interval=30"),
              progress=False)
    scores = _metric(tmp_path / "ppo", "score")
    assert len(scores) == 15 and sum(scores[-4:]) / 4 > 2 * sum(scores[:4]) / 4
    assert _metric(tmp_path / "ppo", "value_loss") and _metric(tmp_path / "ppo", "val_score")
    config = ckpt_io.read_config(out)
    assert config["family"] == "gpt" and config["ppo"]["kl_coef"] == 0.01
    assert config["ppo"]["reward_source"] == "align_helpers:e_rate" and config["ppo"]["train_prompts"] == 4
    loaded = ckpt_io.load(out)  # a plain gpt checkpoint: it samples like the SFT model
    assert loaded.family.kind == "text" and "".join(stream_text(loaded.model, loaded.tokenizer, "The", 4, seed=0)) != "x"
    assert (tmp_path / "ppo" / "loss.png").is_file()


def test_ppo_resume_is_bitwise(tmp_path, tiny_ckpt):
    # 2 steps a rollout batch: the checkpoint at step 3 is part-way through the second batch
    extra = ("train.lr_decay_iters=6", "train.min_lr=3e-4", "train.eval_interval=3", "train.log_interval=1")
    run(_cfg(tmp_path, tiny_ckpt, "a", 6, *extra), progress=False)
    run(_cfg(tmp_path, tiny_ckpt, "b", 3, *extra), progress=False)
    trainer = ckpt_io.load_state(ckpt_io.resolve(tmp_path / "b"), "trainer")
    assert trainer["data"]["drawn"] == 3 and "batch" in trainer["data"]
    run(_cfg(tmp_path, tiny_ckpt, "b", 6, *extra), resume=True, progress=False)
    for module in ("model", "value"):
        a, b = _weights(tmp_path / "a", module), _weights(tmp_path / "b", module)
        assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("loss", "value_loss", "score"):
        assert _metric(tmp_path / "a", name) == _metric(tmp_path / "b", name)


def test_ppo_grad_accum_equals_the_full_minibatch(tmp_path, tiny_ckpt):
    # 8 rows a rollout batch: one minibatch of 8, or two micro-batches of 4 accumulated into one step
    run(_cfg(tmp_path, tiny_ckpt, "full", 4, "ppo.minibatch=8"), progress=False)
    run(_cfg(tmp_path, tiny_ckpt, "accum", 4, "ppo.minibatch=4", "train.grad_accum=2"), progress=False)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "accum")
    assert any(not torch.equal(a[k], ckpt_io.load_tensors(tiny_ckpt / "model.safetensors")[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_tokenizer_mismatch_is_refused(tmp_path, tiny_ckpt):
    other = tmp_path / "other"
    shutil.copytree(tiny_ckpt, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["\u00e9"] = len(vocab)  # one more character: a different vocabulary
    (other / "tokenizer.json").write_text(json.dumps(tok))
    check_same_tokenizer(tiny_ckpt, tiny_ckpt)
    with pytest.raises(DataError, match="tokenizer mismatch"):
        check_same_tokenizer(tiny_ckpt, other)


def test_ppo_trains_under_torchrun(tmp_path, tiny_ckpt):
    """2 ranks (gloo on CPU), each rolling out its own prompts: the value model's forward is what
    DistributedDataParallel wraps, and rank 0 writes a checkpoint that resumes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    prompts = write_prompts(tmp_path / "prompts.txt")
    reward = f"{Path(__file__).with_name('align_helpers.py')}:e_rate"
    overrides = [*rl_overrides("ppo", tiny_ckpt, prompts, tmp_path / "ddp", 4, reward), "train.threads=1"]
    for extra, iters in (((), 4), (("--resume",), 6)):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "genforge.cli",
               "train", "ppo/shakespeare", *overrides, f"train.max_iters={iters}", "--no-progress", *extra]
        done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert [s for s, n, _ in read_metrics(tmp_path / "ddp" / "metrics.csv") if n == "loss"] == [2, 4, 6]
    assert ckpt_io.load(tmp_path / "ddp").family.kind == "text"
