"""Captioned images for text-to-image training: readers of the layouts users already have, and
template captions for labelled image sets.

Layouts `read_captioned` reads:
- a folder in the Hugging Face image-folder layout: `metadata.jsonl` at its root, one JSON object a
  line with `file_name` (relative to the folder) and `text` (or `caption`)
  (https://huggingface.co/docs/datasets/image_dataset#imagefolder);
- a folder of images with a `.txt` caption beside each one (`cat.png` + `cat.txt`), searched
  recursively;
- an `.npz` with `images` (or `x`) and `captions`, a string array of the same length;
- a `datasets` save_to_disk folder (a Dataset, or a DatasetDict whose `train` split is read) with
  an image column (`image`, or the first column of the Image feature type) and a text column
  (`text` or `caption`); reading it needs the `datasets` package (genforge's `data` extra).

Bad input is a one-line DataError naming the file: a caption without its image, an image without
its caption, an unreadable image, an empty caption, a metadata line that is not JSON. With
on_bad="skip" each is logged to stderr and skipped, never silently.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genforge.data.images import IMAGE_SUFFIXES, check_shape, image_files, read_image, read_npz, to_array
from genforge.data.paths import inside
from genforge.errors import DataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("a photo of {a}", "a picture of {a}", "an image of {a}", "a drawing of {a}", "{a}")
DIGIT_TEMPLATES = ("the digit {word}", "a handwritten {name}", "the number {word}")
LETTER_TEMPLATES = ("the letter {name}", "a written {name}")
_VOWEL_LETTERS = set("AEFHILMNORSX")  # letters whose names start with a vowel sound: "an F"


def article(word: str) -> str:
    """`word` with "a" or "an" before it: "an orange square", "an 8", "an F", "a 3"."""
    if len(word) == 1 and word.isalpha():
        vowel = word.upper() in _VOWEL_LETTERS
    elif word[:1].isdigit():
        vowel = word.startswith("8") or word.split()[0] in ("11", "18")
    else:
        vowel = word[:1].lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {word}"


# --- template captions for labelled sets -------------------------------------------------------

def label_captions(labels: Sequence[int] | np.ndarray, class_names: Sequence[str], seed: int = 0) -> list[str]:
    """One caption per label from a few templates ("a photo of a 3", "the digit three", "a photo
    of a trouser", "the letter A"), the template drawn from a generator seeded by `seed`. Raises
    DataError for a label outside class_names (an unlabelled -1 included)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, label in enumerate(np.asarray(labels).tolist()):
        if not 0 <= label < len(class_names):
            raise DataError(f"label {label} at index {i} has no class name (class_names has {len(class_names)})")
        out.append(_caption(str(class_names[label]), rng))
    return out


def _caption(name: str, rng: np.random.Generator) -> str:
    if len(name) == 1 and name.isdigit():
        templates = TEMPLATES + DIGIT_TEMPLATES
    elif len(name) == 1 and name.isalpha():
        templates = TEMPLATES + LETTER_TEMPLATES
    else:
        name = name.lower()  # "Ankle boot" -> "an ankle boot"
        templates = TEMPLATES
    t = templates[rng.integers(len(templates))]
    word = DIGIT_WORDS[int(name)] if name.isdigit() and len(name) == 1 else name
    return t.format(a=article(name), name=name, word=word)


# --- readers ---------------------------------------------------------------------------------

def read_captioned(path: str | Path, image_size: int = 0, channels: int = 0,
                   on_bad: str = "error") -> tuple[np.ndarray, list[str]]:
    """(images uint8 (N, H, W, C), captions) of a captioned folder or .npz (see the module
    docstring), resized to image_size x image_size when image_size > 0, grey (channels=1) or RGB
    (channels=3); channels=0 keeps grey images grey and makes the rest RGB. Raises DataError
    naming the file at fault; with on_bad="skip", bad items are logged to stderr and skipped."""
    path = Path(path)
    if on_bad not in ("error", "skip"):
        raise DataError(f"on_bad={on_bad!r}: expected 'error' or 'skip'")
    if channels not in (0, 1, 3):
        raise DataError(f"channels={channels}: expected 0 (as stored), 1 or 3")
    if path.is_file() and path.suffix == ".npz":
        return _read_npz(path, image_size, channels, on_bad)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder or .npz file of captioned images")
    if _is_saved_dataset(path):
        return _read_saved_dataset(path, image_size, channels, on_bad)
    meta = path / "metadata.jsonl"
    pairs = _metadata_pairs(path, meta, on_bad) if meta.is_file() else _txt_pairs(path, on_bad)
    images, captions = [], []
    for file, caption in pairs:
        try:
            arr = read_image(file, channels, image_size)  # (C, H, W)
        except DataError as e:
            _bad(str(e), on_bad)
            continue
        check_shape(arr, images[0] if images else arr, file, "image_size")
        images.append(arr)
        captions.append(caption)
    if not images:
        raise DataError(f"{path}: no captioned images found")
    return np.stack(images).transpose(0, 2, 3, 1), captions  # (N, H, W, C)


def is_captioned(path: Path) -> bool:
    """Whether path holds captioned images in a layout read_captioned reads (rather than, say, a
    folder of class sub-folders)."""
    if path.is_file():
        if path.suffix != ".npz":
            return False
        try:
            with np.load(path, allow_pickle=False) as z:
                return "captions" in z.files
        except (OSError, ValueError):
            return False
    if not path.is_dir():
        return False
    return (path / "metadata.jsonl").is_file() or _is_saved_dataset(path) or next(path.rglob("*.txt"), None) is not None


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file() and
                                                      (path / "dataset_info.json").is_file())


