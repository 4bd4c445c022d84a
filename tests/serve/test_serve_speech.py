"""POST /v1/audio/speech through the official openai client: a valid WAV (or FLAC, or raw PCM) of a
plausible length at the model's rate, "default" naming the first voice, speed shortening the
audio, and every bad input a 400 naming its field before any work is queued."""
from __future__ import annotations

import io
import os
import shutil

import openai
import pytest
import soundfile as sf

from genforge.cli import main
from serve.test_serve_openai import client

TINY = ["model.n_embd=32", "model.n_head=2", "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dur_filter=32",
        "model.ffn_mult=2", "model.conv_kernel=3", "model.dropout=0.0", "data.batch_size=4", "data.val_fraction=0.0",
        "data.sentences=4", "data.voices=[en-us,en+m3]", "train.max_minutes=null", "train.max_iters=150",
        "train.eval_interval=150", "train.eval_iters=1", "train.warmup_iters=5", "train.lr=3e-3", "train.min_lr=3e-4",
        "train.device=cpu", "train.dtype=float32"]
LINES = ["Hello world, this is a small test.", "The quick brown fox jumps over the lazy dog.",
         "Now is the winter of our discontent.", "She sells sea shells by the sea shore."]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from genforge.serve.registry import load_served

    root = tmp_path_factory.mktemp("speech")
    (root / "lines.txt").write_text("\n".join(LINES) + "\n")
    out = root / "run"
    assert main(["train", "tts/espeak", *TINY, f"data.text={root / 'lines.txt'}", f"data.cache={root / 'cache'}",
                 f"train.out_dir={out}", "--no-progress"]) == 0
    served = load_served(f"voice={out}", "cpu")
    assert served.kind == "speech"
    return served


def test_openai_client_gets_a_wav_of_plausible_length(make_server, speech):
    c = client(make_server(extra=[speech]))
    audio = c.audio.speech.create(model="voice", voice="default", input="Hello world, this is a small test.",
                                  response_format="wav")
    wav, rate = sf.read(io.BytesIO(audio.content))
    assert rate == 22050 and audio.content[:4] == b"RIFF"
    assert 0.8 < len(wav) / rate < 5.0  # espeak says it in about 2 s
    fast = c.audio.speech.create(model="voice", voice="en+m3", input="Hello world, this is a small test.",
                                 response_format="wav", speed=2.0)
    assert len(sf.read(io.BytesIO(fast.content))[0]) < 0.75 * len(wav)
    flac = c.audio.speech.create(model="voice", voice="en-us", input="Hello world.", response_format="flac")
    assert flac.content[:4] == b"fLaC"
    pcm = c.audio.speech.create(model="voice", voice="en-us", input="Hello world.", response_format="pcm")
    assert len(pcm.content) % 2 == 0 and len(pcm.content) > 0.2 * 22050 * 2


@pytest.mark.parametrize("ask, param, words", [
    ({"input": ""}, "input", "empty text"),
    ({"input": "a" * 401}, "input", "401 characters; at most 400"),
    ({"input": "你好"}, "input", "cannot read '你'"),
    ({"input": "Hello.", "voice": "alloy"}, "voice", "this model speaks default, en-us, en+m3"),
    ({"input": "Hello.", "response_format": "mp3"}, "response_format", "genforge writes wav, flac, pcm"),
    ({"input": "Hello.", "speed": 9.0}, "speed", "speed=9.0: expected 0.25 to 4.0"),
])
def test_bad_speech_requests_are_400s_naming_the_field(make_server, speech, ask, param, words):
    c = client(make_server(extra=[speech]))
    args = {"model": "voice", "voice": "default", **ask}
    with pytest.raises(openai.BadRequestError) as e:
        c.audio.speech.create(**args)
    assert words in e.value.body["message"] and e.value.body["param"] == param


def test_a_text_model_is_not_a_speech_model(make_server, speech):
    with pytest.raises(openai.BadRequestError, match="needs a speech model"):
        client(make_server(extra=[speech])).audio.speech.create(model="alpha", voice="default", input="Hello.")


CHROMIUM = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Chromium (GENFORGE_CHROMIUM)")
def test_the_audio_tab_speaks(make_server, speech):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    url = make_server(extra=[speech])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.click("#tab-audio")
        page.select_option("#audio-mode", "speak")
        page.wait_for_selector("#audio-model option[value=voice]", state="attached")
        assert page.locator("#music-controls").is_hidden() and not page.locator("#speech-controls").is_hidden()
        page.fill("#speech-input", "Hello world, this is a small test.")
        page.fill("#speech-voice", "en+m3")
        page.click("#generate-audio")
        sync_api.expect(page.locator("#audio-status")).to_have_text("done", timeout=60_000)
        assert page.get_attribute("#audio-out audio", "src").startswith("data:audio/wav;base64,UklGR")  # RIFF
        page.wait_for_function("() => document.querySelector('#audio-out audio').duration > 0.5", timeout=10_000)
        assert page.text_content("#audio-out figcaption").startswith("en+m3: ")
        page.fill("#speech-voice", "alloy")
        page.click("#generate-audio")
        sync_api.expect(page.locator("#audio-status")).to_contain_text("voice 'alloy': unknown", timeout=30_000)
        browser.close()
