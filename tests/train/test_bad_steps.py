"""A non-finite gradient skips its step on the device (weights and Adam moments untouched, the
step count taken back), and a run stops once MAX_BAD_STEPS steps in a row were skipped."""
import pytest
import torch
from torch import nn

from genforge.config import TrainConfig
from genforge.errors import GenforgeError
from genforge.run_config import load_config
from genforge.train.loop import _phase_step, _Window
from genforge.train.optim import build_optimizer
from genforge.train.run import run


class Poisoned:
    """A linear model whose loss is NaN whenever `poison` is set."""

    def __init__(self):
        torch.manual_seed(0)
        self.model, self.poison = nn.Linear(4, 4), False

    def modules(self):
        return {"model": self.model}

    def loss(self, batch, phase="main"):
        loss = self.model(batch).pow(2).mean() * (float("nan") if self.poison else 1.0)
        return loss, {"loss": loss.detach()}


def test_a_nan_step_changes_nothing_and_a_clean_one_still_steps():
    obj, cfg = Poisoned(), TrainConfig(weight_decay=0.1)
    opt = build_optimizer(obj.model.parameters(), cfg, torch.device("cpu"))
    x = torch.randn(8, 4)
    step = lambda: _phase_step(obj, "main", opt, [x], 1e-2, cfg, torch.device("cpu"), torch.float32, _Window())  # noqa: E731
    assert float(step()) == 0.0
    weights = obj.model.weight.detach().clone()
    moments = {k: v.clone() for k, v in opt.state[obj.model.weight].items()}
    obj.poison = True
    assert float(step()) == 1.0
    assert torch.equal(obj.model.weight, weights)
    for k, v in opt.state[obj.model.weight].items():
        assert torch.equal(v, moments[k]), k  # exp_avg, exp_avg_sq and the step count (1) untouched
    obj.poison = False
    assert float(step()) == 0.0
    assert not torch.equal(obj.model.weight, weights)
    assert float(opt.state[obj.model.weight]["step"]) == 2.0


def test_consecutive_nan_steps_stop_the_run(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides(tmp_path / "run", 40), "train.lr=1e40", "train.grad_clip=0", "train.log_interval=5"]
    with pytest.raises(GenforgeError, match="NaN/inf for [0-9]+ steps in a row"):
        run(load_config(None, overrides), progress=False)
