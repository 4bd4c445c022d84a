"""kill -9 of `genforge serve` while a reviewer is rating: every rating the server acknowledged is
in the database afterwards, and SQLite's integrity check passes."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx

from genforge.align.feedback import open_db
from serve.helpers import free_port
from tests.conftest import wait_until


def test_kill_during_writes_keeps_every_acknowledged_rating(tmp_path, serve_ckpt):
    db_path = tmp_path / "fb.db"
    db = open_db(db_path)
    token = db.add_reviewer("ann")
    db.close()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"the quick {i}\n" for i in range(500)))
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen([sys.executable, "-m", "genforge.cli", "serve", f"m={serve_ckpt}", "--port", str(port),
                               "--feedback-db", str(db_path), "--prompts", str(prompts), "--review-max-tokens", "4",
                               "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                return httpx.get(f"{url}/health").is_success
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, f"the server to answer {url}/health", interval=0.1)
        acknowledged: list[tuple[int, str]] = []
        stop = threading.Event()

        def reviewer():
            c = httpx.Client(base_url=url, timeout=10)
            csrf = c.post("/review/api/login", json={"token": token}).json()["csrf"]
            try:
                while not stop.is_set():
                    pair = c.get("/review/api/next").json()["pair"]
                    comment = f"rating of pair {pair['id']}"
                    r = c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "a", "comment": comment},
                               headers={"X-CSRF-Token": csrf})
                    if r.status_code == 200:  # committed before the server answered
                        acknowledged.append((r.json()["rating_id"], comment))
            except httpx.HTTPError:
                pass  # the server is gone

        thread = threading.Thread(target=reviewer)
        thread.start()
        while len(acknowledged) < 30 and thread.is_alive():
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # mid-stream of writes
        server.wait(10)
        stop.set()
        thread.join(15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    assert len(acknowledged) >= 30
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = dict(conn.execute("SELECT id, comment FROM ratings").fetchall())
    assert all(stored.get(rid) == comment for rid, comment in acknowledged)
