"""The VAE's residual blocks (model.blocks) and its config checks."""
import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.vae import VAE, ResBlock, VAEConfig


def conv(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(arch="conv", image_size=12, channels=1, latent_dim=3, hidden=16, width=4, **kw))


def test_no_blocks_keeps_the_parameter_names_of_older_checkpoints():
    names = {k.rsplit(".", 1)[0] for k in conv().state_dict()}
    assert names == {"encoder.0", "encoder.2", "encoder.5", "decoder.0", "decoder.2", "decoder.5", "decoder.7", "to_stats"}


def test_blocks_sit_at_each_resolution_both_ways():
    model = conv(blocks=2)
    assert sum(isinstance(m, ResBlock) for m in model.encoder) == 4  # 2 at 6x6 (width 4), 2 at 3x3 (width 8)
    assert sum(isinstance(m, ResBlock) for m in model.decoder) == 4
    widths = [m.body[1].in_channels for m in model.decoder if isinstance(m, ResBlock)]
    assert widths == [8, 8, 4, 4]
    x = torch.rand(5, 1, 12, 12)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    assert model.decode(mu).shape == (5, 1, 12, 12)
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in conv().parameters())


def test_res_block_adds_its_body_to_the_input():
    block = ResBlock(3)
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(block(x), x + block.body(x))
    with torch.no_grad():
        block.body[3].weight.zero_()
        block.body[3].bias.zero_()
    assert torch.equal(block(x), x)  # a zeroed last conv is the identity


@pytest.mark.parametrize("kw, match", [
    ({"blocks": -1}, "model.blocks >= 0"),
    ({"train_k": 0}, "model.train_k >= 1"),
    ({"train_k": 3, "beta": 0.5}, "model.beta must be 1"),
])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        VAEConfig(image_size=8, channels=1, **kw)
