"""Output bias on MNIST made 90/10, and what each mitigation does to it and to quality.

    python bench/bias_mnist.py [--mnist ../shared/data/mnist] [--minutes 6] [--jobs 2] [--samples 10000] [--threads 1]
                               [--family gan|vae] [--clusters 100] [--reference-steps 1500] [--estimator classifier|clusters]

The training set is MNIST's training digits 0-4 (less the reference's) and 669 random ones of each of 5-9 (90 %
of the images are 0-4: TV 0.400 from uniform). Four GANs (the gan/mnist recipe: spectral norm,
DiffAugment, EMA of G) train on it for the same CPU-time budget each (train.max_minutes with
train.budget_clock=cpu):

  base      unconditional, plain draws (unmitigated);
  reweight  unconditional, data.target=uniform (weighted draws: each class 10 % of every batch);
  cond      class-conditional (model.conditional=true), sampled at uniform labels;
  iw        unconditional, data.reference = 1,000 balanced images without labels (100 training
            images of each digit drawn at random and held out of the training set: MNIST's test
            digits, or the training file's last images, are other writers', whom a density ratio
            would learn to tell apart):
            data.reference_estimator's weights (Choi et al. 2019's density-ratio classifier, its
            --reference-steps (1,500 of 256 images) outside the GAN's budget, or the clusters' ratio)
            drive the draws.

The unconditional arms are self-conditioned GANs (model.clusters=--clusters, Liu et al. 2020): G
and D read k-means clusters of the training images (fitted under the arm's draw weights, on the
pixels' principal components and the log draw weight, model.cluster_weight_feature; no label
used) and G samples clusters at their share of the draws, so each arm makes the distribution it
was drawn (a plain unconditional GAN covers the digits in proportions of its own, which hid the
data-side mitigations). For each, the clusters' purity against the true digits is printed, with
the TV a G matching every cluster exactly would have (the weights' own error). --family vae
trains the vae/mnist recipe's VAEs instead (no clusters).

A judge (genforge's classifier/mnist recipe trained on all of balanced MNIST) labels --samples
images of each arm: label shares, TV and fairness discrepancy from uniform; its confusion matrix
on the real test images is printed beside them (its accuracy, and the TV corrected by it). FID is
on the judge's features against the 10,000 MNIST test images, and per class (each class's samples
against its real test images, up to 300 of each), so that quality shows apart from the label mix. Memorisation of the repeated minority images: for
samples the judge labels 5-9, the pixel distance to the nearest of the 669 training images of that
digit vs to the nearest of 669 unseen MNIST training images of it (ratio 1: no closer to what it
trained on), and the share of samples nearer a training image than 99 % of unseen real digits are
("copies"). Torch runs on --threads threads (1 while others share the machine).

Goal: tv_base >= 0.3; every mitigated arm TV <= 0.05 at FID <= 1.1 x fid_base.
The last line is   tv_base=... tv_reweight=... tv_cond=... tv_iw=... fid_base=... fid_worst_mitigated=...
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.data.image_batches import to_float
from genforge.data.images import find_idx, read_idx_pair
from genforge.eval import bias_images as bias
from genforge.eval import image_metrics as im
from genforge.models.classifier import predict

MINORITY = (5, 6, 7, 8, 9)
PER_MINORITY = 669  # 5 x 669 of the 30,096 + 3,345 images: 10.0 % (TV 0.400 from uniform)
REF_PER_CLASS = 100
SPLIT_SEED = 0  # the draws of the reference, the minority images and their unseen twins
ARMS = ("base", "reweight", "cond", "iw")


def write_idx(path: Path, array: np.ndarray) -> None:
    """array (uint8) as a gzip IDX file (the MNIST layout genforge's readers take)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), 1))


def make_data(mnist: Path, work: Path) -> dict:
    """The skewed training folder (IDX; its test split: MNIST test minus the reference), the
    balanced reference (.npz, no labels) and the arrays the scoring needs."""
    train = read_idx_pair(*find_idx(mnist, "train"))
    test = read_idx_pair(*find_idx(mnist, "test"))
    y = train.labels
    # every split is a seeded random draw within each digit: a digit's last images in MNIST's
    # training file differ in style from its first ones (a density-ratio classifier between the two
    # ends beat the loss that digit identity alone allows), as MNIST's test digits differ by writer
    rng = np.random.default_rng(SPLIT_SEED)
    order = {d: rng.permutation(np.flatnonzero(y == d)) for d in range(10)}
    ref = np.sort(np.concatenate([order[d][:REF_PER_CLASS] for d in range(10)]))
    majority = [order[d][REF_PER_CLASS:] for d in range(10) if d not in MINORITY]
    minority = [order[d][REF_PER_CLASS:REF_PER_CLASS + PER_MINORITY] for d in MINORITY]
    keep = np.sort(np.concatenate(majority + minority))
    unseen = {d: order[d][REF_PER_CLASS + PER_MINORITY:REF_PER_CLASS + 2 * PER_MINORITY] for d in MINORITY}
    folder = work / "skewed"
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", train.images[keep, 0])
    write_idx(folder / "train-labels-idx1-ubyte.gz", y[keep])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test.images[:, 0])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test.labels)
    np.savez(work / "reference.npz", x=train.images[ref])  # no labels: the importance weights never see one
    return {"folder": folder, "reference": work / "reference.npz", "train_labels": y[keep],
            "train_images": train.images[keep], "unseen": {d: train.images[i] for d, i in unseen.items()},
            "real": test.images, "real_labels": test.labels}


