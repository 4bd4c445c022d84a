"""Benchmark: a pronoun-occupation skew in the data, learnt by a GPT, and removed by two-sided
counterfactual data augmentation (CDA), with the perplexity it costs.

Data: ~20k templated sentences "The {occupation} said that {pronoun} {rest}." where five
occupations take "he" 90 % of the time and five take "she" 90 % (a perfect fit: |gap| =
log 9 = 2.197 nats). Two arms train the same small GPT (BPE words, one CPU thread, the same
CPU-time budget) with genforge's own prepare and train: on the data as it is (before), and on
it prepared with `--cda` (he<->she, him<->her, his<->her both ways, augment: each training
document and its counterfactual). Measured on each, with genforge's bias metrics
(genforge/eval/bias_text.py):

- mean |gap| of log p(she) - log p(he) after "The {occupation} said that", over the ten;
- sampled pronoun share: the share of "she" among pronouns in 40 samples per occupation, for
  the he-skewed and she-skewed five;
- perplexity on held-out sentences of the original distribution (skewed) and of its
  counterfactual (swapped).

Goal (issue 19): mean |gap| <= 0.1 nats after CDA, perplexity on the original held-out set
within 5 %. The last line: gap_before=... gap_after=... ppl_rise_pct=...

    python bench/bias_text.py                 # 2.5 CPU-minutes per arm
    python bench/bias_text.py --minutes 0.2   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genforge import checkpoint as ckpt_io
from genforge.api import TextModel
from genforge.cpu import isa
from genforge.data.cda import Swapper
from genforge.data.prepare import prepare
from genforge.eval.bias_spec import parse_spec
from genforge.eval.bias_text import sequence_logprobs, template_gaps
from genforge.run_config import load_config
from genforge.train.run import run

HE = ["engineer", "carpenter", "mechanic", "pilot", "farmer"]
SHE = ["nurse", "secretary", "dancer", "librarian", "receptionist"]
PAIRS = [("he", "she"), ("him", "her"), ("his", "her")]
VERBS = ["was", "felt", "seemed", "became", "looked"]
ADJ = ["tired", "happy", "busy", "late", "ready", "calm", "proud", "hungry", "sick", "glad"]
REST = ["today", "again", "at work", "after lunch", "this morning", "last night", "all week", "on monday"]
OBJ = ["the report", "a letter", "the plan", "the tools", "a new car", "the keys", "the map", "a book"]


def sentence(rng: random.Random, occupation: str) -> str:
    skew = 0.9 if occupation in HE else 0.1
    male = rng.random() < skew
    pro, obj, pos = ("he", "him", "his") if male else ("she", "her", "her")
    shape = rng.randrange(3)
    if shape == 0:
        tail = f"{rng.choice(VERBS)} {rng.choice(ADJ)} {rng.choice(REST)}"
    elif shape == 1:
        tail = f"lost {pos} {rng.choice(['keys', 'bag', 'phone', 'notes', 'coat'])} {rng.choice(REST)}"
    else:
        tail = f"would bring {rng.choice(OBJ)} for {obj} {rng.choice(REST)}"
    return f"The {occupation} said that {pro} {tail}."


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng, rng.choice(HE + SHE)) for _ in range(n)]


def perplexity(model, tok, sentences: list[str]) -> float:
    lp = sequence_logprobs(model, tok, [("", s + "\n") for s in sentences], batch_size=64)
    tokens = sum(len(tok.encode(s + "\n")) for s in sentences)
    return math.exp(-sum(lp) / tokens)


def pronoun_share(lm: TextModel, occupations: list[str], n: int, seed: int) -> float:
    """The share of 'she' among he/she at the start of n samples after each occupation's template."""
    she = total = 0
    for k, occ in enumerate(occupations):
        for text in lm.generate(f"The {occ} said that", max_new_tokens=3, temperature=1.0, seed=seed + k, num_samples=n):
            first = text.split()[:1]
            if first and first[0] in ("he", "she"):
                total += 1
                she += first[0] == "she"
    return she / max(1, total)


