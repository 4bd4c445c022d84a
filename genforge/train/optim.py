"""AdamW (Loshchilov & Hutter 2019) with weight decay on matrices only (not on norms, biases);
optionally Muon (Jordan et al. 2024, torch.optim.Muon) for the hidden weight matrices.

genforge's AdamW drives PyTorch's fused multi-tensor kernel (`torch._fused_adamw_`, the one
`torch.optim.AdamW(fused=True)` runs) directly. The same arithmetic, but constructing a
torch.optim.Optimizer pulls in torch._dynamo: +72 MB of resident memory for every training
process, more than a small model's whole training state. Where the kernel is missing (an older
torch, another device type) torch.optim.AdamW is used instead. state_dict() has torch's layout.

torch.optim.Muon runs its Newton–Schulz iteration in bf16. On a CPU without native bf16 that is
emulated, and a bf16 matmul there took 14.5x fp32's time, so there MuonAdamW runs it in fp32.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import _muon

from genforge.config import TrainConfig
from genforge.cpu import isa
from genforge.train.dist import shard_like


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig, device: torch.device,
                    hidden: set[nn.Parameter] = frozenset()):
    """AdamW over the trainable params: decay on tensors of 2+ dimensions, none on the rest. With
    cfg.optimizer == "muon", the params in `hidden` (see hidden_matrices) go to Muon instead."""
    params = [p for p in params if p.requires_grad]
    hidden = hidden if cfg.optimizer == "muon" else frozenset()
    muon = [p for p in params if p in hidden]
    params = [p for p in params if p not in hidden]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if hasattr(torch, "_fused_adamw_") and device.type in ("cpu", "cuda"):
        adamw = AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    else:
        adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    return MuonAdamW(muon, adamw, cfg, device) if muon else adamw


def hidden_matrices(modules: Iterable[nn.Module]) -> set[nn.Parameter]:
    """The weights of the linear layers inside the networks, not of their output heads (lm_head,
    head, v_head, ...): the matrices Muon orthogonalises. Embeddings, norms and biases stay AdamW's."""
    return {m.weight for module in modules for name, m in module.named_modules()
            if isinstance(m, nn.Linear) and "head" not in name.rsplit(".", 1)[-1]}


