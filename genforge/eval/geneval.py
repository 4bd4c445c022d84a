"""A GenEval-style scene judge (Ghosh et al. 2023, "GenEval: An Object-Focused Framework for
Evaluating Text-to-Image Alignment"), built from genforge-trained parts, for the procedural
scenes of data/scenes.py: it grades a generated image against the spec of the caption it was
asked for, and `geneval` gives per-task accuracy on held-out compositions.

How an image is read:
- objects: connected components (8-connected) of pixels brighter than BRIGHT (max over RGB), at
  least MIN_AREA of the canvas (smaller ones are noise);
- what each object is: a genforge-trained CNN (models/classifier.py, trained through the one
  loop by train/judge.py on clean, noisy and blurred scenes) on the component's crop, its
  brightness normalised to its maximum (colour-blind, so held-out colour-object pairs are no
  harder than trained ones), padded square and resized to CROP pixels; below MIN_CONFIDENCE the
  object is unknown (None);
- its colour: the hue of its bright pixels' mean RGB, nearest of scenes.COLOURS (None when the
  mean is grey: saturation below MIN_SATURATION);
- where it is: its box's centre (x, y), y downwards, as a spec's centres.

Which tasks each scene kind tests (GenEval's six; a scene tests several):
  single   "a large red circle"                 single_object: a circle is there;
                                                colour: every circle found is red
  count    "two green triangles"                counting: exactly two triangles;
                                                colour: every triangle found is green
  relation "a red circle above a blue square"   two_object: a circle and a square (two circles
                                                when both are circles);
                                                position: the circle (the red one, where there is
                                                one) is above the square (the blue one): farther
                                                apart along that axis than across it, as
                                                scenes.relation_holds, within POSITION_SLACK;
                                                colour_binding: a red circle and a blue square,
                                                two different objects
Sizes are not graded (GenEval has no size task). "overall" is the mean of the task accuracies,
as GenEval's overall score is.
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genforge.config import cache_root
from genforge.data import scenes
from genforge.errors import CheckpointError, DataError

TASKS = ("single_object", "two_object", "counting", "colour", "position", "colour_binding")
KIND_TASKS = {"single": ("single_object", "colour"), "count": ("counting", "colour"),
              "relation": ("two_object", "position", "colour_binding")}
BRIGHT = 64  # a pixel belongs to an object when its brightest channel exceeds this (of 255)
MIN_AREA = 0.01  # components smaller than this share of the canvas are noise (real objects: >= 0.029)
CROP = 20  # the classifier's input: a crop padded square and resized to CROP x CROP
MIN_CONFIDENCE = 0.5  # the classifier's probability below which an object is unknown
MIN_SATURATION = 0.25  # below this the object is grey: no colour
POSITION_SLACK = 1.0  # pixels a relation's dominant axis may fall short by (see _holds)
JUDGE_VERSION = "scene-judge-v2"  # the cache key of the trained judge (train/judge.py); bump when the above change
_HUES = {name: colorsys.rgb_to_hsv(*(np.array(rgb) / 255))[0] for name, rgb in scenes.COLOURS.items()}


# --- reading an image -------------------------------------------------------------------------

def as_rgb_uint8(images) -> np.ndarray:
    """Images as (N, H, W, 3) uint8: from (N, H, W, 3) uint8 (what make_scenes gives), or from
    (N, C, H, W) floats in [0, 1] with C = 1 or 3 (what genforge's image samplers give; grey is
    repeated to RGB). DataError for any other layout."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy() if images.is_floating_point() else images.cpu().numpy()
    images = np.asarray(images)
    if images.ndim == 4 and images.dtype == np.uint8 and images.shape[-1] == 3:
        return images
    if images.ndim == 4 and np.issubdtype(images.dtype, np.floating) and images.shape[1] in (1, 3):
        x = np.clip(images, 0, 1).transpose(0, 2, 3, 1)
        x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
        return (x * 255).round().astype(np.uint8)
    raise DataError(f"images of shape {images.shape} and dtype {images.dtype}: expected (N, H, W, 3) uint8 or "
                    "(N, C, H, W) floats in [0, 1] with C = 1 or 3")


