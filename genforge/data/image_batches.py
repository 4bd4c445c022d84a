"""Image data for training: the `data:` section of image families (ImageDataConfig), opening a
source into train/val ImageSets, augmentation hooks, and ImageBatches, the batch iterator the
loop reads (exact resume, like TokenBatches).

Batch n of epoch e takes rows [n*B, (n+1)*B) of a permutation seeded by (seed, e), and its
augmentations draw from a generator seeded by (seed, n): the data cursor is one integer.
With per-example weights (data.target: labels at a target distribution; data.weights: a weight
file, e.g. importance weights; data.reference: Choi et al. 2019's, fitted by train/importance.py),
batch n is B draws with replacement, probability proportional to the weight, from that same
generator seeded by (seed, n): the cursor stays one integer and resume stays exact.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genforge.data import images as readers
from genforge.data.images import ImageSet
from genforge.errors import ConfigError, DataError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (B, C, H, W) in [0, 1] -> same
# an objective's random draws per batch (a diffusion's times and noise), appended to the batch, so
# that the loss is a function of the batch alone (exact resume, batch shards in any thread order)
Draw = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]


@dataclass
class ImageDataConfig:
    # builtin:digits | builtin:glyphs[:CHARS] | builtin:scenes[:VOCAB] (20,000 drawn scenes, no labels) |
    # an MNIST-layout IDX folder | an IDX images file |
    # a folder of images (class = sub-folder) | an .npz file
    source: str = "builtin:digits"
    batch_size: int = 64
    image_size: int = 0  # 0: as stored; else resize to image_size x image_size
    channels: int = 0  # 0: as stored; 1 (grey) or 3 (RGB) for image folders
    val_fraction: float = 0.1  # held out when the source has no test split of its own
    limit: int = 0  # use only the first `limit` training images (0: all)
    augment: list[str] = field(default_factory=list)  # names in AUGMENTATIONS, applied in order
    on_bad_image: Literal["error", "skip"] = "error"  # an unreadable file in an image folder
    classifier: str = ""  # a classifier checkpoint whose features score samples at each eval (FID, coverage)
    # reweighted draws (at most one of the three): target, the label distribution batches are drawn
    # at ("uniform", or {class name or id: share} naming every class of the data, 0 allowed);
    # weights, a .npy file of one weight >= 0 per training image (after data.limit); reference, a
    # small balanced reference set (any source data.source takes, the same image shape), from
    # which a density-ratio classifier gives each training image its importance weight
    target: str | dict = ""
    weights: str = ""
    reference: str = ""
    reference_steps: int = 1500  # training steps of the density-ratio classifier (data.reference)
    # how data.reference's density ratio is estimated: "classifier" (Choi et al. 2019's classifier) or
    # "clusters" (each k-means cluster's reference share over its training share; data/clusters.py)
    reference_estimator: Literal["classifier", "clusters"] = "classifier"

    def __post_init__(self):
        check_image_fields(self)
        if sum(bool(v) for v in (self.target, self.weights, self.reference)) > 1:
            raise ConfigError("data.target, data.weights and data.reference each set the draw weights: give one")
        if isinstance(self.target, str) and self.target not in ("", "uniform"):
            raise ConfigError(f"data.target={self.target!r}: expected uniform or a mapping {{class: share}}")
        if self.reference_estimator not in ("classifier", "clusters"):
            raise ConfigError(f"data.reference_estimator={self.reference_estimator!r}: expected classifier or clusters")
        if self.reference_steps < 1:
            raise ConfigError(f"data.reference_steps={self.reference_steps} must be >= 1")
        for name in self.augment:
            if name not in AUGMENTATIONS:
                raise ConfigError(f"data.augment: unknown augmentation {name!r}; expected one of {sorted(AUGMENTATIONS)}")


def check_image_fields(cfg) -> None:
    """ConfigError for a data config's batch_size, val_fraction or channels out of range (the
    fields every image data config has)."""
    if cfg.batch_size < 1:
        raise ConfigError(f"data.batch_size={cfg.batch_size} must be >= 1")
    if not 0 <= cfg.val_fraction < 1:
        raise ConfigError(f"data.val_fraction={cfg.val_fraction} must be in [0, 1)")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels={cfg.channels}: expected 0 (as stored), 1 or 3")


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def shift(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Translate each image by up to `pad` pixels (zero fill)."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx, dy = torch.randint(0, 2 * pad + 1, (2, B), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


def binarize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Dynamic binarisation: each pixel 1 with probability its grey level (the binarised-MNIST
    protocol of the VAE/IWAE literature, re-drawn every batch)."""
    return torch.bernoulli(x, generator=gen)


