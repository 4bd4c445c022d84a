"""The reviewer pages over HTTP: login, CSRF, escaping, CSP, own ratings only, the JSON API a script
uses, prompts from a file and from the playground, and the CLI verbs around the database."""
from __future__ import annotations

import json
import re

import httpx
import pytest

from genforge.align.feedback import open_db
from genforge.cli import main
from genforge.serve.review import COOKIE

XSS = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">', '<a href="javascript:alert(3)">click</a>']


@pytest.fixture
def review(tmp_path, make_server):
    """(base URL, db, {name: token}) of a server with reviewing on and three prompts queued."""
    db = open_db(tmp_path / "fb.db")
    tokens = {name: db.add_reviewer(name) for name in ("ann", "bob")}
    db.add_prompts(["the quick", "a lazy dog", "seven bold"], "test")
    return make_server(feedback=db), db, tokens


def browser(url: str, token: str | None = None) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60)
    if token:
        r = c.post("/review/login", data={"token": token})
        assert r.status_code == 303 and r.headers["location"] == "/review"
    return c


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_login_required_and_wrong_token(review):
    url, _db, tokens = review
    c = browser(url)
    assert c.get("/review").headers["location"] == "/review/login"
    r = c.post("/review/login", data={"token": "guess"})
    assert r.status_code == 401 and "Unknown token" in r.text and COOKIE not in c.cookies
    assert c.post("/review/api/login", json={"token": ""}).status_code == 401
    assert browser(url, tokens["ann"]).get("/review").status_code == 200


def test_rating_through_the_form(review):
    url, db, tokens = review
    c = browser(url, tokens["ann"])
    html = c.get("/review").text
    assert "the quick" in html and html.count('name="choice"') == 3
    pair_id = int(re.search(r'name="pair_id" value="(\d+)"', html).group(1))
    form = {"csrf": csrf_of(html), "pair_id": pair_id, "choice": "b", "rating_a": "2", "rating_b": "5",
            "comment": "b reads better"}
    r = c.post("/review/rate", data=form)
    assert r.status_code == 303
    [row] = db.rating_rows()
    assert (row["pair_id"], row["reviewer"], row["choice"], row["rating_a"], row["rating_b"], row["comment"]) == (
        pair_id, "ann", "b", 2, 5, "b reads better")
    assert {row["model_a"], row["model_b"]} <= {"alpha", "beta"} and row["params"]["max_tokens"] == 16
    assert "a lazy dog" in c.get("/review").text  # next item


def test_post_without_or_with_wrong_csrf_is_403(review):
    url, db, tokens = review
    c = browser(url, tokens["ann"])
    html = c.get("/review").text
    pair_id = re.search(r'name="pair_id" value="(\d+)"', html).group(1)
    assert c.post("/review/rate", data={"pair_id": pair_id, "choice": "a"}).status_code == 403
    other = browser(url, tokens["bob"]).get("/review").text  # bob's token is no good for ann's session
    assert c.post("/review/rate", data={"pair_id": pair_id, "choice": "a", "csrf": csrf_of(other)}).status_code == 403
    assert c.post("/review/api/rate", json={"pair_id": int(pair_id), "choice": "a"}).status_code == 403
    assert c.post("/review/logout", data={}).status_code == 403
    assert db.counts()["ratings"] == 0


def test_outputs_are_escaped_and_csp_is_sent(review):
    url, db, tokens = review
    db.add_prompts([XSS[0]], "test")
    pid = db._rows("SELECT id FROM prompts WHERE text = ?", (XSS[0],))[0][0]
    db.add_pair(pid, XSS[1], "alpha", XSS[2], "beta", {})
    c = browser(url, tokens["ann"])
    while (r := c.get("/review")) and "onerror" not in r.text:  # rate until the hostile pair comes up
        pair_id = re.search(r'name="pair_id" value="(\d+)"', r.text).group(1)
        c.post("/review/rate", data={"pair_id": pair_id, "choice": "tie", "csrf": csrf_of(r.text)})
    html = r.text
    for raw in XSS:
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "&lt;a href=&#34;javascript:alert(3)&#34;&gt;click&lt;/a&gt;" in html
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "<script" not in html  # the reviewer page runs no script at all


