"""Measured gain from human feedback, with a simulated reviewer.

    python bench/rlhf_gain.py [--out runs/rlhf_gain] [--ratings 500] [--sft-iters 600] [--threads 1]
                              [--methods dpo,ppo,grpo]

1. SFT model: a small char-level GPT trained on builtin:shakespeare (reused when OUT/sft exists).
2. A real `genforge serve` subprocess with --feedback-db and --prompts (beginnings of verse lines
   from the plays); a reviewer script logs in to the reviewer page over HTTP (/review/api: token
   login, CSRF header) and rates each pair it is shown by a HIDDEN RULE until it has given
   --ratings ratings. The rule lives only in this file: the reviewer applies it, and the report
   applies it to held-out samples after training; no training code receives it.
3. `genforge align` (Python API) on the same database with --method dpo, ppo and grpo (each a run
   of the one training loop). Each exports the ratings, holds out 20 % of the prompts, optimises
   (the reward model is trained once, by the first, and reused), and compares the new checkpoint
   with the SFT model on the held-out prompts.

Hidden rule: the reviewer prefers the output with more line breaks (short verse lines, many
speakers); equal counts are rated a tie (ties carry no preference and are not trained on).

The first line names the CPU's instruction set and the dtypes (the SFT run's, the align runs').
Last line: winrate_dpo=... winrate_ppo=... winrate_grpo=... ppl_rise_dpo_pct=... ppl_rise_ppo_pct=...
ppl_rise_grpo_pct=... rm_acc=...
(win rates under the hidden rule on held-out prompts, ties counting half; perplexity rise on the
SFT model's validation split in percent; the reward model's held-out pairwise accuracy).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import start_server as serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def hidden_rule(prompt: str, text: str) -> float:
    """What the simulated reviewer wants: more lines."""
    return float(text.count("\n"))


def sft_checkpoint(out: Path, iters: int) -> Path:
    from genforge import checkpoint as ckpt_io
    from genforge.run_config import load_config
    from genforge.train.run import run

    if (out / "sft" / "latest").exists():
        return ckpt_io.resolve(out / "sft")
    cfg = load_config("lm/shakespeare_char_fast", [
        f"data.path={out / 'data'}", f"train.out_dir={out / 'sft'}", f"train.max_iters={iters}",
        "model.n_layer=3", "model.n_embd=96", "model.n_head=4", "model.block_size=128", "data.batch_size=32",
        "train.eval_interval=100", "train.device=cpu"])
    return run(cfg, progress=False)


def review_prompts(n: int, seed: int = 0) -> list[str]:
    """Beginnings (3 words) of distinct verse lines from the plays: one prompt per line of the file."""
    from genforge.data.builtin import builtin_documents

    lines = sorted({" ".join(line.split()[:3]) + " " for _, text in builtin_documents("shakespeare")
                    for line in text.splitlines() if len(line.split()) >= 6 and line[:1].isupper() and ":" not in line})
    return random.Random(seed).sample(lines, n)


def start_server(ckpt: Path, db: Path, prompts: Path, max_tokens: int, threads: int) -> tuple[subprocess.Popen, str]:
    return serve([f"sft={ckpt}", "--feedback-db", str(db), "--prompts", str(prompts), "--pairs-per-prompt", "2",
                  "--review-max-tokens", str(max_tokens), "--review-temperature", "1.0"], threads)


def simulated_reviewer(url: str, token: str, budget: int) -> dict[str, int]:
    """Log in to the reviewer page and rate pairs by the hidden rule; returns the choice counts."""
    counts = {"a": 0, "b": 0, "tie": 0}
    with httpx.Client(base_url=url, timeout=120) as c:
        login = c.post("/review/api/login", json={"token": token})
        login.raise_for_status()
        csrf = login.json()["csrf"]
        while sum(counts.values()) < budget:
            pair = c.get("/review/api/next").json()["pair"]
            if pair is None:
                break
            sa, sb = hidden_rule(pair["prompt"], pair["a"]), hidden_rule(pair["prompt"], pair["b"])
            choice = "a" if sa > sb else "b" if sb > sa else "tie"
            r = c.post("/review/api/rate", json={"pair_id": pair["id"], "choice": choice},
                       headers={"X-CSRF-Token": csrf})
            r.raise_for_status()
            counts[choice] += 1
    return counts


def collect(out: Path, ckpt: Path, ratings: int, max_tokens: int, threads: int) -> Path:
    from genforge.align.feedback import open_db

    db_path = out / "feedback.db"
    if db_path.exists():
        db_path.unlink()
    token = open_db(db_path).add_reviewer("simulated")
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(review_prompts(ratings // 2 + 10)) + "\n", encoding="utf-8")
    proc, url = start_server(ckpt, db_path, prompts, max_tokens, threads)
    try:
        t0 = time.perf_counter()
        counts = simulated_reviewer(url, token, ratings)
        print(f"reviewer: {sum(counts.values())} ratings over HTTP in {time.perf_counter() - t0:.0f}s {counts}",
              flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return db_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/rlhf_gain")
    ap.add_argument("--ratings", type=int, default=500)
    ap.add_argument("--sft-iters", type=int, default=600)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dpo-iters", type=int, default=120)
    ap.add_argument("--ppo-iters", type=int, default=25)
    ap.add_argument("--grpo-iters", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="dpo,ppo,grpo", help="comma-separated, dpo first (it trains the reward model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genforge.cpu import isa
    from genforge.device import resolve_dtype

    print(f"{isa.describe()}; dtype: SFT train.dtype=auto -> {resolve_dtype('auto', torch.device('cpu'))}, "
          "reward model and align runs float32", flush=True)
    from genforge.align.pipeline import AlignOptions, align

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = sft_checkpoint(out, args.sft_iters)
    print(f"SFT checkpoint {ckpt} ({time.perf_counter() - t0:.0f}s)", flush=True)
    db = collect(out, ckpt, args.ratings, args.max_new_tokens, args.threads)
    reports = {}
    # DPO: beta 0.1, lr 4e-5; PPO: KL coefficient 0.2, lr 3e-5 (both chosen on an earlier run so that
    # perplexity stays within a few percent: more steps raise the win rate and the perplexity together);
    # GRPO: the same KL coefficient (its beta), lr 1e-4 (a rollout batch is 2 steps to PPO's 4; at 3e-5 it
    # moved 0.1 nats from the SFT model, winning 0.63; at 1e-4 2 nats and 0.81, perplexity +3 %)
    settings = {"dpo": (args.dpo_iters, 4e-5), "ppo": (args.ppo_iters, 3e-5), "grpo": (args.grpo_iters, 1e-4)}
    methods = args.methods.split(",")
    for method in methods:
        iters, lr = settings[method]
        t1 = time.perf_counter()
        rm = reports[methods[0]]["reward_model"] if reports else None  # one reward model for every method
        opts = AlignOptions(method=method, iters=iters, lr=lr, max_new_tokens=args.max_new_tokens, eval_samples=4,
                            beta=0.1, kl_coef=0.2, reward_iters=100, reward_model=rm)
        reports[method] = align(ckpt, db, out / method, opts, rule=hidden_rule, progress=False)
        r = reports[method]
        print(f"{method}: winrate_rule {r['winrate_rule']:.3f}  winrate_rm {r['winrate_rm']:.3f}  "
              f"lines {r['rule_old_mean']:.2f} -> {r['rule_new_mean']:.2f}  KL {r['kl_to_reference']:.2f} nats  "
              f"ppl {r['ppl_old']:.3f} -> {r['ppl_new']:.3f} ({r['ppl_rise_pct']:+.2f} %)  rm_acc {r['rm_accuracy']:.3f}  "
              f"pairs {r['pairs']}  ({time.perf_counter() - t1:.0f}s)", flush=True)
    (out / "summary.json").write_text(json.dumps({m: {k: v for k, v in r.items() if not isinstance(v, list)}
                                                  for m, r in reports.items()}, indent=2))
    print(f"total {time.perf_counter() - t0:.0f}s")
    print(" ".join(f"winrate_{m}={reports[m]['winrate_rule']:.3f}" for m in methods) + " "
          + " ".join(f"ppl_rise_{m}_pct={reports[m]['ppl_rise_pct']:.2f}" for m in methods)
          + f" rm_acc={reports[methods[0]]['rm_accuracy']:.3f}")


if __name__ == "__main__":
    main()