AUGMENTATIONS: dict[str, Augment] = {"hflip": hflip, "shift": shift, "binarize": binarize}


def open_images(cfg: ImageDataConfig) -> tuple[ImageSet, ImageSet]:
    """(train, val) ImageSets of cfg.source, resized to cfg.image_size. Raises DataError."""
    train, val = _read_source(cfg)
    if val is None:
        order = np.random.default_rng(0).permutation(len(train))
        n_val = max(1, int(len(train) * cfg.val_fraction)) if cfg.val_fraction > 0 and len(train) > 1 else 0
        train, val = train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val])) if n_val else train
    if cfg.limit:
        train = train.subset(np.arange(min(cfg.limit, len(train))))
    return _resize(train, cfg.image_size), _resize(val, cfg.image_size)


def _read_source(cfg: ImageDataConfig) -> tuple[ImageSet, ImageSet | None]:
    src = cfg.source
    if src == "builtin:digits":
        return readers.load_digits_set(), None
    if src.startswith("builtin:glyphs"):
        chars = src.partition("builtin:glyphs")[2].lstrip(":") or "0123456789"
        return _glyphs(chars, cfg.image_size or 28), None
    if src == "builtin:scenes" or src.startswith("builtin:scenes:"):
        return _scenes(src.partition("builtin:scenes")[2].lstrip(":") or "shapes", cfg.image_size or 32), None
    if src.startswith("builtin:"):
        raise ConfigError(f"data.source={src!r}: unknown builtin; expected builtin:digits, builtin:glyphs[:CHARS] or "
                          "builtin:scenes[:shapes|digits|all]")
    path = Path(src)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (data.source)")
    if path.is_dir():
        found = readers.find_idx(path, "train")
        if found:
            test = readers.find_idx(path, "test")
            return readers.read_idx_pair(*found), (readers.read_idx_pair(*test) if test else None)
        return readers.read_folder(path, cfg.channels, cfg.image_size, cfg.on_bad_image), None
    if path.suffix == ".npz":
        return readers.read_npz(path), None
    return readers.read_idx_pair(path, None), None


@functools.lru_cache(maxsize=4)
def _glyphs(chars: str, size: int) -> ImageSet:
    return readers.render_glyphs(chars, size)


@functools.lru_cache(maxsize=2)
def _scenes(vocab: str, size: int, n: int = 20000) -> ImageSet:
    from genforge.data import scenes

    if vocab not in scenes.VOCABS:
        raise ConfigError(f"data.source=builtin:scenes:{vocab}: unknown scene vocabulary; expected one of "
                          f"{', '.join(scenes.VOCABS)}")
    images, _, _ = scenes.make_scenes(n, "train", size, 0, vocab)
    return ImageSet(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), np.full(n, -1, np.int64), [])


def _resize(s: ImageSet, size: int) -> ImageSet:
    if not size or s.images.shape[-1] == size == s.images.shape[-2]:
        return s
    x = torch.from_numpy(s.images).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8).numpy(), s.labels, s.class_names)


def to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255)  # (N, C, H, W) in [0, 1]


