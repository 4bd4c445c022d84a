"""The learning-rate schedule equals nanoGPT's get_lr (karpathy/nanoGPT train.py)."""
import itertools
import math

import pytest

from genforge.train.schedule import lr_at


def nanogpt_get_lr(it, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    # copied from nanoGPT's train.py
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


@pytest.mark.parametrize("lr, min_lr, warmup, decay", [(1e-3, 1e-4, 100, 5000), (6e-4, 6e-5, 2000, 600000),
                                                        (1e-3, 0.0, 0, 50), (2e-3, 2e-4, 10, 11)])
def test_matches_nanogpt(lr, min_lr, warmup, decay):
    steps = {0, 1, warmup // 2, max(warmup - 1, 0), warmup, warmup + 1, (warmup + decay) // 2, decay - 1, decay,
             decay + 1, 10 * decay}
    for step in sorted(steps):
        assert lr_at(step, lr, min_lr, warmup, decay) == pytest.approx(
            nanogpt_get_lr(step, lr, min_lr, warmup, decay), rel=1e-12, abs=0), step


def test_shape():
    lrs = [lr_at(s, 1.0, 0.1, 10, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1 / 11)
    assert lrs[9] == pytest.approx(10 / 11)  # warmup never quite reaches lr...
    assert lrs[10] == 1.0  # ...then decay starts at lr
    assert lrs[55] == pytest.approx(0.55)  # halfway through the cosine: midway between lr and min_lr
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[100:] == [0.1] * 20
