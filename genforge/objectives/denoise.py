"""The objective of the diffusion text-to-image family (models/diffusion.py): regress the
denoiser's prediction on its target, with condition dropout for classifier-free guidance.

- prediction=flow: rectified flow (Liu et al. 2022), x_t = (1 - t) noise + t x, target x - noise,
  t drawn half logit-normal (Esser et al. 2024, "Scaling Rectified Flow Transformers", sec. 3.1:
  the middle of the path, where the target is hardest, gets the most weight) and half uniform:
  logit-normal alone leaves the ends almost untrained, and a DiT trained so predicted worse
  velocities near t = 0 than the mean image does, where the sampler decides every layout.
- prediction=eps | v | x0: DDPM (objectives/diffusion.py), t uniform over the schedule's steps.

Images are mapped from [0, 1] to [-1, 1]. The times, the noise and which captions drop are drawn
per batch by `draw`, from the batch's own seeded generator (data/image_batches.py), so the loss
is a function of the batch alone: resume is exact and batch shards may run in any thread order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genforge.models.diffusion import DiT
from genforge.objectives import diffusion as dm


def schedule_of(model: DiT) -> dm.Schedule:
    c = model.config
    return (dm.cosine_schedule if c.schedule == "cosine" else dm.linear_schedule)(c.train_steps)


class DenoiseObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = True  # a mean over examples of a function of each example's own draws

    def __init__(self, model: DiT):
        self.model = model
        self.schedule = None if model.config.prediction == "flow" else schedule_of(model)

    def parameters(self, phase: str):
        return (p for p in self.model.parameters() if p.requires_grad)

    def modules(self) -> dict:
        return {"model": self.model}

    def draw(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(times (B,), noise like x, caption dropped (B,) bool) for images x (B, C, H, W)."""
        c, B = self.model.config, len(x)
        if c.prediction == "flow":  # half logit-normal, half uniform (see the module docstring)
            t = torch.where(torch.rand(B, generator=gen) < 0.5, torch.sigmoid(torch.randn(B, generator=gen)),
                            torch.rand(B, generator=gen))
        else:
            t = torch.randint(c.train_steps, (B,), generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        drop = torch.rand(B, generator=gen) < c.cond_dropout
        return t, noise, drop

    def per_example(self, batch) -> torch.Tensor:
        """The loss of each example (B,): the mean squared error of the prediction."""
        x, ids, t, noise, drop = batch
        x = x.float() * 2 - 1  # (B, C, H, W) in [-1, 1]
        text = self.model.condition(ids, drop)
        if self.schedule is None:
            x_t = dm.flow_interpolant(noise, x, t)
            goal, times = dm.flow_target(noise, x), t * 1000
        else:
            x_t = dm.q_sample(x, t, noise, self.schedule)
            goal, times = dm.target(x, noise, t, self.schedule, self.model.config.prediction), t.float()
        pred = self.model(x_t, times, text)
        return F.mse_loss(pred.float(), goal.float(), reduction="none").flatten(1).mean(1)

    def loss(self, batch, phase: str = "main"):
        loss = self.per_example(batch).mean()
        return loss, {"loss": loss.detach(), "images": len(batch[0])}

    def evaluate(self, batches) -> dict[str, float]:
        total, n = 0.0, 0
        for batch in batches:
            total += float(self.per_example(batch).sum())
            n += len(batch[0])
        return {"val_loss": total / max(n, 1)}
