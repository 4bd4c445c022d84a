"""The scene judge (eval/geneval.py, trained by train/judge.py): right on real scene images of
every vocabulary and split before it grades generators, and failing images that do not match
the spec they are judged against (another colour, the relation's objects swapped, another count,
another object)."""
import copy

import numpy as np
import pytest
import torch

from genforge.data import scenes
from genforge.errors import CheckpointError, DataError
from genforge.eval import geneval as ge


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    from genforge.train.judge import train_judge

    root = tmp_path_factory.mktemp("cache")
    out = root / "judges" / ge.JUDGE_VERSION  # where $GENFORGE_CACHE=root keeps it
    train_judge(out, scenes_per_size=500, max_iters=300)
    return ge.load_judge(out), root


@pytest.mark.parametrize("vocab", ["shapes", "digits", "all"])
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_judge_is_right_on_real_scenes(judge, vocab, split):
    images, _, specs = scenes.make_scenes(300, split, 32, seed=7, vocab=vocab)
    acc = ge.accuracy(ge.judge_images(images, specs, judge[0]))
    assert set(acc) == {*ge.TASKS, "overall", "n"}
    for task in ge.TASKS:
        assert acc[task] >= 0.98, (task, acc)


def test_judge_reads_other_canvas_sizes_and_float_images(judge):
    images, _, specs = scenes.make_scenes(150, "heldout", 48, seed=3, vocab="all")
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W) in [0, 1]
    acc = ge.accuracy(judge[0].judge(floats, specs))
    assert acc["overall"] >= 0.98, acc


def test_judge_reads_blurred_noisy_scenes(judge):
    """Generated images have soft edges and a grainy background; the judge trains on such scenes."""
    from scipy import ndimage

    images, _, specs = scenes.make_scenes(200, "heldout", 32, seed=4, vocab="all")
    x = ndimage.gaussian_filter(images / 255, sigma=(0, 0.5, 0.5, 0))
    x = x + np.random.default_rng(0).normal(0, 0.03, x.shape)
    acc = ge.accuracy(judge[0].judge((np.clip(x, 0, 1) * 255).round().astype(np.uint8), specs))
    for task in ge.TASKS:
        assert acc[task] >= 0.98, (task, acc)


def test_objects_are_read_as_drawn(judge):
    images, _, specs = scenes.make_scenes(60, "train", 32, seed=1, vocab="all")
    for objs, spec in zip(judge[0].read(images), specs):
        got = sorted((o["shape"], o["colour"]) for o in objs)
        assert got == sorted((o["shape"], o["colour"]) for o in spec["objects"]), spec["caption"]


def wrong(spec: dict, how: str) -> dict | None:
    """spec changed so that its image no longer matches it (None where the change is a no-op)."""
    s = copy.deepcopy(spec)
    objs = s["objects"]
    if how == "colour":
        others = [c for c in scenes.COLOURS if c != objs[0]["colour"]]
        for o in objs:
            o["colour"] = others[len(s["caption"]) % len(others)]
    elif how == "object":
        others = [o for o in scenes.OBJECTS if o != objs[0]["shape"]]
        for o in objs:
            o["shape"] = others[len(s["caption"]) % len(others)]
    elif how == "count":
        s["objects"] = objs + [objs[0]] if len(objs) == 2 else objs[:2]
    elif how == "swap":  # the same relation words, subject and object swapped
        i, words, j = s["relation"]
        if (objs[i]["shape"], objs[i]["colour"]) == (objs[j]["shape"], objs[j]["colour"]):
            return None
        s["relation"] = [j, words, i]
    elif how == "swap colours":  # of two objects of one shape, it swaps their places: a position test
        if objs[0]["colour"] == objs[1]["colour"] or objs[0]["shape"] == objs[1]["shape"]:
            return None
        objs[0]["colour"], objs[1]["colour"] = objs[1]["colour"], objs[0]["colour"]
    return s


@pytest.mark.parametrize(("kind", "how", "task"), [
    ("single", "colour", "colour"), ("single", "object", "single_object"),
    ("count", "count", "counting"), ("count", "colour", "colour"),
    ("relation", "swap", "position"), ("relation", "swap colours", "colour_binding"),
    ("relation", "object", "two_object")])
