"""Self-conditioned GANs (model.clusters, Liu et al. 2020) and the cluster density ratio: cluster
ids are deterministic for a seed, the prior pi follows the draw weights, sampling reproduces pi's
shares, a seed reproduces samples, a run resumes exactly, and bad switches are one-line errors."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.data.clusters import DEFAULT_K, cluster_density_ratio, cluster_shares, fit_clusters
from genforge.data.images import ImageSet
from genforge.errors import ConfigError
from genforge.models.gan import GAN, GANConfig
from genforge.run_config import load_config
from genforge.train.importance import cluster_ratio_weights
from genforge.train.run import run


def blobs(counts=(60, 30, 10), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, 8, 8): kind i bright in its own 8-pixel row band i, with pixel noise."""
    rng = np.random.default_rng(seed)
    kinds = np.repeat(np.arange(len(counts)), counts)
    x = rng.integers(0, 40, (len(kinds), 1, 8, 8)).astype(np.uint8)
    for i in range(len(counts)):
        x[kinds == i, :, 2 * i:2 * i + 2] += 200
    return x, kinds


def test_clusters_are_deterministic_for_a_seed_and_find_the_kinds():
    x, kinds = blobs()
    a, b = fit_clusters(x, 3, dims=4, seed=0), fit_clusters(x, 3, dims=4, seed=0)
    ids = a.assign(x)
    assert np.array_equal(ids, b.assign(x)) and np.array_equal(a.centroids, b.centroids)
    # each cluster is one kind: the ids are the kinds up to a renaming
    assert all(len(set(ids[kinds == i])) == 1 for i in range(3)) and len(set(ids)) == 3
    assert a.basis.shape == (4, 64) and not fit_clusters(x[:5], 2, dims=20).basis[4:].any()  # rank 4 < 20


def test_the_weight_feature_keeps_alike_images_drawn_at_different_rates_apart():
    """Kinds 0 and 1 share a band (1 has a faint mark besides) and are drawn at 5 and 0.5: pixel
    k-means under the weights splits the heavy kind 0 and puts half of it with kind 1 (G would then
    make mostly 0s there); with the log weight as a coordinate each kind has a cluster of its own."""
    rng = np.random.default_rng(0)
    kind = np.repeat(np.arange(3), 60)
    x = rng.integers(0, 60, (len(kind), 1, 8, 8)).astype(np.uint8)
    x[kind < 2, :, 0:2] += 150
    x[kind == 1, :, 2, 0:2] += 70
    x[kind == 2, :, 6:8] += 150
    w = np.where(kind == 0, 5.0, np.where(kind == 1, 0.5, 1.0))

    def table(weight_feature):  # (cluster, kind) counts
        ids = fit_clusters(x, 3, dims=8, seed=0, weights=w, weight_feature=weight_feature).assign(x)
        return np.stack([np.bincount(kind[ids == c], minlength=3) for c in range(3)])

    plain, split = table(0.0), table(0.5)
    assert ((plain[:, 0] >= 20) & (plain[:, 1] >= 20)).any()  # one cluster mixes the two kinds
    assert (split.max(0) >= 59).all() and len(set(split.argmax(0))) == 3  # each kind in a cluster of its own
    # weights all alike: the extra coordinate is constant and changes nothing
    same = [fit_clusters(x, 3, dims=8, seed=0, weights=np.full(len(x), 2.0), weight_feature=f) for f in (0.0, 0.5)]
    assert np.array_equal(same[0].centroids, same[1].centroids)
    with pytest.raises(ConfigError, match="weight_feature=-1"):
        fit_clusters(x, 3, dims=8, weight_feature=-1)


def test_cluster_shares_follow_the_draw_weights_by_hand():
    ids = np.array([0, 0, 1, 2, 2, 2])
    assert cluster_shares(ids, 4).tolist() == pytest.approx([2 / 6, 1 / 6, 3 / 6, 0])
    w = np.array([1, 1, 4, 0.5, 0.5, 1])  # cluster 0: 2, cluster 1: 4, cluster 2: 2 of 8
    assert cluster_shares(ids, 3, w).tolist() == pytest.approx([0.25, 0.5, 0.25])


