"""The reviewer database: migrations, WAL, validation, own-rows-only ratings, export and stats."""
from __future__ import annotations

import json
import sqlite3

import pytest

from genforge.align.feedback import MIGRATIONS, open_db
from genforge.align.preferences import export_preferences, feedback_stats, format_stats
from genforge.errors import DataError


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "fb.db")


def pair(db, prompt="p", a="out a", b="out b", model_a="m1", model_b="m2") -> int:
    db.add_prompts([prompt], "test")
    pid = db._rows("SELECT id FROM prompts WHERE text = ?", (prompt,))[0][0]
    return db.add_pair(pid, a, model_a, b, model_b, {"temperature": 0.8})


def test_migrations_wal_and_reopen(tmp_path, db):
    assert db.version == len(MIGRATIONS)
    assert db._rows("PRAGMA journal_mode")[0][0] == "wal"
    token = db.add_reviewer("ann")
    db.close()
    again = open_db(tmp_path / "fb.db")  # reopening migrates nothing and keeps the data
    assert again.version == len(MIGRATIONS) and again.reviewers() == [("ann", 0)]
    assert again.login(token) is not None and again.login("not-a-token") is None
    conn = sqlite3.connect(tmp_path / "fb.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    again.close()
    with pytest.raises(DataError, match="newer than this genforge knows"):
        open_db(tmp_path / "fb.db")


def test_a_failing_migration_leaves_the_previous_version(tmp_path, monkeypatch):
    from genforge.align import feedback

    open_db(tmp_path / "fb.db").close()
    broken = "CREATE TABLE notes (id INTEGER PRIMARY KEY); INSERT INTO no_such_table VALUES (1)"
    monkeypatch.setattr(feedback, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        open_db(tmp_path / "fb.db")
    conn = sqlite3.connect(tmp_path / "fb.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'notes'").fetchall() == []  # rolled back


def test_not_a_database_and_missing(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="bad.db"):
        open_db(bad)
    with pytest.raises(DataError, match="no feedback database"):
        open_db(tmp_path / "none.db", must_exist=True)


def test_reviewer_tokens_are_hashed_and_unique_names(db):
    token = db.add_reviewer("ann")
    assert token not in json.dumps(db._rows("SELECT * FROM reviewers"))
    with pytest.raises(DataError, match="already exists"):
        db.add_reviewer("ann")
    with pytest.raises(DataError, match="1 to 100"):
        db.add_reviewer("  ")


def test_disabled_reviewer_is_locked_out(db):
    token = db.add_reviewer("ann")
    sid, _ = db.login(token)
    db.disable_reviewer("ann")
    assert db.login(token) is None and db.session(sid) is None
    with pytest.raises(DataError, match="no reviewer 'bob'"):
        db.disable_reviewer("bob")


def test_rate_validates_and_replaces_only_own_row(db):
    p = pair(db)
    ann = db.login(db.add_reviewer("ann"))[1].reviewer_id
    bob = db.login(db.add_reviewer("bob"))[1].reviewer_id
    for bad in (dict(choice="c"), dict(choice="a", rating_a=6), dict(choice="a", rating_b=0)):
        with pytest.raises(DataError):
            db.rate(ann, p, **bad)
    with pytest.raises(DataError, match="no such pair"):
        db.rate(ann, 999, "a")
    first = db.rate(ann, p, "a", 5, 2, "ann's")
    db.rate(bob, p, "b", comment="bob's")
    assert db.rate(ann, p, "tie", comment="changed my mind") == first  # replaced, not added
    assert [(r["choice"], r["comment"]) for r in db.ratings_of(ann)] == [("tie", "changed my mind")]
    assert [(r["choice"], r["comment"]) for r in db.ratings_of(bob)] == [("b", "bob's")]
    assert db.next_pair(ann) is None


def test_sql_injection_strings_are_data(db):
    evil = "x'); DROP TABLE ratings; --"
    p = pair(db, prompt=evil, a=evil)
    rid = db.login(db.add_reviewer("Robert'); DROP TABLE reviewers;--"))[1].reviewer_id
    db.rate(rid, p, "a", comment=evil)
    row = db.rating_rows()[0]
    assert row["prompt"] == row["output_a"] == row["comment"] == evil
    assert row["reviewer"] == "Robert'); DROP TABLE reviewers;--"
    assert db.counts()["ratings"] == 1 and db.integrity() == "ok"


def test_export_is_trl_preference_format(tmp_path, db):
    p1, p2 = pair(db, "p1", "A1", "B1"), pair(db, "p2", "A2", "B2", "m1", "m1")
    ann = db.login(db.add_reviewer("ann"))[1].reviewer_id
    db.rate(ann, p1, "b", rating_a=2, rating_b=4)
    db.rate(ann, p2, "tie")
    out = tmp_path / "prefs.jsonl"
    assert export_preferences(db, out) == 1  # the tie states no preference
    rec = json.loads(out.read_text())
    assert {k: rec[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected",
                                "model_chosen", "model_rejected", "reviewer")} == {
        "prompt": "p1", "chosen": "B1", "rejected": "A1", "score_chosen": 4, "score_rejected": 2,
        "model_chosen": "m2", "model_rejected": "m1", "reviewer": "ann"}
    assert rec["params"] == {"temperature": 0.8}
    with pytest.raises(DataError, match="cannot write the export"):
        export_preferences(db, tmp_path / "no" / "such" / "dir.jsonl")
    with pytest.raises(DataError, match="not a usable SQLite database"):
        open_db(tmp_path / "no" / "such" / "fb.db")


def test_stats_agreement_and_win_rates(db):
    p1, p2, p3 = pair(db, "p1"), pair(db, "p2"), pair(db, "p3", model_a="m1", model_b="m1")
    ids = [db.login(db.add_reviewer(n))[1].reviewer_id for n in ("a", "b", "c")]
    # p1: a, a, b -> of its 3 reviewer pairs one agrees; p2: tie, a -> its one pair disagrees
    for rid, choice in zip(ids, "aab"):
        db.rate(rid, p1, choice)
    db.rate(ids[0], p2, "tie")
    db.rate(ids[1], p2, "a")
    db.rate(ids[2], p3, "a")  # one model against itself: not a model comparison
    s = feedback_stats(db)
    assert (s["reviewers"], s["pairs"], s["ratings"], s["ties"]) == (3, 3, 6, 1)
    assert s["agreement"] == {"pairs_rated_by_several": 2, "reviewer_pairs": 4, "rate": 0.25}
    # m1 is output a in p1/p2: wins 1 + 1 + 0 + 0.5 + 1 = 3.5 of 5; m2 the rest
    assert s["win_rate"] == {"m1": {"games": 5, "win_rate": 0.7}, "m2": {"games": 5, "win_rate": 0.3}}
    assert "win rate 0.700 over 5" in format_stats(s)
