"""The reviewer database: SQLite in WAL mode, parameterised SQL only, versioned migrations.

Tables: reviewers (a name and the sha256 of their login token), sessions (browser logins), prompts
to review, pairs (a prompt, two outputs, the model that made each, the sampling parameters) and
ratings (one per reviewer and pair: which output won or a tie, optional 1-5 scores, a comment).
A rating is committed (synchronous=FULL) before the reviewer's request returns, so killing the
server never loses an acknowledged rating.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from genforge.errors import DataError

# Migration i takes the schema from version i to i + 1 (PRAGMA user_version). Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE reviewers (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY, reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
        csrf TEXT NOT NULL, expires_at REAL NOT NULL);
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, source TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE pairs (
        id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),
        output_a TEXT NOT NULL, model_a TEXT NOT NULL, output_b TEXT NOT NULL, model_b TEXT NOT NULL,
        params TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY, pair_id INTEGER NOT NULL REFERENCES pairs(id),
        reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
        choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie')),
        rating_a INTEGER CHECK (rating_a BETWEEN 1 AND 5), rating_b INTEGER CHECK (rating_b BETWEEN 1 AND 5),
        comment TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL,
        UNIQUE (pair_id, reviewer_id));
    CREATE INDEX ratings_reviewer ON ratings (reviewer_id);
    CREATE INDEX pairs_prompt ON pairs (prompt_id);
    """,
)
SESSION_SECONDS = 12 * 3600


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    reviewer_id: int
    reviewer: str
    csrf: str


@dataclass(frozen=True)
class Pair:
    id: int
    prompt: str
    output_a: str
    model_a: str
    output_b: str
    model_b: str
    params: dict