def components(image: np.ndarray) -> list[dict]:
    """The objects of one (H, W, 3) uint8 image: per component its box (x0, y0, x1, y1)
    inclusive, centre (x, y), area in pixels, colour (a COLOURS name or None) and crop
    (CROP, CROP) float32 in [0, 1], ordered by position in the image (row-major)."""
    from scipy import ndimage

    bright = image.max(-1)
    labels, _ = ndimage.label(bright > BRIGHT, structure=np.ones((3, 3)))
    min_area = MIN_AREA * image.shape[0] * image.shape[1]
    out = []
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[where] == k
        area = int(mask.sum())
        if area < min_area:
            continue
        ys, xs = where
        box = [xs.start, ys.start, xs.stop - 1, ys.stop - 1]
        pixels = image[where][mask].astype(np.float64)  # (area, 3)
        out.append({"box": box, "centre": [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], "area": area,
                    "colour": colour_of(pixels), "crop": crop(np.where(mask, bright[where], 0))})
    return out


def colour_of(pixels: np.ndarray) -> str | None:
    """The COLOURS name nearest in hue to the mean of the bright half of an object's RGB pixels
    (N, 3) (its antialiased edge is dimmer), or None when that mean is grey."""
    level = pixels.max(1)
    core = pixels[level >= level.max() / 2]
    h, s, _ = colorsys.rgb_to_hsv(*(core.mean(0) / 255))
    if s < MIN_SATURATION:
        return None
    return min(_HUES, key=lambda c: min(abs(h - _HUES[c]), 1 - abs(h - _HUES[c])))


