"""Helpers more than one verb uses."""
from __future__ import annotations


def kind_of(ckpt: str) -> str:
    """What the checkpoint's family makes (genforge/families.py: text, image, label, ...)."""
    from genforge import checkpoint as ckpt_io

    return ckpt_io.peek(ckpt)[2].kind


def comparison(before: dict, after: dict, names: tuple[str, str] = ("baseline", "model")) -> str:
    """The scalar metrics both reports have, as a table: before, after, change."""
    rows = [(k, before[k], after[k]) for k in after if k in before and isinstance(after[k], (int, float))
            and isinstance(before[k], (int, float)) and not isinstance(after[k], bool)]
    width = max([len(k) for k, _, _ in rows] + [6])
    lines = [f"{'metric':<{width}}  {names[0]:>10}  {names[1]:>10}  {'change':>10}"]
    for k, b, v in rows:
        change = f"{100 * (v / b - 1):+9.2f}%" if k == "perplexity" and b else f"{v - b:+10.4f}"
        lines.append(f"{k:<{width}}  {b:10.4f}  {v:10.4f}  {change}")
    return "\n".join(lines)
