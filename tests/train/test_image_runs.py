"""Image families in the one loop: a GAN trains both phases with their own optimizers and resumes
exactly; a VAE run logs its ELBO terms and NLL; configs that contradict the data are refused."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genforge.config import from_dict
from genforge.errors import ConfigError
from genforge.models.gan import GAN, GANConfig
from genforge.run_config import load_config
from genforge.train.log import read_metrics
from genforge.train.run import run


def gan_config(out, *extra, max_iters=6):
    return load_config(None, [
        "family=gan", "data.source=builtin:digits", "data.batch_size=16", "data.limit=200",
        "model.latent_dim=4", "model.g_width=8", "model.d_width=8", "model.r1_gamma=1.0", "model.conditional=true",
        "model.d_lr_scale=2.0", f"train.max_iters={max_iters}", "train.warmup_iters=2", "train.lr=1e-3",
        "train.eval_interval=3", "train.eval_iters=1", "train.log_interval=1", "train.ema_decay=0.9",
        "train.weight_decay=0.0", "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}", *extra])


def weights(ckpt):
    return {f"{name}/{k}": v for name in ("g", "d") for k, v in load_file(str(ckpt / f"{name}.safetensors")).items()}


def test_gan_phases_have_their_own_optimizers_and_resume_exactly(tmp_path):
    full = run(gan_config(tmp_path / "full"), progress=False)
    cut = run(gan_config(tmp_path / "cut", max_iters=3), progress=False)
    assert cut.name == "step-0000003"
    resumed = run(gan_config(tmp_path / "cut"), resume=True, progress=False)
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    raw_a, raw_b = (load_file(str(p / "state" / "raw-g.safetensors")) for p in (full, resumed))
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    assert not torch.equal(a["g/net.0.weight"], raw_a["net.0.weight"])  # g.safetensors holds the EMA
    def rows(r, n):
        return [(s, v) for s, name, v in read_metrics(tmp_path / r / "metrics.csv") if name == n]

    for n in ("d_loss", "g_loss", "d_r1", "val_d_loss"):
        assert rows("full", n) == rows("cut", n) and len(rows("full", n)) > 0, n
    groups = {ph: json.loads((full / "state" / f"optimizer-{ph}-groups.json").read_text())["param_groups"]
              for ph in ("d", "g")}
    assert groups["d"][0]["lr"] == pytest.approx(2 * groups["g"][0]["lr"])  # model.d_lr_scale
    gan = GAN(from_dict(GANConfig, json.loads((full / "config.json").read_text())["model"], "model"))
    for ph, net in (("d", gan.d), ("g", gan.g)):  # each optimizer holds exactly its network's parameters
        state = load_file(str(full / "state" / f"optimizer-{ph}.safetensors"))
        assert sorted(tuple(v.shape) for k, v in state.items() if k.endswith("exp_avg")) == \
            sorted(tuple(p.shape) for p in net.parameters())


def test_cbn_gan_with_reused_fakes_resumes_exactly(tmp_path):
    """gan/mnist's recipe: conditional batch norm in G, one D pass over [real; fake],
    the G phase on the D phase's fakes, DiffAugment; a cut and resumed run ends where a full one does."""
    extra = ("model.g_cond=cbn", "model.r1_gamma=0.0", "model.loss=ns", "model.diffaugment=[translation,cutout]")
    full = run(gan_config(tmp_path / "full", *extra), progress=False)
    run(gan_config(tmp_path / "cut", *extra, max_iters=3), progress=False)
    resumed = run(gan_config(tmp_path / "cut", *extra), resume=True, progress=False)
    a, b = weights(full), weights(resumed)
    assert any(k.startswith("g/net.1.gamma") for k in a)  # the conditional batch norm's class gains
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_vae_run_logs_elbo_terms_and_nll(tmp_path):
    cfg = load_config(None, [
        "family=vae", "data.source=builtin:digits", "data.image_size=8", "data.batch_size=32", "model.arch=conv",
        "model.latent_dim=4", "model.width=8", "model.hidden=32", "model.iwae_k=5", "train.max_iters=10",
        "train.eval_interval=10", "train.eval_iters=1", "train.log_interval=5", "train.device=cpu",
        "train.dtype=float32", f"train.out_dir={tmp_path}"])
    ckpt = run(cfg, progress=False)
    names = {n for _, n, _ in read_metrics(tmp_path / "metrics.csv")}
    assert {"loss", "rec", "kl", "val_loss", "val_nll", "img_s"} <= names and "tok_s" not in names
    config = json.loads((ckpt / "config.json").read_text())
    assert config["model"]["image_size"] == 8 and config["model"]["num_classes"] == 10
    assert config["data"]["class_names"][:2] == ["0", "1"]


