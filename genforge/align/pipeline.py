"""`genforge align CKPT --feedback DB --method dpo|ppo|grpo`: the whole loop from ratings to a
better checkpoint, in one command.

1. export the database's ratings as preference pairs, split by prompt into train and held-out;
2. train a reward model on the train pairs (held-out pairwise accuracy), unless one is given;
3. optimise the policy in the one loop: DPO on the pairs, or PPO or GRPO against the reward model
   on rollouts from the train prompts (held-out prompts give the run's val_score and val_kl);
4. evaluate on the held-out prompts (genforge/align/report.py) and write OUT/report.{json,md,png}.

A user rule (`--rule file.py:function`, (prompt, completion) -> float) is read only by step 4.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from genforge.align.feedback import FeedbackDB, open_db
from genforge.align.preferences import preference_records
from genforge.config import TrainConfig
from genforge.data.pairs import read_preferences
from genforge.errors import ConfigError, DataError


@dataclass
class AlignOptions:
    method: Literal["dpo", "ppo", "grpo"] = "dpo"
    reward_model: str | None = None  # an existing reward checkpoint (skips step 2)
    reward_iters: int = 150
    iters: int = 150  # DPO steps, or PPO/GRPO rollout batches (each epochs x minibatches loop steps)
    lr: float | None = None  # None: 1e-4 (DPO), 1e-5 (PPO, GRPO)
    beta: float = 0.1  # DPO's beta
    dpo_loss: Literal["sigmoid", "ipo"] = "sigmoid"
    kl_coef: float = 0.05  # PPO's KL penalty (GRPO's beta)
    batch_size: int = 16
    max_new_tokens: int = 48  # PPO/GRPO rollouts and evaluation samples
    eval_samples: int = 4  # samples per held-out prompt and model
    val_fraction: float = 0.2  # prompts held out for evaluation
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.method not in ("dpo", "ppo", "grpo"):
            raise ConfigError(f"--method {self.method!r}: expected dpo, ppo or grpo")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction {self.val_fraction}: must be in (0, 1)")


def export_checked(db: FeedbackDB, where: str, out: Path) -> list[dict]:
    """The database's preference records, written to out; DataError for ratings whose pair's
    prompt is gone, for no ratings, and for ratings that prefer nothing (all ties)."""
    with db.lock:
        orphans = db.conn.execute(
            "SELECT DISTINCT p.id FROM ratings t JOIN pairs p ON p.id = t.pair_id "
            "LEFT JOIN prompts q ON q.id = p.prompt_id WHERE q.id IS NULL ORDER BY p.id").fetchall()
    if orphans:
        ids = ", ".join(str(r[0]) for r in orphans[:5])
        raise DataError(f"{where}: {len(orphans)} rated pairs have no prompt (pair ids {ids}); "
                        "restore their prompts or delete those pairs")
    n_ratings = db.counts()["ratings"]
    if n_ratings == 0:
        raise DataError(f"{where}: no ratings yet (reviewers rate pairs on the /review page of `genforge serve`)")
    records = preference_records(db)
    if not records:
        raise DataError(f"{where}: one-sided feedback: all {n_ratings} ratings are ties, no preference to learn")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    read_preferences(out)  # the same checks a training run makes (e.g. chosen == rejected everywhere)
    return records


def split_by_prompt(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict], list[str]]:
    """(train records, held-out records, held-out prompts): whole prompts are held out, so the
    evaluation prompts were never trained on."""
    prompts = sorted({r["prompt"] for r in records})
    if len(prompts) < 2:
        raise DataError(f"need at least 2 distinct prompts to hold some out, got {len(prompts)}")
    order = np.random.default_rng(seed).permutation(len(prompts))
    k = max(1, round(len(prompts) * fraction))
    held = {prompts[i] for i in order[-k:]}
    train = [r for r in records if r["prompt"] not in held]
    val = [r for r in records if r["prompt"] in held]
    return train, val, sorted(held)


def _write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _train_cfg(out: Path, iters: int, lr: float, opts: AlignOptions) -> TrainConfig:
    return TrainConfig(max_iters=iters, lr=lr, min_lr=lr / 10, warmup_iters=min(10, iters), weight_decay=0.0,
                       eval_interval=max(1, iters // 3), log_interval=max(1, min(10, iters // 5)), seed=opts.seed,
                       out_dir=str(out), device=opts.device, dtype="float32", keep_checkpoints=1)


def train_reward(ckpt: Path, train_file: str, val_file: str, out: Path, opts: AlignOptions, progress: bool) -> Path:
    """A reward model from the policy's checkpoint on the train pairs (held-out accuracy on val)."""
    from genforge.config import RunConfig
    from genforge.data.pairs import PreferenceDataConfig
    from genforge.models.reward import RewardConfig
    from genforge.train.run import run

    cfg = RunConfig(family="reward", model=RewardConfig(base=str(ckpt)),
                    data=PreferenceDataConfig(path=train_file, val_path=val_file, batch_size=opts.batch_size),
                    train=_train_cfg(out, opts.reward_iters, 3e-4, opts))
    return run(cfg, progress=progress)


