"""The playground's Images tab in a real browser (Playwright driving Debian's Chromium): a prompt
to a text-to-image model gives the same images as the API for the same seed, shown as <img>."""
from __future__ import annotations

import httpx

from serve.test_serve_browser import artifacts, page, sync_api  # noqa: F401  (fixtures)
from serve.test_serve_t2i import clip, t2i  # noqa: F401  (fixtures)


def test_the_images_tab_shows_the_prompts_images(make_server, t2i, clip, page, artifacts):  # noqa: F811
    url = make_server(extra=[t2i], clip=clip)
    page.goto(url)
    page.click("#tab-images")
    page.wait_for_selector("#image-model option[value=scenes]", state="attached")
    assert page.locator("#text-pane").is_hidden()
    page.select_option("#image-model", "scenes")
    page.fill("#image-prompt", "a red circle above a blue square")
    page.fill("#image-n", "2")
    page.fill("#steps", "3")
    page.fill("#image-seed", "4")
    page.click("#generate-images")
    sync_api.expect(page.locator("#image-status")).to_have_text("done", timeout=60_000)
    page.screenshot(path=str(artifacts / "playground_images.png"))
    shown = [page.get_attribute(f"#grid img:nth-child({i})", "src") for i in (1, 2)]
    body = {"model": "scenes", "prompt": "a red circle above a blue square", "n": 2, "steps": 3, "seed": 4}
    want = [d["b64_json"] for d in httpx.post(f"{url}/v1/images/generations", json=body).json()["data"]]
    assert shown == [f"data:image/png;base64,{b}" for b in want]
    page.fill("#image-rerank", "3")  # best of 3 by the server's CLIP
    page.click("#generate-images")
    sync_api.expect(page.locator("#image-status")).to_have_text("done", timeout=60_000)
    shown = [page.get_attribute(f"#grid img:nth-child({i})", "src") for i in (1, 2)]
    want = [d["b64_json"] for d in httpx.post(f"{url}/v1/images/generations", json={**body, "rerank": 3}).json()["data"]]
    assert shown == [f"data:image/png;base64,{b}" for b in want]
    page.fill("#image-rerank", "")
    page.fill("#image-prompt", "a red zebra")
    page.click("#generate-images")
    sync_api.expect(page.locator("#image-status")).to_contain_text("zebra")
