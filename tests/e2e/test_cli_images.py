"""The image verbs end to end on tiny configs over the embedded digits: train (vae, gan,
classifier), generate, interpolate, eval; and their bad-input errors."""
import pytest
import torch
from PIL import Image

from genforge.cli import main

COMMON = "data: {source: 'builtin:digits', image_size: 8, batch_size: 32}\n"
TRAIN = ("train: {{max_iters: {n}, warmup_iters: 2, lr: 2e-3, weight_decay: 0.0, eval_interval: {n}, eval_iters: 1, "
         "log_interval: 5, device: cpu, dtype: float32, out_dir: {out}}}\n")
MODELS = {
    "vae": "family: vae\nmodel: {arch: conv, latent_dim: 4, width: 8, hidden: 32, iwae_k: 4}\n",
    "gan": "family: gan\nmodel: {latent_dim: 4, g_width: 8, d_width: 8, conditional: true, r1_gamma: 1.0}\n",
    "classifier": "family: classifier\nmodel: {width: 8, feature_dim: 16}\n",
}


def ok(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def fails(capsys, argv, message: str) -> None:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """family -> run directory of a tiny model trained through `genforge train`."""
    root = tmp_path_factory.mktemp("image_runs")
    out = {}
    for family, model in MODELS.items():
        cfg = root / f"{family}.yaml"
        cfg.write_text(model + COMMON + TRAIN.format(n=30 if family == "classifier" else 12, out=root / family))
        assert main(["train", str(cfg), "--no-progress"]) == 0
        out[family] = root / family
    return out


def test_train_writes_checkpoints(runs):
    assert (runs["vae"] / "latest" / "model.safetensors").is_file()
    assert {p.name for p in (runs["gan"] / "latest").iterdir()} >= {"g.safetensors", "d.safetensors", "config.json"}


def test_generate_grid(runs, tmp_path, capsys):
    out = ok(capsys, ["generate", runs["vae"], "--num-samples", 16, "--out", tmp_path / "grid.png"])
    assert out.strip() == f"wrote {tmp_path / 'grid.png'}"
    pic = Image.open(tmp_path / "grid.png")
    assert pic.size == ((4 * (8 + 2) + 2) * 8,) * 2  # a 4x4 grid of 8px images with 2px gaps, enlarged 8x
    ok(capsys, ["generate", runs["gan"], "--num-samples", 10, "--class", 7, "--truncation", 1.0, "--out", tmp_path / "g.png"])
    assert Image.open(tmp_path / "g.png").size[0] > 0
    ok(capsys, ["generate", runs["vae"], "--show", "reconstructions", "--num-samples", 8, "--out", tmp_path / "r.png"])
    assert Image.open(tmp_path / "r.png").size == (82 * 8, 22 * 8)
    ok(capsys, ["generate", runs["vae"], "--show", "traversal", "--out", tmp_path / "t.png"])
    assert Image.open(tmp_path / "t.png").size == (92 * 8, 42 * 8)  # 4 latent dims x 9 steps


def test_interpolate_png_and_gif(runs, tmp_path, capsys):
    ok(capsys, ["interpolate", runs["vae"], "--out", tmp_path / "s.png", "--steps", 6])
    assert Image.open(tmp_path / "s.png").size == (62 * 8, 12 * 8)
    ok(capsys, ["interpolate", runs["gan"], "--out", tmp_path / "s.gif", "--steps", 5, "--class", 3])
    gif = Image.open(tmp_path / "s.gif")
    assert gif.is_animated and gif.n_frames == 8  # forward 5, back 3


def test_eval_metrics(runs, capsys):
    out = ok(capsys, ["eval", runs["gan"], "--metrics", "fid,kid,pr,coverage", "--classifier", runs["classifier"],
                      "--num-samples", 120, "--json"])
    import json

    result = json.loads(out)
    assert result["family"] == "gan" and result["fake_images"] == 120 and result["fid"] > 0
    assert {"kid_mean", "precision", "recall", "classes_covered"} <= result.keys()
    out = ok(capsys, ["eval", runs["vae"], "--metrics", "nll", "--iwae-k", 8, "--num-samples", 50])
    assert "neg_elbo" in out and "nll_iwae8" in out
    assert "val_acc" in ok(capsys, ["eval", runs["classifier"]])


def test_image_verbs_bad_inputs(runs, tmp_path, capsys):
    fails(capsys, ["generate", runs["vae"], "--class", 3, "--out", tmp_path / "x.png"], "is not class-conditional")
    fails(capsys, ["generate", runs["gan"], "--class", 12, "--out", tmp_path / "x.png"], "expected a class id in 0..9")
    fails(capsys, ["generate", runs["gan"], "--num-samples", 0, "--out", tmp_path / "x.png"], "must be >= 1")
    fails(capsys, ["generate", runs["classifier"], "--out", tmp_path / "x.png"], "makes no images")
    fails(capsys, ["interpolate", runs["vae"], "--out", tmp_path / "x.jpg"], "expected a .png")
    fails(capsys, ["interpolate", runs["vae"], "--out", tmp_path / "x.png", "--steps", 1], "at least 2")
    fails(capsys, ["eval", runs["vae"], "--metrics", "fid"], "need a feature extractor")
    fails(capsys, ["eval", runs["gan"], "--metrics", "nll"], "only a VAE has a likelihood")
    fails(capsys, ["eval", runs["gan"], "--classifier", runs["vae"]], "needs a classifier checkpoint")
    fails(capsys, ["eval", runs["vae"], "--metrics", "fid,bleu"], "unknown metric 'bleu'")


def test_served_image_models_return_pngs(runs):
    """`genforge serve` takes image checkpoints as they are written: a VAE, and a GAN (its
    generator); /v1/images/generations encodes what their sample() makes."""
    import base64
    import io

    from PIL import Image

    from genforge.serve.images import generate_images
    from genforge.serve.registry import load_served

    for family in ("vae", "gan"):
        served = load_served(str(runs[family]), "cpu")
        assert served.kind == "image"
        pngs = generate_images(served.model, 2, seed=0)
        assert pngs == generate_images(served.model, 2, seed=0)  # seeded: the same images
        image = Image.open(io.BytesIO(base64.b64decode(pngs[0])))
        assert image.format == "PNG" and image.size[0] > 1


def test_python_api_loads_image_models(runs):
    import genforge

    for family in ("vae", "gan"):
        model = genforge.load(runs[family], device="cpu")
        images = model.sample(3, generator=torch.Generator().manual_seed(0))
        assert images.shape[0] == 3 and images.dim() == 4 and images.min() >= 0 and images.max() <= 1


def test_eval_defaults_to_what_the_checkpoint_can_compute(runs, capsys):
    import json

    vae = json.loads(ok(capsys, ["eval", runs["vae"], "--iwae-k", 4, "--num-samples", 50, "--json"]))
    assert vae["neg_elbo"] > 0 and vae["nll_iwae4"] > 0 and "fid" not in vae  # no classifier: the likelihood
    both = json.loads(ok(capsys, ["eval", runs["vae"], "--iwae-k", 4, "--num-samples", 50, "--json",
                                  "--classifier", runs["classifier"]]))
    assert {"nll_iwae4", "fid", "kid_mean", "precision", "classes_covered"} <= set(both)
    fails(capsys, ["eval", runs["gan"], "--num-samples", 50], "need a feature extractor")  # a GAN has no likelihood


def test_image_runs_log_their_speed_in_images(runs):
    from genforge.train.log import read_metrics

    for family in ("vae", "gan", "classifier"):
        names = {n for _, n, _ in read_metrics(runs[family] / "metrics.csv")}
        assert "img_s" in names and "tok_s" not in names, family
