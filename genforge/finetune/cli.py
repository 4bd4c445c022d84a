"""The `finetune`, `merge` and `chat` verbs (registered in genforge/cli.py)."""
from __future__ import annotations


def add_finetune(sub) -> None:
    pass


def add_merge(sub) -> None:
    pass


def add_chat(sub) -> None:
    pass
