"""genforge's AdamW (torch's fused kernel, driven directly) equals torch.optim.AdamW(fused=True)
step for step, and its state_dict round-trips into torch's layout."""
import torch

from genforge.config import TrainConfig
from genforge.train.optim import AdamW, build_optimizer


def run(make_opt, steps=7):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    opt = make_opt(groups)
    x = torch.randn(9, 5)
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = 1e-2 / (i + 1)
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt


def test_matches_torch_fused_adamw():
    ours, opt_a = run(lambda g: AdamW(g, lr=1e-2, betas=(0.9, 0.99)))
    ref, opt_b = run(lambda g: torch.optim.AdamW(g, lr=1e-2, betas=(0.9, 0.99), fused=True))
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][k], sb["state"][i][k]), (i, k)


def test_state_dict_round_trip_continues_identically():
    model, opt = run(lambda g: AdamW(g, lr=1e-2, betas=(0.9, 0.99)), steps=3)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    state = opt.state_dict()
    model2 = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    model2.load_state_dict(saved)
    opt2 = build_optimizer(model2.parameters(), TrainConfig(weight_decay=0.1, beta2=0.99), torch.device("cpu"))
    opt2.load_state_dict(state)
    x = torch.randn(9, 5)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
