"""The clip family (models/clip.py, objectives/clip.py, eval/clipscore.py): the symmetric InfoNCE
loss against a hand-computed value, an order-aware text tower, a tiny model that overfits a
batch, a run of the shipped recipe through the CLI with its checkpoint, CLIPScore and its bad
inputs, and the swap test on held-out scenes."""
import math

import pytest
import torch

from genforge.cli import main
from genforge.data import scenes
from genforge.data.caption_batches import encode_captions
from genforge.data.tokenizer import train_tokenizer
from genforge.errors import CheckpointError, ConfigError, DataError
from genforge.eval import clipscore
from genforge.models.clip import CLIP, CLIPConfig
from genforge.objectives.clip import CLIPObjective, info_nce, relation_ids, same_captions, swapped
from tests.test_checkpoint import family_checkpoint


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
    # hard negatives: extra captions each image is scored against (not the other way round)
    hard = torch.tensor([[0.9, -math.inf], [2.5, 0.0], [-1.0, 1.0]])
    rows = [r + h for r, h in zip(logits.tolist(), hard.tolist())]
    cols = logits.T.tolist()
    want = (sum(ce(r, k) for k, r in enumerate(rows)) + sum(ce(c, k) for k, c in enumerate(cols))) / 6
    assert info_nce(logits, hard=hard).item() == pytest.approx(want, rel=1e-6)


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


WORDS = ["a red circle above a blue square", "a blue square to the left of a green 3", "two green triangles",
         "a large red circle"]


def test_swapped_captions_swap_subject_and_object_around_the_relation():
    tok = train_tokenizer("words", WORDS)
    pad = tok.eot_id
    ids = torch.from_numpy(encode_captions(tok, WORDS, 10))
    neg, has = swapped(ids, pad, relation_ids(tok))
    assert has.tolist() == [True, True, False, False]
    got = [tok.decode([t for t in row if t != pad]) for row in neg.tolist()]
    assert got[:2] == ["a blue square above a red circle", "a green 3 to the left of a blue square"]
    assert torch.equal(neg[2:], ids[2:])
    assert relation_ids(train_tokenizer("words", ["two green triangles"])) == []  # no relation words: plain CLIP


def relation_batch(n: int, size: int = 16):
    images, caps, specs = scenes.make_scenes(400, "train", size, seed=0)
    keep = [k for k, s in enumerate(specs) if s["kind"] == "relation"
            and clipscore.swapped_caption(s) != s["caption"]][:n]
    tok = train_tokenizer("words", caps)
    ids = torch.from_numpy(encode_captions(tok, caps, 12))[keep]
    x = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).float() / 255
    return x, ids, tok, [specs[k] for k in keep]


def test_swapped_negatives_teach_the_order_of_a_batch():
    x, ids, tok, specs = relation_batch(16)
    model = tiny(text_vocab=tok.vocab_size, text_len=12, text_pad=tok.eot_id)
    objective = CLIPObjective(model)
    objective.use_tokenizer(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = objective.loss((x, ids))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    true = clipscore.clip_score(model, tok, x, [s["caption"] for s in specs])
    wrong = clipscore.clip_score(model, tok, x, [clipscore.swapped_caption(s) for s in specs])
    assert (true > wrong).all()
    with torch.no_grad():
        assert objective.evaluate([(x, ids)])["val_swap"] == 1.0


TINY = ["model.embed_dim=16", "model.width=8", "model.text_layers=1", "model.text_width=16", "model.text_heads=2",
        "data.num_scenes=256", "data.image_size=16", "data.batch_size=32", "train.max_iters=8", "train.warmup_iters=2",
        "train.eval_interval=8", "train.eval_iters=1", "train.log_interval=4", "train.device=cpu", "train.dtype=float32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip") / "run"
    assert main(["train", "clip/scenes", *TINY, f"train.out_dir={out}", "--no-progress"]) == 0
    return out


def test_the_recipe_trains_and_its_checkpoint_scores_captions(trained):
    model, tok = clipscore.load_clip(trained)
    c = model.config
    assert (c.image_size, c.channels, c.text_vocab, c.text_pad) == (16, 3, tok.vocab_size, tok.eot_id)
    images, caps, _ = scenes.make_scenes(24, "heldout", 32, seed=0)  # resized to the model's 16
    scores = clipscore.clip_score(model, tok, images, caps)
    assert scores.shape == (24,) and (scores >= 0).all() and (scores <= 100).all()
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(clipscore.clip_score(model, tok, floats, caps), scores, atol=1e-4)
    assert 0 <= clipscore.swap_accuracy(model, tok, "shapes", n=64) <= 1
    assert ",val_swap," in (trained / "metrics.csv").read_text()  # the swap accuracy of validation captions


def test_clip_score_bad_inputs_are_one_line_errors(trained, tmp_path):
    model, tok = clipscore.load_clip(trained)
    images, caps, _ = scenes.make_scenes(2, "train", 16, seed=0)
    with pytest.raises(DataError, match="2 images but 1 captions"):
        clipscore.clip_score(model, tok, images, caps[:1])
    with pytest.raises(DataError, match="'a red dragon'"):
        clipscore.clip_score(model, tok, images, [caps[0], "a red dragon"])
    with pytest.raises(DataError, match=r"images of shape \(2, 16, 16\)"):
        clipscore.clip_score(model, tok, images[..., 0], caps)
    ckpt, _ = family_checkpoint(tmp_path, "classifier")
    with pytest.raises(CheckpointError, match="CLIPScore needs a clip checkpoint"):
        clipscore.load_clip(ckpt)
