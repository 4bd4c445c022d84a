"""The reviewer page compares two pieces of a music prompt (conditions such as "key=D meter=4/4"):
the pair holds WAV data URLs shown as <audio controls>, its rating goes to the same database as
text ratings, and a text output is never taken for audio."""
from __future__ import annotations

import base64

import httpx

from genforge.align.feedback import open_db
from serve.test_music_route import music  # noqa: F401  (fixture)


def test_a_music_prompt_makes_a_pair_of_pieces_to_rate(tmp_path, make_server, music):  # noqa: F811
    db = open_db(tmp_path / "fb.db")
    token = db.add_reviewer("ann")
    url = make_server(feedback=db, extra=[music])
    r = httpx.post(f"{url}/playground/review-prompt", json={"prompt": "key=G meter=4/4", "kind": "music"})
    assert r.json() == {"queued": 1}
    c = httpx.Client(base_url=url, timeout=120)
    csrf = c.post("/review/api/login", json={"token": token}).json()["csrf"]
    pair = c.get("/review/api/next").json()["pair"]
    assert pair["kind"] == "music" and pair["prompt"] == "key=G meter=4/4"
    for side in ("a", "b"):
        assert pair[side].startswith("data:audio/wav;base64,")
        assert base64.b64decode(pair[side].split(",", 1)[1])[:4] == b"RIFF"
    page = c.get("/review").text
    assert page.count('<audio controls class="compare"') == 2 and '<pre class="text" id="output-1"' not in page
    assert "media-src 'self' data:" in c.get("/review").headers["content-security-policy"]
    r = c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "a", "rating_a": 5, "rating_b": 1},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    row = db.rating_rows()[0]
    assert (row["choice"], row["rating_a"], row["rating_b"]) == ("a", 5, 1)


def test_a_music_prompt_needs_a_music_model_and_readable_conditions(tmp_path, make_server, music):  # noqa: F811
    db = open_db(tmp_path / "fb.db")
    url = make_server(feedback=db)
    r = httpx.post(f"{url}/playground/review-prompt", json={"prompt": "key=D", "kind": "music"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "kind"
    url = make_server(feedback=db, extra=[music])
    r = httpx.post(f"{url}/playground/review-prompt", json={"prompt": "mood=sad", "kind": "music"})
    assert r.status_code == 400 and "expected NAME=VALUE" in r.json()["error"]["message"]
    from genforge.serve.review import audio_of

    pid = db.add_prompts(["key=D"], "test") and 1
    pair = db.pair(db.add_pair(pid, "data:audio/wav;base64,UklGRg==", "x", 'data:audio/wav;base64,AA" onerror="x',
                               "y", {"kind": "music"}))
    assert audio_of(pair, pair.output_a) == pair.output_a and audio_of(pair, pair.output_b) is None
    text_pair = db.pair(db.add_pair(pid, "data:audio/wav;base64,UklGRg==", "x", "b", "y", {}))
    assert audio_of(text_pair, text_pair.output_a) is None


def test_the_audio_tab_sends_its_conditions_to_the_reviewers(tmp_path, make_server, music):  # noqa: F811
    import os
    import shutil

    import pytest

    chromium = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")
    if not shutil.which(chromium):
        pytest.skip(f"no Chromium at {chromium}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    db = open_db(tmp_path / "fb.db")
    url = make_server(feedback=db, extra=[music])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.click("#tab-audio")
        page.select_option("#audio-mode", "music")
        sync_api.expect(page.locator("#to-review-music")).to_be_visible()
        page.fill("#music-key", "Em")
        page.fill("#music-meter", "3/4")
        page.click("#to-review-music")
        sync_api.expect(page.locator("#audio-status")).to_have_text("queued for review")
        browser.close()
    assert tuple(db.prompt_needing_pair(1))[1:] == ("key=Em meter=3/4", "playground:music")
