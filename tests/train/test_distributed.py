"""DDP through torchrun on CPU (gloo): 2 ranks x batch b train exactly like 1 rank x batch 2b,
ranks read disjoint windows, and a 2-rank checkpoint resumes on 1 rank."""
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from genforge.data.batches import TokenBatches
from genforge.data.shards import TokenData
from genforge.train.log import read_metrics

STEPS = 12


def launch(nproc: int, overrides: list[str], *extra: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "genforge.cli", "train", *overrides, "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def config_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("family: gpt\n")
    return str(path)


def run_overrides(tiny_overrides, out, batch: int) -> list[str]:
    return [*tiny_overrides(out, STEPS), f"data.batch_size={batch}", "train.eval_interval=6", "train.threads=1"]


def loss_curve(run_dir) -> torch.Tensor:
    rows = [v for _, name, v in read_metrics(run_dir / "metrics.csv") if name == "loss"]
    return torch.tensor(rows, dtype=torch.float64)


def test_two_ranks_match_one_rank_with_double_batch(tmp_path, tiny_overrides):
    cfg = config_file(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    launch(1, [cfg, *run_overrides(tiny_overrides, one, 8)])
    launch(2, [cfg, *run_overrides(tiny_overrides, two, 4)])
    a, b = loss_curve(one), loss_curve(two)
    assert len(a) == len(b) == STEPS
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    wa, wb = (load_file(d / "latest" / "model.safetensors") for d in (one, two))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0)
    val = lambda d: [v for _, n, v in read_metrics(d / "metrics.csv") if n == "val_loss"]  # noqa: E731
    torch.testing.assert_close(torch.tensor(val(one)), torch.tensor(val(two)), atol=1e-5, rtol=0)

    # ... and a checkpoint of the 2-rank run resumes on 1 rank
    launch(1, [cfg, *run_overrides(tiny_overrides, two, 8), f"train.max_iters={STEPS + 6}"], "--resume")
    steps = [s for s, n, _ in read_metrics(two / "metrics.csv") if n == "loss"]
    assert steps == list(range(1, STEPS + 7))


def test_ranks_read_disjoint_windows(char_data):
    data = TokenData(char_data)
    ranks = [TokenBatches(data, 4, 16, seed=3, rank=r, world=2) for r in range(2)]
    single = TokenBatches(data, 8, 16, seed=3)
    for _ in range(5):
        (x0, _), (x1, _), (xs, _) = next(ranks[0]), next(ranks[1]), next(single)
        assert torch.equal(torch.cat([x0, x1]), xs)  # the two ranks together read the single rank's batch
        rows0 = {tuple(r) for r in x0.tolist()}
        assert not rows0 & {tuple(r) for r in x1.tolist()} or np.unique(xs.numpy(), axis=0).shape[0] < 8


def test_fsdp_two_ranks_match_one_rank_and_resume(tmp_path, tiny_overrides):
    """FSDP2 (train.fsdp=true): same losses and weights as 1 rank x 2b; its checkpoint holds whole
    tensors, resumes sharded on 2 ranks, and resumes unsharded on 1 rank."""
    cfg = config_file(tmp_path)
    one, two = tmp_path / "one", tmp_path / "fsdp"
    same = "train.lr_decay_iters=18"  # one schedule for the run and its resumed continuation
    launch(1, [cfg, *run_overrides(tiny_overrides, one, 8), same, "train.max_iters=18"])
    launch(2, [cfg, *run_overrides(tiny_overrides, two, 4), same, "train.fsdp=true"])
    launch(2, [cfg, *run_overrides(tiny_overrides, two, 4), same, "train.fsdp=true", "train.max_iters=18"], "--resume")
    a, b = loss_curve(one), loss_curve(two)
    assert len(a) == len(b) == 18
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # resuming sharded changed nothing
    wa, wb = (load_file(d / "latest" / "model.safetensors") for d in (one, two))
    for k in wb:
        torch.testing.assert_close(wa.get(k, wa.get("lm_head.weight")), wb[k], atol=1e-5, rtol=0)
    launch(1, [cfg, *run_overrides(tiny_overrides, two, 8), same, "train.max_iters=20"], "--resume")
    assert [s for s, n, _ in read_metrics(two / "metrics.csv") if n == "loss"] == list(range(1, 21))
