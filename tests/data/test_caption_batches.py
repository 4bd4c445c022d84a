"""Caption data for text-to-image training (data/caption_batches.py): the sources a recipe reads,
the word tokenizer's errors, and a shipped recipe training on a user's own captioned images."""
import numpy as np
import pytest
from PIL import Image

from genforge.cli import main
from genforge.data.caption_batches import (
    CaptionDataConfig,
    caption_tokenizer,
    encode_captions,
    encode_prompt,
    open_captioned,
    pad_id,
)
from genforge.data.tokenizer import train_tokenizer
from genforge.errors import ConfigError, DataError


def test_scenes_give_train_and_validation_from_the_training_compositions():
    train, val = open_captioned(CaptionDataConfig(num_scenes=200, batch_size=16))
    assert train.images.shape == (200, 3, 32, 32) and len(val) == 16 and train.specs and val.specs
    assert not any(s["heldout"] for s in train.specs + val.specs)
    assert not np.array_equal(train.images[:16], val.images)
    with pytest.raises(ConfigError, match="unknown scene vocabulary"):
        open_captioned(CaptionDataConfig(source="builtin:scenes:animals"))


def test_labelled_images_get_template_captions():
    train, val = open_captioned(CaptionDataConfig(source="builtin:digits", val_fraction=0.1))
    assert len(train) + len(val) == 1797 and train.images.shape[1:] == (1, 8, 8)
    from genforge.data.captions import DIGIT_WORDS

    names = [str(d) for d in range(10)] + list(DIGIT_WORDS)
    assert all(any(n in c.split() for n in names) for c in train.captions)  # each names its digit
    assert len(set(train.captions)) > 20  # templates vary


def test_words_tokenizer_pads_and_names_what_it_cannot_read():
    tok = train_tokenizer("words", ["a red circle above a blue square", "two green triangles"])
    ids = encode_captions(tok, ["a red circle", "two green triangles"], 6)
    assert ids.shape == (2, 6) and (ids[0, 3:] == pad_id(tok)).all() and (ids[:, 0] != pad_id(tok)).all()
    assert tok.decode(ids[0, :3]) == "a red circle"
    for text, words in (("a red zebra", "word 'zebra'"), ("", "empty text"), ("red " * 7, "7 tokens, more than")):
        with pytest.raises(DataError, match=words):
            encode_prompt(tok, text, 6)


def _folder(root, n=12, size=20, mode="L"):
    rng = np.random.default_rng(0)
    root.mkdir()
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size) + (() if mode == "L" else (3,)), dtype=np.uint8),
                        mode).save(root / f"{i}.png")
        lines.append(f'{{"file_name": "{i}.png", "text": "a {"bright" if i % 2 else "dark"} blob number {i}"}}')
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_a_shipped_recipe_trains_on_a_users_captioned_folder_with_no_other_change(tmp_path):
    folder = _folder(tmp_path / "mine")
    out = tmp_path / "run"
    args = ["t2i/scenes_dit", f"data.source={folder}", "data.image_size=16", "data.batch_size=4",
            "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.text_width=32", "model.text_heads=2",
            "model.text_layers=1", "train.max_iters=2", "train.eval_interval=100", "train.device=cpu",
            "train.dtype=float32", f"train.out_dir={out}", "--no-progress"]
    assert main(["train", *args]) == 0
    assert main(["generate", str(out), "--prompt", "a bright blob number 3", "--num-samples", "2", "--steps", "2",
                 "--out", str(tmp_path / "g.png")]) == 0


def test_a_save_to_disk_dataset_with_image_and_text_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)) for _ in range(6)]
    ds = datasets.Dataset.from_dict({"image": images, "text": [f"picture {i}" for i in range(6)]},
                                    features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    train, val = open_captioned(CaptionDataConfig(source=str(tmp_path / "saved"), image_size=8, val_fraction=0.2))
    assert len(train) + len(val) == 6 and train.images.shape[1:] == (3, 8, 8)
    assert sorted(train.captions + val.captions) == [f"picture {i}" for i in range(6)]
    tok = caption_tokenizer(CaptionDataConfig(), train.captions + val.captions)
    assert tok.kind == "words"
    bad = datasets.Dataset.from_dict({"image": images[:2], "label": [0, 1]},
                                     features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    bad.save_to_disk(str(tmp_path / "nolabel"))
    with pytest.raises(DataError, match="expected an image column .* and a text column"):
        open_captioned(CaptionDataConfig(source=str(tmp_path / "nolabel")))
