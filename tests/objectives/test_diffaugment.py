"""DiffAugment (genforge/nn/diffaugment.py) by hand, its gradients, and its use in the GAN objective."""
import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.gan import GAN, GANConfig
from genforge.nn.diffaugment import cutout, diff_augment, translate
from genforge.objectives.gan import GANObjective

GRID = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]


def test_translate_by_hand():
    out = translate(GRID.repeat(2, 1, 1, 1), torch.tensor([[1, 0], [0, -1]]))
    assert out[0, 0].tolist() == [[4, 5, 6], [7, 8, 9], [0, 0, 0]]  # out[i, j] = x[i + 1, j]
    assert out[1, 0].tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]  # out[i, j] = x[i, j - 1]


def test_cutout_by_hand():
    ones = torch.ones(2, 1, 4, 4)
    out = cutout(ones, torch.tensor([[0, 0], [2, 2]]), 2)
    assert out[0, 0].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]  # clipped at the corner
    assert out[1, 0].tolist() == [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]


def test_gradients_pass_through():
    x = GRID.clone().requires_grad_(True)
    (translate(x, torch.tensor([[1, 1]])) * 2).sum().backward()
    assert x.grad[0, 0].tolist() == [[0, 0, 0], [0, 2, 2], [0, 2, 2]]  # each source pixel used once, times 2


def test_random_parameters_stay_in_range():
    x = torch.ones(64, 1, 28, 28)
    out = diff_augment(x, ["translation"], torch.Generator().manual_seed(0))
    empty_rows = (out.sum(3) == 0).sum(2).flatten()  # rows shifted out of view, <= 28 / 8 rounded = 4
    assert empty_rows.max() == 4 and empty_rows.min() == 0
    cut = (diff_augment(x, ["cutout"], torch.Generator().manual_seed(0)) == 0).flatten(1).sum(1)
    assert cut.max() == 14 * 14 and cut.min() >= 7 * 7  # a 14x14 square, clipped to a quarter at worst
    assert torch.equal(diff_augment(x, ["translation", "cutout"], torch.Generator().manual_seed(3)),
                       diff_augment(x, ["translation", "cutout"], torch.Generator().manual_seed(3)))


def test_d_sees_real_and_fake_augmented_in_both_phases():
    torch.manual_seed(0)
    gan = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, num_classes=3,
                        diffaugment=["cutout"]))
    seen = []
    gan.d.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    obj = GANObjective(gan)
    data = torch.rand(5, 1, 8, 8) * 0.5 + 0.5, torch.tensor([0, 1, 2, 0, 1])  # no exact zeros in [-1, 1] pixels
    obj.loss(data, "d")[0].backward()
    obj.loss(data, "g")[0].backward()
    # the D phase's one pass over [real; fake] (spectral-norm D, no batch norm), then the G phase's fakes
    assert [len(x) for x in seen] == [10, 5]
    for x in seen:
        zeros = (x == 0).flatten(1).sum(1)
        assert zeros.min() >= 4 and zeros.max() <= 16  # a 4x4 cutout in each image
    assert all(p.grad is not None for p in gan.g.parameters())


def test_bad_policy_and_default_truncation():
    with pytest.raises(ConfigError, match="model.diffaugment: unknown policy 'flip'"):
        GANConfig(diffaugment=["flip"])
    torch.manual_seed(0)
    gan = GAN(GANConfig(image_size=8, channels=1, latent_dim=4, g_width=4, d_width=4, truncation=0.5)).eval()

    def draw(**kw):
        return gan.g.sample(6, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(draw(), draw(truncation=0.5))
    assert not torch.equal(draw(), draw(truncation=3.0))
