"""Training the scene judge's object classifier (eval/geneval.py) through the one loop: crops of
the objects of procedural scenes (data/scenes.py, every object of every vocabulary, at several
canvas sizes; a quarter of the scenes each clean, with pixel noise, blurred, and blurred with
noise, so the judge reads objects of any generator's size and tolerates the soft edges and
grainy background of generated images), cut by the same components() the judge reads images with."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from genforge import checkpoint as ckpt_io
from genforge.config import TrainConfig
from genforge.data import scenes
from genforge.data.image_batches import ImageBatches
from genforge.data.images import ImageSet
from genforge.errors import CheckpointError, DataError
from genforge.eval.geneval import CROP, JUDGE_VERSION, SceneJudge, components, judge_dir, load_judge
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.objectives.classify import ClassifierObjective
from genforge.train.loop import train

SIZES = (24, 32, 48, 64)  # canvas sizes the crops are cut from
NOISE = 0.08  # the largest std of the Gaussian pixel noise (of 1) added to half of the scenes
BLUR = (0.4, 1.0)  # the range of the Gaussian blur's sigma (pixels) applied to half of the scenes


def object_crops(n: int, seed: int = 0, sizes: tuple[int, ...] = SIZES) -> ImageSet:
    """Crops (M, 1, CROP, CROP) uint8 of the objects of n scenes per canvas size (vocab "all",
    train split), labelled with their OBJECTS index; scene k is clean, noisy, blurred, or both
    (k mod 4)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for size in sizes:
        images, _, specs = scenes.make_scenes(n, "train", size, seed, "all")
        for k, (image, spec) in enumerate(zip(images, specs)):
            if k % 4:
                x = image / 255
                if k % 4 >= 2:
                    sigma = rng.uniform(*BLUR) * size / 32
                    x = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0))
                if k % 2:
                    x = x + rng.normal(0, rng.uniform(0, NOISE), image.shape)
                image = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
            for obj in components(image):
                label = _label(obj, spec)
                if label is not None:
                    crops.append(obj["crop"])
                    labels.append(label)
    if not crops:
        raise DataError(f"no object crops from {n} scenes")
    x = (np.stack(crops)[:, None] * 255).round().astype(np.uint8)
    return ImageSet(x, np.array(labels, np.int64), list(scenes.OBJECTS))


def _label(obj: dict, spec: dict) -> int | None:
    """The OBJECTS index of the spec object whose box holds the component's centre (None: noise)."""
    cx, cy = obj["centre"]
    for o in spec["objects"]:
        x0, y0, x1, y1 = o["box"]
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            return scenes.OBJECTS.index(o["shape"])
    return None


def train_judge(out: str | Path, scenes_per_size: int = 1500, max_iters: int = 600, seed: int = 0,
                progress: bool = False) -> Path:
    """Train the judge's classifier into out (a run directory); return its final checkpoint."""
    train_set, val_set = object_crops(scenes_per_size, seed), object_crops(max(50, scenes_per_size // 10), seed + 1)
    torch.manual_seed(seed)
    model_cfg = ClassifierConfig(image_size=CROP, channels=1, num_classes=len(scenes.OBJECTS), width=16, feature_dim=64,
                                 dropout=0.1)
    cfg = TrainConfig(max_iters=max_iters, lr=3e-3, min_lr=1e-4, warmup_iters=50, weight_decay=0.01,
                      eval_interval=max_iters, eval_iters=10, log_interval=100, keep_checkpoints=1, device="cpu",
                      dtype="float32", seed=seed, out_dir=str(out))
    batches = ImageBatches(train_set, val_set, 128, seed)
    config = {"family": "classifier", "model": dataclasses.asdict(model_cfg), "tokenizer": None,
              "data": {"source": f"scene objects ({JUDGE_VERSION})", "class_names": list(scenes.OBJECTS),
                       "train_images": len(train_set), "val_images": len(val_set)}}
    return train(ClassifierObjective(Classifier(model_cfg)), batches, cfg, Path(out), config=config, progress=progress)


def scene_judge(ckpt: str | Path | None = None, device: str | torch.device = "cpu") -> SceneJudge:
    """The scene judge: of checkpoint ckpt when given, else the cached one (eval.geneval.judge_dir()),
    trained there first when there is none yet (~half a minute on one CPU core)."""
    if ckpt is None:
        try:
            ckpt_io.resolve(judge_dir())
        except CheckpointError:  # none yet, or a training that did not finish
            _train_cached(judge_dir())
    return load_judge(ckpt, device)


def _train_cached(target: Path, trainer=None) -> None:
    """Train a judge (by trainer(run_dir), default the scene judge's train_judge) beside target and
    move it into place whole: two processes that both find no judge each train their own, and the
    first one to finish is the one kept."""
    import contextlib
    import os
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        (trainer or train_judge)(tmp / "run")
        try:
            ckpt_io.resolve(target)
            return  # another process finished first: its judge stays
        except CheckpointError:
            shutil.rmtree(target, ignore_errors=True)  # nothing there, or a training that did not finish
        with contextlib.suppress(OSError):  # another process moved its judge in meanwhile
            os.rename(tmp / "run", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
