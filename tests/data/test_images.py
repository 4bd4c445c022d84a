"""Image readers against hand-built files, each bad-input case, and exact resume of ImageBatches."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.data.image_batches import ImageBatches, ImageDataConfig, open_images, shift
from genforge.data.images import ImageSet, read_folder, read_idx, read_npz, render_glyphs
from genforge.errors import ConfigError, DataError


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


PIXELS = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reads_hand_built_file(tmp_path, compress):
    raw = idx_bytes(PIXELS)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    assert np.array_equal(out, PIXELS)


def test_idx_big_endian_int32(tmp_path):
    arr = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "a").write_bytes(idx_bytes(arr, 0x0C))
    assert read_idx(tmp_path / "a").tolist() == [1, -2, 70000]


@pytest.mark.parametrize("raw, expected", [
    (b"\x08\x03\x00\x00" + bytes(20), "not an IDX file"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + bytes(2), "unknown IDX dtype code 0x07"),
    (idx_bytes(PIXELS)[:-5], "file holds 19"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
])
def test_idx_bad_inputs_name_the_file(tmp_path, raw, expected):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=expected) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_idx_folder_uses_train_and_t10k_splits(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        x = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n, dtype=np.uint8) % 3))
    train, val = open_images(ImageDataConfig(source=str(tmp_path)))
    assert train.images.shape == (30, 1, 8, 8) and val.images.shape == (10, 1, 8, 8)
    assert train.class_names == ["0", "1", "2"] and train.labels[:4].tolist() == [0, 1, 2, 0]


def test_idx_labels_must_match_images(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(PIXELS))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="3 labels .* for 2 images"):
        open_images(ImageDataConfig(source=str(tmp_path)))


def _png(path, value, size=6, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value).save(path)


def test_folder_classes_are_subfolders(tmp_path):
    _png(tmp_path / "cat" / "a.png", 10)
    _png(tmp_path / "cat" / "b.png", 20)
    _png(tmp_path / "dog" / "c.png", 30)
    s = read_folder(tmp_path)
    assert s.class_names == ["cat", "dog"] and s.labels.tolist() == [0, 0, 1]
    assert s.images.shape == (3, 1, 6, 6) and s.images[2].max() == 30
    rgb = read_folder(tmp_path, channels=3, size=4)
    assert rgb.images.shape == (3, 3, 4, 4)


def test_folder_bad_image_error_or_skip(tmp_path, capsys):
    _png(tmp_path / "cat" / "a.png", 10)
    bad = tmp_path / "cat" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png: unreadable image") as e:
        read_folder(tmp_path)
    assert "on_bad_image=skip" in str(e.value)
    s = read_folder(tmp_path, on_bad="skip")
    assert len(s) == 1
    assert "skipping unreadable image" in capsys.readouterr().err


def test_folder_mixed_sizes_and_empty(tmp_path):
    _png(tmp_path / "a" / "1.png", 1, size=6)
    _png(tmp_path / "a" / "2.png", 1, size=7)
    with pytest.raises(DataError, match="2.png: image of shape .* set data.image_size"):
        read_folder(tmp_path)
    assert read_folder(tmp_path, size=5).images.shape == (2, 1, 5, 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable images"):
        read_folder(tmp_path / "empty")


def test_npz_layouts_and_errors(tmp_path):
    x = np.random.default_rng(0).random((5, 4, 4, 3))
    np.savez(tmp_path / "a.npz", images=x, labels=np.arange(5) % 2)
    s = read_npz(tmp_path / "a.npz")
    assert s.images.shape == (5, 3, 4, 4) and s.images.dtype == np.uint8 and s.class_names == ["0", "1"]
    np.savez(tmp_path / "b.npz", pics=x)
    with pytest.raises(DataError, match="b.npz: no image array"):
        read_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=x * 300)
    with pytest.raises(DataError, match="c.npz: images of dtype float64"):
        read_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4))
    with pytest.raises(DataError, match="d.npz: labels of shape"):
        read_npz(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="e.npz: unreadable"):
        read_npz(tmp_path / "e.npz")


def test_sources_bad_names():
    with pytest.raises(DataError, match="nowhere: no such file"):
        open_images(ImageDataConfig(source="nowhere"))
    with pytest.raises(ConfigError, match="unknown builtin"):
        open_images(ImageDataConfig(source="builtin:cifar"))
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        ImageDataConfig(augment=["rotate"])


def test_embedded_digits_and_glyphs():
    train, val = open_images(ImageDataConfig(source="builtin:digits", image_size=16))
    assert len(train) + len(val) == 1797 and train.images.shape[1:] == (1, 16, 16)
    glyphs = render_glyphs("AB", size=16)
    assert glyphs.images.shape == (2 * 21 * 6, 1, 16, 16) and glyphs.class_names == ["A", "B"]
    assert np.bincount(glyphs.labels).tolist() == [126, 126]
    assert glyphs.images.reshape(len(glyphs), -1).max(1).min() > 128  # every glyph drew ink


def _set(n=10):
    x = np.arange(n, dtype=np.uint8).repeat(16).reshape(n, 1, 4, 4)
    return ImageSet(x, np.arange(n), [str(i) for i in range(n)])


def test_batches_cover_each_epoch_and_resume_exactly():
    b = ImageBatches(_set(), _set(4), batch_size=3, seed=5, augment=[shift])
    epoch = torch.cat([next(b)[1] for _ in range(3)])  # 3 batches of 3 of 10 images
    assert len(set(epoch.tolist())) == 9
    state = b.state_dict()
    after = [next(b) for _ in range(4)]
    again = ImageBatches(_set(), _set(4), batch_size=3, seed=5, augment=[shift])
    again.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(after, [next(again) for _ in range(4)]):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    ev = b.eval_batches(5)
    assert [len(x) for x, _ in ev] == [3, 1] and torch.equal(ev[0][0], b.eval_batches(1)[0][0])


def test_batches_need_enough_images():
    with pytest.raises(DataError, match="fewer than data.batch_size=32"):
        ImageBatches(_set(), _set(), batch_size=32)
