"""POST /v1/music/generations: base64 WAV and MIDI per piece, the same for one seed; bad keys,
meters, prompts and models are 400s naming the field; the playground's Audio tab plays what the
route returns in an <audio> element (Playwright driving Chromium, when installed)."""
from __future__ import annotations

import base64
import io
import os
import shutil

import httpx
import numpy as np
import pytest
from music_files import tune_notes, write_folder, write_midi

from genforge.run_config import load_config


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """A served music model `tunes`: a tiny GPT trained 20 steps on three two-bar tunes."""
    from genforge.serve.registry import load_served
    from genforge.train.log import RunLog
    from genforge.train.run import run

    root = tmp_path_factory.mktemp("music_route")
    cfg = load_config(None, [
        "family=music", f"data.source={write_folder(root / 'tunes')}", "data.batch_size=4", "model.n_layer=1",
        "model.n_head=2", "model.n_embd=32", "model.block_size=96", "train.max_iters=20", "train.eval_interval=20",
        "train.eval_iters=1", "train.device=cpu", "train.dtype=float32", f"train.out_dir={root / 'run'}"])
    with pytest.MonkeyPatch.context() as mp:  # no loss PNG (a matplotlib subprocess) for a fixture
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        ckpt = run(cfg, progress=False)
    return load_served(f"tunes={ckpt}", "cpu")


def test_the_route_returns_wav_and_midi_per_piece_and_one_seed_repeats(make_server, music):
    import soundfile as sf
    import symusic

    url = make_server(extra=[music])
    body = {"model": "tunes", "n": 2, "max_tokens": 60, "seed": 3, "key": "G", "meter": "4/4"}
    first = httpx.post(f"{url}/v1/music/generations", json=body, timeout=60).json()
    assert len(first["data"]) == 2
    for piece in first["data"]:
        wav, rate = sf.read(io.BytesIO(base64.b64decode(piece["b64_wav"])))
        assert rate == piece["sample_rate"] and len(wav) / rate == pytest.approx(piece["seconds"], abs=1e-3)
        midi = base64.b64decode(piece["b64_midi"])
        assert midi[:4] == b"MThd" and symusic.Score.from_midi(midi).note_num() == piece["notes"]
        assert piece["conditions"]["key"] == "G" and piece["conditions"]["meter"] == "4/4"
        if piece["notes"]:
            assert np.abs(wav).max() > 0.01
    again = httpx.post(f"{url}/v1/music/generations", json=body, timeout=60).json()
    assert [p["b64_midi"] for p in again["data"]] == [p["b64_midi"] for p in first["data"]]


def test_a_midi_prompt_is_continued(make_server, music, tmp_path):
    url = make_server(extra=[music])
    prompt = base64.b64encode(write_midi(tmp_path / "p.mid", tune_notes("c_major", 2)).read_bytes()).decode()
    r = httpx.post(f"{url}/v1/music/generations", timeout=60,
                   json={"model": "tunes", "prompt_midi": prompt, "bars": 1, "max_tokens": 20, "seed": 0})
    assert r.status_code == 200 and r.json()["data"][0]["notes"] >= 6  # the prompt's first bar at least


@pytest.mark.parametrize("extra,param,text", [
    ({"key": "H"}, "key", "unknown key"),
    ({"meter": "7/4"}, "meter", "unknown meter"),
    ({"style": "jazz"}, "style", "unknown style"),
    ({"prompt_midi": "not base64!"}, "prompt_midi", "not base64"),
    ({"prompt_midi": base64.b64encode(b"MThd broken").decode()}, "prompt_midi", "prompt_midi: unreadable MIDI"),
    ({"bars": 2}, "bars", "needs --prompt-midi"),
])
def test_bad_requests_are_400s_naming_the_field(make_server, music, extra, param, text):
    url = make_server(extra=[music])
    r = httpx.post(f"{url}/v1/music/generations", json={"model": "tunes", **extra}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and text in err["message"]


def test_a_long_prompt_and_a_text_model_are_refused(make_server, music, tmp_path):
    url = make_server(extra=[music])
    prompt = base64.b64encode(write_midi(tmp_path / "long.mid", tune_notes("c_major", 8)).read_bytes()).decode()
    r = httpx.post(f"{url}/v1/music/generations", json={"model": "tunes", "prompt_midi": prompt}, timeout=30)
    assert r.status_code == 400 and "the model's context is 96" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/music/generations", json={"model": "alpha"}, timeout=30)
    assert r.status_code == 400 and "needs a music model" in r.json()["error"]["message"]


CHROMIUM = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
def test_the_audio_tab_plays_the_routes_music(make_server, music, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    url = make_server(extra=[music])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.click("#tab-audio")
        page.wait_for_selector("#audio-model option[value=tunes]", state="attached")
        assert page.locator("#text-pane").is_hidden() and page.locator("#images-pane").is_hidden()
        assert "Music" in page.locator("#audio-mode option").all_text_contents()
        page.select_option("#audio-mode", "music")
        page.fill("#music-n", "2")
        page.fill("#music-key", "D")
        page.fill("#music-max-tokens", "40")
        page.fill("#audio-seed", "5")
        page.click("#generate-audio")
        sync_api.expect(page.locator("#audio-status")).to_have_text("done", timeout=60_000)
        shown = [page.get_attribute(f"#audio-out figure:nth-child({i}) audio", "src") for i in (1, 2)]
        # the page's CSP lets <audio> load data: URLs, and Chromium decodes the WAV
        page.wait_for_function("() => document.querySelector('#audio-out audio').duration > 0", timeout=10_000)
        assert "key D" in page.text_content("#audio-out figure:nth-child(1) figcaption")
        page.fill("#music-key", "H")
        page.click("#generate-audio")
        sync_api.expect(page.locator("#audio-status")).to_contain_text("unknown key")
        browser.close()
    body = {"model": "tunes", "n": 2, "key": "D", "max_tokens": 40, "seed": 5, "temperature": 1}
    want = [d["b64_wav"] for d in httpx.post(f"{url}/v1/music/generations", json=body, timeout=60).json()["data"]]
    assert shown == [f"data:audio/wav;base64,{b}" for b in want]
