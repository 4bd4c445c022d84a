"""Direct Preference Optimization (Rafailov et al. 2023, eq. 7) and variants, as an objective of
the one loop.

With z = (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)):
- "sigmoid" (DPO):   -log sigmoid(beta z); with label smoothing eps (conservative DPO, cDPO,
  Mitchell 2023): -(1 - eps) log sigmoid(beta z) - eps log sigmoid(-beta z);
- "ipo" (Azar et al. 2023, eq. 17): (z - 1 / (2 beta))^2 on per-token mean log-probs, as TRL does.
The reference is a frozen copy of the starting model, or its log-probs computed once up front
(reference="precomputed", which frees the copy's memory).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError


@dataclass
class DPOConfig:
    base: str = ""  # the SFT checkpoint: initial policy and reference
    beta: float = 0.1
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    label_smoothing: float = 0.0  # cDPO: the probability that a preference label is flipped
    reference: Literal["frozen", "precomputed"] = "frozen"

    def __post_init__(self):
        if self.beta <= 0:
            raise ConfigError(f"dpo.beta={self.beta} must be > 0")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"dpo.label_smoothing={self.label_smoothing} must be in [0, 0.5)")
        if self.loss == "ipo" and self.label_smoothing:
            raise ConfigError("dpo.label_smoothing applies to loss=sigmoid only")


def token_logps(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for each position (B, L-1) of token ids (B, L)."""
    logits, _ = model(ids[:, :-1])  # (B, L-1, V): position t predicts token t+1
    return torch.gather(logits.float().log_softmax(-1), 2, ids[:, 1:, None])[..., 0]  # (B, L-1)


def response_mask(ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """(B, L-1) bool, aligned with token_logps: True where the predicted token is in [start, length)."""
    pos = torch.arange(1, ids.size(1), device=ids.device)  # the position of each predicted token
    return (pos >= start[:, None]) & (pos < length[:, None])


def response_logps(model: nn.Module, ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(token) over each row's response tokens (B,), their count (B,)) for rows of
    token ids (B, L) whose response occupies [start, length)."""
    mask = response_mask(ids, start, length)
    return (token_logps(model, ids) * mask).sum(-1), mask.sum(-1)


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float, loss: str = "sigmoid", label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Mean DPO/IPO loss over a batch of (B,) log-probs, and metrics: the implicit rewards
    beta * (log pi - log ref) of both sides, their margin and how often chosen's is higher."""
    z = (chosen - ref_chosen) - (rejected - ref_rejected)  # (B,)
    if loss == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * z) - label_smoothing * F.logsigmoid(-beta * z)
    elif loss == "ipo":
        losses = (z - 1 / (2 * beta)) ** 2
    else:
        raise ConfigError(f"model.loss={loss!r}: expected 'sigmoid' or 'ipo'")
    r_chosen, r_rejected = (beta * (chosen - ref_chosen)).detach(), (beta * (rejected - ref_rejected)).detach()
    metrics = {"reward_chosen": r_chosen.mean(), "reward_rejected": r_rejected.mean(),
               "margin": (r_chosen - r_rejected).mean(), "reward_acc": (r_chosen > r_rejected).float().mean()}
    return losses.mean(), metrics


class DPOObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, policy: nn.Module, cfg: DPOConfig, all_batches=None):
        """all_batches: every pair (train then val, by `index`), needed for reference=precomputed."""
        self.model, self.cfg = policy, cfg
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        self.reference, self.ref_logps = None, None
        if cfg.reference == "precomputed":
            if all_batches is None:
                raise ConfigError("model.reference=precomputed needs the pairs up front")
            self.ref_logps = _precompute(reference, all_batches, cfg.loss == "ipo")
        else:
            self.reference = reference

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}  # the reference is rebuilt from the base checkpoint

    def _logps(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for side in ("chosen", "rejected"):
            total, count = response_logps(model, batch[side], batch[f"{side}_start"], batch[f"{side}_len"])
            out.append(total / count.clamp(min=1) if self.cfg.loss == "ipo" else total)
        return out[0], out[1]

    def _reference(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ref_logps is not None:
            both = self.ref_logps.to(batch["index"].device)[batch["index"]]  # (B, 2)
            return both[:, 0], both[:, 1]
        self.reference.to(batch["chosen"].device)  # the loop moves only modules(); a no-op once there
        with torch.no_grad():
            return self._logps(self.reference, batch)

    def loss(self, batch: dict, phase: str = "main"):
        chosen, rejected = self._logps(self.model, batch)
        ref_chosen, ref_rejected = self._reference(batch)
        loss, metrics = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.cfg.beta, self.cfg.loss,
                                 self.cfg.label_smoothing)
        tokens = int((batch["chosen_len"] - batch["chosen_start"]).sum() + (batch["rejected_len"] - batch["rejected_start"]).sum())
        return loss, {"loss": loss.detach(), **metrics, "tokens": tokens}

    def evaluate(self, batches) -> dict[str, float]:
        sums: dict[str, float] = {}
        n = 0
        for batch in batches:
            loss, metrics = self.loss(batch)
            b = int(batch["index"].numel())
            metrics.pop("tokens")
            for k, v in {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * b
            n += b
        return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def _precompute(reference: nn.Module, batches, per_token: bool) -> torch.Tensor:
    """(N, 2) reference log-probs of every pair's chosen and rejected side, by pair index."""
    rows: dict[int, tuple[float, float]] = {}
    for batch in batches:
        reference.to(batch["chosen"].device)
        sides = []
        for side in ("chosen", "rejected"):
            total, count = response_logps(reference, batch[side], batch[f"{side}_start"], batch[f"{side}_len"])
            sides.append(total / count.clamp(min=1) if per_token else total)
        for i, idx in enumerate(batch["index"].tolist()):
            rows[idx] = (float(sides[0][i]), float(sides[1][i]))
    return torch.tensor([rows[i] for i in range(len(rows))])  # (N, 2)
