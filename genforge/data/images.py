"""Image readers: IDX files (the MNIST layout, gzip or not), image folders (class = sub-folder),
`.npz` arrays, and the embedded defaults that need no network: scikit-learn's `load_digits` and
glyphs genforge renders from the fonts matplotlib ships (characters x fonts x styles).

Every reader returns an ImageSet: uint8 pixels (N, C, H, W), int64 labels (N,), class names.
IDX format: http://yann.lecun.com/exdb/mnist/ (big-endian header: 0, 0, dtype code, ndim, dims).
"""
from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genforge.errors import DataError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GLYPH_FONTS = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
               "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
               "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
               "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
               "cmr10", "cmss10", "cmtt10", "cmb10", "cmti10")
GLYPH_STYLES = tuple((angle, scale) for angle in (-8, 0, 8) for scale in (0.75, 0.95))  # rotation (deg), size


@dataclass
class ImageSet:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64; -1 where unlabelled
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx: np.ndarray) -> ImageSet:
        return ImageSet(self.images[idx], self.labels[idx], self.class_names)


# --- IDX -----------------------------------------------------------------------------------

def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not). DataError names the file and
    what is wrong: bad magic, unknown dtype code, or a data length that does not fit the header."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: unreadable IDX file ({e.__class__.__name__}: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (expected magic bytes 00 00 <dtype> <ndim>, got {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02x}; expected one of "
                        f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_DTYPES[code])
    want = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != want:
        raise DataError(f"{path}: IDX header says shape {dims} ({want} bytes of data), file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_pair(images: Path, labels: Path | None) -> ImageSet:
    x = read_idx(images)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 images of shape (N, rows, cols), got {x.dtype} {x.shape}")
    y = np.full(len(x), -1, np.int64)
    if labels is not None:
        y = read_idx(labels).astype(np.int64)
        if y.shape != (len(x),):
            raise DataError(f"{labels}: {y.shape[0] if y.ndim else 0} labels of shape {y.shape} for {len(x)} images in {images}")
    n = int(y.max()) + 1 if (y >= 0).any() else 0
    return ImageSet(x[:, None], y, [str(i) for i in range(n)])


def find_idx(folder: Path, split: str) -> tuple[Path, Path | None] | None:
    """(images, labels) of an MNIST-layout folder: train-* or t10k-* files, gzip or not."""
    prefix = "train" if split == "train" else "t10k"
    images = [p for ext in ("", ".gz") if (p := folder / f"{prefix}-images-idx3-ubyte{ext}").is_file()]
    labels = [p for ext in ("", ".gz") if (p := folder / f"{prefix}-labels-idx1-ubyte{ext}").is_file()]
    return (images[0], labels[0] if labels else None) if images else None


# --- folders, npz ----------------------------------------------------------------------------

def read_folder(folder: Path, channels: int = 0, size: int = 0, on_bad: str = "error") -> ImageSet:
    """PNG/JPEG/... files under folder; the sub-folder names are the classes (none: unlabelled).
    A file PIL cannot read raises DataError naming it, or with on_bad="skip" is logged to stderr."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    groups = [(i, sorted(image_files(d))) for i, d in enumerate(subdirs)] or [(-1, sorted(image_files(folder)))]
    images, labels, skipped = [], [], 0
    for label, files in groups:
        for f in files:
            try:
                arr = read_image(f, channels, size)
            except DataError as e:
                if on_bad != "skip":
                    raise DataError(f"{e}; fix or remove it, or set data.on_bad_image=skip") from None
                print(f"genforge: skipping unreadable image {f} ({e.__cause__.__class__.__name__})", file=sys.stderr)
                skipped += 1
                continue
            check_shape(arr, images[0] if images else arr, f, "data.image_size")
            images.append(arr)
            labels.append(label)
    if not images:
        raise DataError(f"{folder}: no readable images ({', '.join(IMAGE_SUFFIXES)}) found"
                        + (f" ({skipped} skipped)" if skipped else ""))
    names = [d.name for d in subdirs]
    return ImageSet(np.stack(images), np.array(labels, np.int64), names)


def image_files(folder: Path, recursive: bool = False):
    """The image files directly in folder (or anywhere below it, with recursive)."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    return (p for p in files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(file: Path, channels: int = 0, size: int = 0) -> np.ndarray:
    """(C, H, W) uint8 of one image file, resized to size x size when size > 0; channels=0 keeps a
    grey image grey and makes any other RGB. DataError naming the file when PIL cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im.load()
            return to_array(im, channels or (1 if im.mode in ("L", "1", "I;16", "I", "LA") else 3), size)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{file}: unreadable image ({e.__class__.__name__}: {e})") from e  # the cause names the error


def check_shape(arr: np.ndarray, first: np.ndarray, file: Path, setting: str) -> None:
    """DataError naming file when its (C, H, W) image differs in shape from the first one read."""
    if arr.shape != first.shape:
        raise DataError(f"{file}: image of shape {arr.shape[1:]} x{arr.shape[0]} channels, the first one was "
                        f"{first.shape[1:]} x{first.shape[0]}; set {setting} to resize all of them")


def to_array(im, channels: int, size: int) -> np.ndarray:
    """A PIL image as (C, H, W) uint8, grey (channels=1) or RGB, resized to size x size when size > 0."""
    im = im.convert("L" if channels == 1 else "RGB")
    if size:
        im = im.resize((size, size), resample=3)  # bicubic
    arr = np.asarray(im, np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def read_npz(path: Path) -> ImageSet:
    """An .npz with images under `x` or `images` ((N, H, W), (N, H, W, C) or (N, C, H, W); uint8,
    or floats in [0, 1]) and optional labels under `y` or `labels`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable .npz ({e.__class__.__name__}: {e})") from None
    x = arrays.get("x", arrays.get("images"))
    if x is None:
        raise DataError(f"{path}: no image array; expected a key 'x' or 'images' (found {sorted(arrays)})")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{path}: images of shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W), C 1 or 3")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: images of dtype {x.dtype}; expected uint8, or floats in [0, 1]")
        x = np.round(x * 255).astype(np.uint8)
    y = arrays.get("y", arrays.get("labels"))
    y = np.full(len(x), -1, np.int64) if y is None else np.asarray(y).astype(np.int64)
    if y.shape != (len(x),):
        raise DataError(f"{path}: labels of shape {y.shape} for {len(x)} images")
    n = int(y.max()) + 1 if len(y) and y.max() >= 0 else 0
    return ImageSet(np.ascontiguousarray(x), y, [str(i) for i in range(n)])


