"""TokenBatches: the data cursor is one integer, so a resumed iterator reads what an
uninterrupted one would have; ranks split each draw without overlap."""
import numpy as np
import torch

from genforge.data.batches import TokenBatches
from genforge.data.shards import TokenData


def test_targets_are_inputs_shifted_by_one(char_data):
    data = TokenData(char_data)
    x, y = next(TokenBatches(data, batch_size=4, block_size=16, seed=0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x, y):
        assert is_window(data.split("train")[0], torch.cat([row_x, row_y[-1:]]))


def is_window(shard: np.ndarray, row: torch.Tensor) -> bool:
    """Whether row is a contiguous window of shard."""
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(shard), len(row))
    return bool((windows == row.numpy()).all(axis=1).any())


def test_resume_reads_the_same_batches(char_data):
    data = TokenData(char_data)
    straight = TokenBatches(data, 4, 16, seed=3)
    expected = [next(straight) for _ in range(6)]
    first = TokenBatches(data, 4, 16, seed=3)
    got = [next(first) for _ in range(3)]
    resumed = TokenBatches(data, 4, 16, seed=3)
    resumed.load_state_dict(first.state_dict())
    got += [next(resumed) for _ in range(3)]
    for (ex, ey), (gx, gy) in zip(expected, got):
        assert torch.equal(ex, gx) and torch.equal(ey, gy)
    other_seed = next(TokenBatches(data, 4, 16, seed=4))
    assert not torch.equal(other_seed[0], expected[0][0])


def test_two_ranks_see_what_one_rank_with_twice_the_batch_sees(char_data):
    data = TokenData(char_data)
    whole = next(TokenBatches(data, 8, 16, seed=1))[0]
    parts = [next(TokenBatches(data, 4, 16, seed=1, rank=r, world=2))[0] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_eval_batches_are_fixed_and_from_val(char_data):
    data = TokenData(char_data)
    batches = TokenBatches(data, 4, 16, seed=0)
    a, b = batches.eval_batches(3), batches.eval_batches(3)
    next(batches)
    c = batches.eval_batches(3)
    for (ax, _), (bx, _), (cx, _) in zip(a, b, c):
        assert torch.equal(ax, bx) and torch.equal(ax, cx)
    for x, y in a:
        for row_x, row_y in zip(x, y):
            assert is_window(data.split("val")[0], torch.cat([row_x, row_y[-1:]]))
