"""An exponential moving average of a module's weights (Polyak averaging), the weights that
checkpoints keep for sampling and evaluation."""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, n: int) -> float:
    """The warmed-up decay after n updates (TensorFlow's ExponentialMovingAverage num_updates):
    early on the average follows the fast-moving weights instead of dragging the random init along."""
    return min(decay, (1 + n) / (10 + n))


class EMA:
    """A copy of `module` whose parameters and buffers follow the module's as
    ema = decay * ema + (1 - decay) * current; the first update copies.

    The update count is a host integer and the update one fused lerp, so a training step never
    waits on the GPU for it (torch.optim.swa_utils.AveragedModel, used before, reads a device
    counter on every update: one host-device sync per step). The arithmetic is AveragedModel's."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = False):
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay, self.warmup, self.n_averaged = decay, warmup, 0

    @torch.no_grad()
    def update_parameters(self, module: nn.Module) -> None:
        ema = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach() for t in (*module.parameters(), *module.buffers())]
        if self.n_averaged == 0:
            torch._foreach_copy_(ema, current)
        else:
            decay = ema_decay_at(self.decay, self.n_averaged) if self.warmup else self.decay
            floats = [(e, c) for e, c in zip(ema, current) if e.is_floating_point()]
            if floats:
                torch._foreach_lerp_([e for e, _ in floats], [c for _, c in floats], 1 - decay)
            for e, c in zip(ema, current):  # integer buffers (BatchNorm's num_batches_tracked) follow as they are
                if not e.is_floating_point():
                    e.copy_(c)
        self.n_averaged += 1
