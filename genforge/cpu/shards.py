"""Data parallelism across CPU threads (train.cpu_parallel=batch; set up by cpu/training.py).

A small model's ops take microseconds, so torch's intra-op threads barely speed it up: OpenMP's
fork/join and the spin-wait after each region cost about as much as the work they share. Here each
micro-batch is cut into one shard per thread instead, and every thread runs a whole forward and
backward of its shard on one core; the shards' gradients are added in shard order, so the result
does not depend on which thread finished first. nanoGPT's CPU recipe on this 2-core VM: 30 -> 23 ms
per step while two-thread runs are in their slow state, ~21.5 ms both ways in the fast one, i.e.
steadier rather than faster at best (bench/lm_vs_nanogpt.py; README, Performance).

It needs a loss that is a mean over the batch's examples (the objective says so with
`example_mean = True`): the shards' losses, weighted by their share of the examples, add up to the
batch's. Batch norm or in-batch negatives would see other statistics per shard. Each thread keeps
its own gradients until they are added, one copy of the trainable parameters per thread, so this
suits models that are small next to the host's memory. With dropout, threads draw from torch's one
generator in the order they get to it, so such runs do not repeat bitwise.
"""
from __future__ import annotations

import contextlib
import functools
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten


class ShardPool:
    """`threads` workers with one intra-op thread each; the calling thread also drops to one, since
    its OpenMP team would spin-wait on the cores the shards run on (measured: +25% per step)."""

    def __init__(self, threads: int):
        self.threads = threads
        self.restore = torch.get_num_threads()
        torch.set_num_threads(1)
        # the calling thread runs the first shard itself
        self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="genforge-shard",
                                       initializer=torch.set_num_threads, initargs=(1,))
        self.after_shards = None  # a task for the next grads() to queue behind the workers' shards (Prefetch)

    def grads(self, objective, phase: str, batch, params: list[torch.Tensor], scale: float, device, dtype):
        """Gradients of scale x objective.loss(batch) w.r.t. params (None where unused), with the
        batch's metrics, computed shard by shard on the pool's threads."""
        n = batch_size(batch)
        shards = split(batch, min(self.threads, n))

        def run(shard):
            weight = batch_size(shard) / n
            # autocast is per thread; fp32 runs none (genforge.device.autocast's rule, not imported: this is a lower layer)
            cast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
            with cast:
                loss, metrics = objective.loss(shard, phase)
            return torch.autograd.grad(loss * (scale * weight), params, allow_unused=True), metrics, weight

        others = [self.pool.submit(run, shard) for shard in shards[1:]]
        if self.after_shards is not None:  # it runs while this thread adds up the gradients and steps
            self.pool.submit(self.after_shards)
            self.after_shards = None
        results = [run(shards[0])] + [f.result() for f in others]
        return _sum([r[0] for r in results]), _merge([(m, w) for _, m, w in results])

    @contextlib.contextmanager
    def all_threads(self):
        """Torch's intra-op threads back on the calling thread meanwhile, e.g. for evaluation."""
        torch.set_num_threads(self.restore)
        try:
            yield
        finally:
            torch.set_num_threads(1)

    def close(self) -> None:
        self.pool.shutdown()
        torch.set_num_threads(self.restore)


class Prefetch:
    """The data's batches for the next step, drawn on a worker of the pool right after its shard
    of this step, while the calling thread adds up the gradients and steps the optimizer: the step
    no longer waits for them (~0.3 ms a step on nanoGPT's CPU recipe). state_dict() is the data's
    state before the batches not yet taken, so checkpoints resume exactly. Sound for data that
    draw each batch from a generator of its own (genforge's batch iterators seed one per batch),
    not from torch's global one."""

    def __init__(self, data, pool: ShardPool, per_step: int):
        self.data, self.pool, self.per_step = data, pool, per_step
        self.pending: Future | None = None  # the next step's batches, once queued
        self.state: dict | None = None  # the data's state before them

    def take(self) -> list:
        """One step's batches; queues the drawing of the next step's."""
        if self.pending is not None and self.pool.after_shards is None:  # queued: drawn or being drawn
            batches = self.pending.result()
        else:  # the first step, or nothing ran the shards since the last take
            batches = [next(self.data) for _ in range(self.per_step)]
        self.state, self.pending = self.data.state_dict(), Future()
        self.pool.after_shards = functools.partial(self._draw, self.pending)
        return batches

    def _draw(self, done: Future) -> None:
        try:
            done.set_result([next(self.data) for _ in range(self.per_step)])
        except BaseException as e:  # raised by the take() that wants them
            done.set_exception(e)

    def _wait(self) -> None:
        """Let a draw under way finish, so that the data is read by one thread at a time."""
        if self.pending is not None and self.pool.after_shards is None:
            self.pending.exception()

    def state_dict(self) -> dict:
        return self.data.state_dict() if self.state is None else self.state

    def load_state_dict(self, state: dict) -> None:
        self._wait()
        self.pool.after_shards = self.pending = self.state = None
        self.data.load_state_dict(state)

    def eval_batches(self, n: int) -> list:
        self._wait()
        return self.data.eval_batches(n)


def split(batch, n: int) -> list:
    """n shards of a batch along the first dimension of every tensor in it (any nesting of
    tuples, lists and dicts; torch's pytree walks it). Other leaves are shared by every shard."""
    leaves, spec = tree_flatten(batch)
    if not any(isinstance(leaf, torch.Tensor) for leaf in leaves):
        raise TypeError(f"cannot split a batch of type {type(batch).__name__} into shards: it holds no tensor")
    parts = [leaf.tensor_split(n) if isinstance(leaf, torch.Tensor) else [leaf] * n for leaf in leaves]
    return [tree_unflatten([part[i] for part in parts], spec) for i in range(n)]


def batch_size(batch) -> int:
    """The first dimension of the batch's first tensor."""
    return next(len(leaf) for leaf in tree_flatten(batch)[0] if isinstance(leaf, torch.Tensor))


def _sum(shard_grads: list[tuple]) -> list:
    """Per parameter, the sum of the shards' gradients in shard order (None if none has one)."""
    total = _unshared(shard_grads[0])  # added into in place below
    for grads in shard_grads[1:]:
        both = [i for i, (t, g) in enumerate(zip(total, grads)) if t is not None and g is not None]
        torch._foreach_add_([total[i] for i in both], [grads[i] for i in both])
        total = [g if t is None else t for t, g in zip(total, grads)]
    return _unshared(total)


def _unshared(grads) -> list:
    """grads with copies where two share memory: autograd hands p1 and p2 of `p1 + p2` one tensor,
    and the in-place sums here and the optimizer's in-place clipping would count it twice."""
    seen, out = set(), []
    for g in grads:
        if g is not None:
            if g.untyped_storage().data_ptr() in seen:
                g = g.clone()
            seen.add(g.untyped_storage().data_ptr())
        out.append(g)
    return out


def _merge(parts: list[tuple[dict, float]]) -> dict:
    """One metrics dict for the batch: counts ("tokens") add up, means are weighted by shard size."""
    merged = {}
    for metrics, weight in parts:
        for k, v in metrics.items():
            merged[k] = merged.get(k, 0) + (v if k == "tokens" else v * weight)
    return merged
