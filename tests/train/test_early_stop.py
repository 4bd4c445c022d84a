"""train.keep_best and train.early_stop: the loop keeps the checkpoint of the lowest val_loss as
OUT/best (never pruned), returns it, stops after `early_stop` evaluations without a new lowest,
and a resumed run goes on counting from where it stopped."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from genforge import checkpoint as ckpt_io
from genforge.config import TrainConfig
from genforge.errors import ConfigError, GenforgeError
from genforge.train.loop import train


class Scripted:
    """An objective whose validation losses follow a script (one per evaluation), so which
    checkpoint is best is known in advance; its weight counts the steps taken."""
    phases = ("main",)
    ema_module = "model"

    def __init__(self, val_losses: list[float], key: str = "val_loss"):
        self.model = nn.Linear(1, 1, bias=False)
        self.val_losses, self.key, self.evals = val_losses, key, 0

    def parameters(self, phase):
        return self.model.parameters()

    def modules(self):
        return {"model": self.model}

    def loss(self, batch, phase="main"):
        loss = (self.model.weight - 100.0).pow(2).sum()  # the weight moves every step
        return loss, {"loss": loss.detach()}

    def evaluate(self, batches):
        self.evals += 1
        return {self.key: self.val_losses[self.evals - 1]}


class Steps:
    def __init__(self):
        self.n = 0

    def __next__(self):
        self.n += 1
        return torch.zeros(1)

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]

    def eval_batches(self, n):
        return [None] * n


def config(out, **kw) -> TrainConfig:
    base = dict(max_iters=20, eval_interval=2, eval_iters=1, log_interval=2, warmup_iters=0, lr=0.1, min_lr=0.1,
                keep_checkpoints=1, device="cpu", threads=1, out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def weight(ckpt) -> float:
    return float(ckpt_io.load_tensors(ckpt / "model.safetensors")["weight"])


def test_early_stop_keeps_and_returns_the_best_validation_checkpoint(tmp_path):
    losses = [3.0, 2.0, 2.5, 1.5, 1.6, 1.5, 1.7, 9.0, 9.0]  # best at the 4th eval (step 8); 3 without a lower
    obj = Scripted(losses)
    final = train(obj, Steps(), config(tmp_path, early_stop=3), tmp_path, progress=False)
    assert obj.evals == 7  # evaluations at steps 2..14; the run stopped after step 14
    assert final == (tmp_path / "best").resolve() == (tmp_path / "step-0000008").resolve()
    assert (tmp_path / "latest").resolve().name == "step-0000014"
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000008", "step-0000014"]  # best not pruned
    # the best checkpoint holds the weights of step 8, not the last step's
    assert weight(final) != weight(tmp_path / "step-0000014")
    trainer = json.loads((final / "state" / "trainer.json").read_text())
    assert trainer["best"] == {"val_loss": 1.5, "step": 8, "stale": 0}


def test_keep_best_without_early_stop_runs_to_the_end(tmp_path):
    obj = Scripted([3.0, 1.0, 2.0, 4.0, 5.0])
    final = train(obj, Steps(), config(tmp_path, max_iters=10, keep_best=True), tmp_path, progress=False)
    assert obj.evals == 5 and final.name == "step-0000004"
    assert (tmp_path / "latest").resolve().name == "step-0000010"


def test_resume_goes_on_counting_evaluations_without_improvement(tmp_path):
    first = Scripted([2.0, 1.0, 1.5])
    train(first, Steps(), config(tmp_path, max_iters=6, early_stop=3), tmp_path, progress=False)
    assert (tmp_path / "best").resolve().name == "step-0000004"
    resumed = Scripted([1.2, 1.1, 0.0])  # the 2nd and 3rd evaluations without a new lowest end it
    final = train(resumed, Steps(), config(tmp_path, max_iters=20, early_stop=3), tmp_path, resume=True, progress=False)
    assert resumed.evals == 2 and final.name == "step-0000004"
    assert (tmp_path / "latest").resolve().name == "step-0000010"


def test_without_the_switches_nothing_changes(tmp_path):
    final = train(Scripted([3.0, 1.0, 2.0]), Steps(), config(tmp_path, max_iters=6), tmp_path, progress=False)
    assert final.name == "step-0000006" and not (tmp_path / "best").exists()


def test_bad_settings_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.early_stop=-1 must be >= 0"):
        config(tmp_path, early_stop=-1)
    with pytest.raises(GenforgeError, match="gives no val_loss"):
        train(Scripted([1.0], key="reward"), Steps(), config(tmp_path, keep_best=True), tmp_path, progress=False)
