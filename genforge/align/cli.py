"""`genforge align`: its parser lives with its code (genforge/align/pipeline.py)."""
from __future__ import annotations


def add_align(sub) -> None:
    p = sub.add_parser("align", help="ratings -> reward model -> DPO, PPO or GRPO -> report (win rates, KL, perplexity)")
    p.add_argument("ckpt", help="the SFT checkpoint (or run directory) to improve")
    p.add_argument("--feedback", required=True, help="the reviewer database (SQLite) of `genforge serve --feedback-db`")
    p.add_argument("--method", choices=("dpo", "ppo", "grpo"), default="dpo", help="how the ratings train the policy")
    p.add_argument("--out", default="runs/align", help="run directory: prefs, reward/, dpo|ppo|grpo/, report.* (default runs/align)")
    p.add_argument("--reward-model", help="an existing reward checkpoint (trained from this policy) instead of training one")
    p.add_argument("--rule", help="FILE.py:FUNCTION or MODULE:FUNCTION, (prompt, completion) -> score: a second judge "
                                  "for the report's win rate (never used in training)")
    p.add_argument("--val-data", help="text file or prepared directory for perplexity (default: the checkpoint's own data)")
    p.add_argument("--iters", type=int, default=150, help="DPO steps, or PPO/GRPO rollout batches (default 150)")
    p.add_argument("--reward-iters", type=int, default=150, help="steps of the reward model")
    p.add_argument("--lr", type=float, help="default 1e-4 (DPO), 1e-5 (PPO, GRPO)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO's beta (default 0.1)")
    p.add_argument("--dpo-loss", choices=("sigmoid", "ipo"), default="sigmoid", help="DPO's loss: sigmoid (DPO) or IPO")
    p.add_argument("--kl-coef", type=float, default=0.05, help="PPO's KL penalty, GRPO's beta (default 0.05)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs (DPO) or prompts (PPO, GRPO) per step")
    p.add_argument("--max-new-tokens", type=int, default=48, help="tokens per sampled completion")
    p.add_argument("--eval-samples", type=int, default=4, help="samples per held-out prompt and model (default 4)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of prompts held out for the report")
    p.add_argument("--seed", type=int, default=0, help="seed of the training runs and of the report's samples")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars")

    def run(a):
        from genforge.align.pipeline import AlignOptions, align
        from genforge.align.rewards import load_rule

        opts = AlignOptions(method=a.method, reward_model=a.reward_model, reward_iters=a.reward_iters, iters=a.iters,
                            lr=a.lr, beta=a.beta, dpo_loss=a.dpo_loss, kl_coef=a.kl_coef, batch_size=a.batch_size,
                            max_new_tokens=a.max_new_tokens, eval_samples=a.eval_samples,
                            val_fraction=a.val_fraction, seed=a.seed, device=a.device)
        rule = load_rule(a.rule) if a.rule else None
        report = align(a.ckpt, a.feedback, a.out, opts, rule, a.val_data, progress=not a.no_progress)
        from pathlib import Path

        print((Path(a.out) / "report.md").read_text().split("\n\n![report]")[0])
        print(f"checkpoint: {report['checkpoint']}")

    p.set_defaults(func=run)
