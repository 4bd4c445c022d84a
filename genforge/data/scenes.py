"""Procedural captioned scenes genforge draws itself (numpy + PIL, no download), for training and
judging text-to-image models: shapes (circle, square, triangle) and, optionally, digits drawn in
matplotlib's bundled DejaVu Sans Bold, on a black RGB canvas, with captions over object, colour,
size, count and position, and a held-out split of compositions for testing generalisation
(the compositional splits of CLEVR-CoGenT, Johnson et al. 2017, and of T2I-CompBench, Huang et
al. 2023).

Captions come in three kinds:
- single:   "a large red circle"
- count:    "two green triangles", "three blue 7s"
- relation: "a red circle above a blue square", "a yellow 3 to the left of a purple 7"

Held-out compositions, a pure function of the vocabulary. With objects indexed in OBJECTS order
(circle 0, square 1, triangle 2, digits "0".."9" as 3..12) and colours in COLOURS order
(red 0, green 1, blue 2, yellow 3, purple 4, orange 5):
- a colour-object pair is held out iff colour index == object index mod 6: the red circle, the
  green square, the blue triangle, a yellow 0, a purple 1, ..., a red 9;
- a relation is held out in its canonical form (first, axis, second), first being the upper
  (axis 0, "above") or the left (axis 1, "to the left of") object, iff
  (index(first) + 2 * index(second) + axis) % 4 == 1; "a square above a circle" and "a circle
  below a square" are one composition (held out), "a circle above a square" another (trained).
The train split never holds a held-out composition, in a caption or in the image: every pair of
objects in a scene is in a clear relation (one axis dominates) and that relation is not held out.
Each held-out example holds exactly one held-out composition, example k the k-th of
heldout_compositions() cycled, so n >= len(heldout_compositions(vocab)) covers every one.

Each example comes with its spec, what a judge needs to grade a generated image: kind, caption,
count, the objects (shape, colour, size, centre (x, y) and box (x0, y0, x1, y1) in pixels, y
downwards, box inclusive), the relation (subject index, words, object index) and the held-out
compositions it holds.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from genforge.data.captions import article
from genforge.errors import DataError

SHAPES = ("circle", "square", "triangle")
DIGITS = tuple("0123456789")
OBJECTS = SHAPES + DIGITS
VOCABS = {"shapes": SHAPES, "digits": DIGITS, "all": OBJECTS}
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235),
           "yellow": (240, 220, 40), "purple": (160, 60, 210), "orange": (250, 140, 20)}
SIZES = {"small": 0.11, "large": 0.19}  # half-width of an object's box, as a fraction of the canvas
RELATIONS = {"above": (0, False), "below": (0, True), "to the left of": (1, False), "to the right of": (1, True)}
CANONICAL = ("above", "to the left of")  # axis 0, axis 1
COUNT_WORDS = {2: "two", 3: "three"}
KINDS = ("single", "count", "relation")
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down, for smooth edges


# --- the held-out rule -------------------------------------------------------------------------

def heldout_pairs(vocab: str = "shapes") -> list[tuple[str, str]]:
    """The held-out (colour, object) pairs of a vocabulary: colour index == object index mod 6."""
    colours = list(COLOURS)
    return [(colours[OBJECTS.index(o) % len(colours)], o) for o in _objects(vocab)]


def heldout_relations(vocab: str = "shapes") -> list[tuple[str, str, str]]:
    """The held-out canonical relations (first, "above" | "to the left of", second) of a
    vocabulary: (index(first) + 2 * index(second) + axis) % 4 == 1."""
    objs = _objects(vocab)
    return [(a, CANONICAL[axis], b) for a in objs for axis in (0, 1) for b in objs
            if (OBJECTS.index(a) + 2 * OBJECTS.index(b) + axis) % 4 == 1]


def heldout_compositions(vocab: str = "shapes") -> list[tuple[str, ...]]:
    """Every held-out composition: the (colour, object) pairs, then the canonical relations."""
    return [*heldout_pairs(vocab), *heldout_relations(vocab)]


def canonical(a: str, relation: str, b: str) -> tuple[str, str, str]:
    """(first, "above" | "to the left of", second): "a circle below a square" -> (square, above, circle)."""
    axis, flip = RELATIONS[relation]
    return (b, CANONICAL[axis], a) if flip else (a, CANONICAL[axis], b)


def implied_relation(a: dict, b: dict) -> tuple[str, str, str] | None:
    """The canonical relation two objects' centres put them in (the axis with the larger
    distance), or None when neither axis dominates."""
    dx, dy = b["centre"][0] - a["centre"][0], b["centre"][1] - a["centre"][1]
    if abs(dx) == abs(dy):
        return None
    if abs(dy) > abs(dx):
        return canonical(a["shape"], "above" if dy > 0 else "below", b["shape"])
    return canonical(a["shape"], "to the left of" if dx > 0 else "to the right of", b["shape"])


def relation_holds(spec: dict) -> bool:
    """Whether the centres in spec satisfy its relation: the subject lies on the named side of the
    object, along the axis of larger distance. True for specs without a relation."""
    if spec["relation"] is None:
        return True
    i, words, j = spec["relation"]
    (ax, ay), (bx, by) = spec["objects"][i]["centre"], spec["objects"][j]["centre"]
    axis, flip = RELATIONS[words]
    along, across = (by - ay, bx - ax) if axis == 0 else (bx - ax, by - ay)  # subject before object: along > 0
    return (-along if flip else along) > abs(across)


def compositions(spec: dict) -> set[tuple[str, ...]]:
    """The compositions a scene holds: every (colour, object) pair and the canonical relation of
    every pair of objects, captioned or not."""
    objs = spec["objects"]
    out: set[tuple[str, ...]] = {(o["colour"], o["shape"]) for o in objs}
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            rel = implied_relation(objs[i], objs[j])
            if rel is not None:
                out.add(rel)
    return out


# --- making scenes ----------------------------------------------------------------------------

def make_scenes(n: int, split: str = "train", size: int = 32, seed: int = 0,
                vocab: str = "shapes") -> tuple[np.ndarray, list[str], list[dict]]:
    """n scenes of one split ("train" or "heldout"; see the module docstring) on size x size
    canvases: (images uint8 (n, size, size, 3), captions, specs). The same (n, split, size, seed,
    vocab) gives the same scenes. Raises DataError for an unknown split or vocab, or size < 16."""
    if split not in ("train", "heldout"):
        raise DataError(f"split={split!r}: expected 'train' or 'heldout'")
    if size < 16:
        raise DataError(f"size={size}: scenes need a canvas of at least 16 pixels")
    objs = _objects(vocab)
    held = set(heldout_compositions(vocab))
    targets = heldout_compositions(vocab)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images, captions, specs = [], [], []
    for k in range(n):
        target = targets[k % len(targets)] if split == "heldout" else None
        spec = _sample_spec(rng, objs, held, target, size)
        images.append(draw(spec, size))
        captions.append(spec["caption"])
        specs.append(spec)
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8), captions, specs


def _objects(vocab: str) -> tuple[str, ...]:
    if vocab not in VOCABS:
        raise DataError(f"vocab={vocab!r}: expected one of {sorted(VOCABS)}")
    return VOCABS[vocab]


def _sample_spec(rng, objs, held, target, size: int) -> dict:
    """One spec whose held-out compositions are exactly {target} (none when target is None)."""
    want = set() if target is None else {target}
    allowed = [(c, o) for c in COLOURS for o in objs if (c, o) not in held]
    # the kind is drawn once, so kinds whose layouts are rejected more often are not rarer
    kind = "relation" if target is not None and len(target) == 3 else KINDS[rng.integers(len(KINDS))]
    for _ in range(1000):
        if target is not None and len(target) == 3:
            first, words, second = target
            if rng.random() < 0.5:  # the other phrasing: "a circle below a square"
                first, words, second = second, {"above": "below", "to the left of": "to the right of"}[words], first
            pair = [(_allowed_colour(rng, allowed, first), first), (_allowed_colour(rng, allowed, second), second)]
        else:
            first_pair = target if target is not None else allowed[rng.integers(len(allowed))]
            pair = [first_pair, allowed[rng.integers(len(allowed))]]
            words = list(RELATIONS)[rng.integers(len(RELATIONS))]
        if kind == "relation" and pair[0] == pair[1]:
            continue  # "a green circle below a green circle" would not say which object is which
        spec = _layout(rng, kind, pair, words, size)
        if spec is not None and compositions(spec) & held == want:
            spec["heldout"] = sorted(want)
            return spec
    raise RuntimeError(f"no layout found for {target} on a {size}-pixel canvas")  # not reached at size >= 16


def _allowed_colour(rng, allowed, obj: str) -> str:
    colours = [c for c, o in allowed if o == obj]
    return colours[rng.integers(len(colours))]


def _layout(rng, kind: str, pair, words: str, size: int) -> dict | None:
    """Objects placed at random without overlap (boxes at least one pixel apart); None when a
    draw failed (overlap, or the relation does not hold)."""
    sizes = list(SIZES)
    if kind == "single":
        objs = [_object(pair[0], sizes[rng.integers(2)])]
    elif kind == "count":
        count = int(rng.choice(list(COUNT_WORDS)))
        s = sizes[rng.integers(2)]
        objs = [_object(pair[0], s) for _ in range(count)]
    else:
        objs = [_object(pair[0], sizes[rng.integers(2)]), _object(pair[1], sizes[rng.integers(2)])]
    for o in objs:
        r = _radius(o["size"], size)
        o["centre"] = [int(rng.integers(r, size - r)), int(rng.integers(r, size - r))]
        o["box"] = [o["centre"][0] - r, o["centre"][1] - r, o["centre"][0] + r, o["centre"][1] + r]
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            a, b = objs[i]["box"], objs[j]["box"]
            if not (a[2] < b[0] - 1 or b[2] < a[0] - 1 or a[3] < b[1] - 1 or b[3] < a[1] - 1):
                return None
    spec = {"kind": kind, "objects": objs, "relation": [0, words, 1] if kind == "relation" else None,
            "count": len(objs) if kind == "count" else None}
    if not relation_holds(spec):
        return None
    spec["caption"] = caption(spec)
    return spec


def _object(pair, size_word: str) -> dict:
    colour, shape = pair
    return {"shape": shape, "colour": colour, "size": size_word}


def _radius(size_word: str, size: int) -> int:
    return max(2, round(SIZES[size_word] * size))


def caption(spec: dict) -> str:
    """The caption of a spec: "a large red circle", "two green triangles", "a red 3 above a blue 7"."""
    objs = spec["objects"]
    if spec["kind"] == "single":
        o = objs[0]
        return article(f"{o['size']} {o['colour']} {o['shape']}")
    if spec["kind"] == "count":
        o = objs[0]
        return f"{COUNT_WORDS[len(objs)]} {o['colour']} {o['shape']}s"
    i, words, j = spec["relation"]
    a, b = objs[i], objs[j]
    return f"{article(a['colour'] + ' ' + a['shape'])} {words} {article(b['colour'] + ' ' + b['shape'])}"


# --- drawing ----------------------------------------------------------------------------------

def draw(spec: dict, size: int = 32) -> np.ndarray:
    """The (size, size, 3) uint8 image of a spec: each object filled in its colour inside its box,
    on black."""
    from PIL import Image, ImageDraw

    s = SUPERSAMPLE
    canvas = Image.new("RGB", (size * s, size * s), (0, 0, 0))
    pen = ImageDraw.Draw(canvas)
    for o in spec["objects"]:
        x0, y0, x1, y1 = o["box"]
        box = (x0 * s, y0 * s, (x1 + 1) * s - 1, (y1 + 1) * s - 1)  # the box's pixels, at s x
        fill = COLOURS[o["colour"]]
        if o["shape"] == "circle":
            pen.ellipse(box, fill=fill)
        elif o["shape"] == "square":
            pen.rectangle(box, fill=fill)
        elif o["shape"] == "triangle":
            pen.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
        else:
            _draw_digit(canvas, o["shape"], box, fill)
    return np.asarray(canvas.resize((size, size), Image.BOX), np.uint8)


def _draw_digit(canvas, ch: str, box, fill) -> None:
    from PIL import ImageDraw

    h = box[3] - box[1] + 1
    font = _font(h)
    pen = ImageDraw.Draw(canvas)
    left, top, right, bottom = pen.textbbox((0, 0), ch, font=font)
    x = (box[0] + box[2] + 1) / 2 - (left + right) / 2
    y = (box[1] + box[3] + 1) / 2 - (top + bottom) / 2
    pen.text((x, y), ch, fill=fill, font=font)


@lru_cache(maxsize=64)
def _font(height: int):
    """DejaVu Sans Bold (bundled with matplotlib) at the largest size whose digits fit in height pixels."""
    from matplotlib import get_data_path
    from PIL import ImageFont

    path = str(Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")
    points = int(height * 1.4)
    while points > 4:
        font = ImageFont.truetype(path, points)
        _, top, _, bottom = font.getbbox("0123456789")
        if bottom - top <= height and max(font.getbbox(d)[2] - font.getbbox(d)[0] for d in DIGITS) <= height:
            return font
        points -= 1
    return ImageFont.truetype(path, points)
