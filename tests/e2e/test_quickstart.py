"""`genforge quickstart` on a tiny time budget: builtin Shakespeare -> trained checkpoint -> samples."""
from genforge.cli import main
from genforge.data.shards import TokenData


def test_quickstart(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--minutes", "0.05", "--image-minutes", "0.02"]) == 0
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


def test_quickstart_can_skip_the_image_step(tmp_path, monkeypatch):
    import genforge.quickstart_images as qi

    monkeypatch.setattr(qi, "quickstart_images", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
    monkeypatch.setattr("genforge.train.run.run", lambda cfg: tmp_path)  # the text part is tested above
    monkeypatch.setattr("genforge.load", lambda ckpt: type("LM", (), {"generate": lambda self, p, **kw: "x"})())
    (tmp_path / "qs").mkdir()
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--no-image"]) == 0
