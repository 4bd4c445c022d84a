"""The VQ-VAE family: nearest-code quantisation, the straight-through gradient, the EMA codebook
update against a hand computation, dead-code restarts, the numbers and checkpoints of the layout
before nn/vq.py, and end to end through `genforge train` (it reconstructs digits, uses its
codebook, resumes exactly) and `genforge generate`."""
import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.errors import ConfigError
from genforge.models.vqvae import VQVAE, VQVAEConfig
from genforge.objectives.vqvae import VQVAEObjective


def tiny(**kw) -> VQVAE:
    torch.manual_seed(0)
    cfg = dict(image_size=8, channels=1, width=8, blocks=1, codebook_size=16, code_dim=4, downsample=2)
    return VQVAE(VQVAEConfig(**{**cfg, **kw}))


def test_quantize_maps_each_vector_to_its_nearest_code():
    model = tiny()
    with torch.no_grad():
        model.codebook.copy_(torch.randn(16, 4))
    z_e = torch.randn(3, 4, 4, 4)
    z_q, codes, stats = model.quantizer.quantize(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.tensor([min(range(16), key=lambda k: float(((v - model.codebook[k]) ** 2).sum())) for v in flat])
    assert torch.equal(codes.reshape(-1), brute)
    assert torch.allclose(z_q.permute(0, 2, 3, 1).reshape(-1, 4), model.codebook[brute])
    assert torch.allclose(stats["commit"], ((flat - model.codebook[brute]) ** 2).mean())
    _, enc_codes = model.encode(torch.rand(2, 1, 8, 8))
    assert enc_codes.shape == (2, 4, 4) and enc_codes.dtype == torch.long


def test_the_straight_through_gradient_reaches_the_encoder():
    for ema in (True, False):
        model = tiny(ema=ema)
        loss, _ = VQVAEObjective(model).loss((torch.rand(4, 1, 8, 8), None))
        loss.backward()
        first = model.encoder[0].weight.grad
        assert first is not None and first.abs().sum() > 0
        assert isinstance(model.codebook, torch.nn.Parameter) != ema
        if not ema:
            assert model.codebook.grad.abs().sum() > 0  # the codebook loss trains it


def test_ema_update_matches_a_hand_computation():
    model = VQVAE(VQVAEConfig(image_size=2, channels=1, width=2, blocks=0, codebook_size=2, code_dim=1,
                              downsample=2, ema_decay=0.5, dead_threshold=0.0))
    with torch.no_grad():
        model.codebook.copy_(torch.tensor([[0.0], [10.0]]))
        model.quantizer.embed_sum.copy_(model.codebook)
    z_e = torch.tensor([1.0, 3.0, 9.0]).view(3, 1, 1, 1)  # codes 0, 0, 1
    codes = model.quantizer.nearest(z_e)
    assert codes.reshape(-1).tolist() == [0, 0, 1]
    model.quantizer.update(z_e, codes)
    # cluster sizes 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1); sums 0.5 * (0, 10) + 0.5 * (4, 9) = (2, 9.5)
    assert torch.allclose(model.quantizer.cluster_size, torch.tensor([1.5, 1.0]))
    assert torch.allclose(model.quantizer.embed_sum, torch.tensor([[2.0], [9.5]]))
    n, eps = 2.5, 1e-5
    smoothed = (torch.tensor([1.5, 1.0]) + eps) / (n + 2 * eps) * n
    assert torch.allclose(model.codebook.squeeze(1), torch.tensor([2.0, 9.5]) / smoothed)
    assert int(model.quantizer.steps) == 1


def test_a_dead_code_is_restarted_from_the_batch():
    model = tiny(codebook_size=4, code_dim=2, dead_threshold=1.0)
    with torch.no_grad():
        model.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-100.0, -100.0]]))
        model.quantizer.embed_sum.copy_(model.codebook)
    z_e = torch.rand(2, 2, 3, 3) * 0.1  # all near code 0
    model.quantizer.update(z_e, model.quantizer.nearest(z_e))
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in (1, 2, 3):  # unused: their cluster size decayed below 1, so they moved onto batch vectors
        assert any(torch.equal(model.codebook[k], v) for v in flat)
        assert float(model.quantizer.cluster_size[k]) == 1.0
    assert float(model.quantizer.cluster_size[0]) > 1.0
    # the choice follows the step counter, not the global RNG
    again = tiny(codebook_size=4, code_dim=2, dead_threshold=1.0)
    with torch.no_grad():
        again.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-100.0, -100.0]]))
        again.quantizer.embed_sum.copy_(again.codebook)
    torch.manual_seed(123)
    again.quantizer.update(z_e, again.quantizer.nearest(z_e))
    assert torch.equal(again.codebook, model.codebook)


