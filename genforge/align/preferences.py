"""From the reviewer database to training data and summaries.

`export_preferences` writes TRL's preference format with an explicit prompt (one JSON object per
line: `prompt`, `chosen`, `rejected`) plus the scalar ratings and provenance; ties carry no
preference and are left out. `feedback_stats` counts, measures agreement between reviewers who
rated the same pair, and computes each model's win rate against the other models.
"""
from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from genforge.align.feedback import FeedbackDB
from genforge.errors import DataError


def preference_records(db: FeedbackDB) -> list[dict]:
    """One record per non-tie rating: prompt, chosen, rejected, their scores and models."""
    records = []
    for r in db.rating_rows():
        if r["choice"] == "tie":
            continue
        win, lose = ("a", "b") if r["choice"] == "a" else ("b", "a")
        records.append({
            "prompt": r["prompt"], "chosen": r[f"output_{win}"], "rejected": r[f"output_{lose}"],
            "score_chosen": r[f"rating_{win}"], "score_rejected": r[f"rating_{lose}"],
            "model_chosen": r[f"model_{win}"], "model_rejected": r[f"model_{lose}"],
            "reviewer": r["reviewer"], "comment": r["comment"], "pair_id": r["pair_id"],
            "rating_id": r["rating_id"], "params": r["params"], "time": r["time"],
        })
    return records


def export_preferences(db: FeedbackDB, out: str | Path) -> int:
    """Write the preference records to out (.jsonl, written to a temp file then renamed); returns their count."""
    out = Path(out)
    records = preference_records(db)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
        tmp.replace(out)
    except OSError as e:
        raise DataError(f"{out}: cannot write the export ({e.strerror})") from None
    return len(records)


def feedback_stats(db: FeedbackDB) -> dict:
    """Counts, inter-reviewer agreement and per-model win rates (ties count half)."""
    rows = db.rating_rows()
    stats: dict = {**db.counts(), "ties": sum(r["choice"] == "tie" for r in rows)}
    by_pair: dict[int, list[str]] = defaultdict(list)
    for r in rows:
        by_pair[r["pair_id"]].append(r["choice"])
    # pairwise percent agreement over every two reviewers who rated the same pair
    pairs = [(x, y) for choices in by_pair.values() for x, y in combinations(choices, 2)]
    stats["agreement"] = {"pairs_rated_by_several": sum(len(c) > 1 for c in by_pair.values()),
                          "reviewer_pairs": len(pairs),
                          "rate": sum(x == y for x, y in pairs) / len(pairs) if pairs else None}
    wins: dict[str, float] = defaultdict(float)
    games: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["model_a"] == r["model_b"]:  # two samples of one model say nothing about models
            continue
        for slot in ("a", "b"):
            games[r[f"model_{slot}"]] += 1
            wins[r[f"model_{slot}"]] += 1.0 if r["choice"] == slot else 0.5 if r["choice"] == "tie" else 0.0
    stats["win_rate"] = {m: {"games": games[m], "win_rate": wins[m] / games[m]} for m in sorted(games)}
    return stats


def format_stats(stats: dict) -> str:
    """A short human-readable summary of feedback_stats."""
    lines = [(f"reviewers {stats['reviewers']}  prompts {stats['prompts']}  pairs {stats['pairs']}  "
              f"ratings {stats['ratings']} (ties {stats['ties']})")]
    a = stats["agreement"]
    rate = "n/a" if a["rate"] is None else f"{a['rate']:.3f}"
    lines.append(f"agreement {rate} over {a['reviewer_pairs']} reviewer pairs on {a['pairs_rated_by_several']} pairs")
    for model, w in stats["win_rate"].items():
        lines.append(f"model {model}: win rate {w['win_rate']:.3f} over {w['games']} comparisons")
    return "\n".join(lines)
