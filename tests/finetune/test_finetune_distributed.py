"""`genforge finetune` under torchrun: 2 CPU processes (gloo) fine-tune a tiny imported checkpoint
data parallel, full (an encoder classifier) and with LoRA (a decoder on chat data), into one
checkpoint that rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from genforge import checkpoint as ckpt_io

pytest.importorskip("peft")


def torchrun(ckpt, data, out, *args: str) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "genforge.cli",
           "finetune", str(ckpt), "--data", str(data), "--out", str(out), "--no-progress", "--batch-size", "2", *args,
           "train.max_iters=4", "train.eval_interval=4", "train.eval_iters=1", "train.log_interval=2",
           "train.warmup_iters=1", "train.device=cpu", "train.dtype=float32", "train.threads=1"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("kind,method", [("bert", "full"), ("gpt2", "lora")])
def test_two_ranks_finetune_into_one_checkpoint(tmp_path, base_ckpts, labels_file, chat_file, kind, method):
    data = labels_file if kind == "bert" else chat_file
    printed = torchrun(base_ckpts[kind], data, tmp_path / "run", "--method", method)
    ckpt = tmp_path / "run" / "step-0000004"
    assert printed.count(f"checkpoint: {ckpt}") == 2  # every rank returns the one checkpoint
    config = json.loads((ckpt / "config.json").read_text())
    assert config["finetune"]["task"] == ("classify" if kind == "bert" else "sft")
    loaded = ckpt_io.load(ckpt)  # a LoRA run's checkpoint loads merged
    assert loaded.family.kind == ("encode" if kind == "bert" else "text")
    if method == "lora":
        assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_ranks_read_disjoint_slices_of_one_draw(base_ckpts):
    import numpy as np
    import torch

    from genforge.finetune.classify_data import ClassifyBatches
    from genforge.finetune.sft_data import SFTBatches
    from genforge.hf.tokenizer import load_tokenizer

    rows = np.arange(40 * 3).reshape(40, 3)
    arrays = (rows, rows + 1, rows + 2)
    two = [SFTBatches(arrays, arrays, 4, seed=5, rank=r, world=2) for r in range(2)]
    one = SFTBatches(arrays, arrays, 8, seed=5)
    texts = ([f"the fox {i}" for i in range(40)], list(range(40)))
    tok = load_tokenizer(base_ckpts["bert"])
    ctwo = [ClassifyBatches(tok, texts, texts, 4, 16, seed=5, rank=r, world=2) for r in range(2)]
    cone = ClassifyBatches(tok, texts, texts, 8, 16, seed=5)
    for _ in range(3):
        assert torch.equal(torch.cat([next(two[0])[0], next(two[1])[0]]), next(one)[0])
        assert torch.equal(torch.cat([next(ctwo[0])[2], next(ctwo[1])[2]]), next(cone)[2])  # the labels
