"""VAE objective: ELBO terms against hand-computed values, and the IWAE bound (<= negative ELBO,
tightening with k)."""
import math

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from genforge.models.vae import VAE, VAEConfig
from genforge.objectives.vae import VAEObjective, iwae_nll, kl_to_prior, log_px


def tiny(decoder="bernoulli", arch="mlp", beta=1.0) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(arch=arch, image_size=8, channels=1, latent_dim=3, hidden=16, width=4,
                         decoder=decoder, beta=beta))


def images(n=6):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_bernoulli_log_px_by_hand():
    model, x = tiny(), images()
    logits = torch.randn(6, 1, 8, 8)
    p = torch.sigmoid(logits)
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(log_px(model, logits, x), by_hand, atol=1e-4)
    xb = (x > 0.5).float()  # on binary pixels it is the Bernoulli log-likelihood
    assert torch.allclose(log_px(model, logits, xb), Bernoulli(logits=logits).log_prob(xb).flatten(1).sum(1), atol=1e-4)


def test_gaussian_log_px_by_hand():
    model, x = tiny("gaussian"), images()
    mean = torch.rand(6, 1, 8, 8)
    sigma = model.log_sigma.exp()
    assert math.isclose(float(sigma.detach()), 0.1, rel_tol=1e-6)
    by_hand = Normal(mean, sigma).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(log_px(model, mean, x), by_hand, atol=1e-3)


def test_kl_closed_form():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_to_prior(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(kl_to_prior(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_loss_is_reconstruction_plus_beta_kl():
    model, x = tiny(beta=0.25), images()
    obj = VAEObjective(model)
    torch.manual_seed(3)
    loss, metrics = obj.loss((x, None))
    torch.manual_seed(3)  # the same z by hand
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    rec = -log_px(model, model.decode(z), x)
    kl = kl_to_prior(mu, logvar)
    assert torch.allclose(loss, (rec + 0.25 * kl).mean(), atol=1e-4)
    assert torch.allclose(metrics["rec"], rec.mean()) and torch.allclose(metrics["kl"], kl.mean())
    assert metrics["images"] == 6


def informative() -> VAE:
    """A tiny VAE whose q(z|x) is narrow and far from the prior, so the bounds differ clearly."""
    model = tiny()
    with torch.no_grad():
        model.to_stats.weight.mul_(4)
        model.to_stats.bias[3:] = -2.0  # log-variances
        model.decoder[0].weight.mul_(3)
    return model


@torch.no_grad()
def test_iwae_bound_below_elbo_and_tightens_with_k():
    x = images(8)
    model = informative()
    gen = torch.Generator().manual_seed(0)
    neg_elbo = torch.stack([iwae_nll(model, x, 1, gen) for _ in range(400)]).mean(0)  # (B,) E[-ELBO]
    obj = VAEObjective(model)
    rec, kl = zip(*[obj.terms(x) for _ in range(400)])
    assert torch.allclose(neg_elbo, (torch.stack(rec) + torch.stack(kl)).mean(0), rtol=0.01)  # k=1 is the ELBO
    bound = {k: torch.stack([iwae_nll(model, x, k, gen).mean() for _ in range(reps)]).mean()
             for k, reps in ((10, 40), (100, 8), (1000, 2))}
    assert neg_elbo.mean() > bound[10] > bound[100] > bound[1000]
    assert neg_elbo.mean() - bound[1000] > 0.1  # nats: a real gap, not noise


@torch.no_grad()
def test_evaluate_reports_nll_in_nats():
    model, x = tiny(), images(8)
    model.config.iwae_k = 20
    out = VAEObjective(model).evaluate([(x, None)])
    assert set(out) == {"val_loss", "val_rec", "val_kl", "val_nll"}
    assert out["val_nll"] < out["val_loss"] and math.isclose(out["val_loss"], out["val_rec"] + out["val_kl"], rel_tol=1e-6)


def test_iwae_training_loss_by_hand():
    """model.train_k=k trains -log (1/k sum_i p(x|z_i) p(z_i) / q(z_i|x)), z_i reparameterised."""
    model, x = tiny(), (images() > 0.5).float()
    model.config.train_k = 4
    obj = VAEObjective(model)
    torch.manual_seed(7)
    loss, metrics = obj.loss((x, None))
    torch.manual_seed(7)  # the same eps by hand, scored with torch.distributions
    mu, logvar = model.encode(x)
    std = (0.5 * logvar).exp()
    z = mu + torch.randn(4, *mu.shape) * std  # (4, B, D)
    log_pxz = Bernoulli(logits=model.decode(z.flatten(0, 1))).log_prob(x.repeat(4, 1, 1, 1)).flatten(1).sum(1).view(4, -1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(mu, std).log_prob(z).sum(-1)
    log_w = log_pxz + log_pz - log_qz  # (4, B)
    want = -(torch.logsumexp(log_w, 0) - math.log(4)).mean()
    assert torch.allclose(loss, want, atol=1e-4)
    assert loss < -log_w.mean()  # tighter than the ELBO of the same samples (Jensen)
    assert torch.allclose(metrics["rec"], -log_pxz.mean(), atol=1e-4)
    assert torch.allclose(metrics["kl"], (log_qz - log_pz).mean(), atol=1e-4)
    loss.backward()
    assert model.to_stats.weight.grad.abs().sum() > 0 and model.decoder[0].weight.grad.abs().sum() > 0

