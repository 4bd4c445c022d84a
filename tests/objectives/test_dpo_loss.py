"""DPO / IPO / cDPO and Bradley–Terry losses against hand-computed values and TRL's formulas
(trl/trainer/dpo_trainer.py, `_compute_loss`: sigmoid, ipo, robust/cDPO), written out here so
the test runs without TRL."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genforge.errors import ConfigError
from genforge.objectives.dpo import DPOConfig, dpo_loss
from genforge.objectives.reward import bt_loss


def _logps():
    pc = torch.tensor([-10.0, -4.0, -7.5])
    pr = torch.tensor([-12.0, -3.0, -7.5])
    rc = torch.tensor([-11.0, -4.5, -8.0])
    rr = torch.tensor([-11.0, -3.2, -6.0])
    return pc, pr, rc, rr


def test_dpo_sigmoid_hand_computed():
    # pair 0: z = (-10 + 11) - (-12 + 11) = 2; beta 0.5 -> -log sigmoid(1) = log(1 + e^-1)
    loss, m = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-6)
    assert m["reward_chosen"].item() == pytest.approx(0.5) and m["reward_rejected"].item() == pytest.approx(-0.5)
    assert m["margin"].item() == pytest.approx(1.0) and m["reward_acc"].item() == 1.0


def test_dpo_matches_trl_formulas():
    pc, pr, rc, rr = _logps()
    beta = 0.1
    delta = (pc - rc) - (pr - rr)  # TRL: chosen_logratios - rejected_logratios
    trl_sigmoid = -F.logsigmoid(beta * delta)
    assert dpo_loss(pc, pr, rc, rr, beta)[0].item() == pytest.approx(trl_sigmoid.mean().item(), abs=1e-6)
    eps = 0.2  # TRL's robust/cDPO label smoothing
    trl_cdpo = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
    assert dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps)[0].item() == pytest.approx(trl_cdpo.mean().item(), abs=1e-6)
    trl_ipo = (delta - 1 / (2 * beta)) ** 2
    assert dpo_loss(pc, pr, rc, rr, beta, loss="ipo")[0].item() == pytest.approx(trl_ipo.mean().item(), rel=1e-6)
    # hand value for pair 2: delta = 0.5 - (-1.5) = 2; IPO target 1/(2*0.1) = 5 -> (2 - 5)^2 = 9
    assert trl_ipo[2].item() == pytest.approx(9.0)


def test_policy_equal_to_reference_gives_log2_and_zero_margin():
    logps = torch.tensor([-5.0, -9.0, -2.0], requires_grad=True)
    other = torch.tensor([-6.0, -1.0, -3.0], requires_grad=True)
    loss, m = dpo_loss(logps, other, logps.detach(), other.detach(), beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert m["margin"].item() == 0.0 and m["reward_chosen"].item() == 0.0
    loss.backward()
    # d/dz -log sigmoid(beta z) at z = 0 is -beta/2, split over the batch mean: chosen up, rejected down
    assert torch.allclose(logps.grad, torch.full((3,), -0.3 / 2 / 3))
    assert torch.allclose(other.grad, torch.full((3,), 0.3 / 2 / 3))


def test_identical_sides_have_zero_gradient():
    # chosen == rejected: the margin is identically 0, so nothing moves the policy
    x = torch.tensor([-4.0, -7.0], requires_grad=True)
    loss, _ = dpo_loss(x, x, x.detach() + 1, x.detach() + 1, beta=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2)) and torch.all(x.grad == 0)


def test_label_smoothing_half_would_cancel():
    # at eps=0.5 the gradient at z=0 vanishes: the reason DPOConfig keeps eps < 0.5
    z = torch.zeros(1, requires_grad=True)
    loss, _ = dpo_loss(z, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=1.0, label_smoothing=0.5)
    loss.backward()
    assert z.grad.abs().item() < 1e-7
    with pytest.raises(ConfigError, match="label_smoothing"):
        DPOConfig(label_smoothing=0.5)
    with pytest.raises(ConfigError, match="beta"):
        DPOConfig(beta=0)


def test_bradley_terry_hand_computed():
    loss, m = bt_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.0))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["acc"].item() == 0.5 and m["margin"].item() == 0.0
    equal, _ = bt_loss(torch.tensor([0.7]), torch.tensor([0.7]))
    assert equal.item() == pytest.approx(math.log(2))
