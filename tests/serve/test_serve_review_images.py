"""The reviewer page compares two images of a prompt queued for text-to-image models: the pair
holds PNG data URLs shown as <img>, and its rating goes to the same database as text ratings."""
from __future__ import annotations

import base64

import httpx

from genforge.align.feedback import open_db
from serve.test_serve_t2i import t2i  # noqa: F401  (fixture)


def test_an_image_prompt_makes_a_pair_of_images_to_rate(tmp_path, make_server, t2i):  # noqa: F811
    db = open_db(tmp_path / "fb.db")
    token = db.add_reviewer("ann")
    url = make_server(feedback=db, extra=[t2i])
    assert httpx.post(f"{url}/playground/review-prompt", json={"prompt": "a red circle", "kind": "image"}).json() == \
        {"queued": 1}
    c = httpx.Client(base_url=url)
    csrf = c.post("/review/api/login", json={"token": token}).json()["csrf"]
    pair = c.get("/review/api/next").json()["pair"]
    assert pair["kind"] == "image" and pair["prompt"] == "a red circle"
    for side in ("a", "b"):
        assert pair[side].startswith("data:image/png;base64,")
        assert base64.b64decode(pair[side].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    page = c.get("/review").text
    assert page.count('<img class="compare"') == 2 and "<pre class=\"text\" id=\"output-1\"" not in page
    r = c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": "b", "rating_a": 2, "rating_b": 4},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    row = db.rating_rows()[0]
    assert (row["choice"], row["rating_a"], row["rating_b"]) == ("b", 2, 4)


def test_an_image_prompt_needs_a_text_to_image_model_and_a_text_output_is_never_an_image(tmp_path, make_server):
    db = open_db(tmp_path / "fb.db")
    url = make_server(feedback=db)
    r = httpx.post(f"{url}/playground/review-prompt", json={"prompt": "a red circle", "kind": "image"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "kind"
    from genforge.serve.review import image_of

    pair = db.pair(db.add_pair(db.add_prompts(["p"], "test") and 1, "data:image/png;base64,AAAA", "x",
                               'data:image/png;base64,AA" onerror="alert(1)', "y", {"kind": "image"}))
    assert image_of(pair, pair.output_a) == pair.output_a and image_of(pair, pair.output_b) is None
    text_pair = db.pair(db.add_pair(1, "data:image/png;base64,AAAA", "x", "b", "y", {}))
    assert image_of(text_pair, text_pair.output_a) is None
