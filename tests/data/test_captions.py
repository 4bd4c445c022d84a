"""Captioned image folders (metadata.jsonl, .txt beside images), .npz with captions, each bad
input's message, and template captions for labelled sets."""
import json

import numpy as np
import pytest
from PIL import Image

from genforge.data.captions import article, label_captions, read_captioned
from genforge.errors import DataError


def write_png(path, value, size=(6, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(path)


def metadata_folder(tmp_path, rows, images=("a.png", "b.png")):
    for i, name in enumerate(images):
        write_png(tmp_path / name, 40 * i + 10)
    (tmp_path / "metadata.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return tmp_path


def test_metadata_jsonl_text_and_caption_keys(tmp_path):
    folder = metadata_folder(tmp_path, [{"file_name": "a.png", "text": "a red thing"},
                                        {"file_name": "b.png", "caption": " a green thing "}])
    x, captions = read_captioned(folder)
    assert x.dtype == np.uint8 and x.shape == (2, 4, 6, 3)  # (N, H, W, C)
    assert captions == ["a red thing", "a green thing"]
    assert x[0, 0, 0].tolist() == [10, 245, 7] and x[1, 0, 0].tolist() == [50, 205, 7]


def test_metadata_in_sub_folders(tmp_path):
    folder = metadata_folder(tmp_path, [{"file_name": "train/a.png", "text": "one"}], images=("train/a.png",))
    x, captions = read_captioned(folder)
    assert x.shape == (1, 4, 6, 3) and captions == ["one"]


def test_txt_captions_beside_images(tmp_path):
    write_png(tmp_path / "cat.png", 100)
    write_png(tmp_path / "sub" / "dog.jpg", 200)
    (tmp_path / "cat.png").with_suffix(".txt").write_text("a cat\n")
    (tmp_path / "sub" / "dog.txt").write_text("a dog")
    x, captions = read_captioned(tmp_path)
    assert captions == ["a cat", "a dog"] and x.shape == (2, 4, 6, 3)


def test_resize_and_channels(tmp_path):
    folder = metadata_folder(tmp_path, [{"file_name": "a.png", "text": "x"}, {"file_name": "b.png", "text": "y"}])
    x, _ = read_captioned(folder, image_size=8, channels=1)
    assert x.shape == (2, 8, 8, 1)
    x, _ = read_captioned(folder, image_size=5, channels=3)
    assert x.shape == (2, 5, 5, 3)


def test_grey_images_stay_grey_unless_asked(tmp_path):
    write_png(tmp_path / "g.png", 90, mode="L")
    (tmp_path / "g.txt").write_text("grey")
    assert read_captioned(tmp_path)[0].shape == (1, 4, 6, 1)
    x, _ = read_captioned(tmp_path, channels=3)
    assert x.shape == (1, 4, 6, 3) and x[0, 0, 0].tolist() == [90, 90, 90]


def test_different_sizes_need_image_size(tmp_path):
    write_png(tmp_path / "a.png", 1, size=(4, 4))
    write_png(tmp_path / "b.png", 1, size=(5, 5))
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    with pytest.raises(DataError, match=r"b\.png: image of shape .* set image_size"):
        read_captioned(tmp_path)
    assert read_captioned(tmp_path, image_size=4)[0].shape == (2, 4, 4, 3)


def test_npz_with_captions(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, captions=np.array(["one", "two", "three"]))
    x, captions = read_captioned(tmp_path / "d.npz")
    assert np.array_equal(x, images) and captions == ["one", "two", "three"]
    x, _ = read_captioned(tmp_path / "d.npz", image_size=4, channels=1)
    assert x.shape == (3, 4, 4, 1)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, 4, 4), np.uint8)}, r"d\.npz: no 'captions' array"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "captions": np.array(["a"])}, r"d\.npz: captions of .* expected 2 strings"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "captions": np.array(["a", " "])}, r"d\.npz: empty caption at index 1"),
])
def test_npz_bad_input(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_captioned(tmp_path / "d.npz")


def bad_cases(tmp_path):
    """(name, build the folder, the expected message) for each kind of bad input."""
    def not_json():
        metadata_folder(tmp_path, [{"file_name": "a.png", "text": "ok"}, "{not json", {"file_name": "b.png", "text": "b"}])

    def missing_image():
        metadata_folder(tmp_path, [{"file_name": "a.png", "text": "ok"}, {"file_name": "gone.png", "text": "lost"},
                                   {"file_name": "b.png", "text": "b"}])

    def empty_caption():
        metadata_folder(tmp_path, [{"file_name": "a.png", "text": "ok"}, {"file_name": "b.png", "text": "  "}])

    def unreadable():
        metadata_folder(tmp_path, [{"file_name": "a.png", "text": "ok"}, {"file_name": "b.png", "text": "b"}])
        (tmp_path / "b.png").write_bytes(b"not a png")

    def orphan_txt():
        write_png(tmp_path / "a.png", 1)
        (tmp_path / "a.txt").write_text("ok")
        (tmp_path / "ghost.txt").write_text("a caption without its image")

    def empty_txt():
        write_png(tmp_path / "a.png", 1)
        write_png(tmp_path / "b.png", 1)
        (tmp_path / "a.txt").write_text("ok")
        (tmp_path / "b.txt").write_text("\n")

    def image_without_caption():
        write_png(tmp_path / "a.png", 1)
        write_png(tmp_path / "b.png", 1)
        (tmp_path / "a.txt").write_text("ok")

    return {
        "not_json": (not_json, r"metadata\.jsonl:2: metadata line is not JSON"),
        "missing_image": (missing_image, r"metadata\.jsonl:2: caption without its image \(no file .*gone\.png\)"),
        "empty_caption": (empty_caption, r"metadata\.jsonl:2: empty caption for .*b\.png"),
        "unreadable": (unreadable, r"b\.png: unreadable image"),
        "orphan_txt": (orphan_txt, r"ghost\.txt: caption without its image"),
        "empty_txt": (empty_txt, r"b\.txt: empty caption"),
        "image_without_caption": (image_without_caption, r"b\.png: image without a caption"),
    }


@pytest.mark.parametrize("case", ["not_json", "missing_image", "empty_caption", "unreadable", "orphan_txt",
                                  "empty_txt", "image_without_caption"])
def test_each_bad_input_is_one_line_naming_the_file_or_is_skipped_loudly(tmp_path, capsys, case):
    build, message = bad_cases(tmp_path)[case]
    build()
    with pytest.raises(DataError, match=message) as e:
        read_captioned(tmp_path)
    assert "\n" not in str(e.value)
    x, captions = read_captioned(tmp_path, on_bad="skip")
    assert captions[0] == "ok" and len(x) == len(captions) >= 1
    err = capsys.readouterr().err
    assert "genforge: skipping" in err and len(err.strip().splitlines()) == 1


def test_nothing_left_and_no_such_path(tmp_path):
    (tmp_path / "ghost.txt").write_text("x")
    with pytest.raises(DataError, match="no captioned images"):
        read_captioned(tmp_path, on_bad="skip")
    with pytest.raises(DataError, match="no such folder"):
        read_captioned(tmp_path / "missing")


def test_label_captions_deterministic_by_seed():
    names = [str(i) for i in range(10)]
    labels = np.arange(10).repeat(5)
    a = label_captions(labels, names, seed=0)
    assert a == label_captions(labels, names, seed=0)
    assert a != label_captions(labels, names, seed=1)
    assert len(a) == 50 and len(set(a)) > 20
    for label, cap in zip(labels, a):
        words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        assert cap.endswith((f" {label}", f" {words[label]}")) or cap == article(str(label))
    assert label_captions([3], names, seed=0) == ["a handwritten 3"]  # pinned


def test_label_captions_words_and_letters():
    fashion = ["T-shirt/top", "Trouser", "Ankle boot"]
    caps = label_captions([2] * 20 + [1] * 20, fashion, seed=0)
    assert all(c.endswith("an ankle boot") for c in caps[:20])
    assert all(c.endswith("a trouser") for c in caps[20:])
    caps = set(label_captions([0] * 40, ["A"], seed=0))
    assert "the letter A" in caps and "a photo of an A" in caps


def test_label_captions_bad_label():
    with pytest.raises(DataError, match="label -1 at index 1 has no class name"):
        label_captions([0, -1], ["0"], seed=0)


def test_article():
    assert [article(w) for w in ("orange square", "8", "3", "F", "B", "18", "red 8")] == \
        ["an orange square", "an 8", "a 3", "an F", "a B", "an 18", "a red 8"]
