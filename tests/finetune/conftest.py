"""Fine-tuning fixtures: the tiny Hugging Face directories of tests/hf, imported as genforge
checkpoints, and small data files in each format finetune reads."""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("hf_tiny", Path(__file__).parent.parent / "hf" / "conftest.py")
hf_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf_tiny)

@pytest.fixture(scope="session")
def base_ckpts(tmp_path_factory) -> dict[str, Path]:
    """{"gpt2"|"llama"|"bert": a genforge checkpoint imported from a tiny HF directory} (read-only)."""
    from genforge.hf.io import import_hf

    tmp = tmp_path_factory.mktemp("base")
    return {k: import_hf(hf_tiny.hf_dir(tmp, k), tmp / k) for k in ("gpt2", "llama", "bert")}


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) + "." for _ in range(200)))
    return path


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    rows = []
    for _ in range(24):
        rows.append({"messages": [{"role": "system", "content": "BE QUICK."},
                                  {"role": "user", "content": "the fox?"}, {"role": "assistant", "content": "jumps over."},
                                  {"role": "user", "content": "the dog?"}, {"role": "assistant", "content": "lazy."}]})
        rows.append({"prompt": "quick brown ", "completion": "fox"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    rows = []
    for _ in range(40):
        rows.append({"text": rng.choice(["the quick fox", "quick brown fox", "the fox jumps"]), "label": "fox"})
        rows.append({"text": rng.choice(["the lazy dog", "lazy dog", "the dog jumps over"]), "label": "dog"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