def optimise(ckpt: Path, rm: Path, train_file: str, val_file: str, out: Path, opts: AlignOptions,
             progress: bool) -> Path:
    """The new checkpoint: DPO on the pairs, or PPO or GRPO against the reward model on rollouts
    from the pairs' prompts (held out: val_file's)."""
    from genforge.config import RunConfig
    from genforge.train.run import run

    if opts.method == "dpo":
        from genforge.data.pairs import PreferenceDataConfig
        from genforge.objectives.dpo import DPOConfig

        cfg = RunConfig(family="gpt", method="dpo", settings=DPOConfig(base=str(ckpt), beta=opts.beta, loss=opts.dpo_loss),
                        data=PreferenceDataConfig(path=train_file, val_path=val_file, batch_size=opts.batch_size),
                        train=_train_cfg(out, opts.iters, opts.lr or 1e-4, opts))
        return run(cfg, progress=progress)
    from genforge.align.rollouts import steps_per_rollout
    from genforge.data.prompts import PromptDataConfig, read_prompts

    lr = opts.lr or 1e-5
    if opts.method == "ppo":
        from genforge.objectives.ppo import PPOConfig

        # the value model learns at 1e-4 whatever the policy's lr: its head starts far from the returns
        settings = PPOConfig(base=str(ckpt), reward=str(rm), max_new_tokens=opts.max_new_tokens, kl_coef=opts.kl_coef,
                             value_lr_scale=1e-4 / lr)
    else:
        from genforge.objectives.grpo import GRPOConfig

        settings = GRPOConfig(base=str(ckpt), reward=str(rm), max_new_tokens=opts.max_new_tokens, beta=opts.kl_coef)
    data = PromptDataConfig(path=train_file, val_path=val_file, batch_size=min(8, len(read_prompts(train_file))))
    iters = opts.iters * steps_per_rollout(settings, data.batch_size)
    # a constant lr: a few rollout batches are too few to warm up and decay over
    train_cfg = dataclasses.replace(_train_cfg(out, iters, lr, opts), min_lr=lr, warmup_iters=0, eval_iters=2)
    return run(RunConfig(family="gpt", method=opts.method, settings=settings, data=data, train=train_cfg),
               progress=progress)


def align(ckpt: str | Path, feedback: str | Path, out: str | Path, opts: AlignOptions | None = None,
          rule=None, val_data: str | None = None, progress: bool = True) -> dict:
    """Run steps 1-4; return the report (also written to out/report.json)."""
    from genforge import checkpoint as ckpt_io
    from genforge.align.report import evaluate, write_report

    opts, out = opts or AlignOptions(), Path(out)
    base = ckpt_io.resolve(ckpt)
    records = export_checked(open_db(feedback, must_exist=True), str(feedback), out / "prefs.jsonl")
    train, val, held = split_by_prompt(records, opts.val_fraction, opts.seed)
    if not train:
        raise DataError(f"{feedback}: no pairs left for training after holding out {len(held)} prompts")
    train_file, val_file = _write(out / "prefs_train.jsonl", train), _write(out / "prefs_val.jsonl", val)
    if opts.reward_model:
        from genforge.align.rewards import load_reward

        rm = load_reward(opts.reward_model, base)[1]
    else:
        rm = train_reward(base, train_file, val_file, out / "reward", opts, progress)
    new = optimise(base, rm, train_file, val_file, out / opts.method, opts, progress)
    report = evaluate(base, new, rm, held, val, opts, rule, val_data)
    report.update(method=opts.method, pairs={"train": len(train), "held_out": len(val)},
                  reward_model=str(rm), checkpoint=str(new), base=str(base))
    write_report(report, out)
    return report
