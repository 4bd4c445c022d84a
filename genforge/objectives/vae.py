"""The VAE objective: the negative ELBO, -E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I)), in nats
per image (summed over pixels), and the importance-weighted bound on -log p(x) (Burda et al. 2016,
"Importance Weighted Autoencoders", eq. 8) that tightens as k grows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genforge.models.vae import VAE

LOG_2PI = math.log(2 * math.pi)


def log_px(model: VAE, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) per image (B,), summed over pixels, for decoder outputs `out` (B, C, H, W)."""
    if model.config.decoder == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
    log_sigma = model.log_sigma
    return (-0.5 * ((x - out) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * LOG_2PI).flatten(1).sum(1)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image (B,), in closed form (Kingma & Welling, app. B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor,
                y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(x|z), log p(z), log q(z|x)), each (n, B), for z = mu + eps * std with eps (n, B, D)
    (a conditional VAE's classes y (B,)): log w = log p(x|z) + log p(z) - log q(z|x) is an
    importance weight of p(x) (of p(x|y), conditional)."""
    n = len(eps)
    z = mu + eps * torch.exp(0.5 * logvar)  # (n, B, D)
    out = model.decode(z.flatten(0, 1), None if y is None else y.repeat(n))  # (n*B, C, H, W)
    lp_x = log_px(model, out, x.repeat(n, 1, 1, 1)).view(n, -1)
    lp_z = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
    lq_z = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)
    return lp_x, lp_z, lq_z


def iwae_nll(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
             chunk: int = 64, y: torch.Tensor | None = None) -> torch.Tensor:
    """-log (1/k sum_i p(x, z_i) / q(z_i|x)), z_i ~ q(z|x): an upper bound on -log p(x) per image (B,)
    in nats; k=1 is the negative ELBO, larger k is tighter."""
    mu, logvar = model.encode(x)  # (B, D)
    log_w = []
    for start in range(0, k, chunk):
        eps = torch.randn(min(chunk, k - start), *mu.shape, generator=generator).to(mu.device)  # (n, B, D)
        lp_x, lp_z, lq_z = log_weights(model, x, mu, logvar, eps, y)
        log_w.append(lp_x + lp_z - lq_z)
    return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))


class VAEObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: VAE):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def classes(self, batch) -> torch.Tensor | None:
        """The batch's labels where the decoder reads them (model.conditional), else None."""
        return batch[1].long() if self.model.config.n_cond else None

    def terms(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction -log p(x|z(, y)), KL) per image, each (B,), with one z ~ q(z|x)."""
        out, mu, logvar = self.model(x, y)
        return -log_px(self.model, out, x), kl_to_prior(mu, logvar)

    def loss(self, batch, phase: str = "main"):
        x, y = batch[0].float(), self.classes(batch)  # (B, C, H, W) in [0, 1], (B,) or None
        if self.model.config.train_k > 1:
            return self.iwae_loss(x, y)
        rec, kl = self.terms(x, y)
        loss = (rec + self.model.config.beta * kl).mean()
        return loss, {"loss": loss.detach(), "rec": rec.mean().detach(), "kl": kl.mean().detach(), "images": len(x)}

    def iwae_loss(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """The IWAE bound with model.train_k samples per image, averaged over the batch (Burda et al.
        2016, eq. 8), reparameterised so its gradient flows into encoder and decoder; rec and kl are
        the single-sample terms averaged over the k samples (kl a Monte Carlo estimate)."""
        mu, logvar = self.model.encode(x)  # (B, D)
        eps = torch.randn(self.model.config.train_k, *mu.shape, device=mu.device)  # (k, B, D)
        lp_x, lp_z, lq_z = log_weights(self.model, x, mu, logvar, eps, y)  # each (k, B)
        bound = torch.logsumexp(lp_x + lp_z - lq_z, dim=0) - math.log(len(eps))  # (B,)
        loss = -bound.mean()
        return loss, {"loss": loss.detach(), "rec": -lp_x.mean().detach(), "kl": (lq_z - lp_z).mean().detach(),
                      "images": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        """val_loss is the negative ELBO (beta=1) in nats per image; val_nll the IWAE bound when
        model.iwae_k > 0."""
        k = self.model.config.iwae_k
        gen = torch.Generator().manual_seed(0)  # the same noise at each eval
        totals, n = {"val_loss": 0.0, "val_rec": 0.0, "val_kl": 0.0, "val_nll": 0.0}, 0
        for batch in batches:
            x, y = batch[0].float(), self.classes(batch)
            rec, kl = self.terms(x, y)
            totals["val_loss"] += float((rec + kl).sum())
            totals["val_rec"] += float(rec.sum())
            totals["val_kl"] += float(kl.sum())
            if k:
                totals["val_nll"] += float(iwae_nll(self.model, x, k, gen, y=y).sum())
            n += len(x)
        if not k:
            totals.pop("val_nll")
        return {name: v / max(n, 1) for name, v in totals.items()}