class FeedbackDB:
    """One SQLite connection shared by the server's threads (serialised by a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a usable SQLite database ({e})") from None
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise DataError(f"{self.path}: schema version {version} is newer than this genforge knows "
                            f"({len(MIGRATIONS)}); upgrade genforge")
        for i in range(version, len(MIGRATIONS)):
            with self.lock:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    # one by one: executescript would commit in the middle of the migration
                    for statement in filter(str.strip, MIGRATIONS[i].split(";")):
                        self.conn.execute(statement)
                    self.conn.execute(f"PRAGMA user_version = {i + 1}")  # an int we own, not user input
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise

    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    # --- reviewers and logins -----------------------------------------------------------------

    def add_reviewer(self, name: str) -> str:
        """Create a reviewer; returns their login token (only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise DataError(f"reviewer name {name!r}: expected 1 to 100 characters")
        token = secrets.token_urlsafe(24)
        try:
            self._write("INSERT INTO reviewers (name, token_hash, created_at) VALUES (?, ?, ?)",
                        (name, _hash(token), time.time()))
        except sqlite3.IntegrityError:
            raise DataError(f"{self.path}: reviewer {name!r} already exists") from None
        return token

    def disable_reviewer(self, name: str) -> None:
        """Lock a reviewer out (their ratings stay): their token and open sessions stop working."""
        with self.lock:
            cur = self.conn.execute("UPDATE reviewers SET disabled = 1 WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise DataError(f"{self.path}: no reviewer {name!r}")
            self.conn.execute("DELETE FROM sessions WHERE reviewer_id = (SELECT id FROM reviewers WHERE name = ?)",
                              (name,))

    def reviewers(self) -> list[tuple[str, int]]:
        """(name, number of ratings) of every reviewer."""
        return self._rows("SELECT r.name, COUNT(t.id) FROM reviewers r LEFT JOIN ratings t ON t.reviewer_id = r.id "
                          "GROUP BY r.id ORDER BY r.name")

    def login(self, token: str) -> tuple[str, Session] | None:
        """(session id, session) for a valid reviewer token, else None."""
        row = self._rows("SELECT id, name FROM reviewers WHERE token_hash = ? AND disabled = 0", (_hash(token),))
        if not row:
            return None
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self.lock:
            self.conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            self.conn.execute("INSERT INTO sessions (id_hash, reviewer_id, csrf, expires_at) VALUES (?, ?, ?, ?)",
                              (_hash(sid), row[0][0], csrf, now + SESSION_SECONDS))
        return sid, Session(row[0][0], row[0][1], csrf)

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        row = self._rows("SELECT s.reviewer_id, r.name, s.csrf FROM sessions s JOIN reviewers r ON r.id = s.reviewer_id "
                         "WHERE s.id_hash = ? AND s.expires_at > ? AND r.disabled = 0", (_hash(sid), time.time()))
        return Session(*row[0]) if row else None

    def logout(self, sid: str) -> None:
        self._write("DELETE FROM sessions WHERE id_hash = ?", (_hash(sid),))

    # --- prompts and pairs --------------------------------------------------------------------

    def add_prompts(self, texts: list[str], source: str) -> int:
        """Queue prompts for review (duplicates are kept once); returns how many were new."""
        with self.lock:
            before = self.conn.total_changes
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT OR IGNORE INTO prompts (text, source, created_at) VALUES (?, ?, ?)",
                                  [(t, source, time.time()) for t in texts])
            self.conn.execute("COMMIT")
            return self.conn.total_changes - before

    def next_pair(self, reviewer_id: int) -> Pair | None:
        """The oldest pair this reviewer has not rated yet, or None."""
        rows = self._rows(
            "SELECT p.id, q.text, p.output_a, p.model_a, p.output_b, p.model_b, p.params FROM pairs p "
            "JOIN prompts q ON q.id = p.prompt_id WHERE NOT EXISTS "
            "(SELECT 1 FROM ratings t WHERE t.pair_id = p.id AND t.reviewer_id = ?) ORDER BY p.id LIMIT 1",
            (reviewer_id,))
        return _pair(rows[0]) if rows else None

    def pair(self, pair_id: int) -> Pair | None:
        rows = self._rows("SELECT p.id, q.text, p.output_a, p.model_a, p.output_b, p.model_b, p.params FROM pairs p "
                          "JOIN prompts q ON q.id = p.prompt_id WHERE p.id = ?", (pair_id,))
        return _pair(rows[0]) if rows else None

    def prompt_needing_pair(self, pairs_per_prompt: int) -> tuple[int, str, str] | None:
        """(id, text, source) of the oldest prompt with fewer than pairs_per_prompt pairs, or None."""
        rows = self._rows("SELECT q.id, q.text, q.source FROM prompts q WHERE (SELECT COUNT(*) FROM pairs p "
                          "WHERE p.prompt_id = q.id) < ? ORDER BY q.id LIMIT 1", (pairs_per_prompt,))
        return rows[0] if rows else None

    def add_pair(self, prompt_id: int, output_a: str, model_a: str, output_b: str, model_b: str, params: dict) -> int:
        cur = self._write("INSERT INTO pairs (prompt_id, output_a, model_a, output_b, model_b, params, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (prompt_id, output_a, model_a, output_b, model_b, json.dumps(params), time.time()))
        return cur.lastrowid

    # --- ratings ------------------------------------------------------------------------------

    def rate(self, reviewer_id: int, pair_id: int, choice: str, rating_a: int | None = None,
             rating_b: int | None = None, comment: str = "") -> int:
        """Store (or replace) this reviewer's rating of a pair; returns the rating id. Committed on return."""
        if choice not in ("a", "b", "tie"):
            raise DataError(f"choice {choice!r}: expected a, b or tie")
        for name, value in (("rating_a", rating_a), ("rating_b", rating_b)):
            if value is not None and not 1 <= value <= 5:
                raise DataError(f"{name}={value}: expected 1 to 5")
        if len(comment) > 10_000:
            raise DataError(f"comment: {len(comment)} characters, at most 10000")
        if self.pair(pair_id) is None:
            raise DataError(f"pair {pair_id}: no such pair")
        now = time.time()
        # the conflict target is (pair, this reviewer): a reviewer can only ever touch their own row
        self._write("INSERT INTO ratings (pair_id, reviewer_id, choice, rating_a, rating_b, comment, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pair_id, reviewer_id) DO UPDATE SET "
                    "choice = excluded.choice, rating_a = excluded.rating_a, rating_b = excluded.rating_b, "
                    "comment = excluded.comment, updated_at = excluded.updated_at",
                    (pair_id, reviewer_id, choice, rating_a, rating_b, comment, now, now))
        return self._rows("SELECT id FROM ratings WHERE pair_id = ? AND reviewer_id = ?", (pair_id, reviewer_id))[0][0]

    def ratings_of(self, reviewer_id: int) -> list[dict]:
        """This reviewer's own ratings (never anyone else's)."""
        rows = self._rows("SELECT id, pair_id, choice, rating_a, rating_b, comment, updated_at FROM ratings "
                          "WHERE reviewer_id = ? ORDER BY id", (reviewer_id,))
        keys = ("id", "pair_id", "choice", "rating_a", "rating_b", "comment", "updated_at")
        return [dict(zip(keys, r)) for r in rows]

    def rating_rows(self) -> list[dict]:
        """Every rating joined with its pair, prompt and reviewer (for export and stats)."""
        rows = self._rows(
            "SELECT t.id, t.pair_id, r.name, q.text, p.output_a, p.model_a, p.output_b, p.model_b, p.params, "
            "t.choice, t.rating_a, t.rating_b, t.comment, t.updated_at FROM ratings t "
            "JOIN pairs p ON p.id = t.pair_id JOIN prompts q ON q.id = p.prompt_id "
            "JOIN reviewers r ON r.id = t.reviewer_id ORDER BY t.id")
        keys = ("rating_id", "pair_id", "reviewer", "prompt", "output_a", "model_a", "output_b", "model_b", "params",
                "choice", "rating_a", "rating_b", "comment", "time")
        return [dict(zip(keys, r), params=json.loads(r[8])) for r in rows]

    def counts(self) -> dict[str, int]:
        tables = ("reviewers", "prompts", "pairs", "ratings")
        return {t: self._rows(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}  # names from the tuple above

    def integrity(self) -> str:
        return self._rows("PRAGMA integrity_check")[0][0]


def _pair(row: tuple) -> Pair:
    return Pair(*row[:6], params=json.loads(row[6]))


def open_db(path: str | Path, must_exist: bool = False) -> FeedbackDB:
    """The feedback database at path (created and migrated when new unless must_exist)."""
    if must_exist and not Path(path).is_file():
        raise DataError(f"{path}: no feedback database (create one with `genforge reviewers add NAME --db {path}`)")
    return FeedbackDB(path)