class ImageBatches:
    """Shuffled (images (B, C, H, W) in [0, 1], labels (B,) or caption ids (B, T), *draws) batches,
    epoch after epoch; `draw` adds the objective's random draws, from the batch's own generator."""

    def __init__(self, train: ImageSet, val: ImageSet, batch_size: int, seed: int = 0,
                 device: str | torch.device = "cpu", augment: list[Augment] = (), draw: Draw | None = None,
                 weights: np.ndarray | None = None):
        if len(train) < batch_size:
            raise DataError(f"{len(train)} training images, fewer than data.batch_size={batch_size}")
        self.train, self.val, self.batch_size, self.seed = train, val, batch_size, seed
        self.device, self.augment, self.draw = torch.device(device), list(augment), draw
        self.x, self.y = to_float(train.images), torch.from_numpy(train.labels)
        self.step = 0
        self._perm: tuple[int, np.ndarray] | None = None
        # per-example draw probabilities (N,), float64 so that 60k small weights keep their ratios
        self.probs = None
        if weights is not None:
            w = check_weights(weights, len(train))
            self.probs = torch.from_numpy(w / w.sum())

    @property
    def batches_per_epoch(self) -> int:
        return len(self.train) // self.batch_size

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        if self.probs is not None:  # B weighted draws with replacement, from this batch's own generator
            idx = torch.multinomial(self.probs, self.batch_size, replacement=True, generator=gen)
        else:
            epoch, i = divmod(self.step, self.batches_per_epoch)
            if self._perm is None or self._perm[0] != epoch:
                self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.train)))
            idx = torch.from_numpy(self._perm[1][i * self.batch_size:(i + 1) * self.batch_size])
        x, y = self.x[idx], self.y[idx]
        for fn in self.augment:
            x = fn(x, gen)
        draws = self.draw(x, gen) if self.draw is not None else ()
        self.step += 1
        return tuple(t.to(self.device) for t in (x, y, *draws))

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list[tuple[torch.Tensor, ...]]:
        """The first n batches of the validation set (fewer if it is smaller), the same every time
        (draws included)."""
        x, y = to_float(self.val.images), torch.from_numpy(self.val.labels)
        B, out = self.batch_size, []
        for i in range(0, min(len(x), n * B), B):
            draws = self.draw(x[i:i + B], torch.Generator().manual_seed(i)) if self.draw is not None else ()
            out.append(tuple(t.to(self.device) for t in (x[i:i + B], y[i:i + B], *draws)))
        return out


def image_batches(cfg: ImageDataConfig, seed: int, device: torch.device) -> ImageBatches:
    train, val = open_images(cfg)
    return ImageBatches(train, val, cfg.batch_size, seed, device, [AUGMENTATIONS[a] for a in cfg.augment],
                        weights=draw_weights(cfg, train))


# --- reweighted draws ---------------------------------------------------------------------------

