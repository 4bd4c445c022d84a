"""The report of an alignment run, on prompts held out from training:

- win rate of the new checkpoint against the old one, by the reward model and by the user's rule
  (samples of the two models with the same seeds, compared pairwise; ties count half);
- the reward model's pairwise accuracy on the held-out pairs;
- KL(new || reference) per response: the mean of sum_t log new(y_t) - log ref(y_t) over samples
  of the new model (a Monte-Carlo estimate, in nats);
- perplexity of both on the original validation data and its rise in percent;
- report.json, report.md and report.png (win rates, reward distributions, perplexity).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from genforge.align.rewards import Rule, load_reward
from genforge.errors import DataError


def win_rate(new: list[float], old: list[float]) -> float:
    """Fraction of comparisons new > old, ties counting half."""
    if not new:
        return float("nan")
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(new, old)) / len(new)


def _samples(ckpt: Path, prompts: list[str], opts, device: str):
    from genforge import checkpoint as ckpt_io
    from genforge.align.rollouts import sample_rollouts
    from genforge.data.tokenizer import Tokenizer

    model = ckpt_io.load(ckpt, trainable=True).model.to(device).eval()
    tok = Tokenizer.from_file(ckpt / "tokenizer.json")
    gen = torch.Generator(device=device).manual_seed(opts.seed + 1)  # the same seed for old and new
    return model, sample_rollouts(model, tok, prompts, opts.eval_samples, opts.max_new_tokens, 1.0, gen)


def evaluate(base: Path, new: Path, rm_path: Path, prompts: list[str], held_pairs: list[dict], opts,
             rule: Rule | None = None, val_data: str | None = None) -> dict:
    """The report's numbers (see the module docstring)."""
    from genforge.data.pairs import encode_pairs
    from genforge.data.tokenizer import Tokenizer
    from genforge.objectives.dpo import response_mask, token_logps

    rm = load_reward(rm_path, base)[0].to(opts.device).eval()
    old_model, old = _samples(base, prompts, opts, opts.device)
    new_model, fresh = _samples(new, prompts, opts, opts.device)
    with torch.no_grad():
        old_scores = rm.score(old.ids, old.start, old.length).tolist()
        new_scores = rm.score(fresh.ids, fresh.start, fresh.length).tolist()
        mask = response_mask(fresh.ids, fresh.start, fresh.length)
        kl = ((token_logps(new_model, fresh.ids) - token_logps(old_model, fresh.ids)) * mask).sum(1)
        arrays = encode_pairs(held_pairs, Tokenizer.from_file(base / "tokenizer.json"), rm.config.gpt.block_size)
        t = {k: torch.from_numpy(v).to(opts.device) for k, v in arrays.items()}
        chosen, rejected = (rm.score(t[s], t[f"{s}_start"], t[f"{s}_len"]) for s in ("chosen", "rejected"))
        rm_acc = float((chosen > rejected).float().mean())
    report = {"prompts": len(prompts), "samples": len(new_scores), "rm_accuracy": rm_acc,
              "winrate_rm": win_rate(new_scores, old_scores), "kl_to_reference": float(kl.mean()),
              "reward_old": old_scores, "reward_new": new_scores,
              "examples": [{"prompt": p, "old": a, "new": b} for p, a, b in
                           list(zip(old.prompts, old.texts, fresh.texts))[:: max(1, opts.eval_samples)][:5]]}
    if rule is not None:
        rule_old = [float(rule(p, s)) for p, s in zip(old.prompts, old.texts)]
        rule_new = [float(rule(p, s)) for p, s in zip(fresh.prompts, fresh.texts)]
        report.update(winrate_rule=win_rate(rule_new, rule_old), rule_old_mean=sum(rule_old) / len(rule_old),
                      rule_new_mean=sum(rule_new) / len(rule_new))
    report.update(perplexity(base, new, val_data, opts.device))
    return report


def perplexity(base: Path, new: Path, val_data: str | None, device: str) -> dict:
    """Perplexity of both checkpoints on the original validation split (or val_data: a text file
    or prepared directory) and the rise in percent; a reason instead when there is no such data."""
    from genforge.eval.perplexity import evaluate_checkpoint

    kw = {}
    if val_data:
        kw = {"file": val_data} if Path(val_data).is_file() else {"data": val_data}
    try:
        old = evaluate_checkpoint(base, device=device, max_windows=200, **kw)["perplexity"]
        fresh = evaluate_checkpoint(new, device=device, max_windows=200, **kw)["perplexity"]
    except DataError as e:
        return {"perplexity_note": f"no perplexity: {e}"}
    return {"ppl_old": old, "ppl_new": fresh, "ppl_rise_pct": 100 * (fresh / old - 1)}


def write_report(report: dict, out: Path) -> None:
    """out/report.json, out/report.md and out/report.png."""
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = [f"# genforge align: {report['method']}", "",
             f"- checkpoint: {report['checkpoint']} (from {report['base']})",
             (f"- pairs: {report['pairs']['train']} trained, {report['pairs']['held_out']} held out; "
              f"{report['prompts']} held-out prompts x samples = {report['samples']} comparisons"),
             f"- reward model held-out pairwise accuracy: {report['rm_accuracy']:.3f}",
             f"- win rate vs the old checkpoint, by the reward model: {report['winrate_rm']:.3f}"]
    if "winrate_rule" in report:
        lines.append(f"- win rate by the rule: {report['winrate_rule']:.3f} "
                     f"(rule mean {report['rule_old_mean']:.3f} -> {report['rule_new_mean']:.3f})")
    lines.append(f"- KL(new || reference) per response: {report['kl_to_reference']:.3f} nats")
    if "ppl_old" in report:
        lines.append(f"- perplexity on the original validation data: {report['ppl_old']:.3f} -> "
                     f"{report['ppl_new']:.3f} ({report['ppl_rise_pct']:+.2f} %)")
    else:
        lines.append(f"- {report['perplexity_note']}")
    lines += ["", "![report](report.png)", ""]
    for ex in report["examples"]:
        lines += [f"prompt: {ex['prompt']!r}", f"  old: {ex['old']!r}", f"  new: {ex['new']!r}"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot(report, out / "report.png")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    names = ["reward model"] + (["rule"] if "winrate_rule" in report else [])
    rates = [report["winrate_rm"]] + ([report["winrate_rule"]] if "winrate_rule" in report else [])
    axes[0].bar(names, rates, color=["tab:blue", "tab:green"][: len(names)])
    axes[0].axhline(0.5, color="gray", linestyle="--", linewidth=1)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("win rate vs old checkpoint")
    axes[1].hist([report["reward_old"], report["reward_new"]], bins=20, label=["old", "new"])
    axes[1].set_title("reward-model score of samples")
    axes[1].legend()
    if "ppl_old" in report:
        axes[2].bar(["old", "new"], [report["ppl_old"], report["ppl_new"]], color=["gray", "tab:orange"])
        axes[2].set_title(f"validation perplexity ({report['ppl_rise_pct']:+.1f} %)")
    else:
        axes[2].axis("off")
    fig.suptitle(f"genforge align --method {report['method']}  (KL {report['kl_to_reference']:.2f} nats)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