@pytest.mark.parametrize("vocab", ["shapes", "all"])
def test_judge_fails_images_that_do_not_match(judge, kind, how, task, vocab):
    train, heldout = (scenes.make_scenes(200, split, 32, seed=11, vocab=vocab) for split in ("train", "heldout"))
    images, specs = np.concatenate([train[0], heldout[0]]), train[2] + heldout[2]
    pairs = [(im, wrong(s, how)) for im, s in zip(images, specs) if s["kind"] == kind]
    pairs = [(im, s) for im, s in pairs if s is not None]
    assert len(pairs) >= 20
    results = judge[0].judge(np.stack([im for im, _ in pairs]), [s for _, s in pairs])
    passed = np.mean([r[task] for r in results])
    assert passed <= 0.02, (kind, how, task, passed)


def test_grade_rules_on_hand_made_objects():
    def obj(shape, colour, x, y):
        return {"shape": shape, "colour": colour, "centre": [x, y], "area": 50}

    spec = {"kind": "relation", "relation": [0, "above", 1],
            "objects": [{"shape": "circle", "colour": "red"}, {"shape": "circle", "colour": "blue"}]}
    right = [obj("circle", "red", 10, 5), obj("circle", "blue", 10, 20)]
    assert ge.grade(right, spec) == {"two_object": True, "position": True, "colour_binding": True}
    swapped = [obj("circle", "blue", 10, 5), obj("circle", "red", 10, 20)]
    # both objects are there in their colours, in each other's places
    assert ge.grade(swapped, spec) == {"two_object": True, "position": False, "colour_binding": True}
    recoloured = [obj("circle", "red", 10, 5), obj("circle", "green", 10, 20)]
    assert ge.grade(recoloured, spec) == {"two_object": True, "position": True, "colour_binding": False}
    assert ge.grade(right[:1], spec) == {"two_object": False, "position": False, "colour_binding": False}
    beside = [obj("circle", "red", 4, 10), obj("circle", "blue", 20, 11)]  # left of, not above
    assert not ge.grade(beside, spec)["position"]
    count = {"kind": "count", "objects": [{"shape": "square", "colour": "green"}] * 3}
    three = [obj("square", "green", x, 5) for x in (2, 10, 20)]
    assert ge.grade(three, count) == {"counting": True, "colour": True}
    assert ge.grade([*three, obj(None, "green", 30, 30)], count)["counting"]  # an unknown blob is no square
    assert ge.grade(three[:2], count) == {"counting": False, "colour": True}
    assert ge.grade([*three[:2], obj("square", "red", 20, 5)], count)["colour"] is False


def test_geneval_runs_a_generator_on_heldout_prompts(judge):
    def perfect(captions):  # draws exactly what it was asked for: the held-out scenes themselves
        lookup = dict(zip(caps, images))
        return np.stack([lookup[c] for c in captions])

    def blank(captions):
        return torch.zeros(len(captions), 3, 32, 32)

    images, caps, _ = scenes.make_scenes(64, "heldout", 32, seed=0, vocab="shapes")
    good = ge.geneval(perfect, judge[0], "shapes", n=64, seed=0, batch=16)
    assert good["n"] == 64 and good["overall"] >= 0.98
    bad = ge.geneval(blank, judge[0], "shapes", n=64, seed=0)
    assert bad["overall"] == 0.0
    with pytest.raises(DataError, match="generate gave 1 images for 16 captions"):
        ge.geneval(lambda c: images[:1], judge[0], "shapes", n=64, batch=16)


def test_bad_images_are_a_data_error(judge):
    with pytest.raises(DataError, match=r"images of shape \(2, 32, 32\)"):
        judge[0].read(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(DataError, match="2 images but 1 specs"):
        judge[0].judge(np.zeros((2, 32, 32, 3), np.uint8), [{"kind": "single"}])


def test_cached_judge_is_loaded_not_retrained(judge, tmp_path, monkeypatch):
    from genforge.train import judge as train_judge_mod

    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="no trained scene judge"):
        ge.load_judge()
    monkeypatch.setenv("GENFORGE_CACHE", str(judge[1]))
    monkeypatch.setattr(train_judge_mod, "train_judge", lambda *a, **k: pytest.fail("retrained a cached judge"))
    loaded = train_judge_mod.scene_judge()
    images, _, specs = scenes.make_scenes(30, "heldout", 32, seed=2)
    assert ge.accuracy(loaded.judge(images, specs))["overall"] >= 0.98