def check_weights(weights: np.ndarray, n: int, where: str = "data.weights") -> np.ndarray:
    """weights as float64 (n,); DataError unless it has one finite weight >= 0 per training image
    and some weight > 0."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"{where}: {w.shape[0] if w.ndim == 1 else w.shape} weights for {n} training images; "
                        "expected one per image")
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"{where}: weights must be finite and >= 0")
    if w.sum() <= 0:
        raise DataError(f"{where}: every weight is 0")
    return w


def target_shares(target: str | dict, class_names: list[str], where: str = "data.target") -> np.ndarray:
    """The target label distribution (K,) over class_names: uniform, or a {class name or id: share}
    mapping naming every class (shares >= 0, normalised to sum to 1). ConfigError for a class the
    data does not have, a class left out, or a bad share."""
    k = len(class_names)
    if k < 2:
        raise ConfigError(f"{where}: the data has no class labels to balance (it needs 2+ classes)")
    if target == "uniform":
        return np.full(k, 1 / k)
    if not isinstance(target, dict) or not target:
        raise ConfigError(f"{where}={target!r}: expected uniform or a mapping {{class: share}}")
    shares = np.full(k, np.nan)
    for key, share in target.items():
        i = class_index(key, class_names, where)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not share >= 0 or share == float("inf"):
            raise ConfigError(f"{where}.{key}={share!r}: a share must be a number >= 0")
        shares[i] = share
    missing = [class_names[i] for i in np.flatnonzero(np.isnan(shares))]
    if missing:
        raise ConfigError(f"{where}: no share for class {', '.join(missing)} (name every class of the data, "
                          "0 to leave one out)")
    if shares.sum() <= 0:
        raise ConfigError(f"{where}: every share is 0")
    return shares / shares.sum()


def class_index(key, class_names: list[str], where: str) -> int:
    """The index of class `key` (its name, or its id as an int) in class_names; ConfigError naming
    the classes there are when it has none."""
    if str(key) in class_names:
        return class_names.index(str(key))
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(class_names):
        return key
    raise ConfigError(f"{where}: class {key!r} is not in the data (its classes: {', '.join(class_names)})")


def label_weights(labels: np.ndarray, shares: np.ndarray, where: str = "data.target") -> np.ndarray:
    """Per-example weights (N,) that draw labels at `shares` (K,): target share / data share of
    each example's class. DataError for unlabelled images, or a class given a share that the data
    has no image of."""
    if (labels < 0).any():
        raise DataError(f"{where}: {int((labels < 0).sum())} training images have no label")
    counts = np.bincount(labels, minlength=len(shares)).astype(np.float64)
    empty = np.flatnonzero((counts == 0) & (shares > 0))
    if len(empty):
        raise DataError(f"{where}: class id {int(empty[0])} has a share but no training image")
    return (shares / np.maximum(counts, 1))[labels] * len(labels)


def draw_weights(cfg: ImageDataConfig, train: ImageSet) -> np.ndarray | None:
    """The per-example draw weights data.target or data.weights give train (None: plain
    permutations). data.reference's weights need a trained density-ratio classifier: the runner
    fits them (genforge.train.importance) and passes them to ImageBatches itself."""
    if cfg.target:
        return label_weights(train.labels, target_shares(cfg.target, train.class_names))
    if cfg.weights:
        path = Path(cfg.weights)
        if not path.is_file():
            raise DataError(f"{path}: no such file (data.weights)")
        try:
            w = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a .npy array of weights ({e})") from None
        return check_weights(w, len(train), f"data.weights={path}")
    return None


def weight_report(weights: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """What weighted draws do to a training set of N images, per epoch of N draws: the effective
    sample size (Kish: (sum w)^2 / sum w^2), the images expected more than once (repeated) with
    their mean and largest expected count, the images never drawn (weight 0), and with labels the
    expected share of each class."""
    w = np.asarray(weights, np.float64)
    n = len(w)
    per_epoch = n * w / w.sum()  # expected draws of each image per epoch
    repeated = per_epoch > 1
    out = {"images": n, "effective_sample_size": float(w.sum() ** 2 / (w ** 2).sum()),
           "repeated_images": int(repeated.sum()),
           "mean_repeats": float(per_epoch[repeated].mean()) if repeated.any() else 0.0,
           "max_repeats": float(per_epoch.max()), "never_drawn": int((w == 0).sum())}
    if labels is not None and (labels >= 0).all():
        shares = np.bincount(labels, weights=per_epoch / n)
        out["class_shares"] = [round(float(s), 4) for s in shares]
    return out


def checkpoint_images(config: dict, split: str = "val"):
    """(the ImageSet a checkpoint trained (train) or evaluated (val) on, as its run config read
    it; that data config). DataError when the data is not on this machine."""
    from genforge.config import from_dict

    data = from_dict(ImageDataConfig, (config.get("run") or {}).get("data") or {}, "data")
    train, val = open_images(data)
    return (train if split == "train" else val), data
