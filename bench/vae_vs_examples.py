"""genforge's VAE vs the pytorch/examples MNIST VAE, side by side in one process.

    python bench/vae_vs_examples.py [--mnist ../shared/data/mnist] [--epochs 3] [--repeats 1]
                                    [--nll-iters 0] [--nll-minutes 0] [--threads 2]

The reference is pytorch/examples' vae/main.py re-implemented here (torchvision is not installed):
a Dataset that turns each uint8 image into a PIL image and then a tensor (torchvision's MNIST +
ToTensor), DataLoader(batch_size=128, shuffle=True), MLP 784-400-(20, 20) / 20-400-784, Adam(1e-3),
loss = BCE(sum) + KLD, test loss = the same on the 10,000 test images / 10,000.
genforge trains the same architecture (model.arch=mlp, hidden 400, latent 20) with `genforge
train`'s loop: batch 128, Adam 1e-3 (AdamW with weight_decay 0, constant lr), 3 epochs.
Runs alternate A B A B; images/s counts training steps only (data loading included, evaluation
excluded) on both sides. Test losses of both final models are measured by one function here.

Then genforge's own best VAE (--nll-config, the recipe vae/mnist_best, dynamically binarised, for
its max_iters or --nll-iters steps, on the CPU) and its IWAE bound (k=--iwae-k) on the first
--nll-test-images test images binarised once with a fixed seed (0): the NLL in nats of the
literature's binarised-MNIST protocol. --nll-out keeps that run (with its training CPU seconds) and
--nll-ckpt evaluates a kept one, e.g. on all 10,000 test images with --nll-device cuda. The last line is
    ratio_img_s=... test_loss_ours=... test_loss_ref=... nll_nats=...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.data.images import find_idx, read_idx_pair


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py, verbatim in structure."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class TorchvisionLikeMNIST(torch.utils.data.Dataset):
    """What torchvision.datasets.MNIST(transform=ToTensor()) does per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = torch.from_numpy(images[:, 0]), torch.from_numpy(labels)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i].numpy(), mode="L")
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1).contiguous()
        return x.float().div(255), int(self.labels[i])


