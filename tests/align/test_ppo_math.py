"""PPO arithmetic: GAE against a hand-computed example, the clipped ratio, the KL penalty's sign."""
from __future__ import annotations

import pytest
import torch

from genforge.objectives.ppo_math import gae, kl_rewards, policy_loss, value_loss, whiten


def test_gae_hand_computed():
    # one row: a prompt token (mask 0) then three response tokens; gamma 0.9, lambda 0.5
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[9.0, 0.5, 0.2, 0.4]])
    mask = torch.tensor([[0, 1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d3 = 1.0 - 0.4  # last token: no bootstrap
    d2 = 0.0 + 0.9 * 0.4 - 0.2
    d1 = 0.0 + 0.9 * 0.2 - 0.5
    a3, a2 = d3, d2 + 0.45 * d3
    a1 = d1 + 0.45 * a2
    assert adv[0].tolist() == pytest.approx([0.0, a1, a2, a3])
    assert ret[0].tolist() == pytest.approx([0.0, a1 + 0.5, a2 + 0.2, a3 + 0.4])


def test_gae_gamma_lambda_one_is_return_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])  # the last position is padding: its value is never used
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([6 - 0.5, 5 - 0.5, 3 - 0.5, 0.0])


def test_clipped_ratio():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))  # ratios 1.5, 1.5, 0.5, 0.5
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    new.requires_grad_(True)
    loss, m = policy_loss(new, old, adv, mask, clip=0.2)
    # per token max(-A r, -A clip(r)): [-1.2, 1.5, -0.5, 0.8]
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)
    assert m["clip_frac"].item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens (ratio beyond the trust region in the advantage's direction) get no gradient
    grad = new.grad[0].tolist()
    assert grad[0] == 0.0 and grad[3] == 0.0
    assert grad[1] == pytest.approx(1.5 / 4) and grad[2] == pytest.approx(-0.5 / 4)


def test_kl_penalty_sign():
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    above = torch.log(torch.tensor([[0.9, 0.9, 0.9]]))  # the policy puts more mass than the reference
    below = torch.log(torch.tensor([[0.1, 0.1, 0.1]]))
    scores = torch.tensor([2.0])
    r_above, kl_above = kl_rewards(above, ref, scores, mask, kl_coef=0.1)
    r_below, kl_below = kl_rewards(below, ref, scores, mask, kl_coef=0.1)
    assert kl_above.item() > 0 and (r_above[0, :2] < 0).all()  # drifting up is penalised
    assert kl_below.item() < 0 and (r_below[0, :2] > 0).all()
    same, kl0 = kl_rewards(ref, ref, scores, mask, kl_coef=0.1)
    assert kl0.item() == 0 and same[0].tolist() == pytest.approx([0.0, 0.0, 2.0])  # score on the last token only


def test_value_loss_and_whiten():
    v, old, ret, mask = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.ones(1, 2)
    # token 0: max(1, clip(1)=0.2 -> 0.04) = 1; token 1: max(1, 1) = 1 -> 0.5 * mean = 0.5
    assert value_loss(v, old, ret, mask, clip=0.2).item() == pytest.approx(0.5)
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w[0, :3].mean().item() == pytest.approx(0, abs=1e-6) and w[0, 3].item() == 0
