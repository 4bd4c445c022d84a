"""Output bias of image models: the numbers against hand-computed cases (TV, zero-padded
fairness discrepancy, the judge-corrected shares), sampling at target label shares
(class-conditional and rejection), `genforge eval --metrics bias` end to end, and bad specs."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from genforge.cli import main
from genforge.errors import ConfigError, GenforgeError
from genforge.eval import bias_images as bias
from genforge.models.gan import GAN, GANConfig
from genforge.sample.balanced import conditional_samples, rejection_samples, target_counts


def test_fairness_discrepancy_zero_pads_a_class_the_model_never_makes():
    pred = np.array([0, 0, 1, 1])  # class 2 never made
    target = np.full(3, 1 / 3)
    p = bias.shares(pred, 3)
    assert p.tolist() == [0.5, 0.5, 0.0]
    # by hand: p - t = (1/6, 1/6, -1/3): ||.||_2 = sqrt(1/36 + 1/36 + 4/36) = sqrt(6) / 6; TV = (1/6 + 1/6 + 1/3) / 2
    assert bias.fairness_discrepancy(p, target) == pytest.approx(np.sqrt(6) / 6)
    assert bias.fairness_discrepancy(p[:2], target) == pytest.approx(np.sqrt(6) / 6)  # the missing class padded
    assert bias.total_variation(p, target) == pytest.approx(1 / 3)
    r = bias.report(pred, target, ["a", "b", "c"], np.eye(3, dtype=np.int64) * 10)
    assert r["missing_classes"] == ["c"] and r["judge_accuracy"] == 1.0 and r["tv"] == pytest.approx(1 / 3)


def test_corrected_shares_undo_a_known_judge_error():
    confusion = np.array([[90, 10], [20, 80]])  # the judge calls 10 % of a's b, 20 % of b's a
    true = np.array([0.7, 0.3])
    observed = true @ (confusion / confusion.sum(1, keepdims=True))  # 0.7 * 0.9 + 0.3 * 0.2 = 0.69 a
    assert observed[0] == pytest.approx(0.69)
    assert np.allclose(bias.corrected_shares(observed, confusion), true)
    assert bias.confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist() == [[1, 1], [0, 1]]


def test_per_class_recall_is_zero_for_a_class_without_samples():
    real = torch.randn(40, 4, generator=torch.Generator().manual_seed(0)).double()
    labels = np.repeat([0, 1], 20)
    recall = bias.per_class_recall(real, labels, real[:20], np.zeros(20, np.int64), 2)
    assert recall == [1.0, 0.0]  # class 0's samples are its real images; class 1 never made


def test_target_counts_are_exact_largest_remainders():
    assert target_counts(np.array([0.5, 0.25, 0.25]), 10).tolist() == [5, 3, 2]
    assert target_counts(np.full(3, 1 / 3), 10).sum() == 10


def test_class_conditional_sampling_meets_the_target_counts():
    torch.manual_seed(0)
    gan = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=8, d_width=8, num_classes=4, conditional=True))
    g = gan.g.eval()
    images, labels = conditional_samples(g, 20, np.array([0.1, 0.2, 0.3, 0.4]), seed=1)
    assert images.shape == (20, 1, 8, 8) and torch.bincount(labels).tolist() == [2, 4, 6, 8]
    again, _ = conditional_samples(g, 20, np.array([0.1, 0.2, 0.3, 0.4]), seed=1)
    assert torch.equal(images, again)
    plain = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=8, d_width=8, num_classes=4)).g
    with pytest.raises(GenforgeError, match="takes no class"):
        conditional_samples(plain, 20, np.full(4, 0.25))
    with pytest.raises(GenforgeError, match="a target over 3 classes for a model of 4"):
        conditional_samples(g, 20, np.full(3, 1 / 3))


class Skewed(nn.Module):
    """A 'model' whose samples are filled with their class id / 10: class 0 nine times in ten."""

    def __init__(self, rare=(1,)):
        super().__init__()
        self.w, self.rare = nn.Parameter(torch.zeros(1)), rare

    def sample(self, n, cond=None, generator=None, truncation=None):
        u = torch.rand(n, generator=generator)
        k = torch.zeros(n)
        for i, c in enumerate(self.rare):
            k[(u >= 0.9 + 0.1 * i / len(self.rare)) & (u < 0.9 + 0.1 * (i + 1) / len(self.rare))] = c
        return (k / 10)[:, None, None, None].expand(n, 1, 2, 2).clone()


class ReadsFill(nn.Module):
    """A judge that reads the fill back: logits peaked at round(10 x)."""

    def __init__(self, k=3):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"num_classes": k})()

    def forward(self, x):
        ids = (x.flatten(1).mean(1) * 10).round().long()
        return nn.functional.one_hot(ids, self.config.num_classes).float() * 10


def test_rejection_sampling_keeps_the_target_counts_of_the_judge():
    images, labels, drawn = rejection_samples(Skewed(rare=(1, 2)), ReadsFill(3), 30, np.full(3, 1 / 3), seed=0,
                                              batch=50)
    assert torch.bincount(labels, minlength=3).tolist() == [10, 10, 10] and len(images) == 30
    assert drawn >= 150  # the rare classes are 5 % each: about 200 draws to find 10 of each
    assert (images.flatten(1)[:, 0] * 10).round().long().tolist() == labels.tolist()
    with pytest.raises(GenforgeError, match="still short of class 2: 0 of 10"):
        rejection_samples(Skewed(rare=(1,)), ReadsFill(3), 30, np.full(3, 1 / 3), batch=50)


def spec_file(tmp_path, values, target="uniform", field="label"):
    path = tmp_path / "bias.yaml"
    path.write_text(json.dumps({"attributes": {"digit": {"field": field, "values": values, "target": target}}}))
    return path


def test_spec_targets_and_their_errors(tmp_path):
    names = ["0", "1", "2"]
    attr, target = bias.spec_target(spec_file(tmp_path, [0, 1, 2], {"0": 2, "1": 1, "2": 1}), names)
    assert attr == "digit" and target.tolist() == [0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match="'7' is not a class of the judge \\(its classes: 0, 1, 2\\)"):
        bias.spec_target(spec_file(tmp_path, [0, 1, 7]), names)
    with pytest.raises(ConfigError, match="no value for class 2 of the judge"):
        bias.spec_target(spec_file(tmp_path, [0, 1]), names)
    with pytest.raises(ConfigError, match="no attribute read from field label"):
        bias.spec_target(spec_file(tmp_path, [0, 1, 2], field="colour"), names)


COMMON = "data: {source: 'builtin:digits', image_size: 8, batch_size: 32}\n"
TRAIN = ("train: {{max_iters: {n}, warmup_iters: 2, lr: 3e-3, weight_decay: 0.0, eval_interval: {n}, eval_iters: 1, "
         "log_interval: 50, device: cpu, dtype: float32, out_dir: {out}}}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bias_runs")
    models = {"gan": "family: gan\nmodel: {latent_dim: 4, g_width: 8, d_width: 8, conditional: true}\n",
              "vae": "family: vae\nmodel: {arch: conv, latent_dim: 4, width: 8, hidden: 32}\n",
              "judge": "family: classifier\nmodel: {width: 8, feature_dim: 16}\n"}
    for name, model in models.items():
        cfg = root / f"{name}.yaml"
        cfg.write_text(model + COMMON + TRAIN.format(n=60 if name == "judge" else 10, out=root / name))
        assert main(["train", str(cfg), "--no-progress"]) == 0
    return root


def run_json(capsys, argv) -> dict:
    assert main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_bias_of_an_image_model_end_to_end(runs, capsys, tmp_path):
    base = ["eval", runs / "gan", "--metrics", "bias", "--judge", runs / "judge", "--num-samples", 200, "--json"]
    plain = run_json(capsys, base)
    assert plain["samples"] == 200 and len(plain["shares"]) == 10 and sum(plain["shares"]) == pytest.approx(1)
    assert plain["tv"] == pytest.approx(bias.total_variation(plain["shares"], [0.1] * 10), abs=1e-3)
    assert len(plain["judge_confusion"]) == 10 and 0 < plain["judge_accuracy"] <= 1
    assert len(plain["recall_per_class"]) == 10
    # rejection toward shares this barely trained model can meet: those of its own samples, flattened
    weights = [1.0 if s > 0.05 else 0.0 for s in plain["shares"]]
    spec = spec_file(tmp_path, list(range(10)), weights)
    rejected = run_json(capsys, base + ["--sampling", "reject", "--balance", spec])
    want = (target_counts(np.array(weights) / sum(weights), 200) / 200).tolist()
    assert rejected["shares"] == pytest.approx(want) and rejected["drawn"] >= 200
    assert main(["generate", str(runs / "gan"), "--balance", str(spec), "--reject-judge", str(runs / "judge"),
                 "--num-samples", "20", "--out", str(tmp_path / "r.png")]) == 0
    assert "per class" in capsys.readouterr().out and (tmp_path / "r.png").is_file()
    cond = run_json(capsys, base + ["--sampling", "conditional"])
    assert cond["sampling"] == "conditional" and cond["samples"] == 200
    assert main(["eval", str(runs / "vae"), "--metrics", "bias", "--judge", str(runs / "judge"),
                 "--num-samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "tv " in out and "judge accuracy" in out and "confusion matrix" in out


def test_eval_bias_bad_inputs_are_one_line_errors(runs, capsys, tmp_path):
    def fails(argv, message):
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, err

    fails(["eval", runs / "gan", "--metrics", "bias"], "--metrics bias needs a judge")
    fails(["eval", runs / "gan", "--metrics", "bias", "--judge", runs / "judge", "--spec",
           spec_file(tmp_path, list(range(11)))], "'10' is not a class of the judge")
    fails(["eval", runs / "vae", "--metrics", "bias", "--judge", runs / "judge", "--sampling", "conditional",
           "--num-samples", 20], "takes no class")
    fails(["eval", runs / "gan", "--metrics", "bias", "--judge", runs / "vae"], "a feature extractor needs a classifier")


def test_generate_at_balanced_labels(runs, capsys, tmp_path):
    assert main(["generate", str(runs / "gan"), "--balance", "uniform", "--num-samples", "20",
                 "--out", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    assert "0: 2, 1: 2" in out and (tmp_path / "b.png").is_file()
    assert main(["generate", str(runs / "vae"), "--reject-judge", str(runs / "judge")]) == 2
    assert "give the shares to sample at with --balance" in capsys.readouterr().err