def test_cluster_density_ratio_on_a_hand_made_case():
    data = np.array([0] * 6 + [1] * 3 + [2] * 1)  # training shares 0.6, 0.3, 0.1
    ref = np.array([0, 0, 1, 1, 2, 2])  # reference counts 2, 2, 2 (+0.5 each): shares 1/3 each
    w = cluster_density_ratio(data, ref, 3)
    raw = np.array([1 / 3 / 0.6] * 6 + [1 / 3 / 0.3] * 3 + [1 / 3 / 0.1])
    assert np.allclose(w, raw / raw.mean()) and w.mean() == pytest.approx(1.0)
    assert cluster_shares(data, 3, w) == pytest.approx([1 / 3] * 3)  # drawing by w gives the reference shares
    # no reference image in cluster 2: it keeps the pseudo-count's share 0.5 / 5.5
    w = cluster_density_ratio(data, np.array([0, 0, 1, 1, 1]), 3)
    assert cluster_shares(data, 3, w) == pytest.approx([2.5 / 6.5, 3.5 / 6.5, 0.5 / 6.5])


def test_cluster_ratio_weights_balance_a_skewed_set():
    x, kinds = blobs((80, 20, 20))
    ref, _ = blobs((30, 30, 30), seed=1)
    w = cluster_ratio_weights(ImageSet(x, np.full(len(x), -1), []), ImageSet(ref, np.full(len(ref), -1), []),
                              fit_clusters(x, 3, dims=4))
    shares = np.bincount(kinds, weights=w) / w.sum()
    assert shares == pytest.approx([1 / 3] * 3, abs=0.01)


def self_conditioned(k=3, **kw) -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, clusters=k, cluster_dims=4,
                         g_cond="cbn", **kw))


def test_unconditional_sampling_reproduces_the_prior_and_a_seed_reproduces_samples():
    gan = self_conditioned()
    x, _ = blobs()
    gan.set_clusters(fit_clusters(x, 3, dims=4), np.array([0.7, 0.2, 0.1]))
    g = gan.g.eval()
    ids = g.draw_clusters(20000, torch.Generator().manual_seed(0))  # sd of a share <= 0.0033
    assert np.allclose(np.bincount(ids.numpy(), minlength=3) / 20000, [0.7, 0.2, 0.1], atol=0.012)
    a = g.sample(16, generator=torch.Generator().manual_seed(5))
    assert a.shape == (16, 1, 8, 8) and torch.equal(a, g.sample(16, generator=torch.Generator().manual_seed(5)))
    assert g.config.n_cond == 0 and g.config.n_labels == 3  # not class-conditional: no class to ask for
    assert np.array_equal(gan_ids_of(g, x), gan_ids(gan, x))  # the model and the data side assign alike


def test_the_cluster_loss_teaches_g_its_clusters():
    gan = self_conditioned()
    x, _ = blobs()
    gan.set_clusters(fit_clusters(x, 3, dims=4), np.ones(3) / 3)
    g = gan.g
    x01 = torch.from_numpy(x).float() / 255
    # the objective's G loss is the adversarial one plus cluster_loss x the CE of the fakes' clusters
    from genforge.objectives.gan import GANObjective

    batch = (x01[:8], torch.zeros(8, dtype=torch.long))
    losses = {}
    for w in (0.0, 2.0):
        gan.config.cluster_loss = w
        torch.manual_seed(3)
        losses[w] = GANObjective(gan).loss(batch, "g")
    assert "cluster_ce" not in losses[0.0][1]
    assert float((losses[2.0][0] - losses[0.0][0]).detach()) == pytest.approx(2 * float(losses[2.0][1]["cluster_ce"]), rel=1e-5)
    # that CE alone moves G's fakes into the clusters they were asked for
    y = torch.arange(3).repeat(20)
    z = torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    before = float((g.cluster_of(g.render(z, y)) == y).float().mean())
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(g.cluster_logits(g.render(z, y)), y).backward()
        opt.step()
    assert before < 0.9 and float((g.cluster_of(g.eval().render(z, y)) == y).float().mean()) == 1.0


def gan_ids(gan: GAN, x: np.ndarray) -> np.ndarray:
    from genforge.data.clusters import Clusters

    g = gan.g
    return Clusters(g.cluster_mean.numpy(), g.cluster_basis.numpy(), g.cluster_centroids.numpy()).assign(x)


