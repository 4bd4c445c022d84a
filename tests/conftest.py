"""Shared fixtures: a small text corpus, its prepared char-level token data, and a tiny trained
checkpoint. Session-scoped so the whole suite prepares and trains once; tests that damage a
checkpoint or data directory copy it first."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from genforge.config import RunConfig
from genforge.run_config import load_config

# The suite runs on small shared CPUs. Tiny models gain nothing from intra-op threads, and when
# other processes hold the cores, torch's spinning worker threads make each op ~100x slower.
torch.set_num_threads(1)

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "bold", "wizards", "quietly", "judge", "my", "sphinx", "of", "black", "quartz", "and", "five", "boxing", "kings", "vex", "each", "jolly", "zebra"]


def make_text(n_lines: int, seed: int = 0) -> str:
    """Deterministic English-like lines: every letter, some punctuation, newlines."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
        lines.append(" ".join(words).capitalize() + rng.choice(".!?,;"))
    return "\n".join(lines) + "\n"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll predicate() every `interval` seconds; return its first truthy value, or raise
    AssertionError("timed out after Ns waiting for WHAT") once `timeout` seconds have passed.
    A predicate that sees the wait is hopeless (the process it waits on died) raises itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _tiny_overrides(data: Path, out: Path, max_iters: int) -> list[str]:
    return [
        f"data.path={data}", f"train.out_dir={out}", f"train.max_iters={max_iters}",
        "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32",
        "data.batch_size=4", "train.warmup_iters=5", "train.eval_interval=10", "train.eval_iters=2",
        "train.log_interval=1", "train.device=cpu", "train.dtype=float32",
    ]


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return make_text(400)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_data(tmp_path_factory, corpus_file) -> Path:
    """A char-level prepared data directory (read-only: copy it before changing it)."""
    from genforge.data.prepare import prepare

    return prepare(str(corpus_file), "char", tmp_path_factory.mktemp("data") / "char")


@pytest.fixture(scope="session")
def tiny_overrides(char_data):
    """tiny_overrides(out, max_iters=20) -> dotted overrides of a run that trains a tiny GPT on
    char_data into out in about a second on one CPU thread."""

    def make(out: Path, max_iters: int = 20) -> list[str]:
        return _tiny_overrides(char_data, out, max_iters)

    return make


@pytest.fixture(scope="session")
def tiny_config(tiny_overrides):
    """tiny_config(out, *overrides, max_iters=20) -> RunConfig of the tiny run, overrides last."""

    def make(out: Path, *overrides: str, max_iters: int = 20) -> RunConfig:
        return load_config(None, [*tiny_overrides(out, max_iters), *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """The run directory of a tiny GPT trained 20 steps on char_data (read-only)."""
    from genforge.train.run import run

    out = tmp_path_factory.mktemp("run") / "tiny"
    run(tiny_config(out), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run) -> Path:
    """The final checkpoint directory of tiny_run (read-only: copy it before changing it)."""
    return (tiny_run / "latest").resolve()