def run_reference(train, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ExamplesVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(TorchvisionLikeMNIST(train.images, train.labels), batch_size=128, shuffle=True)
    seconds, images = 0.0, 0
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for x, _ in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = examples_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
            images += len(x)
        seconds += time.perf_counter() - t0
    return {"img_s": images / seconds, "seconds": seconds, "model": model}


def run_ours(work: Path, mnist: str, epochs: int, seed: int, threads: int) -> dict:
    from genforge.models.vae import VAE
    from genforge.run_config import load_config
    from genforge.train.log import read_metrics
    from genforge.train.run import run

    bpe = 60000 // 128
    out = work / f"ours-{seed}"
    cfg = load_config(None, [
        "family=vae", f"data.source={mnist}", "data.batch_size=128", "model.arch=mlp", "model.hidden=400",
        "model.latent_dim=20", f"train.max_iters={epochs * bpe}", "train.lr=1e-3", "train.min_lr=1e-3",
        "train.warmup_iters=0", "train.weight_decay=0.0", "train.beta1=0.9", "train.beta2=0.999", "train.grad_clip=0.0",
        f"train.eval_interval={bpe}", "train.eval_iters=79", f"train.log_interval={bpe}", "train.device=cpu",
        "train.dtype=float32", f"train.seed={seed}", f"train.threads={threads}", f"train.out_dir={out}"])
    t0 = time.perf_counter()
    ckpt = run(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = read_metrics(out / "metrics.csv")
    model = VAE(cfg.model)
    from genforge.checkpoint import load_module

    load_module(model, ckpt / "model.safetensors")
    return {"img_s": statistics.median(v for _, n, v in rows if n == "img_s"), "seconds": wall,
            "val_by_epoch": [v for _, n, v in rows if n == "val_loss"], "model": model}


@torch.no_grad()
def test_loss(forward, test_x: torch.Tensor, seed: int = 0) -> float:
    """examples' test(): BCE(sum) + KLD with a sampled z, over the test set, per image."""
    torch.manual_seed(seed)
    total = 0.0
    for i in range(0, len(test_x), 128):
        x = test_x[i:i + 128]
        recon, mu, logvar = forward(x)
        total += float(examples_loss(recon.reshape(len(x), -1), x, mu, logvar))
    return total / len(test_x)


def ours_forward(model):
    def f(x):
        out, mu, logvar = model(x)
        return torch.sigmoid(out), mu, logvar
    return f


def train_best(out: Path, config: Path, mnist: str, iters: int, minutes: float, threads: int) -> tuple[Path, float]:
    """Train `config` (dynamically binarised MNIST) into `out` for `iters` steps (0: the config's) or at
    most `minutes`; (final checkpoint, CPU seconds of training), the seconds also in out/cpu_seconds.json."""
    from genforge.run_config import load_config
    from genforge.train.run import run

    cfg = load_config(config, [
        f"data.source={mnist}", "data.augment=[binarize]", *([f"train.max_minutes={minutes}"] if minutes else []),
        *([f"train.max_iters={iters}"] if iters else []),
        "train.eval_interval=2000", "train.eval_iters=2", "model.iwae_k=0", f"train.threads={threads}",
        "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}"])
    cpu0 = time.process_time()
    ckpt = run(cfg, progress=False)
    cpu = time.process_time() - cpu0
    (out / "cpu_seconds.json").write_text(json.dumps({"cpu_seconds": cpu, "threads": threads, "checkpoint": ckpt.name}))
    return ckpt, cpu


def kept_run(out: Path) -> tuple[Path, float]:
    """(final checkpoint, training CPU seconds) of a run train_best kept (--nll-out)."""
    meta_path = out / "cpu_seconds.json"
    if not meta_path.is_file():
        sys.exit(f"{out}: no cpu_seconds.json; train it first with --nll-out {out}")
    meta = json.loads(meta_path.read_text())
    return out / meta["checkpoint"], float(meta["cpu_seconds"])


def binarized_test(mnist: str, n_test: int) -> torch.Tensor:
    """The first n_test test images, binarised once with a fixed seed: each pixel 1 with probability
    its grey level (torch.bernoulli, generator seed 0), (n, 1, 28, 28)."""
    test = read_idx_pair(*find_idx(Path(mnist), "test"))
    grey = torch.from_numpy(test.images[:n_test]).float() / 255
    return torch.bernoulli(grey, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_nll(ckpt: Path, x: torch.Tensor, k: int, device: str) -> tuple[float, float, float]:
    """(IWAE k NLL, its standard error over the images, negative ELBO), nats per image."""
    from genforge import checkpoint as ckpt_io
    from genforge.objectives.vae import iwae_nll

    model = ckpt_io.load(ckpt).model
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(1)  # CPU noise: the same draws on any device
    step = 500 if device != "cpu" else 50
    nll = torch.cat([iwae_nll(model, x[i:i + step].to(device), k, gen).cpu() for i in range(0, len(x), step)])
    elbo = torch.cat([iwae_nll(model, x[i:i + step].to(device), 1, gen).cpu() for i in range(0, len(x), step)])
    return float(nll.mean()), float(nll.std() / len(nll) ** 0.5), float(elbo.mean())


def best_vae(args, work: Path) -> float:
    """Train (or reload with --nll-ckpt) the best VAE and print its IWAE NLL; returns the NLL."""
    if args.nll_ckpt:
        ckpt, cpu = kept_run(Path(args.nll_ckpt))
    else:
        out = Path(args.nll_out) if args.nll_out else work / "best"
        ckpt, cpu = train_best(out, Path(args.nll_config), args.mnist, args.nll_iters, args.nll_minutes, args.threads)
    if args.nll_device != "cpu":  # full fp32 on the GPU too: TF32 would shift the bound
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    x = binarized_test(args.mnist, args.nll_test_images)
    nll, se, elbo = test_nll(ckpt, x, args.iwae_k, args.nll_device)
    print(f"best VAE ({ckpt.parent if args.nll_ckpt else args.nll_config}, {ckpt.name}, {cpu:.0f} s CPU in training): binarised test -ELBO {elbo:.2f}, "
          f"IWAE k={args.iwae_k} NLL {nll:.2f} +- {se:.2f} (s.e.) nats on {len(x)} images "
          f"(fixed binarisation: seed 0; evaluated on {args.nll_device})", flush=True)
    return nll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared/data/mnist"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1, help="A B pairs (medians over them)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--nll-iters", type=int, default=0, help="steps of the best-VAE run (0: the config's; -1: skip it)")
    ap.add_argument("--nll-minutes", type=float, default=0.0, help="wall-clock cap of the best-VAE run (0: none)")
    ap.add_argument("--iwae-k", type=int, default=1000)
    ap.add_argument("--nll-test-images", type=int, default=1000, help="the first N test images (10000: all)")
    ap.add_argument("--nll-config", default="vae/mnist_best")
    ap.add_argument("--nll-out", default="", help="keep the best-VAE run here (default: a temporary folder)")
    ap.add_argument("--nll-ckpt", default="", help="evaluate a run kept with --nll-out instead of training")
    ap.add_argument("--nll-device", default="cpu", help="device of the IWAE evaluation (training is on the CPU)")
    args = ap.parse_args()
    print(f"{isa.describe()}; dtype: genforge torch.float32 (train.dtype=float32), reference torch.float32", flush=True)
    if find_idx(Path(args.mnist), "train") is None:
        sys.exit(f"{args.mnist}: no MNIST IDX files (train-images-idx3-ubyte[.gz]); pass --mnist")
    torch.set_num_threads(args.threads)
    train = read_idx_pair(*find_idx(Path(args.mnist), "train"))
    test = read_idx_pair(*find_idx(Path(args.mnist), "test"))
    test_x = torch.from_numpy(test.images).float() / 255
    work = Path(tempfile.mkdtemp(prefix="gf-vae-bench-"))
    refs, ours = [], []
    try:
        for r in range(args.repeats):
            ref = run_reference(train, args.epochs, seed=r)
            ref["test_loss"] = test_loss(ref["model"], test_x)
            refs.append(ref)
            print(f"examples  run {r}: {ref['img_s']:,.0f} img/s  {ref['seconds']:.1f} s  test loss {ref['test_loss']:.2f}", flush=True)
            mine = run_ours(work, args.mnist, args.epochs, seed=r, threads=args.threads)
            mine["test_loss"] = test_loss(ours_forward(mine["model"]), test_x)
            ours.append(mine)
            per_epoch = " ".join(f"{v:.2f}" for v in mine["val_by_epoch"])
            print(f"genforge  run {r}: {mine['img_s']:,.0f} img/s  {mine['seconds']:.1f} s wall (incl. evals)  "
                  f"test loss {mine['test_loss']:.2f}  (per epoch, in-run: {per_epoch})", flush=True)
        nll = float("nan")
        if args.nll_iters >= 0:
            nll = best_vae(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    def med(runs, key):  # --repeats 0 runs the NLL part alone
        return statistics.median(r[key] for r in runs) if runs else float("nan")

    print(f"ratio_img_s={med(ours, 'img_s') / med(refs, 'img_s'):.3f} test_loss_ours={med(ours, 'test_loss'):.2f} "
          f"test_loss_ref={med(refs, 'test_loss'):.2f} nll_nats={nll:.2f}")


if __name__ == "__main__":
    main()
