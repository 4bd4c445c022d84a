"""Rollouts as the one loop's batches (PPO, GRPO: genforge/objectives/ppo.py, grpo.py).

Every `epochs * pieces` draws (pieces = rows // minibatch, at least 1) the source samples a
rollout batch from the current policy: data.batch_size prompts, each samples_per_prompt times,
scored by the objective's `experience` (rewards, advantages, old and reference log-probs). Each
draw is one micro-batch of its rows: the rows in a seeded random order cut into `pieces`, for
each of `epochs` passes; a loop step (one optimizer step per phase) takes train.grad_accum draws.

Exact resume: rollout batch k's prompts, its sampling generator and each pass's row order are
drawn by generators seeded with (seed, k, ...), so a resumed run samples the rollouts it would
have. The cursor is the number of draws; a checkpoint taken part-way through a rollout batch
also keeps that batch (its rows were sampled by the policy before the updates since, which a
resumed run no longer has), as JSON lists that read back bit for bit.

Under torchrun each rank samples its own prompts (rank r takes the r-th of each world's share of
a seeded pass over the prompts), and advantages are whitened per rank. Rank 0 writes the
checkpoints, so a run resumed part-way through a rollout batch gives the other ranks a fresh
rollout batch from the restored policy (exact on one rank, or at rollout-batch boundaries).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genforge.data.tokenizer import prompt_ids
from genforge.device import autocast
from genforge.errors import DataError
from genforge.sample.text import generate_ids
from genforge.train import dist as dist_mod

EVAL_STREAM = 1 << 30  # the seed stream of held-out rollouts, apart from every training batch's


@dataclass
class Rollouts:
    ids: torch.Tensor  # (B, L) prompt + response, right-padded with 0
    start: torch.Tensor  # (B,) first response token
    length: torch.Tensor  # (B,) real tokens
    prompts: list[str]
    texts: list[str]  # the decoded responses

    def as_batch(self) -> dict:
        return {"ids": self.ids, "start": self.start, "length": self.length, "prompts": self.prompts,
                "texts": self.texts}


@torch.no_grad()
def sample_rollouts(policy: nn.Module, tokenizer, prompts: list[str], samples_per_prompt: int, max_new_tokens: int,
                    temperature: float, generator: torch.Generator) -> Rollouts:
    """samples_per_prompt samples of each prompt (consecutive rows), each cut after an
    end-of-text token; prompts keep their last block_size - max_new_tokens tokens."""
    device = next(policy.parameters()).device
    keep = policy.config.block_size - max_new_tokens  # prompt + response fit one forward pass
    rows, row_prompts, texts = [], [], []
    for prompt in prompts:
        p = prompt_ids(tokenizer, prompt)[-keep:]
        idx = torch.tensor([p] * samples_per_prompt, device=device)
        new = generate_ids(policy, idx, max_new_tokens, temperature=temperature, generator=generator)
        for row in new.tolist():
            end = row.index(tokenizer.eot_id) + 1 if tokenizer.eot_id in row else len(row)
            rows.append((p + row[:end], len(p)))
            row_prompts.append(prompt)
            texts.append(tokenizer.decode([t for t in row[:end] if t != tokenizer.eot_id]))
    ids = torch.zeros(len(rows), max(len(r) for r, _ in rows), dtype=torch.long)
    for i, (r, _) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    start = torch.tensor([s for _, s in rows])
    length = torch.tensor([len(r) for r, _ in rows])
    return Rollouts(ids.to(device), start.to(device), length.to(device), row_prompts, texts)


def seeded_generator(device: torch.device, *key: int) -> torch.Generator:
    """A torch generator on device seeded from the integers key."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(seed)


