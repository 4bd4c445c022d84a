"""train.cpu_parallel=batch: one batch shard per CPU thread (genforge/cpu/shards.py). The
shards' gradients are the whole batch's, runs repeat bitwise whichever thread finishes first, and
exact resume holds; objectives whose loss is not a mean over examples are refused."""
import pytest
import torch

from genforge.config import TrainConfig
from genforge.cpu.shards import Prefetch, ShardPool, batch_size, split
from genforge.cpu.training import for_training
from genforge.errors import CheckpointError, ConfigError
from genforge.models.gpt import GPT, GPTConfig
from genforge.objectives.lm import LMObjective
from genforge.train.run import run
from tests.train.test_resume import assert_same_runs, losses

BATCH = ("train.cpu_parallel=batch", "train.threads=2", "model.dropout=0.0", "train.lr_decay_iters=20")


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_split_cuts_every_tensor_of_a_batch_along_its_first_dimension():
    x, y = torch.arange(10).view(5, 2), torch.arange(5)
    shards = split((x, y), 2)
    assert [tuple(len(t) for t in s) for s in shards] == [(3, 3), (2, 2)]
    assert torch.equal(torch.cat([s[0] for s in shards]), x) and isinstance(shards[0], tuple)
    shards = split({"a": x, "b": [y, y]}, 2)
    assert torch.equal(shards[1]["b"][0], y[3:]) and isinstance(shards[1]["b"], list)
    with pytest.raises(TypeError, match="cannot split a batch of type str"):
        split("text", 2)


def test_shard_gradients_and_metrics_are_the_whole_batchs():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50))
    objective, params = LMObjective(model), list(model.parameters())
    x, y = torch.randint(0, 50, (5, 16)), torch.randint(0, 50, (5, 16))  # 5 rows: shards of 3 and 2
    loss, _ = objective.loss((x, y))
    expected = torch.autograd.grad(loss * 0.5, params)
    pool = ShardPool(2)
    try:
        grads, metrics = pool.grads(objective, "main", (x, y), params, 0.5, torch.device("cpu"), torch.float32)
    finally:
        pool.close()
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(metrics["loss"], loss.detach())
    assert metrics["tokens"] == 5 * 16


def test_parameters_sharing_one_gradient_tensor_are_each_summed_once():
    class Sum:  # loss of x @ (a + b): autograd returns one tensor as the gradient of a and of b
        def __init__(self):
            self.a, self.b = (torch.randn(4, requires_grad=True) for _ in range(2))

        def loss(self, batch, phase):
            loss = (batch @ (self.a + self.b)).pow(2).mean()
            return loss, {"loss": loss.detach()}

    torch.manual_seed(0)
    objective, x = Sum(), torch.randn(6, 4)
    expected = torch.autograd.grad(objective.loss(x, "main")[0], [objective.a, objective.b])
    pool = ShardPool(2)
    try:
        grads, _ = pool.grads(objective, "main", x, [objective.a, objective.b], 1.0, torch.device("cpu"), torch.float32)
    finally:
        pool.close()
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    assert grads[0].data_ptr() != grads[1].data_ptr()  # the optimizer clips each in place


class _Count:
    """Data whose batch n is n: enough to see which batches a step gets and what the state says."""

    def __init__(self):
        self.step = 0

    def __next__(self):
        self.step += 1
        return torch.full((2, 1), float(self.step))

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


def test_prefetched_batches_come_in_order_and_the_state_counts_only_those_taken():
    class Mean:
        w = torch.zeros(1, requires_grad=True)

        def loss(self, batch, phase):
            loss = (batch * self.w).mean()
            return loss, {"loss": loss.detach()}

    data, pool = _Count(), ShardPool(2)
    try:
        pre = Prefetch(data, pool, per_step=2)
        ids = lambda batches: [int(b[0, 0]) for b in batches]  # noqa: E731
        assert ids(pre.take()) == [1, 2]
        pool.grads(Mean(), "main", torch.ones(2, 1), [Mean.w], 1.0, torch.device("cpu"), torch.float32)
        pre.pending.result()  # drawn on the worker, behind its shard
        assert data.step == 4 and pre.state_dict() == {"step": 2}  # a checkpoint now resumes at batch 3
        assert ids(pre.take()) == [3, 4] and pre.state_dict() == {"step": 4}
        assert ids(pre.take()) == [5, 6]  # no shards ran since: nothing was drawn ahead
        pre.load_state_dict({"step": 1})
        assert ids(pre.take()) == [2, 3]
    finally:
        pool.close()


def test_split_keeps_empty_fields():
    x = torch.arange(4)
    shards = split((None, x), 2)
    assert [s[0] for s in shards] == [None, None] and torch.equal(shards[1][1], x[2:])
    assert batch_size((None, x)) == 4


def test_batch_runs_repeat_bitwise_and_track_the_ops_run(tmp_path, tiny_config):
    for name in ("a", "b"):
        run(tiny_config(tmp_path / name, *BATCH), progress=False)
    assert_same_runs(tmp_path / "a", tmp_path / "b")
    run(tiny_config(tmp_path / "ops", *BATCH[1:]), progress=False)  # the same run, threads on ops
    torch.testing.assert_close(losses(tmp_path / "a"), losses(tmp_path / "ops"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("extra", [["train.dtype=float32", "train.grad_accum=2"], ["train.dtype=bfloat16"]],
                         ids=["grad-accum", "bfloat16"])
def test_resume_equals_uninterrupted(tmp_path, tiny_config, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(tiny_config(straight, *BATCH, *extra, max_iters=20), progress=False)
    run(tiny_config(resumed, *BATCH, *extra, max_iters=10), progress=False)
    run(tiny_config(resumed, *BATCH, *extra, max_iters=20), resume=True, progress=False)
    assert_same_runs(straight, resumed)


def test_the_pool_gives_the_threads_back():
    torch.set_num_threads(2)
    data = iter(())
    pool, prefetch = for_training(LMObjective(torch.nn.Linear(2, 2)), data, TrainConfig(cpu_parallel="batch"),
                                  torch.device("cpu"), False, torch.float32)
    assert pool is not None and torch.get_num_threads() == 1  # the main thread's team would spin on the shards' cores
    assert isinstance(prefetch, Prefetch) and prefetch.data is data
    with pool.all_threads():  # evaluation
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    pool.close()
    assert torch.get_num_threads() == 2


def test_a_failed_run_gives_the_threads_back(tmp_path, tiny_config):
    with pytest.raises(CheckpointError):  # nothing to resume from: raised after the pool started
        run(tiny_config(tmp_path / "none", *BATCH), resume=True, progress=False)
    assert torch.get_num_threads() == 2  # train.threads, not the pool's one


def test_objectives_without_an_example_mean_loss_are_refused():
    class BatchNormObjective:  # e.g. a GAN: batch statistics differ per shard
        pass

    cfg, cpu, data = TrainConfig(cpu_parallel="batch", threads=2), torch.device("cpu"), iter(())
    with pytest.raises(ConfigError, match="BatchNormObjective's loss is not a mean over examples"):
        for_training(BatchNormObjective(), data, cfg, cpu, False, torch.float32)
    with pytest.raises(ConfigError, match="needs no float16 loss scaling"):
        for_training(LMObjective(None), data, cfg, cpu, False, torch.float16)
    assert for_training(BatchNormObjective(), data, TrainConfig(), cpu, False, torch.float32) == (None, data)  # ops
    assert for_training(BatchNormObjective(), data, cfg, torch.device("meta"), False, torch.float32) == (None, data)  # not CPU
