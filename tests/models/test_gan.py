"""The GAN's generator options: conditional batch norm (model.g_cond=cbn) by hand, shapes, and
that the class reaches G through it."""
import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.gan import GAN, GANConfig
from genforge.nn.cond_norm import ConditionalBatchNorm


def test_conditional_batch_norm_by_hand():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm(3, num_classes=2, spatial=True)
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 1, 0])
    mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + cbn.norm.eps)
    assert torch.allclose(cbn(x, y), normed, atol=1e-5)  # initialised as plain batch norm
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.tensor([[0.5, 0.0, -1.0], [1.0, 2.0, 0.0]]))
        cbn.beta.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]]))
    gain = 1 + cbn.gamma.weight[y].view(4, 3, 1, 1)
    assert torch.allclose(cbn(x, y), gain * normed + cbn.beta.weight[y].view(4, 3, 1, 1), atol=1e-5)
    flat = ConditionalBatchNorm(3, num_classes=2, spatial=False)
    assert flat(torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])).shape == (5, 3)


def test_cbn_generator_shapes_and_uses_the_class():
    torch.manual_seed(0)
    gan = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, num_classes=3,
                        conditional=True, g_cond="cbn"))
    assert gan.g.embed is None and sum(isinstance(m, ConditionalBatchNorm) for m in gan.g.modules()) == 2
    z, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    assert gan.g(z, y).shape == (6, 1, 8, 8)
    with torch.no_grad():  # a class-1 gain on the first norm changes only class 1's images
        gan.g.net[1].gamma.weight[1].fill_(3.0)
    gan.g.eval()
    a, b = gan.g(z, y), gan.g(z, torch.tensor([0, 0, 2, 0, 0, 2]))
    assert torch.allclose(a[[0, 2, 3, 5]], b[[0, 2, 3, 5]]) and not torch.allclose(a[[1, 4]], b[[1, 4]])


def test_both_conditions_g_twice():
    gan = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, num_classes=3,
                        conditional=True, g_cond="both"))
    assert gan.g.embed is not None and gan.g.net[0].in_features == 8  # z beside its class embedding
    assert sum(isinstance(m, ConditionalBatchNorm) for m in gan.g.modules()) == 2
    assert gan.g(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])).shape == (6, 1, 8, 8)


def test_bad_g_cond_is_a_config_error():
    with pytest.raises(ConfigError, match="model.g_cond"):
        GANConfig(g_cond="film")
