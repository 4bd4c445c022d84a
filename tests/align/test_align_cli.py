"""`genforge align` end to end on the tiny checkpoint and a tiny feedback database, and its
one-line errors for bad databases."""
from __future__ import annotations

import json
import random
import sqlite3

from genforge.align.feedback import open_db
from genforge.cli import main
from genforge.train.log import read_metrics

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]


def make_db(path, n_prompts: int = 10, pairs_per_prompt: int = 3, choice=None):
    """A database whose reviewer prefers the output ending in '!' (or always `choice`)."""
    rng = random.Random(0)
    db = open_db(path)
    db.add_reviewer("ann")
    rid = db._rows("SELECT id FROM reviewers WHERE name = 'ann'")[0][0]
    prompts = [f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {i}" for i in range(n_prompts)]
    db.add_prompts([p.replace(str(i), "") + "x" * i for i, p in enumerate(prompts)], "test")
    for pid, _text in db._rows("SELECT id, text FROM prompts"):
        for _ in range(pairs_per_prompt):
            good = " " + " ".join(rng.choice(WORDS) for _ in range(3)) + "!"
            bad = " " + " ".join(rng.choice(WORDS) for _ in range(3)) + "."
            a, b = (good, bad) if rng.random() < 0.5 else (bad, good)
            pair = db.add_pair(pid, a, "m", b, "m", {})
            db.rate(rid, pair, choice or ("a" if a == good else "b"))
    return db


RULE = "def bangs(prompt, text):\n    return text.count('!')\n"


def test_align_dpo_end_to_end(tmp_path, tiny_ckpt, capsys):
    make_db(tmp_path / "fb.db")
    (tmp_path / "rule.py").write_text(RULE)
    out = tmp_path / "align"
    rc = main(["align", str(tiny_ckpt), "--feedback", str(tmp_path / "fb.db"), "--method", "dpo", "--out", str(out),
               "--iters", "20", "--reward-iters", "20", "--lr", "3e-3", "--eval-samples", "2", "--max-new-tokens", "12",
               "--rule", f"{tmp_path / 'rule.py'}:bangs", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"] == {"train": 24, "held_out": 6} and report["prompts"] == 2 and report["samples"] == 4
    for key in ("winrate_rm", "winrate_rule", "rm_accuracy"):
        assert 0 <= report[key] <= 1
    assert report["kl_to_reference"] > 0 and report["ppl_old"] > 1 and "ppl_rise_pct" in report
    assert (out / "report.png").stat().st_size > 1000 and (out / "dpo" / "loss.png").is_file()
    assert "win rate by the rule" in capsys.readouterr().out


def test_align_ppo_end_to_end(tmp_path, tiny_ckpt):
    make_db(tmp_path / "fb.db", n_prompts=5)
    out = tmp_path / "align"
    rc = main(["align", str(tiny_ckpt), "--feedback", str(tmp_path / "fb.db"), "--method", "ppo", "--out", str(out),
               "--iters", "3", "--reward-iters", "10", "--eval-samples", "2", "--max-new-tokens", "8", "--no-progress"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "ppo" and "winrate_rule" not in report and 0 <= report["winrate_rm"] <= 1
    assert (out / "ppo" / "metrics.csv").is_file()


def test_align_grpo_end_to_end(tmp_path, tiny_ckpt, capsys):
    make_db(tmp_path / "fb.db", n_prompts=5)
    (tmp_path / "rule.py").write_text(RULE)
    out = tmp_path / "align"
    rc = main(["align", str(tiny_ckpt), "--feedback", str(tmp_path / "fb.db"), "--method", "grpo", "--out", str(out),
               "--iters", "2", "--reward-iters", "10", "--eval-samples", "2", "--max-new-tokens", "8",
               "--rule", f"{tmp_path / 'rule.py'}:bangs", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "grpo" and 0 <= report["winrate_rm"] <= 1 and 0 <= report["winrate_rule"] <= 1
    steps = [int(p.name.split("-")[1]) for p in (out / "grpo").glob("step-*")]
    assert steps == [2]  # 2 rollout batches of 4 train prompts x 4 samples, one minibatch of 16: a step each
    names = {name for _, name, _ in read_metrics(out / "grpo" / "metrics.csv")}
    assert {"loss", "kl", "score", "val_score", "val_kl"} <= names
    assert "checkpoint:" in capsys.readouterr().out


def _align_error(tmp_path, tiny_ckpt, db, capsys, *extra) -> str:
    rc = main(["align", str(tiny_ckpt), "--feedback", str(db), "--out", str(tmp_path / "a"), "--iters", "2",
               "--reward-iters", "2", "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_align_bad_databases(tmp_path, tiny_ckpt, capsys):
    assert "no feedback database" in _align_error(tmp_path, tiny_ckpt, tmp_path / "none.db", capsys)
    open_db(tmp_path / "empty.db")
    assert "no ratings yet" in _align_error(tmp_path, tiny_ckpt, tmp_path / "empty.db", capsys)
    make_db(tmp_path / "ties.db", n_prompts=3, choice="tie")
    assert "one-sided feedback: all 9 ratings are ties" in _align_error(tmp_path, tiny_ckpt, tmp_path / "ties.db", capsys)
    make_db(tmp_path / "orphan.db", n_prompts=3)
    conn = sqlite3.connect(tmp_path / "orphan.db")  # a prompt deleted behind the server's back
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("DELETE FROM prompts WHERE id = 2")
    conn.commit()
    conn.close()
    assert "3 rated pairs have no prompt (pair ids " in _align_error(tmp_path, tiny_ckpt, tmp_path / "orphan.db", capsys)
    assert "expected FILE.py:FUNCTION" in _align_error(tmp_path, tiny_ckpt, tmp_path / "ties.db", capsys, "--rule", "x")


def test_align_refuses_a_reward_model_with_another_tokenizer(tmp_path, tiny_ckpt, capsys):
    import shutil

    from align_helpers import make_pairs, pref_overrides, write_jsonl

    from genforge.run_config import load_config
    from genforge.train.run import run

    prefs = write_jsonl(tmp_path / "p.jsonl", make_pairs(10))
    rm = run(load_config("reward/shakespeare", pref_overrides(tiny_ckpt, prefs, tmp_path / "rm", 1)),
             progress=False)
    tok = json.loads((rm / "tokenizer.json").read_text())
    tok["model"]["vocab"]["\u00e9"] = len(tok["model"]["vocab"])
    (rm / "tokenizer.json").write_text(json.dumps(tok))
    make_db(tmp_path / "fb.db", n_prompts=3)
    err = _align_error(tmp_path, tiny_ckpt, tmp_path / "fb.db", capsys, "--reward-model", str(rm))
    assert "tokenizer mismatch" in err
    shutil.rmtree(rm)
