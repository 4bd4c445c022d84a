"""POST /v1/audio/generations: base64 WAV per clip from an audio_lm checkpoint, the same for one
seed, a base64 audio prompt continued; bad prompts and models are 400s naming the field; the
playground's Audio tab plays what the route returns (Playwright driving Chromium, when installed)."""
from __future__ import annotations

import base64
import io
import os
import shutil

import httpx
import numpy as np
import pytest
from audio_lm_helpers import RATE, audio_lm_config, tiny_codec, tone, tones

from genforge.data.audio import encode_audio


@pytest.fixture(scope="module")
def waves(tmp_path_factory):
    """A served audio_lm `waves`: a tiny GPT trained 10 steps over a tiny random codec's codes of five tones."""
    from genforge.serve.registry import load_served
    from genforge.train.log import RunLog
    from genforge.train.run import run

    root = tmp_path_factory.mktemp("audio_lm_route")
    cfg = audio_lm_config(tiny_codec(root / "codec"), tones(root / "tones"), root / "run", max_iters=10)
    with pytest.MonkeyPatch.context() as mp:  # no loss PNG (a matplotlib subprocess) for a fixture
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        ckpt = run(cfg, progress=False)
    return load_served(f"waves={ckpt}", "cpu")


def b64(wav: np.ndarray, rate: int = RATE) -> str:
    return base64.b64encode(encode_audio(wav, rate, "wav")).decode()


def test_the_route_returns_a_wav_per_clip_one_seed_repeats_and_a_prompt_is_continued(make_server, waves):
    import soundfile as sf

    url = make_server(extra=[waves])
    body = {"model": "waves", "n": 2, "seconds": 0.5, "seed": 3}
    first = httpx.post(f"{url}/v1/audio/generations", json=body, timeout=60).json()
    assert len(first["data"]) == 2
    for clip in first["data"]:
        wav, rate = sf.read(io.BytesIO(base64.b64decode(clip["b64_wav"])))
        assert rate == clip["sample_rate"] == RATE and len(wav) == 2000 and clip["seconds"] == 0.5
        assert clip["prompt_seconds"] == 0
    again = httpx.post(f"{url}/v1/audio/generations", json=body, timeout=60).json()
    assert [c["b64_wav"] for c in again["data"]] == [c["b64_wav"] for c in first["data"]]
    r = httpx.post(f"{url}/v1/audio/generations", timeout=60,
                   json={"model": "waves", "seconds": 0.25, "seed": 0, "prompt_audio": b64(tone(0.1, 300))})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["prompt_seconds"] == 0.1 and r.json()["data"][0]["seconds"] == 0.35


@pytest.mark.parametrize("extra,param,text", [
    ({"prompt_audio": "not base64!"}, "prompt_audio", "prompt_audio: not base64"),
    ({"prompt_audio": base64.b64encode(b"RIFF broken").decode()}, "prompt_audio", "prompt_audio: unreadable audio"),
    ({"prompt_audio": b64(tone(1.0, 300))}, "prompt_audio", "the model's context holds 0.15 s"),
    ({"seconds": 0}, "seconds", "greater than 0"),
    ({"n": 5}, "n", "less than or equal to 4"),
])
def test_bad_requests_are_400s_naming_the_field(make_server, waves, extra, param, text):
    url = make_server(extra=[waves])
    r = httpx.post(f"{url}/v1/audio/generations", json={"model": "waves", **extra}, timeout=30)
    assert r.status_code in (400, 422), r.text
    err = r.json()["error"]
    assert param in (err["param"] or "") and text in err["message"], err


def test_a_text_model_is_refused(make_server, waves):
    url = make_server(extra=[waves])
    r = httpx.post(f"{url}/v1/audio/generations", json={"model": "alpha"}, timeout=30)
    assert r.status_code == 400 and "needs a audio model" in r.json()["error"]["message"]


CHROMIUM = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
def test_the_audio_tab_plays_the_routes_waveforms(make_server, waves):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    url = make_server(extra=[waves])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.click("#tab-audio")
        page.select_option("#audio-mode", "waveform")
        page.wait_for_selector("#audio-model option[value=waves]", state="attached")
        page.fill("#waveform-n", "2")
        page.fill("#waveform-seconds", "0.5")
        page.fill("#audio-seed", "5")
        page.click("#generate-audio")
        sync_api.expect(page.locator("#audio-status")).to_have_text("done", timeout=60_000)
        shown = [page.get_attribute(f"#audio-out figure:nth-child({i}) audio", "src") for i in (1, 2)]
        page.wait_for_function("() => document.querySelector('#audio-out audio').duration > 0", timeout=10_000)
        assert "0.5 s" in page.text_content("#audio-out figure:nth-child(1) figcaption")
        browser.close()
    body = {"model": "waves", "n": 2, "seconds": 0.5, "seed": 5}
    want = [d["b64_wav"] for d in httpx.post(f"{url}/v1/audio/generations", json=body, timeout=60).json()["data"]]
    assert shown == [f"data:audio/wav;base64,{b}" for b in want]
