"""The class-conditional VAE (model.conditional=true): p(x|z, y) makes the class it is asked for."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genforge.errors import ConfigError, GenforgeError
from genforge.models.vae import VAE, VAEConfig
from genforge.objectives.vae import VAEObjective, iwae_nll
from genforge.sample.balanced import conditional_samples


def tiny(conditional: bool = True, arch: str = "conv") -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(arch=arch, image_size=8, channels=1, latent_dim=4, hidden=32, width=8, num_classes=2,
                         conditional=conditional))


def halves(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 lights the left half of an 8x8 image, class 1 the right half."""
    y = torch.arange(n) % 2
    x = torch.zeros(n, 1, 8, 8)
    x[y == 0, :, :, :4] = 1.0
    x[y == 1, :, :, 4:] = 1.0
    return x, y


def test_an_unconditional_vae_keeps_its_parameters_and_takes_no_class():
    plain = tiny(conditional=False)
    assert plain.config.n_cond == 0 and plain.embed is None
    assert not any(name.startswith("embed") for name in plain.state_dict())
    with pytest.raises(GenforgeError, match="takes no class"):
        conditional_samples(plain, 4, np.full(2, 0.5))


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_a_conditional_vae_learns_to_make_the_class_asked_for(arch):
    model = tiny(arch=arch)
    objective = VAEObjective(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = halves()
    for _ in range(300):
        loss, _ = objective.loss((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    images, labels = conditional_samples(model, 40, np.array([0.25, 0.75]), seed=3)
    assert torch.bincount(labels).tolist() == [10, 30]
    left = images[..., :4].flatten(1).mean(1)
    right = images[..., 4:].flatten(1).mean(1)
    made = (right > left).long()  # the half each sample lights (an unconditional model: half of them at best)
    assert (made == labels).double().mean() >= 0.9
    # the same latents under the other class light the other half
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    a, b = model.render(z, torch.zeros(8, dtype=torch.long)), model.render(z, torch.ones(8, dtype=torch.long))
    assert (a[..., :4].mean() > a[..., 4:].mean()) and (b[..., 4:].mean() > b[..., :4].mean())
    # the likelihood bound is of p(x|y): the true class explains an image better than the other one
    gen = torch.Generator().manual_seed(0)
    right_class = iwae_nll(model, x[:8], 8, gen, y=y[:8]).mean()
    wrong_class = iwae_nll(model, x[:8], 8, gen, y=1 - y[:8]).mean()
    assert right_class < wrong_class


def test_a_conditional_vae_needs_the_classes_to_decode():
    model = tiny()
    with pytest.raises(GenforgeError, match="decodes given the classes"):
        model.decode(torch.zeros(2, 4))
    assert model.sample(3).shape == (3, 1, 8, 8)  # classes 0, 1, 0 in turn
    with pytest.raises(ConfigError, match="needs labelled data with 2\\+ classes"):
        VAEConfig(image_size=8, channels=1, num_classes=1, conditional=True)
