"""`genforge quickstart` on tiny time budgets: builtin Shakespeare -> trained checkpoint -> samples,
digits -> VAE -> grids, and drawn scenes -> text-to-image DiT -> held-out prompts' grid; --only / --skip pick steps from the table (genforge/quickstart.py),
whose default budgets fit the quickstart's total."""
import dataclasses

import pytest

from genforge import quickstart as qs
from genforge.cli import main
from genforge.data.shards import TokenData


def test_quickstart(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--minutes", "0.05", "--image-minutes", "0.02",
                 "--t2i-minutes", "0.02", "--tts-minutes", "0.02", "--music-minutes", "0.02"]) == 0
    printed = capsys.readouterr().out
    data = TokenData(out / "data")
    assert data.manifest["source"]["spec"] == "builtin:shakespeare"
    assert data.manifest["source"]["documents"] == 38
    assert data.tokens("train") > 4_000_000 and data.tokens("val") > 400_000
    ckpt = (out / "run" / "latest").resolve()
    assert {"config.json", "model.safetensors", "tokenizer.json", "state"} <= {p.name for p in ckpt.iterdir()}
    assert (out / "run" / "loss.png").is_file() and (out / "run" / "metrics.csv").is_file()
    samples = (out / "samples.txt").read_text()
    for i, prompt in enumerate(["ROMEO:\n", "KING HENRY V:\n"], 1):
        assert f"--- sample {i} ---\n{prompt}" in samples
    assert "--- sample 3 ---" in samples
    assert f"checkpoint   {ckpt}" in printed
    images = out / "images"
    assert (images / "run" / "latest" / "model.safetensors").is_file()
    for name in ("samples.png", "reconstructions.png", "interpolation.gif"):
        assert (images / name).stat().st_size > 0, name
    assert f"samples      {images / 'samples.png'}" in printed
    t2i = out / "t2i"
    assert (t2i / "run" / "latest" / "tokenizer.json").is_file()
    assert (t2i / "heldout.png").stat().st_size > 0 and f"held out     {t2i / 'heldout.png'}" in printed
    music = out / "music"
    assert (music / "run" / "latest" / "tokenizer.json").is_file()  # miditok's own file
    assert (music / "chorale.mid").is_file() and (music / "chorale.wav").stat().st_size > 0
    assert f"piece        {music / 'chorale.wav'}" in printed


@pytest.fixture
def ran(monkeypatch, tmp_path):
    """The steps' runs replaced by recorders: [(step, minutes)] in the order they ran."""
    calls = []
    for name, step in list(qs.STEPS.items()):
        fake = lambda out, minutes, progress, name=name: calls.append((name, minutes)) or tmp_path / name  # noqa: E731
        monkeypatch.setitem(qs.STEPS, name, dataclasses.replace(step, run=fake))
    return calls


@pytest.mark.parametrize("argv,expected", [
    ([], [("text", 3.0), ("image", 1.5), ("t2i", 3.0), ("tts", 1.0), ("music", 1.5)]),
    (["--skip", "image,t2i,tts,music"], [("text", 3.0)]),
    (["--no-image", "--skip", "t2i,tts,music"], [("text", 3.0)]),  # the spelling before --skip
    (["--only", "music", "--music-minutes", "0.5"], [("music", 0.5)]),
    (["--only", "t2i", "--t2i-minutes", "2"], [("t2i", 2.0)]),
    (["--only", "image", "--image-minutes", "0.5"], [("image", 0.5)]),
    (["--only", "text,image", "--skip", "text", "--minutes", "9"], [("image", 1.5)]),
])
def test_only_and_skip_pick_steps(tmp_path, ran, argv, expected):
    assert main(["quickstart", "--out", str(tmp_path / "qs"), *argv]) == 0
    assert ran == expected


@pytest.mark.parametrize("argv,message", [
    (["--only", "sound"], "--only sound: no such step; the steps are text, image, t2i, tts, music"),
    (["--skip", "text,image,t2i,tts,music"], "that leaves no step to run"),
    (["--image-minutes", "0"], "--image-minutes 0: a step's budget must be positive (--skip image skips it)"),
])
def test_bad_choices_say_why(tmp_path, ran, capsys, argv, message):
    assert main(["quickstart", "--out", str(tmp_path / "qs"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert ran == []


def test_default_steps_fit_the_budget():
    assert sum(s.minutes + s.fixed_minutes for s in qs.STEPS.values()) <= qs.BUDGET_MINUTES
    assert len({s.flag for s in qs.STEPS.values()}) == len(qs.STEPS)
