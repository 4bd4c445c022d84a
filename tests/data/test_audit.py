"""genforge audit: numbers against hand-computed cases (TV, entropy, PMI/NPMI and its interval,
duplicates), every kind of data (jsonl, prepared tokens, image labels, captions), memory that
does not grow with the corpus, the report files, and each bad spec as a one-line error."""
import json
import math
import random
import tracemalloc

import numpy as np
import pytest

from genforge.cli import main
from genforge.data.audit import audit, detect_kind
from genforge.data.audit_stats import Distribution, pmi_stats
from genforge.data.prepare import prepare
from genforge.errors import ConfigError
from genforge.eval.bias_spec import parse_spec

GENDER = {"values": {"male": ["he", "him", "his"], "female": ["she", "her"]}}
JOBS = {"values": {"nurse": ["nurse", "nurses"], "engineer": ["engineer"]}}


def _jsonl(path, texts, **fields):
    rows = [{"text": t, **{k: v[i] for k, v in fields.items()}} for i, t in enumerate(texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_distribution_tv_and_entropy_by_hand():
    d = Distribution(["a", "b"], {"a": 0.5, "b": 0.5})
    d.add({0: 3})
    d.add({1: 1})
    r = d.result()
    assert r["shares"] == [0.75, 0.25]
    assert r["tv"] == pytest.approx(0.25)
    assert r["entropy_bits"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))  # 0.8113
    t = Distribution(["a", "b", "c"], {"a": 0.2, "b": 0.3, "c": 0.5})
    t.add({0: 1, 1: 1, 2: 2})
    assert t.result()["tv"] == pytest.approx(0.5 * (0.05 + 0.05 + 0.0))


def test_audit_counts_npmi_by_hand(tmp_path):
    # 10 documents: he+nurse in 3, he alone in 1, nurse alone in 2, neither in 4
    texts = ["He said the nurse left."] * 3 + ["he was late."] + ["The nurse's coat.", "nurses rest."] + ["nothing."] * 4
    texts = [f"{t} ({i})" for i, t in enumerate(texts)]  # no exact duplicates
    spec = parse_spec({"attributes": {"gender": GENDER, "job": JOBS}, "cooccurrence": [["gender", "job"]]})
    r = audit(str(_jsonl(tmp_path / "c.jsonl", texts)), spec)
    assert r["documents"] == 10
    assert r["attributes"]["gender"]["counts"] == [4, 0]  # 'He' matched without case
    assert r["attributes"]["job"]["counts"] == [5, 0]  # nurse's and nurses count
    cell = next(c for c in r["cooccurrence"][0]["cells"] if c["gender"] == "male" and c["job"] == "nurse")
    assert (cell["together"], cell["first"], cell["second"], cell["units"]) == (3, 4, 5, 10)
    pmi = math.log(0.3 / (0.4 * 0.5))
    assert cell["pmi"] == pytest.approx(pmi)
    assert cell["npmi"] == pytest.approx(pmi / -math.log(0.3))  # 0.3368
    never = next(c for c in r["cooccurrence"][0]["cells"] if c["gender"] == "female")
    assert never["npmi"] is None  # 'female' never appears: no PMI at all


def test_pmi_interval_matches_simulation():
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.15, 0.2, 0.55])  # p11, p10, p01, p00
    n = 2000
    draws = rng.multinomial(n, p, size=20000)
    n11, n1, n2 = draws[:, 0], draws[:, 0] + draws[:, 1], draws[:, 0] + draws[:, 2]
    pmis = np.log(n11 * n / (n1 * n2))
    s = pmi_stats(200, 500, 600, n)
    half = (s["pmi_ci"][1] - s["pmi_ci"][0]) / 2
    assert half / 1.959964 == pytest.approx(pmis.std(), rel=0.05)
    assert s["pmi"] == pytest.approx(math.log(0.1 / (0.25 * 0.3)))


def test_exact_and_near_duplicates(tmp_path):
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    base = [rng.choice(vocab) for _ in range(200)]
    near = list(base)
    near[100] = "changed"  # 5 of 196 five-word shingles differ: Jaccard 191/201 = 0.95
    other = [rng.choice(vocab) for _ in range(200)]
    texts = [" ".join(base), " ".join(other), " ".join(base), " ".join(near)]
    r = audit(str(_jsonl(tmp_path / "d.jsonl", texts)))
    d = r["duplicates"]
    assert d["exact_duplicates"] == 1 and d["exact_examples"] == [{"document": 2, "copy_of": 0}]
    assert d["near_duplicates"] == 1 and d["near_duplicate_pairs"] == 1
    (e,) = d["examples"]
    assert (e["document"], e["like"]) == (3, 0)
    assert e["jaccard"] == pytest.approx(191 / 201, abs=0.06)


def test_prepared_tokens_audit_like_their_text(tmp_path):
    texts = [f"doc {i}: {'she' if i % 3 else 'he'} is a nurse.\n" for i in range(30)]
    src = _jsonl(tmp_path / "c.jsonl", texts)
    data = prepare(str(src), "char", tmp_path / "tok", field="text")
    spec = parse_spec({"attributes": {"gender": GENDER}})
    assert detect_kind(str(data)) == "tokens"
    from_tokens, from_text = audit(str(data), spec), audit(str(src), spec)
    assert from_tokens["documents"] == from_text["documents"] == 30
    assert from_tokens["attributes"]["gender"]["counts"] == from_text["attributes"]["gender"]["counts"] == [10, 20]


