"""float16 training scales its losses (torch.amp.GradScaler): gradients that underflow fp16
without scaling reach the optimizer, and an overflow skips the step instead of stopping the run."""
import torch
from torch import nn

from genforge.config import TrainConfig
from genforge.train.loop import _phase_step, _Window
from genforge.train.optim import build_optimizer


class TinyLoss:
    """A linear layer whose loss is so small that its fp16 output gradient underflows to zero."""

    def __init__(self, factor: float):
        torch.manual_seed(0)
        self.model, self.factor = nn.Linear(8, 8), factor

    def modules(self):
        return {"model": self.model}

    def loss(self, batch, phase="main"):
        y = self.model(batch)  # float16 under autocast
        loss = self.factor * y.float().sum()
        return loss, {"loss": loss.detach()}


def step(objective, scaler):
    cfg = TrainConfig(weight_decay=0.0, grad_clip=0.0)
    opt = build_optimizer(objective.model.parameters(), cfg, torch.device("cpu"))
    before = objective.model.weight.detach().clone()
    x = torch.randn(4, 8)
    bad = _phase_step(objective, "main", opt, [x], 1e-2, cfg, torch.device("cpu"), torch.float16, _Window(), scaler)
    return not bad, (objective.model.weight.detach() - before).abs().max().item()


def test_scaled_fp16_gradients_do_not_underflow():
    ok, change = step(TinyLoss(1e-8), None)
    assert ok and change == 0.0  # unscaled: the fp16 gradient was zero, Adam did not move
    ok, change = step(TinyLoss(1e-8), torch.amp.GradScaler("cpu"))
    assert ok and change > 1e-3  # scaled by 2**16: the gradient survived, Adam took its step


def test_overflow_skips_the_step_and_lowers_the_scale():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    ok, change = step(TinyLoss(1e3), scaler)  # 1e3 * 2**16 overflows fp16
    assert change == 0.0 and scaler.get_scale() == 2.0 ** 15
    assert ok  # an overflow is the scaler's business, not a bad step