# --- embedded defaults -------------------------------------------------------------------------

def load_digits_set() -> ImageSet:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16, shipped with the package)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    return ImageSet(x, d.target.astype(np.int64), [str(i) for i in range(10)])


def render_glyphs(chars: str = "0123456789", size: int = 28) -> ImageSet:
    """Each character in each of matplotlib's bundled fonts and each style (rotation, scale):
    len(chars) x 21 x 6 white-on-black images labelled by character."""
    from matplotlib import get_data_path
    from PIL import Image, ImageDraw, ImageFont

    font_dir = Path(get_data_path()) / "fonts" / "ttf"
    images, labels = [], []
    for name in GLYPH_FONTS:
        for angle, scale in GLYPH_STYLES:
            font = ImageFont.truetype(str(font_dir / f"{name}.ttf"), int(64 * scale))
            for label, ch in enumerate(chars):
                canvas = Image.new("L", (96, 96), 0)
                draw = ImageDraw.Draw(canvas)
                left, top, right, bottom = draw.textbbox((0, 0), ch, font=font)
                draw.text(((96 - right - left) / 2, (96 - bottom - top) / 2), ch, fill=255, font=font)
                glyph = canvas.rotate(angle, resample=Image.BILINEAR).crop((8, 8, 88, 88))
                images.append(np.asarray(glyph.resize((size, size), Image.LANCZOS), np.uint8)[None])
                labels.append(label)
    return ImageSet(np.stack(images), np.array(labels, np.int64), list(chars))