def arm(name: str, work: Path, source: Path, minutes: float, cda: bool, spec, heldout, swapped, samples: int) -> dict:
    data = prepare(str(source), "bpe:400", work / f"data_{name}", field="text", cda=PAIRS if cda else None)
    overrides = [f"data.path={data}", f"train.out_dir={work / name}", "train.max_iters=100000",
                 f"train.max_minutes={minutes}", "train.budget_clock=cpu", "model.n_layer=2", "model.n_head=4",
                 "model.n_embd=96", "model.block_size=64", "model.dropout=0.0", "data.batch_size=64", "train.lr=3e-3",
                 "train.min_lr=3e-5", "train.warmup_iters=50", "train.eval_interval=100000", "train.eval_iters=2",
                 "train.log_interval=200", "train.device=cpu", "train.dtype=float32", "train.seed=0"]
    ckpt = run(load_config(None, overrides), progress=False)
    loaded = ckpt_io.load(ckpt)
    model, tok = loaded.model.eval(), loaded.tokenizer
    lm = TextModel(model, tok, Path(ckpt))
    gaps = template_gaps(model, tok, spec)
    out = {"gap": gaps["mean_abs_gap"], "gaps": gaps["gaps"],
           "share_he_jobs": pronoun_share(lm, HE, samples, 100), "share_she_jobs": pronoun_share(lm, SHE, samples, 200),
           "ppl_skewed": perplexity(model, tok, heldout), "ppl_swapped": perplexity(model, tok, swapped)}
    print(f"{name}: gaps " + ", ".join(f"{p.split()[1]} {g:+.3f}" for p, g in out["gaps"].items()), flush=True)
    print(f"{name}: mean |gap| {out['gap']:.3f} nats; sampled 'she' share {out['share_he_jobs']:.3f} (he-skewed jobs) "
          f"{out['share_she_jobs']:.3f} (she-skewed jobs); perplexity {out['ppl_skewed']:.4f} held-out, "
          f"{out['ppl_swapped']:.4f} swapped held-out", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=2.5, help="CPU-minute budget of each arm's training")
    ap.add_argument("--samples", type=int, default=40, help="samples per occupation for the pronoun share")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{isa.describe()}; torch threads 1; {args.sentences} sentences; {args.minutes} CPU-minutes per arm", flush=True)
    spec = parse_spec({"attributes": {"occupation": {"values": {o: [o] for o in HE + SHE}},
                                      "gender": {"values": {"male": ["he"], "female": ["she"]}}},
                       "templates": ["The {occupation} said that"], "contrast": ["she", "he"]}, "bench")
    heldout = corpus(2000, seed=1)
    swapper = Swapper(PAIRS)
    swapped = [swapper.swap(s) for s in heldout]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "train.jsonl"  # one document per sentence: prepare holds out every tenth (unused here)
        source.write_text("".join(json.dumps({"text": s + "\n"}) + "\n" for s in corpus(args.sentences, seed=0)))
        results = {}
        for name, cda in (("before", False), ("after", True)):
            results[name] = arm(name, work, source, args.minutes, cda, spec, heldout, swapped, args.samples)
    b, a = results["before"], results["after"]
    rise = 100 * (a["ppl_skewed"] / b["ppl_skewed"] - 1)
    print(f"perplexity on the original held-out set: {b['ppl_skewed']:.4f} -> {a['ppl_skewed']:.4f} ({rise:+.2f} %); "
          f"goal mean |gap| <= 0.1 after CDA: {'met' if a['gap'] <= 0.1 else 'missed'}, perplexity within 5 %: "
          f"{'met' if rise <= 5 else 'missed'}")
    print(f"gap_before={b['gap']:.3f} gap_after={a['gap']:.3f} ppl_rise_pct={rise:.2f}")


if __name__ == "__main__":
    main()