def test_image_labels_and_captions(tmp_path):
    r = audit("builtin:digits")
    a = r["attributes"]["label"]
    assert r["kind"] == "images" and a["total"] == 1797 and len(a["values"]) == 10
    assert a["tv"] == pytest.approx(0.5 * sum(abs(c / 1797 - 0.1) for c in a["counts"]))
    skewed = {str(i): (9 if i < 5 else 1) for i in range(10)}
    spec = parse_spec({"attributes": {"digit": {"field": "label", "values": list(range(10)), "target": skewed}}})
    b = audit("builtin:digits", spec)["attributes"]["digit"]
    assert b["target"][0] == pytest.approx(0.18) and b["tv"] > a["tv"]
    caps = np.array(["a red circle", "a red square", "a blue circle", "a red circle above a blue square"])
    npz = tmp_path / "caps.npz"
    np.savez(npz, images=np.zeros((4, 8, 8, 3), np.uint8), captions=caps)
    spec = parse_spec({"attributes": {"colour": {"values": {"red": ["red"], "blue": ["blue"]}}}})
    c = audit(str(npz), spec)
    assert c["kind"] == "captions" and c["attributes"]["colour"]["counts"] == [3, 2]


def _peak(path, n_docs: int) -> int:
    rng = random.Random(1)
    words = ["he", "she", "nurse", "engineer", "the", "a", "of", "said", "that", "was", "and"]
    with open(path, "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(150)) + f" {i}"}) + "\n")
    spec = parse_spec({"attributes": {"gender": GENDER, "job": JOBS}, "cooccurrence": [["gender", "job"]]})
    tracemalloc.start()
    try:
        audit(str(path), spec)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_corpus(tmp_path):
    small = _peak(tmp_path / "small.jsonl", 60)
    large = _peak(tmp_path / "large.jsonl", 300)  # 5x the text
    # only the end's sort of one band's keys grows (16 bytes a document): 240 documents ~ 4 kB
    assert large - small < 200_000, (small, large)


def test_report_files_and_cli(tmp_path, capsys):
    src = _jsonl(tmp_path / "c.jsonl", ["he is a nurse", "she is an engineer", "he is a nurse"], label=["a", "b", "a"])
    spec = tmp_path / "bias.yaml"
    spec.write_text("attributes:\n  gender:\n    values: {male: [he], female: [she]}\n"
                    "  job:\n    values: {nurse: [nurse], engineer: [engineer]}\n"
                    "  source: {field: label, values: [a, b], target: [1, 1]}\n"
                    "cooccurrence: [[gender, job]]\n")
    assert main(["audit", str(src), "--spec", str(spec), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "## Attribute `gender`" in out and "| male | 2 | 0.667 | 0.500 |" in out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["attribute_gender.png", "attribute_job.png", "attribute_source.png", "audit.json", "audit.md",
                     "cooccurrence_gender_job.png"]
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert report["attributes"]["source"]["counts"] == [2, 1]
    assert report["duplicates"]["exact_duplicates"] == 1
    cell = next(c for c in report["cooccurrence"][0]["cells"] if c["gender"] == "male" and c["job"] == "engineer")
    assert cell["pmi"] == "-inf" and cell["npmi"] == -1.0  # JSON has no -inf


@pytest.mark.parametrize("spec, error", [
    ({"attributes": {"g": {"values": {"male": []}}}}, "empty word list"),
    ({"attributes": {"g": {"values": {"a": ["x"]}, "target": {"b": 1}}}}, "'b' is not one of the values"),
    ({"attributes": {"g": {"values": {"a": ["x"]}}}, "cooccurrence": [["g", "h"]]}, "no attribute 'h'"),
    ({"attributes": {"g": {"values": {"a": ["x"], "b": ["x"]}}}}, "belongs to both"),
    ({"attribute": {}}, "unknown key 'attribute'"),
])
def test_bad_specs(spec, error):
    with pytest.raises(ConfigError, match=error):
        parse_spec(spec)


def test_spec_attributes_absent_from_the_data(tmp_path, capsys):
    src = _jsonl(tmp_path / "c.jsonl", ["he is a nurse", "she is here"])
    with pytest.raises(ConfigError, match="attribute 'job': none of its words"):
        audit(str(src), parse_spec({"attributes": {"job": {"values": {"pilot": ["pilot"], "chef": ["chef"]}}}}))
    with pytest.raises(ConfigError, match="no record of .* has the field 'label'"):
        audit(str(src), parse_spec({"attributes": {"src": {"field": "label", "values": ["a"]}}}))
    with pytest.raises(ConfigError, match="value '10' is not a class"):
        audit("builtin:digits", parse_spec({"attributes": {"d": {"field": "label", "values": list(range(11))}}}))
    spec = tmp_path / "bias.yaml"
    spec.write_text("attributes:\n  job:\n    values: {pilot: [pilot]}\n")
    assert main(["audit", str(src), "--spec", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genforge audit: error: attribute 'job'") and err.count("\n") == 1


def test_baseline_prints_before_after_and_change(tmp_path, capsys):
    skewed = _jsonl(tmp_path / "a.jsonl", ["he is a nurse"] * 3 + ["she is a nurse"])
    balanced = _jsonl(tmp_path / "b.jsonl", ["he is a nurse", "she is a nurse", "he is here", "she is here"])
    spec = tmp_path / "bias.yaml"
    spec.write_text("attributes:\n  gender:\n    values: {male: [he], female: [she]}\n")
    assert main(["audit", str(balanced), "--baseline", str(skewed), "--spec", str(spec)]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["tv_gender"] == ["0.2500", "0.0000", "-0.2500"]
    assert rows["exact_duplicates"] == ["2.0000", "0.0000", "-2.0000"]
