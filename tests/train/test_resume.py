"""Exact resume: 10 steps, then resume for 10 more, equals 20 uninterrupted steps — the same
per-step losses (metrics.csv holds them as exact reprs) and bit-identical weights and optimizer
state. Dropout is on so the restored RNG state matters; the schedule's length is pinned with
lr_decay_iters so that the first half's schedule is the uninterrupted run's."""
import json

import pytest
import torch
from safetensors.torch import load_file

from genforge.cli import main
from genforge.train.log import read_metrics
from genforge.train.run import run

COMMON = ("model.dropout=0.1", "train.lr_decay_iters=20")


def losses(run_dir) -> torch.Tensor:
    rows = [(step, value) for step, name, value in read_metrics(run_dir / "metrics.csv") if name == "loss"]
    assert [step for step, _ in rows] == list(range(1, 21))  # each step once: the resumed run replaced nothing
    return torch.tensor([value for _, value in rows], dtype=torch.float64)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_runs(straight, resumed):
    assert torch.equal(losses(straight), losses(resumed))
    a, b = (d / "latest" for d in (straight, resumed))
    assert_same_tensors(load_file(a / "model.safetensors"), load_file(b / "model.safetensors"))
    assert_same_tensors(load_file(a / "state" / "optimizer-main.safetensors"),
                        load_file(b / "state" / "optimizer-main.safetensors"))


@pytest.mark.parametrize("extra", [
    ["train.dtype=float32"],
    ["train.dtype=bfloat16"],
    ["train.dtype=float32", "train.grad_accum=2"],
    ["train.dtype=float16"],
    ["train.dtype=float32", "train.optimizer=muon", "train.muon_lr_scale=2"],
], ids=["float32", "bfloat16", "grad-accum", "float16", "muon"])
def test_resume_equals_uninterrupted(tmp_path, tiny_config, extra):
    straight = tmp_path / "straight"
    run(tiny_config(straight, *COMMON, *extra, max_iters=20), progress=False)
    resumed = tmp_path / "resumed"
    run(tiny_config(resumed, *COMMON, *extra, max_iters=10), progress=False)
    assert (resumed / "latest").resolve().name == "step-0000010"
    run(tiny_config(resumed, *COMMON, *extra, max_iters=20), resume=True, progress=False)
    assert_same_runs(straight, resumed)
    groups = [json.loads((d / "latest" / "state" / "optimizer-main-groups.json").read_text())
              for d in (straight, resumed)]
    assert groups[0] == groups[1]
    assert ("grad_scaler" in groups[0]) == ("train.dtype=float16" in extra)  # fp16 scales its losses


def test_cli_resume_equals_uninterrupted(tmp_path, tiny_overrides, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", str(empty), *tiny_overrides(straight, 20), *COMMON, "--no-progress"]) == 0
    assert main(["train", str(empty), *tiny_overrides(resumed, 10), *COMMON, "--no-progress"]) == 0
    assert main(["train", str(empty), *tiny_overrides(resumed, 20), *COMMON, "--no-progress", "--resume"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"checkpoint: {resumed / 'step-0000020'}")
    assert_same_runs(straight, resumed)


def test_different_seed_gives_a_different_run(tmp_path, tiny_config):
    """The comparisons above could not pass by accident: runs do depend on train.seed."""
    a = run(tiny_config(tmp_path / "a", max_iters=2), progress=False)
    b = run(tiny_config(tmp_path / "b", "train.seed=7", max_iters=2), progress=False)
    c = run(tiny_config(tmp_path / "c", max_iters=2), progress=False)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert not torch.equal(wa["lm_head.weight"], wb["lm_head.weight"])
    assert_same_tensors(wa, wc)  # and the same seed gives the same run, whatever ran before in this process



def test_resume_with_ema(tmp_path, tiny_config):
    extra = ("train.ema_decay=0.9", "train.dtype=float32")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(tiny_config(straight, *COMMON, *extra, max_iters=20), progress=False)
    run(tiny_config(resumed, *COMMON, *extra, max_iters=10), progress=False)
    run(tiny_config(resumed, *COMMON, *extra, max_iters=20), resume=True, progress=False)
    a, b = (d / "latest" for d in (straight, resumed))
    assert_same_tensors(load_file(a / "state" / "raw-model.safetensors"),
                        load_file(b / "state" / "raw-model.safetensors"))
    assert_same_runs(straight, resumed)  # model.safetensors holds the EMA weights


def test_ema_checkpoint_with_tied_embeddings(tmp_path, tiny_config):
    """The raw weights of a tied-embedding model go into state/ next to the EMA weights."""
    import genforge

    ckpt = run(tiny_config(tmp_path / "run", "train.ema_decay=0.5", max_iters=4), progress=False)
    ema, raw = load_file(ckpt / "model.safetensors"), load_file(ckpt / "state" / "raw-model.safetensors")
    assert torch.equal(raw["lm_head.weight"], raw["transformer.wte.weight"])
    assert not torch.equal(ema["lm_head.weight"], raw["lm_head.weight"])
    assert isinstance(genforge.load(ckpt, device="cpu").generate("The", max_new_tokens=3, seed=0), str)
