"""GAN losses and R1 against hand-computed values; G's phase leaves D without gradients."""
import math

import torch
from torch import nn

from genforge.models.gan import GAN, GANConfig, truncated_normal
from genforge.objectives.gan import GANObjective, d_loss_fn, g_loss_fn, r1_penalty

REAL = torch.tensor([0.5, 2.0, -1.0])
FAKE = torch.tensor([-2.0, 0.3])


def softplus(v):
    return math.log1p(math.exp(v))


def test_hinge_losses_by_hand():
    d = ((0.5 + 0 + 2) / 3) + ((0 + 1.3) / 2)
    assert math.isclose(float(d_loss_fn("hinge", REAL, FAKE)), d, rel_tol=1e-6)
    assert math.isclose(float(g_loss_fn("hinge", FAKE)), (2.0 - 0.3) / 2, rel_tol=1e-6)


def test_non_saturating_losses_by_hand():
    d = sum(softplus(-r) for r in (0.5, 2.0, -1.0)) / 3 + sum(softplus(f) for f in (-2.0, 0.3)) / 2
    assert math.isclose(float(d_loss_fn("ns", REAL, FAKE)), d, rel_tol=1e-6)
    assert math.isclose(float(g_loss_fn("ns", FAKE)), (softplus(2.0) + softplus(-0.3)) / 2, rel_tol=1e-6)


class Quadratic(nn.Module):
    """D(x) = sum(w * x^2): grad_x D = 2 w x, so R1 = mean over images of sum (2 w x)^2."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(3.0))

    def forward(self, x, y=None):
        return (self.w * x ** 2).flatten(1).sum(1)


def test_r1_by_hand_and_differentiable():
    x = torch.randn(4, 1, 2, 2)
    d = Quadratic()
    r1, logits = r1_penalty(d, x, None)
    by_hand = ((2 * 3.0 * x) ** 2).flatten(1).sum(1).mean()
    assert torch.allclose(r1, by_hand) and torch.allclose(logits, (3 * x ** 2).flatten(1).sum(1))
    r1.backward()  # d r1 / d w = mean sum 8 w x^2
    assert torch.allclose(d.w.grad, (8 * 3.0 * x ** 2).flatten(1).sum(1).mean())


def tiny_gan(**kw) -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, num_classes=3, **kw))


def batch():
    return torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])


def test_phases_touch_only_their_network():
    gan = tiny_gan(conditional=True, r1_gamma=1.0)
    obj = GANObjective(gan)
    loss, m = obj.loss(batch(), "g")
    loss.backward()
    assert all(p.grad is None for p in gan.d.parameters())
    assert all(p.grad is not None for p in gan.g.parameters())
    gan.zero_grad(set_to_none=True)
    loss, m = obj.loss(batch(), "d")
    loss.backward()
    assert all(p.grad is None for p in gan.g.parameters())
    assert float(m["r1"]) > 0 and m["images"] == 5
    assert {id(p) for p in obj.parameters("d")}.isdisjoint(id(p) for p in obj.parameters("g"))


def test_d_loss_adds_half_gamma_r1():
    gan = tiny_gan(arch="dcgan", loss="ns", r1_gamma=4.0)
    gan.eval()  # batch norm from running statistics: the same D(x) in both computations
    obj = GANObjective(gan)
    data = batch()
    torch.manual_seed(1)
    loss, _ = obj.loss(data, "d")
    x = data[0] * 2 - 1
    torch.manual_seed(1)
    fake = gan.g(torch.randn(5, 4))
    r1, real = r1_penalty(gan.d, x, None)
    assert torch.allclose(loss, d_loss_fn("ns", real, gan.d(fake)) + 2.0 * r1, atol=1e-5)


def test_conditional_sampling_and_truncation():
    gan = tiny_gan(conditional=True)
    gan.eval()
    out = gan.g.sample(6, cond=torch.tensor(2), generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    z = truncated_normal(1000, 8, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # redrawn, not clamped to the edges



def test_g_phase_reuses_the_d_phase_fakes():
    """One G forward per step: the G phase scores the D phase's fakes (same z and classes)."""
    gan = tiny_gan(conditional=True)
    gan.d.eval()  # spectral norm's power iteration frozen: every D call sees the same weights
    obj = GANObjective(gan)
    data = batch()
    torch.manual_seed(3)
    obj.loss(data, "d")
    loss, _ = obj.loss(data, "g")
    torch.manual_seed(3)
    z, fy = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert torch.allclose(loss, -gan.d(gan.g(z, fy), fy).mean(), atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in gan.g.parameters())
    assert all(p.grad is None for p in gan.d.parameters())
    torch.manual_seed(3)
    obj.loss(data, "d")
    other = (data[0].clone(), data[1])  # another batch than the D phase's: new fakes
    assert not torch.allclose(obj.loss(other, "g")[0], loss)


def test_sn_d_phase_scores_real_and_fake_in_one_pass():
    """The concatenated [real; fake] pass pairs each image with its own class."""
    gan = tiny_gan(conditional=True)
    gan.d.eval()
    obj = GANObjective(gan)
    (x, y) = data = batch()
    torch.manual_seed(5)
    loss, m = obj.loss(data, "d")
    torch.manual_seed(5)
    z, fy = torch.randn(5, 4), torch.randint(0, 3, (5,))
    real, fake = gan.d(x * 2 - 1, y), gan.d(gan.g(z, fy), fy)
    assert torch.allclose(loss, d_loss_fn("hinge", real, fake), atol=1e-6)
    assert torch.allclose(m["real"], real.mean(), atol=1e-6) and torch.allclose(m["fake"], fake.mean(), atol=1e-6)
