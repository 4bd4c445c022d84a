"""The GAN objective: two phases, "d" then "g", each stepping its own optimizer on the same batch.

Losses on raw discriminator outputs (logits):
  non-saturating (Goodfellow et al. 2014, sec. 3):  L_D = softplus(-D(x)) + softplus(D(G(z))),
                                                    L_G = softplus(-D(G(z)))
  hinge (Lim & Ye 2017; Miyato et al. 2018):        L_D = relu(1 - D(x)) + relu(1 + D(G(z))),
                                                    L_G = -D(G(z))
  R1 (Mescheder et al. 2018, eq. 9):                 gamma/2 * E ||grad_x D(x)||^2 on real x
A self-conditioned GAN (model.clusters, Liu et al. 2020) reads each real image's cluster where a
conditional GAN reads its class, and its fakes' clusters are drawn from G's cluster prior pi (the
real batches' cluster shares), as a conditional GAN's classes are drawn uniformly; G's loss adds
model.cluster_loss x CE(nearest-centroid logits of G(z, c), c), so that each fake is of its cluster.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genforge.models.gan import GAN
from genforge.nn.diffaugment import diff_augment


def d_loss_fn(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss_fn(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def r1_penalty(d, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(E ||grad_x D(x)||^2, D(x)) for real images x; the penalty keeps its graph for backward."""
    x = x.detach().requires_grad_(True)
    logits = d(x, y)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean(), logits


class GANObjective:
    phases = ("d", "g")
    ema_module = "g"

    def __init__(self, model: GAN, report: Callable[[torch.Tensor, torch.Tensor], dict] | None = None):
        self.model, self.g, self.d, self.c = model, model.g, model.d, model.config
        self.lr_scales = {"d": self.c.d_lr_scale}  # the loop multiplies the scheduled lr per phase
        # report(fake, real) -> metrics at each eval, "warnings" among them (the runner passes
        # genforge.eval.image_metrics.sample_report: diversity and, with a classifier, FID and coverage)
        self.report = report
        self._pending = None  # (batch images, fakes, their classes) of the last D phase

    def parameters(self, phase: str):
        return (self.d if phase == "d" else self.g).parameters()

    def modules(self) -> dict:
        return {"g": self.g, "d": self.d}

    def _fake(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.c.latent_dim, device=device)
        y = self._fake_labels(n, device)
        return self.g(z, y), y

    def _fake_labels(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The classes (uniform) or clusters (from pi) of n fakes; None for an unconditional GAN."""
        y = None
        if self.c.n_cond:
            y = torch.randint(0, self.c.n_cond, (n,), generator=generator, device="cpu" if generator else device)
        elif self.c.clusters:
            y = self.g.draw_clusters(n, generator)
        return None if y is None else y.to(device)

    def _real_labels(self, x01: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """What D reads beside real images x01 (B, C, H, W) in [0, 1]: their classes, their clusters, or None."""
        if self.c.clusters:
            return self.g.cluster_of(x01)
        return y if self.c.n_cond else None

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """x seen through model.diffaugment (the same policy for real and fake)."""
        return diff_augment(x, self.c.diffaugment) if self.c.diffaugment else x

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """D's logits (B,) for x seen through model.diffaugment."""
        return self.d(self._augment(x), y)

    def loss(self, batch, phase: str):
        x, y = batch
        y = self._real_labels(x, y)
        x = x.float() * 2 - 1  # (B, C, H, W) in [-1, 1], as G's tanh
        if phase == "d":
            return self._d_loss(batch[0], x, y)
        fake, fy = self._fakes_of(batch[0], x)
        self.d.requires_grad_(False)  # G's step needs no gradients in D (its optimizer would not clear them)
        try:
            out = self._d(fake, fy)
        finally:
            self.d.requires_grad_(True)
        loss = g_loss_fn(self.c.loss, out)
        metrics = {}
        if self.c.clusters and self.c.cluster_loss:
            follow = F.cross_entropy(self.g.cluster_logits((fake + 1) / 2), fy)
            loss = loss + self.c.cluster_loss * follow
            metrics["cluster_ce"] = follow.detach()
        return loss, {"loss": loss.detach(), **metrics}

    def _d_loss(self, key: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None):
        # G's forward keeps its graph: the G phase that follows on this batch reuses these fakes
        # (as pytorch/examples' DCGAN does), so each step runs G forward once, not twice
        fake, fy = self._fake(len(x), x.device)
        self._pending = (key, fake, fy) if torch.is_grad_enabled() else None
        fake = fake.detach()
        x = self._augment(x)  # R1 then penalises D's gradient at what it sees
        r1 = torch.zeros((), device=x.device)
        if self.c.r1_gamma:
            r1, real = r1_penalty(self.d, x, y)
            out = self._d(fake, fy)
        elif self.c.arch == "sn":  # no batch norm in D: one pass over [real; fake] (one power iteration)
            both = self.d(torch.cat([x, self._augment(fake)]), None if y is None else torch.cat([y, fy]))
            real, out = both[:len(x)], both[len(x):]
        else:  # batch norm in D: real and fake batches apart, as DCGAN
            real, out = self.d(x, y), self._d(fake, fy)
        loss = d_loss_fn(self.c.loss, real, out) + self.c.r1_gamma / 2 * r1
        return loss, {"loss": loss.detach(), "real": real.mean().detach(), "fake": out.mean().detach(),
                      "r1": r1.detach(), "images": len(x)}

    def _fakes_of(self, key: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The D phase's fakes of this batch (G's graph kept), or new ones when there are none (a
        G phase without its D phase, or an earlier micro-batch of a gradient accumulation)."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is key:
            return pending[1], pending[2]
        return self._fake(len(x), x.device)

    def evaluate(self, batches) -> dict[str, float]:
        """D/G losses on validation images and the report on samples (printing its warnings, e.g.
        when the samples look mode-collapsed)."""
        gen = torch.Generator().manual_seed(0)
        reals, d_losses, g_losses = [], [], []
        for x, y in batches:
            x2 = x.float() * 2 - 1
            yc = self._real_labels(x, y)
            z = torch.randn(len(x), self.c.latent_dim, generator=gen).to(x.device)
            fy = self._fake_labels(len(x), x.device, gen)
            out = self.d(self.g(z, fy), fy)
            d_losses.append(float(d_loss_fn(self.c.loss, self.d(x2, yc), out)))
            g_losses.append(float(g_loss_fn(self.c.loss, out)))
            reals.append(x.float())
        real = torch.cat(reals)
        fake = self.g.sample(len(real), generator=gen)
        values = {"val_d_loss": sum(d_losses) / len(d_losses), "val_g_loss": sum(g_losses) / len(g_losses)}
        report = self.report(fake, real) if self.report else {}
        for line in report.pop("warnings", []):
            print(f"genforge: {line}", file=sys.stderr, flush=True)
        return {**values, **report}
