"""`genforge train reward/shakespeare` and `dpo/shakespeare` on exported-format pairs: the reward
model learns a rule (held-out pairwise accuracy), DPO moves the policy toward chosen sides, both
resume exactly, and bad preference files give one-line errors."""
from __future__ import annotations

import json

import pytest
import torch
from align_helpers import make_pairs, pref_overrides, write_jsonl

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.run_config import load_config
from genforge.train.log import read_metrics
from genforge.train.run import run


@pytest.fixture(scope="module")
def prefs_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("prefs") / "prefs.jsonl", make_pairs(60))


def _metrics(run_dir) -> dict[str, list[float]]:
    """name -> its logged values in step order."""
    out: dict[str, list[float]] = {}
    for _step, name, value in read_metrics(run_dir / "metrics.csv"):
        out.setdefault(name, []).append(value)
    return out


@pytest.mark.parametrize(("pool", "least"), [("last", 0.9), ("mean", 0.75)])
def test_reward_model_trains_through_the_cli(tmp_path, tiny_ckpt, prefs_file, pool, least):
    out = tmp_path / "rm"
    rc = main(["train", "reward/shakespeare", *pref_overrides(tiny_ckpt, prefs_file, out, 40),
               "train.lr=3e-3", f"model.pool={pool}", "--no-progress"])
    assert rc == 0
    cfg = ckpt_io.read_config(ckpt_io.resolve(out))
    assert cfg["family"] == "reward" and cfg["data"]["val_pairs"] == 12 and cfg["data"]["train_pairs"] == 48
    # '!' vs '?' at the end: read directly by the last token, diluted in the mean; chance is 0.5
    assert _metrics(out)["val_acc"][-1] >= least

    loaded = ckpt_io.load(out, trainable=True)
    model, _, _ = loaded.model, loaded.config, loaded.path  # the reward checkpoint loads back as a RewardModel
    assert type(model).__name__ == "RewardModel"


@pytest.mark.parametrize("extra", [[], ["dpo.loss=ipo"], ["dpo.label_smoothing=0.1", "dpo.reference=precomputed"]])
def test_dpo_raises_chosen_over_rejected(tmp_path, tiny_ckpt, prefs_file, extra):
    out = tmp_path / "dpo"
    cfg = load_config("dpo/shakespeare", [*pref_overrides(tiny_ckpt, prefs_file, out, 20, section="dpo"),
                                                      "train.lr=3e-3", *extra])
    final = run(cfg, progress=False)
    saved = ckpt_io.read_config(final)
    assert saved["family"] == "gpt" and saved["dpo"]["loss"] == cfg.settings.loss  # a plain decoder checkpoint
    m = _metrics(out)
    assert m["val_margin"][-1] > 0 and m["val_reward_acc"][-1] > 0.6


def test_dpo_frozen_and_precomputed_reference_agree(tmp_path, tiny_ckpt, prefs_file):
    losses = {}
    for ref in ("frozen", "precomputed"):
        out = tmp_path / ref
        run(load_config("dpo/shakespeare",
                        [*pref_overrides(tiny_ckpt, prefs_file, out, 4, section="dpo"), f"dpo.reference={ref}"]), progress=False)
        losses[ref] = _metrics(out)["loss"]
    assert losses["frozen"] == pytest.approx(losses["precomputed"], rel=1e-5)
    assert losses["frozen"][0] == pytest.approx(0.693, abs=0.01)  # policy == reference at the start: log 2


def test_dpo_resume_equals_uninterrupted(tmp_path, tiny_ckpt, prefs_file):
    def cfg(out, iters):
        return load_config("dpo/shakespeare", [*pref_overrides(tiny_ckpt, prefs_file, out, iters, section="dpo"),
                                                            "train.eval_interval=3", "train.log_interval=1"])

    run(cfg(tmp_path / "a", 6), progress=False)
    run(cfg(tmp_path / "b", 3), progress=False)
    run(cfg(tmp_path / "b", 6), resume=True, progress=False)
    a, b = (ckpt_io.load_tensors(ckpt_io.resolve(tmp_path / d) / "model.safetensors") for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "a")["loss"] == _metrics(tmp_path / "b")["loss"]


def test_bad_preference_files(tmp_path, tiny_ckpt, prefs_file, capsys):
    def train(prefs) -> str:
        rc = main(["train", "dpo/shakespeare", *pref_overrides(tiny_ckpt, prefs, tmp_path / "x", 2, section="dpo")])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        return err

    assert "preference file not found" in train(tmp_path / "nope.jsonl")
    assert "no preference pairs" in train(write_jsonl(tmp_path / "empty.jsonl", []))
    same = [{"prompt": "p", "chosen": " dog", "rejected": " dog"}] * 4
    assert "one-sided" in train(write_jsonl(tmp_path / "same.jsonl", same))
    no_prompt = [{"chosen": " dog", "rejected": " fox"}]
    assert "prompt is missing" in train(write_jsonl(tmp_path / "np.jsonl", no_prompt))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "chosen": "b"\n')
    assert "bad.jsonl:1: not valid JSON" in train(tmp_path / "bad.jsonl")
    unknown = [{"prompt": "p", "chosen": " \u00e9t\u00e9", "rejected": " dog"}] * 3
    assert "record 1 (chosen)" in train(write_jsonl(tmp_path / "uk.jsonl", unknown))
    assert "expected a decoder" in _base_error(tmp_path, prefs_file, capsys)


def _base_error(tmp_path, prefs_file, capsys) -> str:
    rm = tmp_path / "not-a-decoder"
    rm.mkdir()
    (rm / "config.json").write_text(json.dumps({"family": "vae", "model": {}}))
    rc = main(["train", "dpo/shakespeare", *pref_overrides(rm, prefs_file, tmp_path / "y", 2, section="dpo")])
    return capsys.readouterr().err if rc == 2 else ""