def test_bad_switches_are_one_line_config_errors():
    for kw, match in (({"clusters": 1}, "model.clusters=1"), ({"clusters": -2}, "model.clusters=-2"),
                      ({"clusters": 4, "conditional": True, "num_classes": 10}, "give one"),
                      ({"clusters": 4, "cluster_dims": 0}, "cluster_dims=0"),
                      ({"clusters": 4, "cluster_loss": -1.0}, "cluster_loss >= 0"),
                      ({"clusters": 4, "cluster_weight_feature": -1.0}, "cluster_weight_feature >= 0")):
        with pytest.raises(ConfigError, match=match):
            GANConfig(image_size=8, channels=1, **kw)
    with pytest.raises(ConfigError, match="data.reference_estimator='knn'"):
        load_config(None, ["family=gan", "data.reference_estimator=knn"])
    with pytest.raises(ConfigError, match="not self-conditioned"):
        GAN(GANConfig(image_size=8, channels=1)).set_clusters(fit_clusters(blobs()[0], 3, 4), np.ones(3) / 3)


def gan_config(out, *extra, max_iters=6):
    return load_config(None, [
        "family=gan", "data.source=builtin:digits", "data.batch_size=16", "data.limit=200", "model.latent_dim=4",
        "model.g_width=8", "model.d_width=8", "model.clusters=6", "model.cluster_dims=8", "model.g_cond=cbn",
        "model.loss=ns", "model.diffaugment=[translation]", f"train.max_iters={max_iters}", "train.warmup_iters=2",
        "train.lr=1e-3", "train.eval_interval=3", "train.eval_iters=1", "train.log_interval=1",
        "train.weight_decay=0.0", "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}", *extra])


def weights(ckpt):
    return {f"{n}/{k}": v for n in ("g", "d") for k, v in load_file(str(ckpt / f"{n}.safetensors")).items()}


def test_a_self_conditioned_run_resumes_exactly_and_its_prior_follows_the_target(tmp_path):
    full = run(gan_config(tmp_path / "full", "data.target=uniform"), progress=False)
    run(gan_config(tmp_path / "cut", "data.target=uniform", max_iters=3), progress=False)
    resumed = run(gan_config(tmp_path / "cut", "data.target=uniform"), resume=True, progress=False)
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "g/cluster_centroids" in a and a["g/cluster_prior"].sum() == pytest.approx(1.0)
    # the prior is each cluster's share under the uniform-label draws, by hand from the training images
    g = ckpt_io.load(full).model
    from genforge.data.image_batches import ImageDataConfig, label_weights, open_images

    cfg = json.loads((full / "config.json").read_text())["run"]["data"]
    train_set, _ = open_images(ImageDataConfig(**cfg))
    ids, y = gan_ids_of(g, train_set.images), train_set.labels
    want = np.bincount(ids, weights=label_weights(y, np.full(10, 0.1)), minlength=6)
    assert np.allclose(g.cluster_prior.numpy(), want / want.sum(), atol=1e-6)
    plain = ckpt_io.load(run(gan_config(tmp_path / "plain", max_iters=1), progress=False)).model
    ids = gan_ids_of(plain, train_set.images)  # clusters of the plain draws: other centroids, plain frequencies
    assert np.allclose(plain.cluster_prior.numpy(), np.bincount(ids, minlength=6) / len(ids), atol=1e-6)


def gan_ids_of(g, images: np.ndarray) -> np.ndarray:
    return g.cluster_of(torch.from_numpy(images).float() / 255).numpy()


def test_a_run_with_cluster_importance_weights_draws_the_reference_shares(tmp_path):
    ref = tmp_path / "ref.npz"
    np.savez(ref, x=np.random.default_rng(0).integers(0, 16, (40, 8, 8), dtype=np.uint8))
    out = run(gan_config(tmp_path / "iw", f"data.reference={ref}", "data.reference_estimator=clusters",
                         "data.image_size=8", max_iters=1), progress=False)
    w = np.load(tmp_path / "iw" / "importance_weights.npy")
    g = ckpt_io.load(out).model
    from genforge.data.image_batches import ImageDataConfig, open_images

    cfg = json.loads((out / "config.json").read_text())["run"]["data"]
    train_set, _ = open_images(ImageDataConfig(**cfg))
    own = fit_clusters(train_set.images, DEFAULT_K, seed=1337)  # the estimator's: 50 of the plain images, train.seed
    reference, _ = open_images(ImageDataConfig(source=str(ref), val_fraction=0.0))
    assert np.allclose(w, cluster_density_ratio(own.assign(train_set.images), own.assign(reference.images), DEFAULT_K))
    # the model's clusters are fitted under those weights, and its prior is their shares under them
    assert np.allclose(g.cluster_prior.numpy(), cluster_shares(gan_ids_of(g, train_set.images), 6, w), atol=1e-6)