def crop(patch: np.ndarray) -> np.ndarray:
    """A component's brightness patch (h, w) as the classifier reads it: normalised to its
    maximum, padded square with a one-pixel border, resized to (CROP, CROP) float32."""
    h, w = patch.shape
    side = max(h, w) + 2
    square = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = patch / max(float(patch.max()), 1e-6)
    x = torch.from_numpy(square)[None, None]
    return F.interpolate(x, size=(CROP, CROP), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()


# --- the judge --------------------------------------------------------------------------------

class SceneJudge:
    """Reads scenes with a trained object classifier (CROP x CROP grey crops -> OBJECTS classes)."""

    def __init__(self, classifier: nn.Module, class_names: list[str] | tuple[str, ...] = scenes.OBJECTS):
        self.classifier = classifier.eval()
        self.class_names = list(class_names)

    @torch.no_grad()
    def read(self, images) -> list[list[dict]]:
        """Per image, its objects (components() with "shape": the classifier's object or None,
        and "confidence")."""
        found = [components(im) for im in as_rgb_uint8(images)]
        flat = [o for objs in found for o in objs]
        if flat:
            x = torch.from_numpy(np.stack([o["crop"] for o in flat]))[:, None]  # (M, 1, CROP, CROP)
            probs = torch.cat([self.classifier(x[i:i + 512]).softmax(-1) for i in range(0, len(x), 512)])
            conf, cls = probs.max(-1)
            for o, p, c in zip(flat, conf.tolist(), cls.tolist()):
                o["confidence"] = p
                o["shape"] = self.class_names[c] if p >= MIN_CONFIDENCE else None
        return found

    def judge(self, images, specs: list[dict]) -> list[dict[str, bool]]:
        """Per image, task -> passed for the tasks its spec's kind tests (KIND_TASKS)."""
        found = self.read(images)
        if len(found) != len(specs):
            raise DataError(f"{len(found)} images but {len(specs)} specs")
        return [grade(objs, spec) for objs, spec in zip(found, specs)]


def judge_images(images, specs: list[dict], judge: SceneJudge) -> list[dict[str, bool]]:
    """Per image, task -> passed (see the module docstring); images as as_rgb_uint8 takes them."""
    return judge.judge(images, specs)


def grade(objects: list[dict], spec: dict) -> dict[str, bool]:
    """The tasks spec's kind tests, graded on an image's objects (SceneJudge.read)."""
    kind = spec["kind"]
    asked = spec["objects"]
    if kind in ("single", "count"):
        want = asked[0]
        same = [o for o in objects if o["shape"] == want["shape"]]
        coloured = bool(same) and all(o["colour"] == want["colour"] for o in same)
        if kind == "single":
            return {"single_object": bool(same), "colour": coloured}
        return {"counting": len(same) == len(asked), "colour": coloured}
    if kind != "relation":
        raise DataError(f"spec kind {kind!r}: expected one of {', '.join(KIND_TASKS)}")
    i, words, j = spec["relation"]
    a, b = asked[i], asked[j]
    subject = _pick(objects, a, avoid=None)
    other = _pick(objects, b, avoid=subject)
    found = subject is not None and other is not None
    position = found and _holds(subject["centre"], words, other["centre"])
    binding = any(o["shape"] == a["shape"] and o["colour"] == a["colour"] and p is not o
                  and p["shape"] == b["shape"] and p["colour"] == b["colour"] for o in objects for p in objects)
    return {"two_object": found, "position": bool(position), "colour_binding": binding}


def _holds(a: list[float], words: str, b: list[float]) -> bool:
    """Whether centre a lies on the `words` side of centre b along the axis of larger distance
    (scenes.relation_holds), within POSITION_SLACK pixels: a drawn glyph's box centres on its
    spec's to within half a pixel, and scenes only promise the dominant axis by one pixel."""
    axis, flip = scenes.RELATIONS[words]
    along, across = (b[1] - a[1], b[0] - a[0]) if axis == 0 else (b[0] - a[0], b[1] - a[1])
    along = -along if flip else along
    return along > 0 and along > abs(across) - POSITION_SLACK


def _pick(objects: list[dict], want: dict, avoid: dict | None) -> dict | None:
    """The object standing for `want`: of its shape, of its colour where one is, the largest."""
    same = [o for o in objects if o["shape"] == want["shape"] and o is not avoid]
    if not same:
        return None
    return max(same, key=lambda o: (o["colour"] == want["colour"], o["area"]))


def accuracy(results: list[dict[str, bool]]) -> dict[str, float]:
    """Per-task accuracy over per-image results, "overall" (their mean) and "n" (images)."""
    out: dict[str, float] = {}
    for task in TASKS:
        graded = [r[task] for r in results if task in r]
        if graded:
            out[task] = float(np.mean(graded))
    out["overall"] = float(np.mean(list(out.values()))) if out else float("nan")
    out["n"] = len(results)
    return out


def geneval(generate: Callable[[list[str]], object], judge: SceneJudge, vocab: str = "shapes", n: int = 256,
            seed: int = 0, size: int = 32, batch: int = 64) -> dict[str, float]:
    """GenEval-style accuracy of a text-to-image model on n held-out scene prompts of vocab
    (scenes.make_scenes(n, "heldout", size, seed, vocab); n >= len(heldout_compositions(vocab))
    asks for every held-out composition): {"overall", each task's accuracy, "n"}. generate maps
    a list of captions to their images, (N, H, W, 3) uint8 or (N, C, H, W) floats in [0, 1] (any
    H = W >= 16; it need not be size)."""
    _, captions, specs = scenes.make_scenes(n, "heldout", size, seed, vocab)
    results = []
    for k in range(0, n, batch):
        images = as_rgb_uint8(generate(captions[k:k + batch]))
        if len(images) != len(captions[k:k + batch]):
            raise DataError(f"generate gave {len(images)} images for {len(captions[k:k + batch])} captions")
        results += judge.judge(images, specs[k:k + batch])
    return accuracy(results)


# --- the trained judge on disk ----------------------------------------------------------------

def judge_dir() -> Path:
    """Where the trained judge is cached: $GENFORGE_CACHE (or ~/.cache/genforge)/judges/JUDGE_VERSION."""
    return cache_root() / "judges" / JUDGE_VERSION


def load_judge(ckpt: str | Path | None = None, device: str | torch.device = "cpu") -> SceneJudge:
    """The judge of a classifier checkpoint (train/judge.py's), by default the cached one.
    CheckpointError when there is none (train one with genforge.train.judge.scene_judge())."""
    from genforge import checkpoint as ckpt_io

    path = Path(ckpt) if ckpt is not None else judge_dir()
    if ckpt is None and not path.exists():
        raise CheckpointError(f"{path}: no trained scene judge; genforge.train.judge.scene_judge() trains one "
                              "(about half a minute on one CPU core)")
    loaded = ckpt_io.load(path, device)
    if loaded.family.kind != "label" or loaded.model.config.image_size != CROP or loaded.model.config.channels != 1:
        raise CheckpointError(f"{loaded.path}: not a scene judge (a classifier of {CROP}x{CROP} grey object crops)")
    names = (loaded.config.get("data") or {}).get("class_names") or list(scenes.OBJECTS)
    return SceneJudge(loaded.model, names)
