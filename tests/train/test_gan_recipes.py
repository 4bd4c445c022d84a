"""The named GAN recipes (genforge/recipes/gan/) are the gan/mnist recipe on other data: each
loads, keeps mnist's architecture, loss and optimizer, and trains 2 steps on its data."""
from __future__ import annotations

from pathlib import Path

import pytest

from genforge.run_config import load_config
from genforge.train.log import read_metrics
from genforge.train.run import run

SAME = ("arch", "g_width", "d_width", "loss", "g_cond", "diffaugment", "d_lr_scale", "conditional")
OPTIMIZER = ("lr", "min_lr", "beta1", "beta2", "ema_decay", "weight_decay", "grad_clip")


@pytest.mark.parametrize("name", ["gan/digits", "gan/glyphs", "gan/fashion"])
def test_recipe_is_mnists_and_trains_two_steps(name, tmp_path):
    cfg = load_config(name, [f"train.out_dir={tmp_path}", "train.max_iters=2", "train.eval_interval=2",
                             "train.eval_iters=1", "train.log_interval=1", "train.device=cpu", "train.dtype=float32",
                             "data.batch_size=8", "data.limit=64"])
    mnist = load_config("gan/mnist")
    assert {k: getattr(cfg.model, k) for k in SAME} == {k: getattr(mnist.model, k) for k in SAME}
    assert {k: getattr(cfg.train, k) for k in OPTIMIZER} == {k: getattr(mnist.train, k) for k in OPTIMIZER}
    source = cfg.data.source
    if not source.startswith("builtin:") and not Path(source).exists():
        pytest.skip(f"{name}: its data {source} is not here (the shared data folder beside the repository)")
    run(cfg, progress=False)
    steps = {s for s, n, _ in read_metrics(tmp_path / "metrics.csv") if n == "d_loss"}
    assert steps == {1, 2}
    assert (tmp_path / "latest" / "g.safetensors").is_file()