def test_iwae_trained_residual_vae_runs_and_reloads(tmp_path):
    from genforge import checkpoint as ckpt_io
    from genforge.models.vae import ResBlock

    cfg = load_config(None, [
        "family=vae", "data.source=builtin:digits", "data.image_size=8", "data.batch_size=32", "model.arch=conv",
        "model.latent_dim=4", "model.width=8", "model.hidden=32", "model.blocks=1", "model.train_k=3",
        "train.max_iters=12", "train.lr=3e-3", "train.eval_interval=12", "train.eval_iters=1", "train.log_interval=1",
        "train.device=cpu", "train.dtype=float32", f"train.out_dir={tmp_path}"])
    ckpt = run(cfg, progress=False)
    losses = [v for _, n, v in read_metrics(tmp_path / "metrics.csv") if n == "loss"]
    assert len(losses) == 12 and losses[-1] < losses[0]  # the IWAE bound goes down from its random start
    model = ckpt_io.load(ckpt).model
    assert model.config.train_k == 3 and sum(isinstance(m, ResBlock) for m in model.decoder) == 2
    assert model.sample(4).shape == (4, 1, 8, 8)


def test_config_must_fit_the_data(tmp_path):
    with pytest.raises(ConfigError, match="model.image_size=12 but the data has 8"):
        run(load_config(None, ["family=vae", "model.image_size=12", f"train.out_dir={tmp_path}"]), progress=False)
    with pytest.raises(ConfigError, match="the GAN needs a multiple of 4"):
        load_config(None, ["family=gan", "model.image_size=10"])
    with pytest.raises(ConfigError, match="model.lossy: unknown config key"):
        load_config(None, ["family=gan", "model.lossy=ns"])


@pytest.mark.parametrize("path", sorted(str(p) for family in ("vae", "gan", "classifier")
                                        for p in (Path(__file__).parents[2] / "configs" / family).glob("*.yaml")))
def test_image_configs_load(path):
    cfg = load_config(path)
    assert cfg.family in ("vae", "gan", "classifier") and cfg.train.out_dir.startswith("runs/")


def test_evaluation_scores_the_ema_generator_and_leaves_training_alone(tmp_path):
    from genforge.checkpoint import load_module
    from genforge.data.image_batches import image_batches
    from genforge.objectives.gan import GANObjective

    every = run(gan_config(tmp_path / "every", "train.eval_interval=1"), progress=False)
    once = run(gan_config(tmp_path / "once", "train.eval_interval=6"), progress=False)
    raw = [load_file(str(p / "state" / "raw-g.safetensors")) for p in (every, once)]
    assert all(torch.equal(raw[0][k], raw[1][k]) for k in raw[0])  # evals put the raw weights back
    cfg = gan_config(tmp_path / "every")
    gan = GAN(from_dict(GANConfig, json.loads((every / "config.json").read_text())["model"], "model"))
    load_module(gan.g, every / "g.safetensors")  # the EMA generator
    load_module(gan.d, every / "d.safetensors")
    gan.eval()
    with torch.no_grad():
        want = GANObjective(gan).evaluate(image_batches(cfg.data, cfg.train.seed, torch.device("cpu")).eval_batches(1))
    logged = {n: v for s, n, v in read_metrics(tmp_path / "every" / "metrics.csv") if s == 6}
    assert logged["val_g_loss"] == pytest.approx(want["val_g_loss"], rel=1e-5)
    load_module(gan.g, every / "state" / "raw-g.safetensors")
    with torch.no_grad():
        raw_score = GANObjective(gan).evaluate(image_batches(cfg.data, cfg.train.seed, torch.device("cpu")).eval_batches(1))
    assert raw_score["val_g_loss"] != pytest.approx(want["val_g_loss"], rel=1e-5)  # the test can tell them apart


@pytest.mark.parametrize("clock, steps", [("cpu", 3), ("wall", 8)])
def test_budget_counts_the_chosen_clock(tmp_path, monkeypatch, clock, steps):
    """A fake CPU clock that advances 25 s per reading ends a 1-minute budget after 3 steps
    (readings at start, then each step's schedule and deadline check) only with budget_clock=cpu."""
    import time

    readings = iter(range(0, 10_000, 25))
    monkeypatch.setattr(time, "process_time", lambda: float(next(readings)))
    cfg = gan_config(tmp_path, "train.max_minutes=1", f"train.budget_clock={clock}", "train.eval_interval=100",
                     max_iters=8)
    assert run(cfg, progress=False).name == f"step-{steps:07d}"