def test_reviewers_see_and_change_only_their_own_ratings(review):
    url, db, tokens = review
    ann, bob = httpx.Client(base_url=url), httpx.Client(base_url=url)
    ann_csrf = ann.post("/review/api/login", json={"token": tokens["ann"]}).json()["csrf"]
    bob_csrf = bob.post("/review/api/login", json={"token": tokens["bob"]}).json()["csrf"]
    pair = ann.get("/review/api/next").json()["pair"]
    assert set(pair) == {"id", "prompt", "a", "b", "kind"} and pair["kind"] == "text"  # blind: no model names
    rid = ann.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "a", "rating_a": 4},
                   headers={"X-CSRF-Token": ann_csrf}).json()["rating_id"]
    assert ann.get(f"/review/api/ratings/{rid}").json()["choice"] == "a"
    assert bob.get(f"/review/api/ratings/{rid}").status_code == 404
    assert bob.get("/review/api/ratings").json() == {"ratings": []}
    # bob rating the same pair makes bob's own rating; ann's stays as it was
    bob_rid = bob.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "b"},
                       headers={"X-CSRF-Token": bob_csrf}).json()["rating_id"]
    assert bob_rid != rid
    assert [(r["reviewer"], r["choice"]) for r in db.rating_rows()] == [("ann", "a"), ("bob", "b")]
    assert ann.get("/review/api/ratings/999").status_code == 404
    assert httpx.get(f"{url}/review/api/ratings").status_code == 401


def test_sql_injection_through_the_api_is_stored_literally(review):
    url, db, tokens = review
    evil = "'); DROP TABLE ratings; -- \" OR 1=1"
    c = httpx.Client(base_url=url)
    csrf = c.post("/review/api/login", json={"token": tokens["ann"]}).json()["csrf"]
    assert c.post("/review/api/login", json={"token": "' OR '1'='1"}).status_code == 401
    pair = c.get("/review/api/next").json()["pair"]
    r = c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "tie", "comment": evil},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert db.rating_rows()[0]["comment"] == evil and db.integrity() == "ok"


def test_playground_prompt_goes_to_the_queue(review):
    url, _db, tokens = review
    r = httpx.post(f"{url}/playground/review-prompt", json={"prompt": "my own prompt"})
    assert r.json() == {"queued": 1}
    c = httpx.Client(base_url=url)
    csrf = c.post("/review/api/login", json={"token": tokens["bob"]}).json()["csrf"]
    seen = []
    while (pair := c.get("/review/api/next").json()["pair"]) is not None:
        seen.append(pair["prompt"])
        c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "a"}, headers={"X-CSRF-Token": csrf})
    assert seen == ["the quick", "a lazy dog", "seven bold", "my own prompt"]
    assert "Nothing to review" in browser(url, tokens["bob"]).get("/review").text


def test_cli_reviewers_export_stats(tmp_path, capsys, review):
    url, db, _tokens = review
    path = str(db.path)
    assert main(["reviewers", "add", "cat", "--db", path]) == 0
    token = capsys.readouterr().out.strip()
    assert db.login(token)[1].reviewer == "cat"
    assert main(["reviewers", "add", "cat", "--db", path]) == 2
    assert "already exists" in capsys.readouterr().err
    c = httpx.Client(base_url=url)
    csrf = c.post("/review/api/login", json={"token": token}).json()["csrf"]
    for choice in ("a", "b", "tie"):
        pair = c.get("/review/api/next").json()["pair"]
        c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": choice}, headers={"X-CSRF-Token": csrf})
    out = tmp_path / "prefs.jsonl"
    assert main(["feedback", "export", path, "--out", str(out)]) == 0
    assert "2 preference pairs" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(r) >= {"prompt", "chosen", "rejected"} for r in records] == [True, True]
    assert main(["feedback", "stats", path, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["ratings"], stats["ties"], stats["reviewers"]) == (3, 1, 3)
    assert main(["feedback", "stats", str(tmp_path / "missing.db")]) == 2
    assert main(["reviewers", "list", "--db", path]) == 0
    assert capsys.readouterr().out.splitlines() == ["ann\t0", "bob\t0", "cat\t3"]
    assert main(["reviewers", "disable", "cat", "--db", path]) == 0
    assert c.get("/review/api/next").status_code == 401  # the open session ends too
