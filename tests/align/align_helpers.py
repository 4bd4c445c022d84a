"""Preference helpers: pairs whose chosen side follows a simple rule (it ends in '!', the
rejected one in '?'), written in TRL's jsonl format, for the tiny checkpoint of tests/conftest.py.
(Not named conftest.py: tests elsewhere import `conftest` by name.)"""
from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(2)).capitalize()
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        other = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        out.append({"prompt": prompt, "chosen": f" {body}!", "rejected": f" {other}?"})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def pref_overrides(base: Path, prefs: Path, out: Path, max_iters: int = 30, section: str = "model") -> list[str]:
    """Overrides of a preference run: `section` holds the base checkpoint (model for the reward
    family, the method's section for dpo)."""
    return [f"{section}.base={base}", f"data.path={prefs}", f"train.out_dir={out}", f"train.max_iters={max_iters}",
            "data.batch_size=8", "train.warmup_iters=2", "train.eval_interval=10", "train.log_interval=5",
            "train.device=cpu", "train.dtype=float32"]


RL_PROMPTS = ["The quick", "A lazy", "Seven bold", "My sphinx", "Five boxing", "Each jolly"]


def e_rate(prompt: str, text: str) -> float:
    """A reward a tiny model can learn fast: ten times the share of e's in the completion."""
    return 10 * text.count("e") / max(len(text), 1)


def rl_overrides(method: str, base: Path, prompts: Path, out: Path, max_iters: int, reward: str = "align_helpers:e_rate"
                 ) -> list[str]:
    """Overrides of a tiny PPO or GRPO run (the method's recipe) on the tiny checkpoint: 4 prompts
    a rollout batch, 16 new tokens, a constant lr."""
    return [f"{method}.base={base}", f"{method}.reward={reward}", f"{method}.max_new_tokens=16",
            f"data.path={prompts}", "data.batch_size=4", "data.val_fraction=0.3", f"train.out_dir={out}",
            f"train.max_iters={max_iters}", "train.lr=3e-3", "train.min_lr=3e-3", "train.warmup_iters=0",
            "train.eval_interval=100", "train.eval_iters=1", "train.log_interval=2", "train.device=cpu",
            "train.dtype=float32"]


def write_prompts(path: Path, prompts: list[str] = RL_PROMPTS) -> Path:
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path