RECIPES = {"vae": "vae/mnist", "gan": "gan/mnist"}


def train_arm(work: Path, name: str, data: dict, args) -> tuple[Path, float]:
    """One arm's model (args.family's MNIST recipe) trained for args.minutes of CPU time:
    (its checkpoint, CPU-minutes spent, setup and the importance classifier included)."""
    from genforge.run_config import load_config
    from genforge.train.run import run

    uncond = ["model.conditional=false"] + ([f"model.clusters={args.clusters}"] if args.family == "gan" else []) + args.set
    extra = {"base": uncond, "reweight": [*uncond, "data.target=uniform"], "cond": ["model.conditional=true"],
             "iw": [*uncond, f"data.reference={data['reference']}", f"data.reference_estimator={args.estimator}",
                    f"data.reference_steps={args.reference_steps}"]}[name]
    minutes, threads, seed = args.minutes, args.threads, args.seed
    cfg = load_config(RECIPES[args.family], [
        f"data.source={data['folder']}", f"train.max_minutes={minutes}", "train.budget_clock=cpu",
        "train.max_iters=10000000", "train.eval_interval=1000000", "train.eval_iters=1", f"train.seed={seed}",
        f"train.threads={threads}", "train.device=cpu", f"train.out_dir={work / name}", *extra])
    start = time.process_time()
    ckpt = run(cfg, progress=False)
    return ckpt, (time.process_time() - start) / 60


def train_judge(work: Path, mnist: Path, threads: int, steps: int) -> tuple[Path, float]:
    from genforge.run_config import load_config
    from genforge.train.run import run

    cfg = load_config("classifier/mnist", [
        f"data.source={mnist}", f"train.max_iters={steps}", f"train.eval_interval={steps}", f"train.threads={threads}",
        "train.device=cpu", "train.dtype=float32", f"train.out_dir={work / 'judge'}"])
    start = time.process_time()
    ckpt = run(cfg, progress=False)
    return ckpt, (time.process_time() - start) / 60


def _job(job: tuple) -> tuple[str, tuple[Path, float]]:
    """One training of the run, in a worker process of its own (torch threads as asked)."""
    name, work, mnist, data, args = job
    torch.set_num_threads(args.threads)
    if name == "judge":
        return name, train_judge(work, mnist, args.threads, args.judge_steps)
    return name, train_arm(work, name, data, args)


def train_all(args, arms: list[str], mnist: Path, work: Path, data: dict) -> dict:
    """name -> (checkpoint, CPU-minutes) of the judge (unless --judge) and each arm: --jobs at a
    time, each in its own process with --threads threads (the budgets are CPU time, so running
    them side by side changes no arm's compute, only the wall time)."""
    import multiprocessing

    from genforge import checkpoint as ckpt_io
    from genforge.errors import CheckpointError

    paths = {"folder": data["folder"], "reference": data["reference"]}
    done = {}
    for name in ([] if args.judge else ["judge"]) + arms:
        with contextlib.suppress(CheckpointError):  # --keep DIR of an earlier run: finished ones are not retrained
            found = ckpt_io.resolve(work / name)
            # a judge stopped early (a signal saves a checkpoint) is trained again; the arms' budgets are
            # time, so an interrupted arm cannot be told apart here: --keep only runs that finished
            if name != "judge" or found.name == f"step-{args.judge_steps:07d}":
                done[name] = (found, float("nan"))
    jobs = [(name, work, mnist, paths, args) for name in ([] if args.judge else ["judge"]) + arms if name not in done]
    if not jobs:
        return done
    if args.jobs <= 1:
        return {**done, **dict(map(_job, jobs))}
    with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
        return {**done, **dict(pool.map(_job, jobs, chunksize=1))}


