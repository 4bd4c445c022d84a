"""Reweighted image draws (data.target, data.weights, data.reference): batches reach the target
label frequencies, the cursor stays one integer (a run with weights resumes exactly), importance
weights recover a known density ratio, and bad weights are one-line errors."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genforge.config import from_dict
from genforge.data.image_batches import (
    ImageBatches,
    ImageDataConfig,
    draw_weights,
    label_weights,
    target_shares,
    weight_report,
)
from genforge.data.images import ImageSet
from genforge.errors import ConfigError, DataError
from genforge.run_config import load_config
from genforge.train.importance import density_ratio_weights, ratio_weights
from genforge.train.run import run


def skewed(n_a=900, n_b=100, size=8) -> ImageSet:
    rng = np.random.default_rng(0)
    labels = np.array([0] * n_a + [1] * n_b)
    return ImageSet(rng.integers(0, 255, (len(labels), 1, size, size), dtype=np.uint8), labels, ["a", "b"])


def drawn_labels(batches: ImageBatches, n: int) -> torch.Tensor:
    return torch.cat([next(batches)[1] for _ in range(n)])


def test_reweighting_reaches_the_target_frequencies_in_drawn_batches():
    data = skewed()
    for target, want in (("uniform", 0.5), ({"a": 3, "b": 7}, 0.7), ({"a": 1, "b": 0}, 0.0)):
        w = label_weights(data.labels, target_shares(target, data.class_names))
        y = drawn_labels(ImageBatches(data, data, 100, seed=1, weights=w), 200)  # 20,000 draws: sd of a share <= 0.0036
        assert abs(float((y == 1).double().mean()) - want) < 0.012, target
    plain = drawn_labels(ImageBatches(data, data, 100, seed=1), 9)  # one epoch of plain permutations: 10 % b
    assert float((plain == 1).double().mean()) == pytest.approx(0.1, abs=0.02)


def test_weight_report_counts_effective_sample_size_and_repeated_minority_items():
    data = skewed()
    r = weight_report(label_weights(data.labels, np.array([0.5, 0.5])), data.labels)
    # w_a = 0.5 / 0.9, w_b = 0.5 / 0.1 (x N / N): ESS = N^2 / (900 w_a^2 + 100 w_b^2) = 1e6 / 2777.8 = 360
    assert r["effective_sample_size"] == pytest.approx(360.0)
    assert (r["repeated_images"], r["mean_repeats"], r["max_repeats"]) == (100, pytest.approx(5.0), pytest.approx(5.0))
    assert r["class_shares"] == [0.5, 0.5] and r["never_drawn"] == 0


def test_weighted_batches_resume_from_one_integer():
    data = skewed()
    w = label_weights(data.labels, np.array([0.5, 0.5]))
    full = ImageBatches(data, data, 16, seed=3, weights=w)
    first = [next(full) for _ in range(12)]
    cut = ImageBatches(data, data, 16, seed=3, weights=w)
    [next(cut) for _ in range(5)]
    resumed = ImageBatches(data, data, 16, seed=3, weights=w)
    resumed.load_state_dict(cut.state_dict())
    assert cut.state_dict() == {"step": 5, "seed": 3}
    for a, b in zip(first[5:], [next(resumed) for _ in range(7)]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def gan_config(out, *extra, max_iters=6):
    return load_config(None, [
        "family=gan", "data.source=builtin:digits", "data.batch_size=16", "data.limit=200", "data.target=uniform",
        "model.latent_dim=4", "model.g_width=8", "model.d_width=8", "model.conditional=false",
        f"train.max_iters={max_iters}", "train.warmup_iters=2", "train.lr=1e-3", "train.eval_interval=3",
        "train.eval_iters=1", "train.log_interval=1", "train.weight_decay=0.0", "train.device=cpu",
        "train.dtype=float32", f"train.out_dir={out}", *extra])


def gan_weights(ckpt):
    return {f"{n}/{k}": v for n in ("g", "d") for k, v in load_file(str(ckpt / f"{n}.safetensors")).items()}


def test_a_run_with_weighted_draws_resumes_exactly(tmp_path):
    full = run(gan_config(tmp_path / "full"), progress=False)
    run(gan_config(tmp_path / "cut", max_iters=3), progress=False)
    resumed = run(gan_config(tmp_path / "cut"), resume=True, progress=False)
    a, b = gan_weights(full), gan_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    import json

    draws = json.loads((full / "config.json").read_text())["data"]["draws"]
    assert draws["class_shares"] == [0.1] * 10  # builtin:digits' ten classes at the uniform target


def test_a_run_with_a_reference_set_resumes_exactly_by_its_saved_weights(tmp_path):
    ref = tmp_path / "ref.npz"
    rng = np.random.default_rng(0)
    np.savez(ref, x=rng.integers(0, 16, (40, 8, 8), dtype=np.uint8))  # digits-like 8x8, no labels
    extra = ("data.target=", f"data.reference={ref}", "data.reference_steps=5", "data.image_size=8")
    full = run(gan_config(tmp_path / "full", *extra), progress=False)
    run(gan_config(tmp_path / "cut", *extra, max_iters=3), progress=False)
    saved = np.load(tmp_path / "cut" / "importance_weights.npy")
    resumed = run(gan_config(tmp_path / "cut", *extra), resume=True, progress=False)
    assert np.array_equal(saved, np.load(tmp_path / "full" / "importance_weights.npy"))
    a, b = gan_weights(full), gan_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def two_kinds(n_a: int, n_b: int, seed: int) -> np.ndarray:
    """n_a images bright on the left half, then n_b bright on the right half, with pixel noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n_a + n_b, 1, 8, 8)).astype(np.uint8)
    x[:n_a, :, :, :4] += 180
    x[n_a:, :, :, 4:] += 180
    return x