def steps_per_rollout(settings, prompts_per_batch: int) -> int:
    """Draws served by one rollout batch (loop steps at train.grad_accum=1): settings.epochs passes
    of max(1, rows // minibatch) micro-batches."""
    return settings.epochs * max(1, prompts_per_batch * settings.samples_per_prompt // settings.minibatch)


class RolloutBatches:
    """The batches of a PPO or GRPO run: micro-batches of rollout rows (dicts of tensors plus
    "stats", the rollout batch's mean score etc.), with state_dict/load_state_dict and
    eval_batches (rollouts on held-out prompts, the same ones at every evaluation)."""

    def __init__(self, objective, settings, tokenizer, prompts: list[str], val_prompts: list[str],
                 prompts_per_batch: int, seed: int, device: torch.device, dtype: torch.dtype, rank: int = 0,
                 world: int = 1):
        """settings: the method's (samples_per_prompt, max_new_tokens, temperature, epochs, minibatch)."""
        if not prompts:
            raise DataError("no prompts to roll out on")
        self.objective, self.settings, self.tokenizer = objective, settings, tokenizer
        self.prompts, self.val_prompts, self.per_batch = prompts, val_prompts, prompts_per_batch
        self.seed, self.device, self.dtype, self.rank, self.world = seed, device, dtype, rank, world
        self.rows = prompts_per_batch * settings.samples_per_prompt
        self.per_rollout = steps_per_rollout(settings, prompts_per_batch)  # draws served from one rollout batch
        self.pieces = self.per_rollout // settings.epochs
        self.drawn = 0
        self.batch: tuple[int, dict, dict] | None = None  # (k, rows, stats) of the current rollout batch

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        k, j = divmod(self.drawn, self.per_rollout)
        if self.batch is None or self.batch[0] != k:
            self.batch = (k, *self._roll(k))
        _, rows, stats = self.batch
        epoch, piece = divmod(j, self.pieces)
        order = np.random.default_rng([self.seed, k, epoch, self.rank]).permutation(self.rows)
        idx = torch.from_numpy(np.array_split(order, self.pieces)[piece]).to(self.device)
        self.drawn += 1
        return {**{name: t[idx] for name, t in rows.items()}, "stats": stats}

    def _choose(self, k: int) -> list[str]:
        """Rollout batch k's prompts: seeded passes over the prompts, each rank its own share."""
        n, out, orders = len(self.prompts), [], {}
        first = (k * self.world + self.rank) * self.per_batch
        for i in range(first, first + self.per_batch):
            epoch, pos = divmod(i, n)
            if epoch not in orders:
                orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(n)
            out.append(self.prompts[orders[epoch][pos]])
        return out

    def _roll(self, k: int) -> tuple[dict, dict]:
        policy = dist_mod.unwrap(self.objective.model)
        gen = seeded_generator(self.device, self.seed, k, self.rank)
        with torch.no_grad(), autocast(self.device, self.dtype):
            r = sample_rollouts(policy, self.tokenizer, self._choose(k), self.settings.samples_per_prompt,
                                self.settings.max_new_tokens, self.settings.temperature, gen)
            return self.objective.experience(r.ids, r.start, r.length, r.prompts, r.texts)

    def state_dict(self) -> dict:
        state: dict = {"drawn": self.drawn, "seed": self.seed}
        if self.drawn % self.per_rollout and self.batch is not None:  # part-way through a rollout batch
            k, rows, stats = self.batch
            state["batch"] = {"k": k, "rank": self.rank, "stats": stats,
                              "rows": {name: [str(t.dtype).removeprefix("torch."), t.tolist()] for name, t in rows.items()}}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.drawn, self.batch = int(state["drawn"]), None
        b = state.get("batch")
        if b is not None and b.get("rank", 0) == self.rank:  # rank 0's rows are not another rank's: that one rolls anew
            rows = {name: torch.tensor(values, dtype=getattr(torch, dtype), device=self.device)
                    for name, (dtype, values) in b["rows"].items()}
            self.batch = (int(b["k"]), rows, b["stats"])

    def eval_batches(self, n: int | None = None) -> Iterator[dict]:
        """Rollouts (dicts of ids, start, length, prompts, texts) on the first n batches of held-out
        prompts, sampled lazily (inside the loop's evaluation: eval mode, no_grad, autocast) with
        generators that depend on nothing but the seed."""
        policy = dist_mod.unwrap(self.objective.model)
        chunks = [self.val_prompts[i:i + self.per_batch] for i in range(0, len(self.val_prompts), self.per_batch)]
        for i, prompts in enumerate(chunks[:n]):
            gen = seeded_generator(self.device, self.seed, EVAL_STREAM, i)
            yield sample_rollouts(policy, self.tokenizer, prompts, self.settings.samples_per_prompt,
                                  self.settings.max_new_tokens, self.settings.temperature, gen).as_batch()
