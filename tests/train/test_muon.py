"""train.optimizer=muon: Muon for the hidden weight matrices, AdamW for embeddings, norms,
biases and output heads; its groups follow the schedule times train.muon_lr_scale."""
import dataclasses

import pytest
import torch

from genforge.config import TrainConfig
from genforge.errors import ConfigError
from genforge.models.gpt import GPT, GPTConfig
from genforge.run_config import load_config
from genforge.train.log import read_metrics
from genforge.train.optim import MuonAdamW, build_optimizer, hidden_matrices
from genforge.train.run import run


def tiny_gpt(flavour: str) -> GPT:
    return GPT(GPTConfig(flavour=flavour, vocab_size=50, n_layer=2, n_head=2, n_embd=32, block_size=16))


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(flavour):
    model = tiny_gpt(flavour)
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="muon", muon_lr_scale=3.0), torch.device("cpu"),
                          hidden_matrices([model]))
    assert isinstance(opt, MuonAdamW)
    muon = {p for g in opt.muon.param_groups for p in g["params"]}
    names = {p: n for n, p in model.named_parameters()}
    assert {names[p] for p in muon} == {n for n in names.values() if n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))}
    adamw = {p for g in opt.adamw.param_groups for p in g["params"]}
    assert not muon & adamw and muon | adamw == set(model.parameters())
    assert model.lm_head.weight in adamw and model.transformer.wte.weight in adamw
    assert [g["lr_scale"] for g in opt.muon.param_groups] == [3.0]


def test_muon_steps_orthogonalised_updates():
    model = tiny_gpt("llama")
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="muon", weight_decay=0.0), torch.device("cpu"),
                          hidden_matrices([model]))
    w = model.transformer.h[0].attn.c_attn.weight
    before = w.detach().clone()
    w.grad = torch.randn_like(w)
    opt.step()
    update = (w.detach() - before) / -opt.muon.param_groups[0]["lr"]
    spread = lambda m: (lambda s: (s.max() / s.min()).item())(torch.linalg.svdvals(m.double()))  # noqa: E731
    assert spread(w.grad) > 2.5  # a random 96x32 gradient's singular values spread ~4x ...
    assert spread(update) < 2.0  # ... Newton-Schulz makes them near equal


def test_a_muon_run_learns(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides(tmp_path / "run", 30), "train.optimizer=muon", "train.muon_lr_scale=2", "train.lr=3e-3"])
    run(cfg, progress=False)
    loss = [v for _, n, v in read_metrics(tmp_path / "run" / "metrics.csv") if n == "loss"]
    assert loss[-1] < loss[0] - 0.5


def test_muon_config_errors():
    with pytest.raises(ConfigError, match="muon_lr_scale"):
        TrainConfig(optimizer="muon", muon_lr_scale=0)
    with pytest.raises(ConfigError, match="fsdp"):
        TrainConfig(optimizer="muon", fsdp=True)
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(None, ["train.optimizer=sgd"])
    assert dataclasses.replace(TrainConfig(), optimizer="muon").optimizer == "muon"
