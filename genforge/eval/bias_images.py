"""Output bias of image models (`genforge eval CKPT --metrics bias`): a judge labels N samples and
the label distribution is compared with a target.

- images (vae, gan, ...): the judge is a genforge-trained `classifier` checkpoint; per class the
  share of samples it labels so, the total-variation distance TV = 1/2 sum |p - t| from the target
  t, the fairness discrepancy FD = ||p - t||_2 (Choi et al. 2020, "Fair Generative Modeling via
  Weak Supervision", sec. 5: classes the model never makes count, with share 0: the vector is
  zero-padded to every class of the target), and per-class recall (Kynkaenniemi et al. 2019: the
  share of real images of the class inside the k-NN manifold of the samples labelled so, in the
  judge's features; 0 for a class it never makes).
- text to image (diffusion, dalle): images made from neutral prompts ("a circle": no colour
  asked for), read by genforge's scene judge (eval/geneval.py): the shares of an attribute
  (colour, or object) of the largest object, against the target.

A judge's error hides bias (a 5 % error understates a TV of 0.4 by about 0.02), so every report
carries the judge's confusion matrix on real labelled images beside the TV, and the label
distribution corrected by it (the observed shares solved through the confusion matrix, as
black-box shift estimation, Lipton et al. 2018).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genforge.errors import ConfigError, GenforgeError
from genforge.eval import image_metrics as im
from genforge.models.classifier import predict

RECALL_K = 3  # neighbours of the k-NN manifolds of per-class recall
RECALL_MAX = 1000  # images per class compared for recall (a cdist of n x n per class)
# (model, judge, judge's class names, n, seed) -> (images (n, C, H, W) in [0, 1], entries for the report)
Sampler = Callable[[torch.nn.Module, torch.nn.Module, list, int, int], tuple[torch.Tensor, dict]]


# --- the numbers --------------------------------------------------------------------------------

def shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class id 0..num_classes-1 among labels (N,), zeros where absent."""
    labels = np.asarray(labels, np.int64)
    return np.bincount(labels, minlength=num_classes)[:num_classes] / max(len(labels), 1)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """1/2 sum_k |p_k - q_k| of two distributions over the same classes."""
    return float(0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def fairness_discrepancy(p: np.ndarray, target: np.ndarray) -> float:
    """||p - target||_2 over every class of the target, p zero-padded: a class the samples never
    show enters with share 0 (dropping it would hide the worst of the bias)."""
    p = np.asarray(p, np.float64)
    target = np.asarray(target, np.float64)
    if len(p) < len(target):
        p = np.concatenate([p, np.zeros(len(target) - len(p))])
    if len(p) != len(target):
        raise ConfigError(f"a distribution over {len(p)} classes against a target over {len(target)}")
    return float(np.linalg.norm(p - target))


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row the true class, column the judge's."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def corrected_shares(observed: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """The true shares p that would give the judge's observed shares: observed = C^T p with C the
    row-normalised confusion matrix, solved by least squares, clipped at 0 and renormalised."""
    rows = confusion.sum(1, keepdims=True)
    c = np.where(rows > 0, confusion / np.maximum(rows, 1), np.eye(len(confusion)))
    p = np.linalg.lstsq(c.T, np.asarray(observed, np.float64), rcond=None)[0].clip(0)
    return p / p.sum() if p.sum() > 0 else np.asarray(observed, np.float64)


def per_class_recall(real_feats: torch.Tensor, real_labels: np.ndarray, fake_feats: torch.Tensor,
                     fake_labels: np.ndarray, num_classes: int, k: int = RECALL_K) -> list[float]:
    """Per class, the share of its real images inside the k-NN manifold of the samples labelled
    with it (up to RECALL_MAX of each); 0.0 for a class with k or fewer such samples."""
    out = []
    for c in range(num_classes):
        real = real_feats[torch.from_numpy(np.flatnonzero(real_labels == c)[:RECALL_MAX])]
        fake = fake_feats[torch.from_numpy(np.flatnonzero(fake_labels == c)[:RECALL_MAX])]
        if len(fake) <= k or len(real) == 0:
            out.append(0.0)
            continue
        out.append(im.precision_recall(real, fake, k)[1])
    return out


def report(pred: np.ndarray, target: np.ndarray, class_names: list[str], confusion: np.ndarray) -> dict:
    """The bias numbers of the judge's labels pred (N,) of N samples against target (K,), with
    the judge's confusion matrix on real images beside them."""
    k = len(class_names)
    p = shares(pred, k)
    fixed = corrected_shares(p, confusion)
    acc = float(np.trace(confusion) / max(confusion.sum(), 1))
    return {"samples": len(pred), "classes": list(class_names),
            "shares": [round(float(s), 4) for s in p], "target": [round(float(t), 4) for t in target],
            "tv": total_variation(p, target), "fairness_discrepancy": fairness_discrepancy(p, target),
            "missing_classes": [class_names[i] for i in np.flatnonzero(p == 0)],
            "judge_accuracy": acc, "judge_confusion": confusion.tolist(),
            "tv_corrected": total_variation(fixed, target), "shares_corrected": [round(float(s), 4) for s in fixed]}


# --- targets from a spec ------------------------------------------------------------------------

def spec_target(spec_path: str | Path | None, class_names: list[str], fields: tuple[str, ...] = ("label",),
                where: str = "--spec") -> tuple[str, np.ndarray]:
    """(attribute name, target shares (K,) over class_names) of the spec's attribute read from one
    of `fields` (an image's class label; for text to image, colour or object); uniform without a
    spec. ConfigError for a spec without such an attribute, or whose values are not exactly the
    judge's classes (a value it does not know, a class the spec leaves out)."""
    if spec_path is None:
        return fields[0], np.full(len(class_names), 1 / len(class_names))
    from genforge.eval.bias_spec import load_spec

    spec = load_spec(spec_path)
    found = [a for a in spec.attributes.values() if a.field in fields]
    if not found:
        have = ", ".join(f"{a.name} (field {a.field})" if a.field else a.name for a in spec.attributes.values())
        raise ConfigError(f"{where} {spec_path}: no attribute read from field {' or '.join(fields)} (it has {have}); "
                          f"images are measured by an attribute with field: {fields[0]}")
    attr = found[0]
    unknown = [v for v in attr.values if v not in class_names]
    if unknown:
        raise ConfigError(f"{where} {spec_path}: attributes.{attr.name}: {unknown[0]!r} is not a class of the judge "
                          f"(its classes: {', '.join(class_names)})")
    left = [c for c in class_names if c not in attr.values]
    if left:
        raise ConfigError(f"{where} {spec_path}: attributes.{attr.name}: no value for class {', '.join(left)} of the "
                          "judge (name every class; a target of 0 leaves one out)")
    return attr.name, np.array([attr.target[c] for c in class_names])


# --- image checkpoints --------------------------------------------------------------------------

def load_judge(judge: str | Path | None, model_config) -> tuple[torch.nn.Module, list[str], dict]:
    """(classifier, its class names, its checkpoint config) of a judge checkpoint for images the
    model makes. ConfigError without one or for images of another size."""
    from genforge import checkpoint as ckpt_io

    if not judge:
        raise ConfigError("--metrics bias needs a judge: --judge CKPT, a genforge classifier trained on labelled "
                          "real images (genforge train classifier/mnist)")
    clf = im.load_classifier(judge)
    config = ckpt_io.peek(judge)[1]
    c = model_config
    if (clf.config.image_size, clf.config.channels) != (c.image_size, c.channels):
        raise ConfigError(f"--judge {judge}: trained on {clf.config.image_size}px x{clf.config.channels} images, "
                          f"the model makes {c.image_size}px x{c.channels}")
    names = (config.get("data") or {}).get("class_names") or [str(i) for i in range(clf.config.num_classes)]
    return clf, list(names), config


def judge_error(judge: torch.nn.Module, judge_config: dict, num_classes: int, limit: int = 10000):
    """(confusion matrix (K, K), real images, their labels) of the judge on the real validation
    images of its own checkpoint (DataError when they are not on this machine)."""
    from genforge.data.image_batches import checkpoint_images, to_float

    val, _ = checkpoint_images(judge_config)
    labelled = np.flatnonzero(val.labels >= 0)[:limit]
    if len(labelled) == 0:
        raise ConfigError("--judge: its validation images have no labels to measure its error on")
    x, y = to_float(val.images[labelled]), val.labels[labelled]
    pred = predict(judge, x).cpu().numpy()
    return confusion_matrix(y, pred, num_classes), x, y


def evaluate_bias(ckpt: str | Path, judge: str | Path | None, spec: str | Path | None = None, num_samples: int = 10000,
                  seed: int = 0, sampler: Sampler | None = None, device: str = "cpu") -> dict:
    """The bias report (see `report`) of num_samples images of an image checkpoint, judged by the
    classifier checkpoint `judge`, against the spec's label target (uniform without one), with
    per-class recall and the FID of the samples against the judge's real images (in its features:
    the quality a mitigation cost). sampler(model, judge, class names, n, seed) -> (images, extra report
    entries) makes the images (genforge.api gives class-conditional and rejection samplers);
    by default the model's own sample()."""
    from genforge import checkpoint as ckpt_io

    if num_samples < RECALL_K + 1:
        raise ConfigError(f"--num-samples {num_samples}: the bias metrics need at least {RECALL_K + 1} samples")
    loaded = ckpt_io.load(ckpt, device)
    if loaded.family.kind != "image":
        raise ConfigError(f"{loaded.path}: a {loaded.config['family']} checkpoint makes no images to measure")
    model = loaded.model.eval()
    clf, names, judge_config = load_judge(judge, model.config)
    _, target = spec_target(spec, names)
    confusion, real, real_y = judge_error(clf, judge_config, len(names))
    extra: dict = {}
    if sampler is not None:
        fake, extra = sampler(model, clf, names, num_samples, seed)
    else:
        gen = torch.Generator().manual_seed(seed)
        fake = torch.cat([model.sample(min(500, num_samples - i), generator=gen).cpu()
                          for i in range(0, num_samples, 500)])
    pred = predict(clf, fake).cpu().numpy()
    out = {"family": loaded.config["family"], **extra, **report(pred, target, names, confusion)}
    out["fid"] = im.fid(real, fake, clf)  # the quality beside the bias: against the judge's real images, in its features
    out["recall_per_class"] = [round(r, 4) for r in per_class_recall(
        im.features(clf, real), real_y, im.features(clf, fake), pred, len(names))]
    return out


def sampling_target(balance: str | Path, class_names: list[str]) -> np.ndarray:
    """The label shares a --balance names: uniform, or the label attribute of a spec file."""
    if str(balance) == "uniform":
        return np.full(len(class_names), 1 / len(class_names))
    return spec_target(balance, class_names, where="--balance")[1]


def check_model_classes(model, class_names: list[str]) -> None:
    """GenforgeError unless a class-conditional model takes as many classes as the judge has."""
    n = getattr(model.config, "n_cond", 0)
    if n and n != len(class_names):
        raise GenforgeError(f"the model takes {n} classes, the judge has {len(class_names)}: a judge of the "
                            "model's own classes is needed")


# --- text to image ------------------------------------------------------------------------------

T2I_FIELDS = ("colour", "object")


def neutral_prompts(vocab: str) -> list[str]:
    """Prompts that name an object and nothing else about it: "a circle", "a 3", ..."""
    from genforge.data import scenes

    return [f"a {o}" for o in scenes.VOCABS[vocab]]


def read_attribute(judge, images, field: str) -> list[str | None]:
    """Per image, its largest object's colour (field "colour") or object ("object"), None when the
    scene judge finds no object (or cannot name it)."""
    out = []
    for objs in judge.read(images):
        if not objs:
            out.append(None)
            continue
        top = max(objs, key=lambda o: o["area"])
        out.append(top["colour"] if field == "colour" else top.get("shape"))
    return out


def t2i_judge_error(judge, field: str, values: list[str], vocab: str, size: int, n: int = 600, seed: int = 0):
    """The scene judge's confusion matrix (K, K+1: a last column for "none read") for the attribute
    on real drawn scenes of one object each."""
    from genforge.data import scenes

    _, _, specs = scenes.make_scenes(n * 3, "train", size, seed + 7, vocab)
    single = [s for s in specs if s["kind"] == "single"][:n]
    real = np.stack([scenes.draw(s, size) for s in single])
    truth = [s["objects"][0]["colour" if field == "colour" else "shape"] for s in single]
    read = read_attribute(judge, real, field)
    m = np.zeros((len(values), len(values) + 1), np.int64)
    for t, r in zip(truth, read):
        if t in values:
            m[values.index(t), values.index(r) if r in values else len(values)] += 1
    return m


def evaluate_bias_t2i(model, judge, num_samples: int = 256, seed: int = 0, spec: str | Path | None = None,
                      vocab: str = "shapes", **options) -> dict:
    """Attribute shares of images a text-to-image model (a PromptImageModel) makes from neutral
    prompts, num_samples spread over them (the spec's templates when it has some, else "a
    {object}" per object of the vocabulary), read by the scene judge `judge` (a SceneJudge),
    against the spec's target for colour or object (uniform over the colours without a spec)."""
    from genforge.data import scenes

    values = list(scenes.COLOURS)
    field, target = "colour", np.full(len(values), 1 / len(values))
    prompts = neutral_prompts(vocab)
    if spec is not None:
        from genforge.eval.bias_spec import load_spec

        loaded = load_spec(spec)
        attr = next((a for a in loaded.attributes.values() if a.field in T2I_FIELDS), None)
        if attr is None:
            raise ConfigError(f"--spec {spec}: a text-to-image model is measured by an attribute with field: colour "
                              "or field: object (what the scene judge reads)")
        field = attr.field
        values = list(scenes.COLOURS) if field == "colour" else list(scenes.VOCABS[vocab])
        _, target = spec_target(spec, values, (field,))
        if loaded.templates:
            prompts = [t for t in loaded.templates if "{" not in t] or prompts
    sj = judge
    asked = [prompts[i % len(prompts)] for i in range(num_samples)]
    images = torch.cat([model.generate(asked[k:k + 64], seed=seed + k, **options).cpu()
                        for k in range(0, num_samples, 64)])
    read = read_attribute(sj, images, field)
    pred = np.array([values.index(r) for r in read if r in values], np.int64)
    confusion = t2i_judge_error(sj, field, values, vocab, model.config.image_size)
    square = confusion[:, :len(values)]
    out = {"attribute": field, "prompts": prompts, **report(pred, target, values, square)}
    out["unread"] = float(1 - len(pred) / max(num_samples, 1))
    out["judge_unread"] = float(confusion[:, -1].sum() / max(confusion.sum(), 1))
    return out
