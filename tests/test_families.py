"""The family table takes a new family as one entry: a toy family defined in a test module
(tests/toy_family.py: its model and its objective) trains through `genforge train`, resumes,
checkpoints, samples through `genforge generate`, loads through genforge.checkpoint.load and the
Python API, and serves /v1/images/generations, with no other edit to genforge."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from toy_family import Toy, ToyConfig

import genforge
from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.data.image_batches import ImageDataConfig
from genforge.errors import ConfigError
from genforge.families import FAMILIES, Family, family
from genforge.run_config import load_config, recipe_names
from genforge.train.log import read_metrics
from genforge.train.run import run

TOY = Family(ToyConfig, Toy, "image", run="genforge.train.run_images:run_images", data=ImageDataConfig,
             objective="toy_family:ToyObjective")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", TOY)


def train_args(out, iters=8):
    return ["family=toy", "data.source=builtin:digits", "data.batch_size=16", "data.limit=160",
            f"train.max_iters={iters}", "train.lr_decay_iters=8", "train.warmup_iters=1", "train.lr=0.05", "train.eval_interval=4",
            "train.eval_iters=1", "train.log_interval=2", "train.device=cpu", "train.dtype=float32",
            "train.weight_decay=0.0", f"train.out_dir={out}"]


def test_a_new_family_is_one_table_entry(toy, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text("family: toy\n")
    assert main(["train", str(config), *train_args(tmp_path / "run"), "--no-progress"]) == 0
    ckpt = ckpt_io.resolve(tmp_path / "run")
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["family"] == "toy" and saved["model"]["image_size"] == 8 and saved["step"] == 8
    assert ckpt_io.verify(ckpt) == ckpt  # sha256.json holds every file

    # it learnt: the validation loss went down and the mean image is no longer the initial grey
    val = [v for _, name, v in read_metrics(tmp_path / "run" / "metrics.csv") if name == "val_loss"]
    assert len(val) == 2 and val[-1] < val[0]
    loaded = ckpt_io.load(ckpt)
    assert isinstance(loaded.model, Toy) and not loaded.model.training and loaded.tokenizer is None
    assert not torch.equal(loaded.model.mean, torch.zeros_like(loaded.model.mean))

    # exact resume, as for every family
    assert main(["train", str(config), *train_args(tmp_path / "cut", 4), "--no-progress"]) == 0
    assert main(["train", str(config), *train_args(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    a, b = (load_file(str(ckpt_io.resolve(tmp_path / d) / "model.safetensors")) for d in ("run", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    # sampling: the CLI's grid and the Python API, reproducible by seed
    assert main(["generate", str(tmp_path / "run"), "--num-samples", "4", "--seed", "3",
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    model = genforge.load(tmp_path / "run", device="cpu")
    x1 = model.sample(3, generator=torch.Generator().manual_seed(1))
    x2 = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert x1.shape == (3, 1, 8, 8) and torch.equal(x1, x2)


def test_a_new_family_is_served(toy, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from genforge.serve.app import create_app
    from genforge.serve.limits import Limits
    from genforge.serve.server import build_state

    run(load_config(None, train_args(tmp_path / "run", 2)), progress=False)
    state = build_state([f"toy={tmp_path / 'run'}"], Limits(), None, None, None, None, "cpu")
    with TestClient(create_app(state)) as client:
        r = client.post("/v1/images/generations", json={"model": "toy", "prompt": "", "n": 2, "response_format": "b64_json"})
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == 2


def test_unknown_families_and_methods_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown model family.*did you mean gpt"):
        family("gtp")
    with pytest.raises(ConfigError, match="a way to train a gpt, not a family; use family: gpt with method: dpo"):
        load_config(None, ["family=dpo"])
    with pytest.raises(ConfigError, match="method='ppx'"):
        load_config(None, ["method=ppx"])
    with pytest.raises(ConfigError, match="trains the model of its base checkpoint"):
        load_config(None, ["method=dpo", "model.n_layer=2"])


def test_named_recipes_ship_with_the_package():
    assert {"lm/shakespeare_char", "gan/mnist", "dpo/shakespeare"} <= set(recipe_names())
    cfg = load_config("dpo/shakespeare", ["dpo.beta=0.2"])
    assert (cfg.family, cfg.method, cfg.settings.beta, cfg.model) == ("gpt", "dpo", 0.2, None)
    assert load_config("lm/shakespeare_char.yaml").family == "gpt"
    with pytest.raises(ConfigError, match="no such config file or named recipe"):
        load_config("lm/nope")


def test_the_wheel_ships_every_recipe():
    """pyproject.toml's package data names every recipe file, so an installed genforge finds them."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["genforge"]
    recipes = [str(p.relative_to(root / "genforge")) for p in (root / "genforge" / "recipes").rglob("*.yaml")]
    assert recipes and all(any(fnmatch.fnmatchcase(r, pat) and r.count("/") == pat.count("/") for pat in patterns)
                           for r in recipes)
