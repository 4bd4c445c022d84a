"""genforge's best GAN vs a tuned pytorch/examples-style DCGAN on MNIST, for the same CPU-time budget.

    python bench/gan_vs_dcgan.py [--mnist ../shared/data/mnist] [--minutes 3] [--repeats 1]
                                 [--classifier CKPT] [--samples 2000] [--threads 2] [--ref SETTING]
    python bench/gan_vs_dcgan.py --tune-ref [SETTING ...]       # the reference's settings sweep
    python bench/gan_vs_dcgan.py --ours-only --set train.lr=4e-4  # try genforge settings

The budget is this process's CPU time (time.process_time; genforge's side trains with
train.max_minutes and train.budget_clock=cpu), not wall-clock time: on a shared machine other
jobs slow a run down without eating into its budget, so both sides get the same compute however
loaded the machine is. With --threads > 1 CPU time counts every thread.

The reference re-implements pytorch/examples dcgan/main.py at MNIST's 28x28 (the 64x64 original
collapsed here within 100 iterations): G = ConvTranspose + BatchNorm + ReLU, tanh out; D = Conv +
LeakyReLU(0.2) (+ BatchNorm), sigmoid out; weights N(0, 0.02); BCE on real=1 / fake=0, G trained
against label 1; Adam(lr, betas=(0.5, 0.999)), nz 100; sampled in eval mode (BN running
statistics). Its settings (REF_SETTINGS: width ngf = ndf, lr, batch) were tuned by --tune-ref at
the 3-minute budget; REF_TUNED is the winner (README, bench notes): at this budget a narrower
net wins by taking more steps. genforge trains the gan/mnist recipe with `genforge train`'s
loop for the same budget, in the config's precision (train.dtype auto); the reference picks its
precision by the same rule (genforge.device.resolve_dtype("auto")): bf16 autocast only on a CPU
with native bf16 (genforge.cpu.isa), float32 elsewhere, where bf16 would be emulated and measure
the emulation, not the GAN. The first line names the ISA and both sides' dtype. Runs alternate
A B, seed r for both in repeat r.
Both are scored by one function: FID of --samples generated images against the first --samples
MNIST test images in the features of a genforge-trained MNIST classifier (trained first when
--classifier is not given), class coverage (classes with >= 20% of their uniform share), and, so
that diversity shows next to FID (these features reward class-typical digits), precision/recall of
the k-NN manifolds in the same features and the within-class spread (per-pixel std within each
predicted class; real test digits: 0.15).
The last line is   fid_ours=... fid_ref=... classes_covered=...   (median FIDs; the coverage of each
side's worst run, ours / reference).
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.cpu.memory import keep_freed_host_memory
from genforge.data.image_batches import to_float
from genforge.data.images import find_idx, read_idx_pair
from genforge.device import resolve_dtype
from genforge.eval import image_metrics as im

NZ = 100
# the reference's settings (G/D width, lr, Adam beta1, batch); REF_TUNED won the --tune-ref sweep
REF_SETTINGS = {
    "examples": dict(width=64, lr=2e-4, beta1=0.5, batch=64),  # dcgan/main.py's defaults (ngf = ndf = 64)
    "lr5e-4": dict(width=64, lr=5e-4, beta1=0.5, batch=64),
    "width32": dict(width=32, lr=2e-4, beta1=0.5, batch=64),  # ~3x the steps in the budget
    "width16": dict(width=16, lr=2e-4, beta1=0.5, batch=64),  # ~7x
    "width32-lr5e-4": dict(width=32, lr=5e-4, beta1=0.5, batch=64),
    "width32-batch128": dict(width=32, lr=4e-4, beta1=0.5, batch=128),  # lr scaled with the batch
}
REF_TUNED = "width16"  # seed 0 on AVX512-BF16: 23.83 in bf16 autocast (~1.45x the steps), 29.24 in fp32
# the reference's autocast dtype: genforge's train.dtype=auto rule (bf16 only where native)
REF_DTYPE = resolve_dtype("auto", torch.device("cpu"))


class RefG(nn.Module):
    def __init__(self, w: int = 64):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, w * 4, 7, 1, 0, bias=False), nn.BatchNorm2d(w * 4), nn.ReLU(True),  # 7x7
            nn.ConvTranspose2d(w * 4, w * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 2), nn.ReLU(True),  # 14
            nn.ConvTranspose2d(w * 2, 1, 4, 2, 1, bias=False), nn.Tanh())  # 28x28

    def forward(self, z):
        return self.main(z)


class RefD(nn.Module):
    def __init__(self, w: int = 64):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 14
            nn.Conv2d(w, w * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 2), nn.LeakyReLU(0.2, inplace=True),  # 7
            nn.Conv2d(w * 2, 1, 7, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m):
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def run_reference(train_x: torch.Tensor, minutes: float, seed: int, setting: str) -> tuple[nn.Module, int]:
    """examples' training loop for a budget of this process's CPU time; (G in eval mode, iterations)."""
    hp = REF_SETTINGS[setting]
    torch.manual_seed(seed)
    g, d = RefG(hp["width"]), RefD(hp["width"])
    g.apply(weights_init)
    d.apply(weights_init)
    opt_d = torch.optim.Adam(d.parameters(), lr=hp["lr"], betas=(hp["beta1"], 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=hp["lr"], betas=(hp["beta1"], 0.999))
    cast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=torch.bfloat16 == REF_DTYPE)
    bce = F.binary_cross_entropy
    deadline, it = time.process_time() + 60 * minutes, 0
    while time.process_time() < deadline:
        for idx in torch.randperm(len(train_x)).split(hp["batch"]):
            real = train_x[idx] * 2 - 1
            d.zero_grad()
            with cast():
                err_real = bce(d(real).float(), torch.ones(len(real)))
                fake = g(torch.randn(len(real), NZ, 1, 1))
                err_fake = bce(d(fake.detach()).float(), torch.zeros(len(real)))
            (err_real + err_fake).backward()
            opt_d.step()
            g.zero_grad()
            with cast():
                err_g = bce(d(fake).float(), torch.ones(len(real)))
            err_g.backward()
            opt_g.step()
            it += 1
            if time.process_time() >= deadline:
                break
    return g.eval(), it


def run_ours(work: Path, mnist: str, minutes: float, seed: int, threads: int, extra: list[str]) -> tuple[nn.Module, int]:
    from genforge import checkpoint as ckpt_io
    from genforge.run_config import load_config
    from genforge.train.run import run

    cfg = load_config("gan/mnist", [
        f"data.source={mnist}", f"train.max_minutes={minutes}", "train.budget_clock=cpu", "train.max_iters=10000000",
        "train.eval_interval=1000000", "train.eval_iters=1", f"train.seed={seed}", f"train.threads={threads}",
        "train.device=cpu", f"train.out_dir={work / f'ours-{seed}'}", *extra])  # train.dtype: the config's
    ckpt = run(cfg, progress=False)
    g = ckpt_io.load(ckpt).model
    return g, int(ckpt.name.split("-")[1])


def classifier(work: Path, mnist: str, threads: int) -> Path:
    from genforge.run_config import load_config
    from genforge.train.run import run

    print("training the MNIST feature extractor (classifier/mnist recipe, 400 steps)", flush=True)
    cfg = load_config("classifier/mnist", [
        f"data.source={mnist}", "train.max_iters=400", "train.eval_interval=400", f"train.threads={threads}",
        "train.device=cpu", "train.dtype=float32", f"train.out_dir={work / 'classifier'}"])
    return run(cfg, progress=False)


def score(fake: torch.Tensor, real: torch.Tensor, clf) -> tuple[float, int, float, float, float]:
    """(FID, classes covered, precision, recall, within-class spread): precision/recall of the
    k-NN manifolds in the same features, and the spread, so that diversity shows next to FID."""
    precision, recall = im.precision_recall(im.features(clf, real), im.features(clf, fake))
    return im.fid(real, fake, clf), im.class_coverage(clf, fake, 10)[0], precision, recall, spread(fake, clf)


def spread(images: torch.Tensor, clf) -> float:
    """Per-pixel standard deviation within each classifier-predicted class, averaged over pixels and
    classes: near 0 when G draws one style per digit (real MNIST test digits: 0.15)."""
    pred = im.predict(clf, images)
    stds = [images[pred == k].std(0).mean().item() for k in range(10) if (pred == k).sum() > 1]
    return sum(stds) / max(len(stds), 1)


def describe(r: tuple) -> str:
    return f"FID {r[0]:.2f}  classes {r[1]}/10  precision {r[2]:.3f}  recall {r[3]:.3f}  spread {r[4]:.3f}"


def ref_samples(g: nn.Module, n: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([(g(torch.randn(500, NZ, 1, 1)).float() + 1) / 2 for _ in range(0, n, 500)])[:n]  # (n, 1, 28, 28)


def ours_samples(g: nn.Module, n: int, truncation: float | None) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(i) for i in range(0, n, 500)]
    return torch.cat([g.sample(500, generator=gen, truncation=truncation) for gen in gens])[:n]


STEPS = 5  # a run's tuple: score()'s five values, then its iterations


def med(runs: list[tuple], i: int) -> float:
    return statistics.median(x[i] for x in runs)


def tune_reference(args, train_x, real, clf) -> None:
    """Every REF_SETTINGS entry for --repeats seeds, alternating; prints median FID per setting."""
    results: dict[str, list] = {name: [] for name in (args.tune_ref or REF_SETTINGS)}
    for r in range(args.repeats):
        for name in results:
            g, it = run_reference(train_x, args.minutes, r, name)
            results[name].append((*score(ref_samples(g, args.samples), real, clf), it))
            batch_stats = score(ref_samples(g.train(), args.samples), real, clf)  # as examples' fixed_noise grids
            print(f"dcgan {name} {REF_SETTINGS[name]} seed {r}: {it} iterations  {describe(results[name][-1])} "
                  f"(BN batch statistics: FID {batch_stats[0]:.2f} classes {batch_stats[1]}/10)", flush=True)
    for name, runs in results.items():
        print(f"dcgan {name}: median FID {med(runs, 0):.2f}  classes {med(runs, 1):.0f}/10  recall {med(runs, 3):.3f}  "
              f"iterations {med(runs, STEPS):.0f}")


def compare(args, train_x, real, clf, work: Path) -> None:
    """Reference and ours alternating, one seed per repeat; the last line gives the medians."""
    ours, refs = [], []
    for r in range(args.repeats):
        if not args.ours_only:
            g, it = run_reference(train_x, args.minutes, r, args.ref)
            refs.append((*score(ref_samples(g, args.samples), real, clf), it))
            print(f"dcgan ({args.ref}) seed {r}: {it} iterations  {describe(refs[-1])}", flush=True)
        g, it = run_ours(work, args.mnist, args.minutes, r, args.threads, args.set)
        fake = ours_samples(g, args.samples, args.truncation)
        ours.append((*score(fake, real, clf), it))
        print(f"genforge (gan/mnist {' '.join(args.set)}) seed {r}: {it} iterations  {describe(ours[-1])}",
              flush=True)
        if args.grid:
            from genforge.sample.images import save_grid

            save_grid(fake[:100], args.grid, nrow=10, scale=2)  # the last run's samples
    if refs:
        print(f"fid_ours={med(ours, 0):.2f} fid_ref={med(refs, 0):.2f} ratio={med(ours, 0) / med(refs, 0):.2f} "
              f"recall_ours={med(ours, 3):.3f} recall_ref={med(refs, 3):.3f} spread_ours={med(ours, 4):.3f} "
              f"spread_ref={med(refs, 4):.3f} steps_ours={med(ours, STEPS):.0f} steps_ref={med(refs, STEPS):.0f}")
        print(f"fid_ours={med(ours, 0):.2f} fid_ref={med(refs, 0):.2f} "
              f"classes_covered={min(x[1] for x in ours)}/{min(x[1] for x in refs)}")  # the worst run's
    else:
        print(f"fid_ours={med(ours, 0):.2f} classes_covered={med(ours, 1):.0f} recall={med(ours, 3):.3f} "
              f"spread={med(ours, 4):.3f} steps_ours={med(ours, STEPS):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared/data/mnist"))
    ap.add_argument("--minutes", type=float, default=3.0, help="CPU-time training budget of each run (minutes)")
    ap.add_argument("--repeats", type=int, default=1, help="seeds 0..N-1, one reference and one genforge run each")
    ap.add_argument("--classifier", help="a genforge MNIST classifier checkpoint (default: train one first)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--ref", default=REF_TUNED, choices=sorted(REF_SETTINGS), help="the reference's settings")
    ap.add_argument("--tune-ref", nargs="*", metavar="SETTING",
                    help="run these reference settings (none named: all) instead, no genforge runs")
    ap.add_argument("--ours-only", action="store_true", help="skip the reference (to try genforge settings)")
    ap.add_argument("--set", action="append", default=[], help="a config override for genforge's run (repeatable)")
    ap.add_argument("--truncation", type=float, help="sample genforge's G with this truncation")
    ap.add_argument("--grid", help="write genforge's last 100 samples (10 per class) as this PNG")
    args = ap.parse_args()
    if find_idx(Path(args.mnist), "train") is None:
        sys.exit(f"{args.mnist}: no MNIST IDX files; pass --mnist")
    torch.set_num_threads(args.threads)
    from genforge.run_config import load_config

    ours = resolve_dtype(load_config("gan/mnist", args.set).train.dtype, torch.device("cpu"))
    print(f"{isa.describe()}; dtype: genforge {ours}, reference {REF_DTYPE}", flush=True)
    # genforge's loop asks glibc to keep freed memory on CPU runs (fewer page faults); both sides
    # train in this one process, so set it before either runs and the reference gets it too
    keep_freed_host_memory()
    train_x = to_float(read_idx_pair(*find_idx(Path(args.mnist), "train")).images)
    real = to_float(read_idx_pair(*find_idx(Path(args.mnist), "test")).images[:args.samples])
    work = Path(tempfile.mkdtemp(prefix="gf-gan-bench-"))
    try:
        clf = im.load_classifier(args.classifier or classifier(work, args.mnist, args.threads))
        if args.tune_ref is not None:
            tune_reference(args, train_x, real, clf)
        else:
            compare(args, train_x, real, clf, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