def test_importance_weights_recover_a_known_density_ratio(tmp_path):
    """Data 80 % kind A, 20 % kind B; a balanced reference: p_ref / p_data is 0.5 / 0.8 = 0.625 on
    A and 0.5 / 0.2 = 2.5 on B (their data mean is 1, as the weights' is)."""
    data = ImageSet(two_kinds(800, 200, 0), np.full(1000, -1), [])
    reference = ImageSet(two_kinds(100, 100, 1), np.full(200, -1), [])
    w = density_ratio_weights(data, reference, tmp_path / "ratio", steps=150)
    assert w[:800].mean() == pytest.approx(0.625, rel=0.1) and w[800:].mean() == pytest.approx(2.5, rel=0.1)
    assert w.mean() == pytest.approx(1.0)


def test_ratio_weights_are_the_calibrated_odds():
    class Fixed(torch.nn.Module):  # logits (0, l): the reference logit is l
        def forward(self, x):
            logit = x.flatten(1).mean(1) * 255
            return torch.stack([torch.zeros_like(logit), logit], 1)

    images = np.array([0, 1, 2], np.uint8)[:, None, None, None]
    w = ratio_weights(Fixed(), images, a=0.5, b=0.25)
    odds = np.exp(0.5 * np.array([0, 1, 2]) + 0.25)
    assert np.allclose(w, odds / odds.mean())


def cfg(**kw) -> ImageDataConfig:
    return from_dict(ImageDataConfig, kw, "data")


def test_bad_weights_are_one_line_errors(tmp_path):
    data = skewed()
    with pytest.raises(ConfigError, match=r"class 'c' is not in the data \(its classes: a, b\)"):
        target_shares({"a": 1, "c": 1}, data.class_names)
    with pytest.raises(ConfigError, match="no share for class b"):
        target_shares({"a": 1}, data.class_names)
    with pytest.raises(ConfigError, match="a share must be a number >= 0"):
        target_shares({"a": 1, "b": -1}, data.class_names)
    with pytest.raises(ConfigError, match="every share is 0"):
        target_shares({"a": 0, "b": 0}, data.class_names)
    with pytest.raises(ConfigError, match="no class labels"):
        target_shares("uniform", [])
    with pytest.raises(ConfigError, match="give one"):
        cfg(target="uniform", weights="w.npy")
    with pytest.raises(ConfigError, match="expected uniform or a mapping"):
        cfg(target="balanced")
    with pytest.raises(DataError, match="has a share but no training image"):
        label_weights(np.array([0, 0, 0]), np.array([0.5, 0.5]))
    with pytest.raises(DataError, match="3 training images have no label"):
        label_weights(np.array([-1, -1, -1]), np.array([0.5, 0.5]))
    np.save(tmp_path / "short.npy", np.ones(999))
    with pytest.raises(DataError, match="999 weights for 1000 training images"):
        draw_weights(cfg(weights=str(tmp_path / "short.npy")), data)
    np.save(tmp_path / "neg.npy", -np.ones(1000))
    with pytest.raises(DataError, match="finite and >= 0"):
        draw_weights(cfg(weights=str(tmp_path / "neg.npy")), data)
    with pytest.raises(DataError, match="no such file"):
        draw_weights(cfg(weights=str(tmp_path / "none.npy")), data)


def test_a_reference_set_of_the_wrong_shape_is_refused(tmp_path):
    data = skewed()
    wrong = ImageSet(np.zeros((20, 3, 8, 8), np.uint8), np.full(20, -1), [])
    with pytest.raises(DataError, match=r"images of shape \(3, 8, 8\) \(C, H, W\); the training images are \(1, 8, 8\)"):
        density_ratio_weights(data, wrong, tmp_path / "r")
    with pytest.raises(DataError, match="at least 10"):
        density_ratio_weights(data, ImageSet(np.zeros((3, 1, 8, 8), np.uint8), np.full(3, -1), []), tmp_path / "r")