def samples(ckpt: Path, name: str, n: int, seed: int) -> torch.Tensor:
    from genforge import checkpoint as ckpt_io
    from genforge.sample.balanced import conditional_samples

    g = ckpt_io.load(ckpt).model.eval()
    if name == "cond":
        return conditional_samples(g, n, np.full(10, 0.1), seed)[0]
    gens = [torch.Generator().manual_seed(seed + i) for i in range(0, n, 500)]
    return torch.cat([g.sample(500, generator=gen) for gen in gens])[:n]


def per_class_fid(fake: torch.Tensor, pred: np.ndarray, real: torch.Tensor, real_y: np.ndarray, clf,
                  cap: int = 300) -> list[float]:
    """FID of each class's samples (as the judge labels them) against its real images, on up to
    `cap` of each (the same count on both sides); nan for a class with fewer than 50 samples."""
    out = []
    for c in range(10):
        f, r = fake[torch.from_numpy(pred == c)], real[torch.from_numpy(real_y == c)]
        m = min(cap, len(f), len(r))
        out.append(im.fid(r[:m], f[:m], clf) if m >= 50 else float("nan"))
    return out


@torch.no_grad()
def confidence(clf, x: torch.Tensor, batch: int = 500) -> float:
    """The judge's mean top-class probability on images x: how sure it is of the labels it gives
    (blurry or malformed samples get unsure labels, which a TV cannot show)."""
    probs = [torch.softmax(clf(x[i:i + batch].float()), 1).max(1).values for i in range(0, len(x), batch)]
    return float(torch.cat(probs).mean())


@torch.no_grad()
def reconstruction_accuracy(ckpt: Path, real: torch.Tensor, real_y: np.ndarray, clf) -> tuple[float, float]:
    """(the judge's accuracy, its confidence) on a VAE's reconstructions of the real test images:
    whether the judge reads the VAE's smooth mean images as well as sharp real digits."""
    from genforge import checkpoint as ckpt_io

    vae = ckpt_io.load(ckpt).model.eval()
    rec = torch.cat([vae.reconstruct(real[i:i + 500]) for i in range(0, len(real), 500)])
    return float((predict(clf, rec).numpy() == real_y).mean()), confidence(clf, rec)


@torch.no_grad()
def cluster_report(ckpt: Path, name: str, data: dict, work: Path) -> dict | None:
    """A self-conditioned arm's clusters against the true digits of its training images: purity
    (the share of images in their cluster's most common digit) and the digit shares its prior pi
    makes through the clusters' digit mix under the arm's draws (what a G that matched every cluster
    exactly would give; the TV from uniform of that is the arm's floor). None for other arms."""
    from genforge import checkpoint as ckpt_io
    from genforge.data.image_batches import label_weights

    g = ckpt_io.load(ckpt).model
    if not getattr(g.config, "clusters", 0):
        return None
    y, k = data["train_labels"], g.config.clusters
    ids = torch.cat([g.cluster_of(to_float(data["train_images"][i:i + 4096])) for i in range(0, len(y), 4096)]).numpy()
    w = {"reweight": lambda: label_weights(y, np.full(10, 0.1)),
         "iw": lambda: np.load(work / "iw" / "importance_weights.npy")}.get(name, lambda: np.ones(len(y)))()
    mix = np.zeros((k, 10))
    np.add.at(mix, (ids, y), w)  # (K, 10) weighted digit counts per cluster
    purity = float(sum(np.bincount(y[ids == c], minlength=10).max() for c in np.unique(ids)) / len(y))
    prior = g.cluster_prior.double().numpy()
    made = prior @ (mix / np.maximum(mix.sum(1, keepdims=True), 1e-12))
    return {"purity": purity, "shares": made, "tv": bias.total_variation(made, np.full(10, 0.1))}


