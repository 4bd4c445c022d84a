"""The reward model's pooling and the response log-probs DPO and PPO read, against direct loops."""
from __future__ import annotations

import pytest
import torch

from genforge.models.gpt import GPTConfig
from genforge.models.reward import RewardConfig, RewardModel
from genforge.objectives.dpo import response_logps

torch.manual_seed(0)
GPT_CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_reward_pooling(pool):
    rm = RewardModel(RewardConfig(gpt=GPT_CFG, pool=pool)).eval()
    ids = torch.randint(1, 11, (2, 7))
    start, length = torch.tensor([2, 3]), torch.tensor([7, 5])
    v = rm.values(ids)  # (2, 7)
    want = [v[i, s:n].mean() if pool == "mean" else v[i, n - 1] for i, (s, n) in enumerate([(2, 7), (3, 5)])]
    assert torch.allclose(rm.score(ids, start, length), torch.stack(want), atol=1e-6)


def test_reward_reads_the_end_of_rows_longer_than_the_block():
    rm = RewardModel(RewardConfig(gpt=GPT_CFG, pool="last")).eval()
    ids = torch.randint(1, 11, (1, 9))  # block_size + 1 tokens, as a preference pair row can be
    got = rm.score(ids, torch.tensor([3]), torch.tensor([9]))
    assert torch.allclose(got, rm.values(ids[:, 1:])[:, -1], atol=1e-6)


def test_response_logps_sums_the_response_tokens_only():
    from genforge.models.gpt import GPT

    model = GPT(GPT_CFG).eval()
    ids = torch.randint(1, 11, (1, 6))
    total, count = response_logps(model, ids, torch.tensor([3]), torch.tensor([5]))
    logp = model(ids)[0].log_softmax(-1)[0]  # (6, V)
    want = sum(logp[t - 1, ids[0, t]] for t in (3, 4))  # tokens 3 and 4, each given the tokens before it
    assert count.item() == 2 and total.item() == pytest.approx(want.item(), abs=1e-5)