class MuonAdamW:
    """Muon for the hidden matrices and AdamW for the rest, behind the one optimizer interface.
    Muon's updates are scaled to AdamW's RMS (adjust_lr_fn="match_rms_adamw", Liu et al. 2025), so
    one schedule drives both; its groups carry lr_scale = train.muon_lr_scale. Newton–Schulz runs in
    ns_dtype: bf16 as in torch, fp32 on a CPU without native bf16 (genforge.cpu.isa)."""

    def __init__(self, muon: list[nn.Parameter], adamw, cfg: TrainConfig, device: torch.device):
        self.muon = torch.optim.Muon(muon, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw")
        for g in self.muon.param_groups:
            g["lr_scale"] = cfg.muon_lr_scale
        self.adamw = adamw
        self.ns_dtype = torch.float32 if device.type == "cpu" and not isa.native_bf16() else torch.bfloat16

    @property
    def param_groups(self) -> list[dict]:  # a property: load_state_dict replaces torch's group dicts
        return self.adamw.param_groups + self.muon.param_groups

    def step(self) -> None:
        self.adamw.step()
        with _newton_schulz_in(self.ns_dtype):
            self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none)
        self.muon.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        """One torch.optim-style dict: AdamW's parameters first, then Muon's; groups say whose."""
        a, m = self.adamw.state_dict(), self.muon.state_dict()
        n = sum(len(g["params"]) for g in a["param_groups"])
        groups = [{**g, "optimizer": "adamw"} for g in a["param_groups"]]
        groups += [{**g, "optimizer": "muon", "params": [i + n for i in g["params"]]} for g in m["param_groups"]]
        return {"state": {**a["state"], **{int(i) + n: s for i, s in m["state"].items()}}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if {g.get("optimizer") for g in groups} != {"adamw", "muon"}:
            raise ValueError("optimizer state is not a Muon + AdamW state (train.optimizer changed?)")
        n = sum(len(g["params"]) for g in groups if g["optimizer"] == "adamw")
        state = state_dict["state"]
        self.adamw.load_state_dict({"state": {i: s for i, s in state.items() if int(i) < n},
                                    "param_groups": [g for g in groups if g["optimizer"] == "adamw"]})
        muon_groups = [{**g, "params": [i - n for i in g["params"]]} for g in groups if g["optimizer"] == "muon"]
        self.muon.load_state_dict({"state": {int(i) - n: s for i, s in state.items() if int(i) >= n},
                                   "param_groups": muon_groups})


def newton_schulz(grad: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The orthogonalised update of a 2-D grad: torch.optim.Muon's quintic Newton–Schulz iteration
    (torch/optim/_muon.py, _zeropower_via_newtonschulz; Jordan et al. 2024), in dtype instead of
    always bf16. Bitwise torch's for dtype=bf16."""
    a, b, c = ns_coefficients
    x = grad.to(dtype, copy=True)  # a copy also in fp32: the update may be the momentum buffer itself
    if grad.size(0) > grad.size(1):
        x = x.T
    x.div_(x.norm().clamp(min=eps))  # spectral norm at most 1
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if grad.size(0) > grad.size(1) else x


@contextlib.contextmanager
def _newton_schulz_in(dtype: torch.dtype):
    """torch.optim.Muon's steps meanwhile orthogonalise in dtype: its step looks the iteration up
    in its module at each call, and has no setting for the dtype."""
    if dtype == torch.bfloat16:  # torch's own
        yield
        return
    torch_own = _muon._zeropower_via_newtonschulz
    _muon._zeropower_via_newtonschulz = functools.partial(newton_schulz, dtype=dtype)
    try:
        yield
    finally:
        _muon._zeropower_via_newtonschulz = torch_own


class AdamW:
    """The optimizer interface the loop uses: param_groups (lr set per step), step(),
    zero_grad(), state_dict(), load_state_dict()."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple[float, float], eps: float = 1e-8):
        self.param_groups = [{"params": list(g["params"]), "lr": lr, "betas": betas, "eps": eps,
                              "weight_decay": g.get("weight_decay", 0.0)} for g in groups]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self, found_inf: torch.Tensor | None = None) -> None:
        """One update; where found_inf (a 0-d float tensor) is nonzero the kernel leaves parameters
        and moments as they are and the step count is taken back, decided on the device: no sync."""
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            for key in {(p.device, p.dtype) for p in params}:  # the kernel takes one device and dtype per call
                same = [p for p in params if (p.device, p.dtype) == key]
                states = [self._state(p) for p in same]
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1)
                inf = None if found_inf is None else found_inf.to(key[0], torch.float32)
                torch._fused_adamw_(
                    same, [p.grad for p in same], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [], steps, amsgrad=False, lr=g["lr"], beta1=g["betas"][0], beta2=g["betas"][1],
                    weight_decay=g["weight_decay"], eps=g["eps"], maximize=False, grad_scale=None, found_inf=inf)
                if inf is not None:
                    torch._foreach_sub_(steps, [inf] * len(steps))

    def _state(self, p: nn.Parameter) -> dict[str, torch.Tensor]:
        if p not in self.state:
            self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[p]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        """torch.optim's layout: state keyed by the parameter's index across groups."""
        index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[p] for p in g["params"]]}
                  for g in self.param_groups]
        return {"state": {index[p]: dict(s) for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        saved = state_dict["param_groups"]
        if [len(g["params"]) for g in saved] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("optimizer state does not match the model's parameter groups")
        for g, s in zip(self.param_groups, saved):
            g.update({k: s[k] for k in ("lr", "eps", "weight_decay") if k in s})
            g["betas"] = tuple(s.get("betas", g["betas"]))
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {"step": s["step"].to(torch.float32, copy=True).to(p.device).reshape(()),
                             "exp_avg": shard_like(s["exp_avg"].to(p.device, p.dtype, copy=True), p),
                             "exp_avg_sq": shard_like(s["exp_avg_sq"].to(p.device, p.dtype, copy=True), p)}
