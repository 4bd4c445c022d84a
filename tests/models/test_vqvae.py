"""The VQ-VAE family: nearest-code quantisation, the straight-through gradient, the EMA codebook
update against a hand computation, dead-code restarts, the numbers and checkpoints of the layout
before nn/vq.py, and end to end through `genforge train` (it reconstructs digits, uses its
codebook, resumes exactly) and `genforge generate`."""
import numpy as np
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


# --- two streams (model.streams=value_chroma) ---------------------------------------------------

def scene_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    from genforge.data import scenes

    images, _, _ = scenes.make_scenes(n, "train", size, seed)
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255


def split_model(**kw) -> VQVAE:
    return tiny(**({"image_size": 16, "channels": 3, "streams": "value_chroma", "chroma_size": 8} | kw))


def test_the_value_stream_is_the_same_for_an_object_of_any_colour():
    """The point of the split: a red circle and a green one give one value image, so no value code
    says which colour it is; the chroma vectors hold the colour, and joining them gives the image back."""
    import copy

    from genforge.data import scenes

    _, _, specs = scenes.make_scenes(1, "train", 16, 2)
    drawn = []
    for colour in ("red", "green", "blue"):
        spec = copy.deepcopy(specs[0])
        for o in spec["objects"]:
            o["colour"] = colour
        drawn.append(scenes.draw(spec, 16))
    x = torch.from_numpy(np.stack(drawn).transpose(0, 3, 1, 2).copy()).float() / 255
    model = split_model()
    value, chroma = model.split(x)
    assert value.shape == (3, 1, 16, 16) and chroma.shape == (3, 3, 8, 8)
    assert (value[0] - value[1]).abs().max() <= 2 / 255 and (value[0] - value[2]).abs().max() <= 2 / 255
    assert float(value.max()) == 1.0
    assert not torch.allclose(chroma[0], chroma[1])
    assert (model.join(value, chroma) - x).abs().max() <= 2 / 255  # one colour a patch: nothing is lost but rounding


def test_two_stream_codes_round_trip_and_a_step_logs_both_codebooks():
    model = split_model()
    x = scene_images(8)
    objective = VQVAEObjective(model)
    loss, metrics = objective.loss((x, None))  # the first training step seeds the chroma codebook (k-means++)
    assert {"chroma_perplexity", "chroma_used"} <= set(metrics) and float(metrics["chroma_perplexity"]) > 2
    assert len(model.chroma.codebook.unique(dim=0)) == 8  # distinct entries, black among them
    assert float(model.chroma.codebook.norm(dim=1).min()) < 0.01
    loss.backward()
    assert model.encoder[0].weight.shape[1] == 1  # the convolutions see the value image
    model.eval()
    _, codes = model.encode(x)
    assert codes.shape == (8, 8, 8, 2) and int(codes[..., 1].max()) < 8
    images = model.decode_codes(codes)
    assert images.shape == x.shape and torch.equal(images, model.reconstruct(x))
    # the chroma codebook alone keeps each scene's colours: exact value images, quantised colour
    value, chroma = model.split(x)
    rebuilt = model.join(value, model.chroma.lookup(model.chroma.nearest(chroma)))
    assert float((rebuilt - x).abs().mean()) < 0.02
    sample = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (2, 3, 16, 16)
    assert set(objective.evaluate([(x, None)])) >= {"val_chroma_perplexity", "val_chroma_used"}


def test_grey_images_have_the_value_stream_alone():
    grey, single = tiny(streams="value_chroma"), tiny()
    assert grey.streams == 1 and grey.chroma is None
    assert grey.state_dict().keys() == single.state_dict().keys()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(grey.split(x)[0], x) and grey.encode(x)[1].shape == (2, 4, 4)


def test_two_stream_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.streams='rgb'"):
        VQVAEConfig(streams="rgb")
    with pytest.raises(ConfigError, match="model.chroma_size=1"):
        VQVAEConfig(streams="value_chroma", chroma_size=1)
    with pytest.raises(ConfigError, match="needs RGB"):
        VQVAEConfig(streams="value_chroma", channels=4)


def split_args(out, iters):
    return ["vqvae/scenes_split", "data.image_size=16", "data.batch_size=8", "model.width=8", "model.codebook_size=16",
            "model.code_dim=4", "model.chroma_size=8", f"train.max_iters={iters}", "train.lr_decay_iters=4",
            "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1", "train.log_interval=1",
            "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}", "--no-progress"]


def test_a_two_stream_run_resumes_exactly_including_the_chroma_codebook(tmp_path):
    from genforge.train.log import read_metrics

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", *split_args(full, 4)]) == 0
    assert main(["train", *split_args(cut, 2)]) == 0
    assert main(["train", *split_args(cut, 4), "--resume"]) == 0
    a, b = (load_file(str(ckpt_io.resolve(d) / "model.safetensors")) for d in (full, cut))
    assert {"chroma.codebook", "chroma.cluster_size", "chroma.embed_sum", "chroma.steps"} <= set(a)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["chroma.steps"]) == 4 and len(a["chroma.codebook"].unique(dim=0)) == 8
    names = {name for _, name, _ in read_metrics(full / "metrics.csv")}
    assert {"chroma_perplexity", "chroma_used", "val_chroma_perplexity"} <= names
    model = ckpt_io.load(full).model
    assert model.streams == 2 and model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 16, 16)