def _read_saved_dataset(path: Path, image_size: int, channels: int, on_bad: str) -> tuple[np.ndarray, list[str]]:
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path}: a save_to_disk dataset; reading it needs `pip install datasets` "
                        "(genforge's data extra)") from None
    from genforge.data.readers import check_hf_paths

    check_hf_paths(path)  # the files its json names lie inside it
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"{path}: a DatasetDict without a 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    image_col = "image" if "image" in ds.column_names else next(
        (n for n, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    text_col = next((n for n in ("text", "caption") if n in ds.column_names), None)
    if image_col is None or text_col is None:
        raise DataError(f"{path}: columns {ds.column_names}; expected an image column ('image' or an Image feature) "
                        "and a text column ('text' or 'caption')")
    images, texts = [], []
    for i, row in enumerate(ds):
        where = f"{path} row {i}"
        caption, im = row[text_col], row[image_col]
        if not isinstance(caption, str) or not caption.strip():
            _bad(f"{where}: empty caption (column {text_col!r})", on_bad)
            continue
        if not hasattr(im, "convert"):
            _bad(f"{where}: column {image_col!r} holds {type(im).__name__}, not an image", on_bad)
            continue
        arr = to_array(im, channels or (1 if im.mode in ("L", "1") else 3), image_size)
        check_shape(arr, images[0] if images else arr, Path(where), "image_size")
        images.append(arr)
        texts.append(caption.strip())
    if not images:
        raise DataError(f"{path}: no captioned images found")
    return np.stack(images).transpose(0, 2, 3, 1), texts


def _bad(message: str, on_bad: str) -> None:
    if on_bad != "skip":
        raise DataError(message)
    print(f"genforge: skipping {message}", file=sys.stderr)


def _metadata_pairs(folder: Path, meta: Path, on_bad: str) -> list[tuple[Path, str]]:
    pairs, listed = [], set()
    for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{meta}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            _bad(f"{where}: metadata line is not JSON ({e.msg})", on_bad)
            continue
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            _bad(f"{where}: metadata line has no string 'file_name'", on_bad)
            continue
        try:
            inside(folder, row["file_name"], f"{where}: file_name")  # never an image outside the folder
        except DataError as e:
            _bad(str(e), on_bad)
            continue
        file = folder / row["file_name"]
        listed.add(file.resolve())
        caption = row.get("text", row.get("caption"))
        if not file.is_file():
            _bad(f"{where}: caption without its image (no file {file})", on_bad)
        elif not isinstance(caption, str) or not caption.strip():
            _bad(f"{where}: empty caption for {file} (expected a non-empty 'text' or 'caption')", on_bad)
        else:
            pairs.append((file, caption.strip()))
    for file in sorted(image_files(folder, recursive=True)):
        if file.resolve() not in listed:
            _bad(f"{file}: image without a caption (not listed in {meta})", on_bad)
    return pairs


def _txt_pairs(folder: Path, on_bad: str) -> list[tuple[Path, str]]:
    images = {p.with_suffix(""): p for p in sorted(image_files(folder, recursive=True))}
    texts = {p.with_suffix(""): p for p in sorted(folder.rglob("*.txt")) if p.is_file()}
    pairs = []
    for stem, txt in texts.items():
        if stem not in images:
            _bad(f"{txt}: caption without its image (no {stem.name} with suffix {', '.join(IMAGE_SUFFIXES)})", on_bad)
    for stem, file in images.items():
        if stem not in texts:
            _bad(f"{file}: image without a caption (expected {stem.with_suffix('.txt')} or a metadata.jsonl)", on_bad)
            continue
        caption = texts[stem].read_text(encoding="utf-8").strip()
        if not caption:
            _bad(f"{texts[stem]}: empty caption", on_bad)
            continue
        pairs.append((file, caption))
    return pairs


def _read_npz(path: Path, image_size: int, channels: int, on_bad: str) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    x = read_npz(path).images  # (N, C, H, W) uint8
    with np.load(path, allow_pickle=False) as z:
        if "captions" not in z.files:
            raise DataError(f"{path}: no 'captions' array (found {sorted(z.files)})")
        captions = z["captions"]
    if captions.dtype.kind not in "US" or captions.shape != (len(x),):
        raise DataError(f"{path}: captions of dtype {captions.dtype} and shape {captions.shape}; "
                        f"expected {len(x)} strings")
    images, texts = [], []
    for i, (arr, caption) in enumerate(zip(x, captions.tolist())):
        caption = (caption.decode("utf-8") if isinstance(caption, bytes) else caption).strip()
        if not caption:
            _bad(f"{path}: empty caption at index {i}", on_bad)
            continue
        if (channels and channels != arr.shape[0]) or (image_size and arr.shape[1:] != (image_size, image_size)):
            im = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
            arr = to_array(im, channels or arr.shape[0], image_size)
        images.append(arr.transpose(1, 2, 0))  # (H, W, C)
        texts.append(caption)
    if not images:
        raise DataError(f"{path}: no captioned images (all captions empty)")
    return np.stack(images), texts
