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


def pref_overrides(base: Path, prefs: Path, out: Path, max_iters: int = 30) -> list[str]:
    return [f"model.base={base}", f"data.path={prefs}", f"train.out_dir={out}", f"train.max_iters={max_iters}",
            "data.batch_size=8", "train.warmup_iters=2", "train.eval_interval=10", "train.log_interval=5",
            "train.device=cpu", "train.dtype=float32"]
