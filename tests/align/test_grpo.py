"""GRPO / RLOO: group advantages by hand, the k3 KL estimate, a reward callable raised in the one
loop, and a run resumed half-way that ends bitwise where an uninterrupted one does."""
from __future__ import annotations

import pytest
import torch
from align_helpers import rl_overrides, write_prompts

from genforge import checkpoint as ckpt_io
from genforge.errors import ConfigError
from genforge.objectives.grpo import GRPOConfig, group_advantages, k3_kl
from genforge.run_config import load_config
from genforge.train.log import read_metrics
from genforge.train.run import run


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0])  # two prompts, three samples each
    rloo = group_advantages(r, 3, "rloo")
    assert rloo.tolist() == pytest.approx([1 - 1.5, 3 - 0.5, 0 - 2.0, 0 - 3.0, 2 - 2.0, 4 - 1.0])
    grpo = group_advantages(r, 3, "grpo")
    std = torch.tensor([1.0, 3.0, 0.0]).std().item()  # unbiased, as torch.std
    assert grpo[:3].tolist() == pytest.approx([(1 - 4 / 3) / std, (3 - 4 / 3) / std, (0 - 4 / 3) / std], rel=1e-3)
    same = group_advantages(torch.tensor([2.0, 2.0]), 2)  # a group that agrees teaches nothing
    assert same.tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="group_size"):
        GRPOConfig(group_size=1)


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    ref = torch.log(torch.tensor([0.5, 0.2]))
    assert k3_kl(ref, ref).abs().max().item() == 0
    assert (k3_kl(torch.log(torch.tensor([0.9, 0.05])), ref) > 0).all()


def _cfg(tmp_path, tiny_ckpt, out, iters, *extra):
    prompts = write_prompts(tmp_path / "prompts.txt")
    return load_config("grpo/shakespeare", [*rl_overrides("grpo", tiny_ckpt, prompts, tmp_path / out, iters), *extra])


def _metric(run_dir, name):
    return [v for _, key, v in read_metrics(run_dir / "metrics.csv") if key == name]


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_grpo_raises_a_callable_reward(tmp_path, tiny_ckpt, estimator):
    # 4 prompts x 4 samples a rollout batch, one minibatch, 2 epochs: 2 loop steps a rollout batch, 10 batches
    out = run(_cfg(tmp_path, tiny_ckpt, "grpo", 20, f"grpo.estimator={estimator}", "grpo.beta=0.01",
                   "grpo.minibatch=16", "grpo.epochs=2", "train.eval_interval=20"), progress=False)
    scores = _metric(tmp_path / "grpo", "score")
    assert len(scores) == 10 and sum(scores[-3:]) / 3 > 2 * sum(scores[:3]) / 3
    config = ckpt_io.read_config(out)
    assert config["family"] == "gpt" and config["grpo"]["estimator"] == estimator
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]


def test_grpo_resume_is_bitwise(tmp_path, tiny_ckpt):
    # 4 prompts x 4 samples, minibatches of 8, 1 epoch: 2 steps a rollout batch, step 3 is part-way
    extra = ("grpo.minibatch=8", "train.lr_decay_iters=6", "train.min_lr=3e-4", "train.eval_interval=3",
             "train.log_interval=1")
    run(_cfg(tmp_path, tiny_ckpt, "a", 6, *extra), progress=False)
    run(_cfg(tmp_path, tiny_ckpt, "b", 3, *extra), progress=False)
    run(_cfg(tmp_path, tiny_ckpt, "b", 6, *extra), resume=True, progress=False)
    a, b = (ckpt_io.load_tensors(ckpt_io.resolve(tmp_path / d) / "model.safetensors") for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("loss", "kl", "score", "val_score"):
        assert _metric(tmp_path / "a", name) == _metric(tmp_path / "b", name)
