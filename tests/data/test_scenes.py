"""Procedural scenes: determinism, the held-out split, geometry of relations, what is drawn where."""
import numpy as np
import pytest

from genforge.data.scenes import (
    COLOURS,
    canonical,
    compositions,
    heldout_compositions,
    heldout_pairs,
    heldout_relations,
    make_scenes,
    relation_holds,
)
from genforge.errors import DataError


@pytest.mark.parametrize("vocab", ["shapes", "all"])
def test_same_seed_same_scenes_other_seed_other_scenes(vocab):
    x1, c1, s1 = make_scenes(40, seed=3, vocab=vocab)
    x2, c2, s2 = make_scenes(40, seed=3, vocab=vocab)
    x3, c3, _ = make_scenes(40, seed=4, vocab=vocab)
    assert x1.dtype == np.uint8 and x1.shape == (40, 32, 32, 3)
    assert np.array_equal(x1, x2) and c1 == c2 and s1 == s2
    assert c1 != c3 and not np.array_equal(x1, x3)


def test_pinned_captions():
    # a change to the sampler or the vocabulary should be noticed
    _, captions, _ = make_scenes(4, seed=0)
    assert captions == ['an orange square to the left of a purple circle', 'a small orange circle',
                        'a yellow triangle above a purple square', 'two yellow squares']


def test_heldout_rule_is_the_documented_one():
    assert heldout_pairs("shapes") == [("red", "circle"), ("green", "square"), ("blue", "triangle")]
    assert heldout_relations("shapes") == [
        ("circle", "to the left of", "circle"), ("circle", "to the left of", "triangle"),
        ("square", "above", "circle"), ("square", "above", "triangle"), ("triangle", "to the left of", "square")]
    # every object and every colour still appears in training, in other pairs and relations
    for vocab in ("shapes", "all"):
        held = set(heldout_pairs(vocab))
        objs = {o for _, o in held}
        for o in objs:
            assert sum((c, o) not in held for c in COLOURS) == len(COLOURS) - 1


@pytest.mark.parametrize("vocab", ["shapes", "digits", "all"])
def test_train_never_holds_a_heldout_composition_and_heldout_holds_each(vocab):
    held = set(heldout_compositions(vocab))
    _, captions, specs = make_scenes(600, "train", vocab=vocab, seed=1)
    for cap, spec in zip(captions, specs):
        assert not compositions(spec) & held, (cap, compositions(spec) & held)
        assert spec["heldout"] == []
    # the captioned pairs in training still cover every allowed colour-object pair of the shapes
    if vocab == "shapes":
        seen = set().union(*(compositions(s) for s in specs))
        assert {(c, o) for c in COLOURS for o in ("circle", "square", "triangle")} - held <= seen
    n = len(held)
    _, captions, specs = make_scenes(n, "heldout", vocab=vocab, seed=1)
    found = set()
    for spec in specs:
        inside = compositions(spec) & held
        assert len(inside) == 1 and sorted(inside) == spec["heldout"]  # exactly one held-out composition
        found |= inside
    assert found == held


def test_heldout_caption_names_its_composition():
    _, captions, specs = make_scenes(len(heldout_compositions()), "heldout", seed=0)
    for cap, spec in zip(captions, specs):
        (comp,) = spec["heldout"]
        if len(comp) == 2:
            assert f"{comp[0]} {comp[1]}" in cap
        else:
            i, words, j = spec["relation"]
            objs = spec["objects"]
            assert canonical(objs[i]["shape"], words, objs[j]["shape"]) == comp
            assert words in cap


@pytest.mark.parametrize("size", [16, 32, 64])
def test_relations_hold_geometrically_and_objects_do_not_overlap(size):
    _, captions, specs = make_scenes(300, size=size, vocab="all", seed=2)
    relations = 0
    for cap, spec in zip(captions, specs):
        objs = spec["objects"]
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 <= x1 < size and 0 <= y0 <= y1 < size
            assert o["centre"] == [(x0 + x1) // 2, (y0 + y1) // 2]
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i]["box"], objs[j]["box"]
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], cap
        if spec["relation"] is not None:
            relations += 1
            i, words, j = spec["relation"]
            (ax, ay), (bx, by) = objs[i]["centre"], objs[j]["centre"]
            # checked from the centres directly, not through the module's own rule
            ok = {"above": by - ay > abs(bx - ax), "below": ay - by > abs(bx - ax),
                  "to the left of": bx - ax > abs(by - ay), "to the right of": ax - bx > abs(by - ay)}[words]
            assert ok and relation_holds(spec), cap
            assert (objs[i]["colour"], objs[i]["shape"]) != (objs[j]["colour"], objs[j]["shape"]), cap
            assert cap.startswith(f"a {objs[i]['colour']} {objs[i]['shape']} {words}") or \
                cap.startswith(f"an {objs[i]['colour']} {objs[i]['shape']} {words}")
    assert relations > 50


def test_pixels_lie_inside_boxes_in_the_named_colour():
    x, _, specs = make_scenes(60, vocab="all", seed=5)
    for img, spec in zip(x, specs):
        inside = np.zeros(img.shape[:2], bool)
        for o in spec["objects"]:
            x0, y0, x1, y1 = o["box"]
            inside[y0:y1 + 1, x0:x1 + 1] = True
            patch = img[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3).astype(int)
            lit = patch[patch.sum(1) > 200]
            assert len(lit) >= 4  # drawn
            # the brightest pixels are the object's colour (anti-aliased edges are darker)
            target = np.array(COLOURS[o["colour"]])
            brightest = lit[np.argmax(lit.sum(1))]
            assert np.abs(brightest - target).max() <= 2
        assert img[~inside].max() == 0  # nothing drawn outside the boxes


def test_count_captions_match_specs():
    *_, specs = make_scenes(200, seed=6)
    counts = [s for s in specs if s["kind"] == "count"]
    assert counts
    for s in counts:
        word = s["caption"].split()[0]
        assert {"two": 2, "three": 3}[word] == s["count"] == len(s["objects"])
        assert len({(o["shape"], o["colour"], o["size"]) for o in s["objects"]}) == 1


def test_bad_arguments():
    with pytest.raises(DataError, match="split='test'"):
        make_scenes(1, split="test")
    with pytest.raises(DataError, match="vocab='letters'"):
        make_scenes(1, vocab="letters")
    with pytest.raises(DataError, match="size=8"):
        make_scenes(1, size=8)