def test_the_shared_quantiser_reproduces_the_numbers_of_the_vqvae_before_it():
    """Pinned from models/vqvae.py before its quantiser moved to nn/vq.py: the same seed gives the
    same weights, EMA steps (with restarts) and reconstructions."""
    model = tiny()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.codebook.copy_(model.encoder(x).permute(0, 2, 3, 1).reshape(-1, 4)[:16])
        model.quantizer.embed_sum.copy_(model.codebook)
    objective = VQVAEObjective(model)
    for _ in range(3):
        loss, _ = objective.loss((x, None))
        loss.backward()
    model.eval()
    assert float(loss) == pytest.approx(0.08444415777921677, rel=1e-6)
    assert float(model.codebook.double().sum()) == pytest.approx(5.305048003792763, rel=1e-6)
    assert float(model.reconstruct(x).double().sum()) == pytest.approx(132.70172652602196, rel=1e-6)


def test_a_checkpoint_of_the_earlier_layout_loads_and_reconstructs_identically(tmp_path):
    import dataclasses

    from safetensors.torch import save_file

    model = tiny()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # a codebook on encoder outputs, so that the images use many codes
        model.codebook.copy_(model.encoder(x).permute(0, 2, 3, 1).reshape(-1, 4)[:16])
    ckpt = ckpt_io.save_checkpoint(tmp_path / "vq", {"family": "vqvae", "model": dataclasses.asdict(model.config)},
                                   {"model": model})
    old = {k.removeprefix("quantizer."): v.contiguous() for k, v in model.state_dict().items()}
    assert {"codebook", "cluster_size", "embed_sum", "steps"} <= set(old)
    save_file(old, str(ckpt / "model.safetensors"))
    loaded = ckpt_io.load(ckpt, verify_files=False).model
    model.eval()
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    assert torch.equal(loaded.encode(x)[1], model.encode(x)[1]) and len(model.encode(x)[1].unique()) > 4
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.downsample=3"):
        VQVAEConfig(image_size=12, downsample=3)
    with pytest.raises(ConfigError, match="model.image_size=10"):
        VQVAEConfig(image_size=10, downsample=4)


def train_args(out, iters, decay=200):
    return ["vqvae/digits", f"train.max_iters={iters}", f"train.lr_decay_iters={decay}", "train.warmup_iters=10",
            "train.eval_interval=100", "train.eval_iters=2", "train.log_interval=50", "train.device=cpu",
            "train.dtype=float32", f"train.out_dir={out}", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vqvae") / "run"
    assert main(["train", *train_args(out, 200)]) == 0
    return out


def test_a_short_run_reconstructs_digits_and_uses_its_codebook(trained):
    from genforge.data.image_batches import open_images, to_float
    from genforge.run_config import load_config

    loaded = ckpt_io.load(trained)
    assert isinstance(loaded.model, VQVAE) and not loaded.model.training
    _, val = open_images(load_config("vqvae/digits").data)
    x = to_float(val.images[:256])
    rec_mse = float((loaded.model.reconstruct(x) - x).pow(2).mean())
    mean_mse = float((x.mean(0, keepdim=True) - x).pow(2).mean())
    assert rec_mse < 0.2 * mean_mse, (rec_mse, mean_mse)
    _, codes = loaded.model.encode(x)
    used = len(codes.unique()) / loaded.model.config.codebook_size
    assert used > 0.2


def test_resume_is_exact_including_the_ema_codebook(trained, tmp_path):
    cut = tmp_path / "cut"
    assert main(["train", *train_args(cut, 100)]) == 0
    assert main(["train", *train_args(cut, 200), "--resume"]) == 0
    a, b = (load_file(str(ckpt_io.resolve(d) / "model.safetensors")) for d in (trained, cut))
    assert {"quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum", "quantizer.steps"} <= set(a)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["quantizer.steps"]) == 200


def test_generate_writes_a_grid(trained, tmp_path):
    assert main(["generate", str(trained), "--num-samples", "4", "--seed", "3", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    model = ckpt_io.load(trained).model
    x1 = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert x1.shape == (3, 1, 16, 16) and float(x1.min()) >= 0 and float(x1.max()) <= 1
    assert torch.equal(x1, model.sample(3, generator=torch.Generator().manual_seed(1)))
