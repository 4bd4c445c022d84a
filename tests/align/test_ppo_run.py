"""PPO end to end on the tiny checkpoint: a reward function (a plain callable) is raised, the
result is a decoder checkpoint, and a reward model with another tokenizer is refused."""
from __future__ import annotations

import json
import shutil

import pytest

from genforge.align.ppo import PPOConfig
from genforge.align.ppo_run import check_same_tokenizer, run_ppo
from genforge.errors import DataError
from genforge.train import checkpoint as ckpt_io
from genforge.train.log import read_metrics

PROMPTS = ["The quick", "A lazy", "Seven bold", "My sphinx"]


def e_rate(prompt: str, text: str) -> float:
    return 10 * text.count("e") / max(len(text), 1)


def test_ppo_raises_a_callable_reward(tmp_path, tiny_ckpt):
    cfg = PPOConfig(iterations=15, prompts_per_iter=4, samples_per_prompt=2, max_new_tokens=16, lr=3e-3,
                    value_lr=3e-3, kl_coef=0.01)
    out = run_ppo(tiny_ckpt, e_rate, PROMPTS, tmp_path / "ppo", cfg, progress=False)
    scores = [v for _, name, v in read_metrics(tmp_path / "ppo" / "metrics.csv") if name == "score"]
    assert len(scores) == 15 and sum(scores[-4:]) / 4 > 2 * sum(scores[:4]) / 4
    config = ckpt_io.read_config(out)
    assert config["family"] == "gpt" and config["ppo"]["kl_coef"] == 0.01 and config["ppo_reward"] == "e_rate"
    assert (tmp_path / "ppo" / "loss.png").is_file()


def test_tokenizer_mismatch_is_refused(tmp_path, tiny_ckpt):
    other = tmp_path / "other"
    shutil.copytree(tiny_ckpt, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["\u00e9"] = len(vocab)  # one more character: a different vocabulary
    (other / "tokenizer.json").write_text(json.dumps(tok))
    check_same_tokenizer(tiny_ckpt, tiny_ckpt)
    with pytest.raises(DataError, match="tokenizer mismatch"):
        check_same_tokenizer(tiny_ckpt, other)
