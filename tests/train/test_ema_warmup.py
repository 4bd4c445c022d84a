"""train.ema_warmup: the EMA's decay ramps as min(decay, (1 + n) / (10 + n)), by hand; resume keeps the ramp;
the EMA matches torch's AveragedModel."""
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genforge.config import TrainConfig
from genforge.train.ema import ema_decay_at
from genforge.train.loop import _make_ema
from genforge.train.run import run


def test_decay_ramp_by_hand():
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 90) == pytest.approx(0.91)
    assert ema_decay_at(0.9, 1000) == 0.9  # capped by train.ema_decay


@pytest.mark.parametrize("warmup", [True, False])
def test_averages_by_hand(warmup):
    module = nn.Linear(1, 1, bias=False)
    ema = _make_ema(SimpleNamespace(modules=lambda: {"g": module}, ema_module="g"),
                    TrainConfig(ema_decay=0.9, ema_warmup=warmup))
    want = None
    for n, w in enumerate([1.0, 3.0, -2.0]):
        with torch.no_grad():
            module.weight.fill_(w)
        ema.update_parameters(module)
        decay = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9  # n: updates averaged before this one
        want = w if want is None else decay * want + (1 - decay) * w  # the first update copies
        assert float(ema.module.weight.detach()) == pytest.approx(want)
    # by hand for warmup: 1 -> 2/11 * 1 + 9/11 * 3 = 2.6364 -> 3/12 * 2.6364 + 9/12 * (-2) = -0.8409
    assert float(ema.module.weight.detach()) == pytest.approx(-0.840909 if warmup else 0.9 * (0.9 + 0.3) - 0.2, rel=1e-5)


def test_resume_keeps_the_ramp(tmp_path, tiny_config):
    extra = ("train.ema_decay=0.99", "train.ema_warmup=true", "train.dtype=float32", "train.lr_decay_iters=12")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(tiny_config(straight, *extra, max_iters=12), progress=False)
    run(tiny_config(resumed, *extra, max_iters=6), progress=False)
    run(tiny_config(resumed, *extra, max_iters=12), resume=True, progress=False)
    a, b = (load_file(d / "latest" / "model.safetensors") for d in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_matches_torch_averaged_model_bitwise():
    """Our EMA (host-side count, no device sync) against torch.optim.swa_utils.AveragedModel, BatchNorm buffers included."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from genforge.train.ema import EMA

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ours, ref = EMA(net, 0.9), AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(4):
        net(torch.randn(16, 4)).square().mean().backward()
        opt.step()
        ours.update_parameters(net)
        ref.update_parameters(net)
    assert ours.n_averaged == 4
    a, b = ours.module.state_dict(), ref.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert not torch.equal(a["0.weight"], net.state_dict()["0.weight"])
    # an integer buffer follows the module (AveragedModel's int arithmetic truncates it back to its first value)
    assert int(a["1.num_batches_tracked"]) == 4
