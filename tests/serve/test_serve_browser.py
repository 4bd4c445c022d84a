"""The pages in a real browser: Playwright driving Debian's Chromium (headless). A reviewer logs in
and rates five pairs; the database then holds exactly those five ratings. The playground streams a
completion. Screenshots go to $GENFORGE_TEST_ARTIFACTS (else the test's tmp dir)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from genforge.align.feedback import open_db

CHROMIUM = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium, or set GENFORGE_CHROMIUM)", allow_module_level=True)

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
XSS = ['<a href="javascript:alert(3)">click</a>', "<svg onload=alert(4)></svg><script>alert(5)</script>"]


@pytest.fixture
def artifacts(tmp_path) -> Path:
    out = Path(os.environ.get("GENFORGE_TEST_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        yield page
        browser.close()


def test_reviewer_rates_five_pairs(tmp_path, make_server, page, artifacts):
    db = open_db(tmp_path / "fb.db")
    token = db.add_reviewer("ann")
    db.add_prompts([HOSTILE, "the quick", "a lazy dog", "seven bold", "my sphinx", "five boxing"], "test")
    db.add_pair(1, XSS[0], "alpha", XSS[1], "beta", {})  # outputs are untrusted text too
    url = make_server(feedback=db)
    page.goto(f"{url}/review")
    assert page.url.endswith("/review/login")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_selector("#prompt")
    assert page.text_content("#prompt") == HOSTILE  # shown as text, not run or parsed as HTML
    assert {page.text_content("#output-1"), page.text_content("#output-2")} == set(XSS)
    assert page.locator("pre img, pre script, pre a").count() == 0
    expected = []
    for i, pick in enumerate(["#pick-1", "#pick-2", "#tie", "#pick-1", "#pick-2"]):
        assert page.text_content("#done") == str(i)
        pair_id = int(page.get_attribute("input[name=pair_id]", "value"))
        left = page.get_attribute("#score-1", "name")[-1]  # which output ("a" or "b") shows on the left
        right = "b" if left == "a" else "a"
        page.select_option("#score-1", str(1 + i))
        page.select_option("#score-2", str(5 - i))
        page.fill("#comment", f"pair {i} <b>'; DROP TABLE ratings;--")
        if i == 0:
            page.screenshot(path=str(artifacts / "review.png"), full_page=True)
        choice = {"#pick-1": left, "#pick-2": right, "#tie": "tie"}[pick]
        expected.append((pair_id, "ann", choice, {left: 1 + i, right: 5 - i}, f"pair {i} <b>'; DROP TABLE ratings;--"))
        with page.expect_navigation():
            page.click(pick)
    assert page.text_content("#done") == "5"
    rows = db.rating_rows()
    assert [(r["pair_id"], r["reviewer"], r["choice"], {"a": r["rating_a"], "b": r["rating_b"]}, r["comment"])
            for r in rows] == expected
    assert page.dialogs == []  # no injected script ever ran
    assert (artifacts / "review.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_playground_streams_a_completion(make_server, page, artifacts):
    url = make_server()
    page.goto(url)
    page.wait_for_selector("#model option[value=beta]", state="attached")
    page.select_option("#model", "beta")
    page.fill("#prompt-box", "the lazy")
    page.fill("#seed", "9")
    page.fill("#max_tokens", "30")
    page.fill("#temperature", "1")
    page.click("#generate")
    sync_api.expect(page.locator("#status")).to_have_text("done", timeout=60_000)
    page.screenshot(path=str(artifacts / "playground.png"))
    body = {"model": "beta", "prompt": "the lazy", "seed": 9, "max_tokens": 30, "temperature": 1, "top_p": 1}
    want = httpx.post(f"{url}/v1/completions", json=body).json()["choices"][0]["text"]
    assert page.text_content("#output") == want


def test_without_a_feedback_db_the_reviewer_page_says_how_to_turn_it_on(make_server, page):
    url = make_server()
    page.goto(url)
    page.wait_for_selector("#model option[value=alpha]", state="attached")
    assert page.locator("#review-link").is_hidden() and page.locator("#to-review").is_hidden()
    response = page.goto(f"{url}/review")
    assert response.ok and "text/html" in response.headers["content-type"]
    assert page.text_content("#review-off") == "Reviewing is off on this server"
    assert "--feedback-db" in page.text_content("main")
    assert httpx.get(f"{url}/review/api/next").json()["error"]["message"]  # the JSON API: an error object


def test_with_a_feedback_db_the_playground_links_the_reviewer_page(tmp_path, make_server, page):
    url = make_server(feedback=open_db(tmp_path / "fb.db"))
    page.goto(url)
    sync_api.expect(page.locator("#review-link")).to_be_visible()
    sync_api.expect(page.locator("#to-review")).to_be_visible()
    page.click("#review-link")
    page.wait_for_url("**/review/login")


def test_the_missing_key_error_clears_once_the_key_is_typed(make_server, page):
    url = make_server(api_key="s3cret")
    page.goto(url)
    sync_api.expect(page.locator("#status")).to_contain_text("API key")  # the listing was refused
    page.fill("#api_key", "s3cret")  # typed, not yet left: the models come once typing pauses
    page.wait_for_selector("#model option[value=alpha]", state="attached")
    sync_api.expect(page.locator("#status")).to_have_text("")
    page.fill("#prompt-box", "the")
    page.fill("#max_tokens", "5")
    page.click("#generate")
    sync_api.expect(page.locator("#status")).to_have_text("done", timeout=60_000)
    page.fill("#api_key", "wrong")
    page.locator("#api_key").blur()
    sync_api.expect(page.locator("#status")).to_contain_text("API key")  # a wrong key is still refused
