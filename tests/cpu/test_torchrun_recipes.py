"""The shipped recipes set train.cpu_parallel=batch (one batch shard per thread); under torchrun
on CPU each rank is already one slice of the batch, so the run falls back to ops, saying so in
one line, instead of refusing to start."""
import os
import subprocess
import sys

import torch

from genforge.config import TrainConfig
from genforge.cpu.training import for_training
from genforge.objectives.lm import LMObjective

FALLBACK = "train.cpu_parallel=batch: under torchrun"


def test_a_shipped_recipe_runs_under_torchrun_on_cpu(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    # the recipe's model and data stay; the tiny overrides only shrink them
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "genforge.cli", "train", "lm/shakespeare_char", *tiny_overrides(out, 3), "train.threads=1",
           "--no-progress"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count(FALLBACK) == 1, done.stdout[-2000:]  # one line, from rank 0 only
    assert (out / "latest" / "model.safetensors").is_file()


def test_the_fallback_is_ops(capsys):
    cfg = TrainConfig(cpu_parallel="batch", threads=2)
    data = iter(())
    assert for_training(LMObjective(None), data, cfg, torch.device("cpu"), True, torch.float32) == (None, data)
    assert FALLBACK in capsys.readouterr().out
