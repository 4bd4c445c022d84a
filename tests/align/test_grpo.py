"""GRPO / RLOO: group advantages by hand, the k3 KL estimate, and a reward callable raised."""
from __future__ import annotations

import pytest
import torch

from genforge.align.grpo import GRPOConfig, GRPOTrainer, group_advantages, k3_kl
from genforge.data.tokenizer import Tokenizer
from genforge.errors import ConfigError
from genforge.finetune.load import load_checkpoint_model


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


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_grpo_raises_a_callable_reward(tiny_ckpt, estimator):
    torch.manual_seed(0)
    policy, _, path = load_checkpoint_model(tiny_ckpt)
    cfg = GRPOConfig(estimator=estimator, group_size=4, prompts_per_iter=2, max_new_tokens=16, lr=3e-3, beta=0.01)
    trainer = GRPOTrainer(policy, Tokenizer.from_file(path / "tokenizer.json"),
                          [lambda p, t: 10 * t.count("e") / max(len(t), 1)], cfg)
    scores = [trainer.step(["The quick", "A lazy"])["score"] for _ in range(14)]
    assert sum(scores[-4:]) / 4 > 1.5 * sum(scores[:4]) / 4