def memorisation(fake: torch.Tensor, pred: np.ndarray, data: dict, per_class: int = 200) -> tuple[float, float]:
    """(mean over minority samples of d(nearest training image of its digit) / d(nearest unseen
    image of it), the share of them nearer a training image than 99 % of unseen real digits are)."""
    ratios, copies = [], []
    x = fake.flatten(1).double()
    for d in MINORITY:
        mine = x[torch.from_numpy(pred == d)][:per_class]
        if len(mine) == 0:
            continue
        trained = to_float(data["train_images"][data["train_labels"] == d]).flatten(1).double()
        unseen = to_float(data["unseen"][d]).flatten(1).double()
        d_tr, d_un = torch.cdist(mine, trained).min(1).values, torch.cdist(mine, unseen).min(1).values
        real_to_train = torch.cdist(unseen, trained).min(1).values
        ratios.append(d_tr / d_un)
        copies.append(d_tr < torch.quantile(real_to_train, 0.01))
    if not ratios:
        return float("nan"), float("nan")
    return float(torch.cat(ratios).mean()), float(torch.cat(copies).double().mean())


def weight_line(what: str, w: np.ndarray, data: dict) -> None:
    """Importance weights against the exact density ratio: their mean on 5-9 and 0-4, the share of
    the draws they give 5-9 (0.5 wanted) and the TV from uniform of the digits they draw (the
    floor of an arm drawn by them: a perfect model of its draws has this TV)."""
    y = data["train_labels"]
    minority = np.isin(y, MINORITY)
    drawn = np.bincount(y, weights=w, minlength=10) / w.sum()
    print(f"{what}: mean {w[minority].mean():.3f} on digits 5-9, {w[~minority].mean():.3f} on 0-4 "
          f"(exact density ratio: {0.1 / (minority.mean() / 5):.3f} and {0.1 / ((1 - minority.mean()) / 5):.3f}); "
          f"share of 5-9 in the draws {drawn[list(MINORITY)].sum():.3f} (target 0.5); TV of the drawn digits from "
          f"uniform {bias.total_variation(drawn, np.full(10, 0.1)):.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared/data/mnist"))
    ap.add_argument("--family", choices=sorted(RECIPES), default="gan",
                    help="the arms' model: vae (the vae/mnist recipe) or gan (gan/mnist)")
    ap.add_argument("--minutes", type=float, default=6.0, help="CPU-time training budget of each arm (minutes)")
    ap.add_argument("--reference-steps", type=int, default=1500,
                    help="training steps of the iw arm's density-ratio classifier (data.reference_steps)")
    ap.add_argument("--clusters", type=int, default=100,
                    help="k-means clusters of the unconditional GAN arms (model.clusters: self-conditioned)")
    ap.add_argument("--estimator", choices=("classifier", "clusters"), default="classifier",
                    help="the iw arm's density ratio (data.reference_estimator)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override of every unconditional arm (repeatable), e.g. model.cluster_loss=1")
    ap.add_argument("--samples", type=int, default=10000, help="samples judged per arm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--judge-steps", type=int, default=800, help="training steps of the judge (classifier/mnist)")
    ap.add_argument("--judge", help="a genforge MNIST classifier checkpoint to judge with (default: train one)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"some of {','.join(ARMS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="trainings side by side, each in its own process with "
                    "--threads threads (CPU-time budgets: the same compute per arm)")
    ap.add_argument("--keep", help="keep the runs in this folder (default: a temporary one, removed); finished "
                    "runs found there are scored again rather than retrained")
    args = ap.parse_args()
    mnist = Path(args.mnist)
    if find_idx(mnist, "train") is None or find_idx(mnist, "test") is None:
        print(f"skipped: no MNIST IDX files (train-* and t10k-*) in {mnist}; pass --mnist", flush=True)
        return
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not set(arms) <= set(ARMS):
        sys.exit(f"--arms {args.arms}: expected some of {','.join(ARMS)}")
    torch.set_num_threads(args.threads)
    print(f"{isa.describe()}; torch threads {args.threads}", flush=True)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gf-bias-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_all(args, arms, mnist, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run_all(args, arms: list[str], mnist: Path, work: Path) -> None:
    data = make_data(mnist, work)
    train_tv = bias.total_variation(bias.shares(data["train_labels"], 10), np.full(10, 0.1))
    print(f"training set: {len(data['train_labels'])} images, shares "
          f"{np.round(bias.shares(data['train_labels'], 10), 3).tolist()}, TV from uniform {train_tv:.3f}", flush=True)
    runs = train_all(args, arms, mnist, work, data)
    judge_ckpt, judge_min = runs.pop("judge") if "judge" in runs else (Path(args.judge), 0.0)
    clf = im.load_classifier(judge_ckpt)
    real, real_y = to_float(data["real"]), data["real_labels"]
    confusion = bias.confusion_matrix(real_y, predict(clf, real).numpy(), 10)
    print(f"judge: {judge_min:.1f} CPU-min; accuracy on {len(real_y)} real test images "
          f"{np.trace(confusion) / confusion.sum():.4f}; TV of its labels of them from their true shares "
          f"{bias.total_variation(confusion.sum(0) / confusion.sum(), confusion.sum(1) / confusion.sum()):.4f}",
          flush=True)
    print("judge confusion matrix (rows: true digit, columns: the judge's):", flush=True)
    for row in confusion:
        print("  " + " ".join(f"{v:5d}" for v in row), flush=True)
    print(f"judge confidence (mean top-class probability) on the real test images {confidence(clf, real):.4f}",
          flush=True)
    if args.family == "vae" and "base" in runs:
        acc, conf = reconstruction_accuracy(runs["base"][0], real, real_y, clf)
        print(f"judge on the base VAE's reconstructions of the real test images: accuracy {acc:.4f}, "
              f"confidence {conf:.4f}", flush=True)
    results = {}
    for name in arms:
        ckpt, cpu_min = runs[name]
        fake = samples(ckpt, name, args.samples, args.seed + 1)
        pred = predict(clf, fake).numpy()
        r = bias.report(pred, np.full(10, 0.1), [str(d) for d in range(10)], confusion)
        r["fid"] = im.fid(real, fake, clf)
        r["fid_per_class"] = per_class_fid(fake, pred, real, real_y, clf)
        r["mem_ratio"], r["copies"] = memorisation(fake, pred, data)
        r["confidence"] = confidence(clf, fake)
        r["steps"], r["cpu_min"] = int(ckpt.name.split("-")[1]), cpu_min
        results[name] = r
        clusters = cluster_report(ckpt, name, data, work)
        if clusters is not None:
            print(f"         clusters: purity {clusters['purity']:.3f}; the digit shares pi makes through them "
                  f"{np.round(clusters['shares'], 3).tolist()} (TV {clusters['tv']:.4f}: this arm's floor)", flush=True)
        print(f"{name:8s} TV {r['tv']:.4f} (judge-corrected {r['tv_corrected']:.4f})  FD {r['fairness_discrepancy']:.4f}"
              f"  FID {r['fid']:.2f}  per-class FID mean {np.nanmean(r['fid_per_class']):.2f}"
              f"  minority NN ratio {r['mem_ratio']:.3f} copies {r['copies']:.4f}  judge conf. {r['confidence']:.3f}"
              f"  ({r['steps']} steps, {cpu_min:.1f} CPU-min incl. setup)", flush=True)
        print(f"         shares {r['shares']}  per-class FID {[round(f, 1) for f in r['fid_per_class']]}", flush=True)
    if "iw" in results:
        weight_line(f"iw weights ({args.estimator})", np.load(work / "iw" / "importance_weights.npy"), data)
        other = "clusters" if args.estimator == "classifier" else None
        if other:  # the other estimator's weights, for comparison (no classifier to train: seconds)
            from genforge.data.images import ImageSet
            from genforge.train.importance import cluster_ratio_weights

            none = np.full(len(data["train_labels"]), -1)
            ref = np.load(data["reference"])["x"]  # (1000, 1, 28, 28)
            w = cluster_ratio_weights(ImageSet(data["train_images"], none, []), ImageSet(ref, none[:len(ref)], []),
                                      seed=args.seed)
            weight_line("the clusters estimator's weights (not trained on)", w, data)
    mitigated = [a for a in ("reweight", "cond", "iw") if a in results]
    if "base" in results and mitigated:
        base = results["base"]
        worst = max(results[a]["fid"] for a in mitigated)
        ok = base["tv"] >= 0.3 and all(results[a]["tv"] <= 0.05 for a in mitigated) and worst <= 1.1 * base["fid"]
        print(f"goal (tv_base >= 0.3; mitigated TV <= 0.05 at FID <= 1.1 x base): {'met' if ok else 'NOT met'}",
              flush=True)
    fmt = {a: f"{results[a]['tv']:.4f}" if a in results else "nan" for a in ARMS}
    fid_base = f"{results['base']['fid']:.2f}" if "base" in results else "nan"
    worst = f"{max(results[a]['fid'] for a in mitigated):.2f}" if mitigated else "nan"
    print(f"tv_base={fmt['base']} tv_reweight={fmt['reweight']} tv_cond={fmt['cond']} tv_iw={fmt['iw']} "
          f"fid_base={fid_base} fid_worst_mitigated={worst}", flush=True)


if __name__ == "__main__":
    main()
