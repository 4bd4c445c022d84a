"""The diffusion text-to-image family (models/diffusion.py, objectives/denoise.py, sample/t2i.py):
a tiny run of the shipped recipe through the CLI, exact resume, guidance, seeds, samplers, the
caption vocabulary's errors, and a tiny model that learns a handful of captions."""
import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.data.caption_batches import encode_captions
from genforge.errors import ConfigError, DataError
from genforge.models.diffusion import DiffusionConfig
from genforge.sample import diffusion as samplers
from genforge.sample.t2i import generate

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.text_layers=1", "model.text_width=32",
        "model.text_heads=2", "model.steps=4", "data.num_scenes=256", "data.image_size=16", "data.batch_size=16"]


def train_args(out, iters, *extra):
    return ["t2i/scenes_dit", *TINY, f"train.max_iters={iters}", "train.lr_decay_iters=40", "train.warmup_iters=5",
            "train.eval_interval=20", "train.eval_iters=1", "train.log_interval=20", "train.device=cpu",
            "train.dtype=float32", f"train.out_dir={out}", *extra, "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("dit") / "run"
    assert main(["train", *train_args(out, 40)]) == 0
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A tiny genforge CLIP (2 steps) for the metrics, reranking and text tower that need one."""
    out = tmp_path_factory.mktemp("clip") / "run"
    assert main(["train", "clip/scenes", "data.num_scenes=64", "data.image_size=16", "data.batch_size=16",
                 "model.width=8", "model.text_width=16", "model.text_heads=2", "model.embed_dim=16",
                 "train.max_iters=2", "train.eval_interval=100", "train.device=cpu", "train.dtype=float32",
                 f"train.out_dir={out}", "--no-progress"]) == 0
    return out


def ids_of(loaded, captions):
    return torch.from_numpy(encode_captions(loaded.tokenizer, captions, loaded.model.config.text_len))


def test_resume_is_exact_with_ema_and_batch_shards(trained, tmp_path):
    cut = tmp_path / "cut"
    assert main(["train", *train_args(cut, 20)]) == 0
    assert main(["train", *train_args(cut, 40), "--resume"]) == 0
    a, b = (load_file(str(ckpt_io.resolve(d) / "model.safetensors")) for d in (trained, cut))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    raw_a, raw_b = (ckpt_io.load_state(ckpt_io.resolve(d), "raw-model") for d in (trained, cut))
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)


def test_the_checkpoint_holds_its_tokenizer_and_the_text_comes_from_the_data(trained):
    loaded = ckpt_io.load(trained)
    c = loaded.model.config
    assert loaded.family.kind == "text_image" and loaded.tokenizer.kind == "words"
    assert c.text_vocab == loaded.tokenizer.vocab_size and c.text_pad == loaded.tokenizer.eot_id
    assert (c.image_size, c.channels) == (16, 3)


def test_a_seed_reproduces_an_image_bitwise_and_seeds_differ(trained):
    loaded = ckpt_io.load(trained)
    ids = ids_of(loaded, ["a red circle above a blue square", "two green triangles"])
    a, b, c = (generate(loaded.model, ids, torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert a.shape == (2, 3, 16, 16) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_scale_one_is_the_conditional_model(trained):
    model = ckpt_io.load(trained).model
    ids = ids_of(ckpt_io.load(trained), ["a small red circle"])
    ours = generate(model, ids, torch.Generator().manual_seed(3), guidance=1.0, steps=4)
    cond = model.condition(ids)
    with torch.no_grad():
        plain = samplers.flow_sample(lambda x, t, _: model(x, t * 1000, cond), (1, 3, 16, 16), 4,
                                     generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, ((plain.clamp(-1, 1) + 1) / 2))


def test_negative_prompt_replaces_the_unconditional_model(trained):
    loaded = ckpt_io.load(trained)
    ids, neg = ids_of(loaded, ["a red circle"]), ids_of(loaded, ["a blue square"])
    plain = generate(loaded.model, ids, torch.Generator().manual_seed(0), guidance=3.0)
    negative = generate(loaded.model, ids, torch.Generator().manual_seed(0), guidance=3.0, negative=neg)
    assert not torch.equal(plain, negative)


def test_sampling_settings_out_of_range_are_one_line_errors(trained):
    loaded = ckpt_io.load(trained)
    ids = ids_of(loaded, ["a red circle"])
    with pytest.raises(ConfigError, match="sampler=ddim: this model .prediction=flow. samples with euler"):
        generate(loaded.model, ids, sampler="ddim")
    with pytest.raises(ConfigError, match="steps=0 must be in 1..1000"):
        generate(loaded.model, ids, steps=0)
    with pytest.raises(ConfigError, match="guidance=50"):
        generate(loaded.model, ids, guidance=50)
    with pytest.raises(ConfigError, match="sampler='heun'"):
        generate(loaded.model, ids, sampler="heun")
    with pytest.raises(DataError, match="word 'zebra' is not in the model's vocabulary"):
        ids_of(loaded, ["a red zebra"])
    with pytest.raises(DataError, match="empty text"):
        ids_of(loaded, ["  "])
    with pytest.raises(DataError, match="tokens, more than the model's"):
        ids_of(loaded, [" ".join(["red"] * 40)])
    with pytest.raises(ConfigError, match="model.prediction=flow needs euler"):
        DiffusionConfig(sampler="ddim")


def test_a_ddpm_model_samples_with_ddim_and_ddpm(tmp_path):
    out = tmp_path / "eps"
    assert main(["train", *train_args(out, 3, "model.prediction=eps", "model.train_steps=20")]) == 0
    loaded = ckpt_io.load(out)
    ids = ids_of(loaded, ["a red circle"])
    a = generate(loaded.model, ids, torch.Generator().manual_seed(0), steps=5)  # ddim, eta 0
    assert torch.equal(a, generate(loaded.model, ids, torch.Generator().manual_seed(0), steps=5))
    b = generate(loaded.model, ids, torch.Generator().manual_seed(0), sampler="ddpm")
    assert b.shape == a.shape and torch.isfinite(b).all()


def test_a_tiny_model_learns_a_handful_of_captions(tmp_path):
    """Four scenes, trained to memorise: each caption's sample is nearer its own image than the others'."""
    from genforge.data.caption_batches import CaptionDataConfig, open_captioned

    out = tmp_path / "few"
    args = ["t2i/scenes_dit", "model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.text_layers=1",
            "model.text_width=64", "model.text_heads=2", "model.cond_dropout=0.0", "data.num_scenes=64",
            "data.limit=4", "data.image_size=16", "data.batch_size=4", "train.max_iters=1000", "train.lr=2e-3",
            "train.min_lr=2e-3", "train.warmup_iters=10", "train.ema_decay=0", "train.eval_interval=1000",
            "train.log_interval=1000", "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}",
            "--no-progress"]
    assert main(["train", *args]) == 0
    train, _ = open_captioned(CaptionDataConfig(num_scenes=64, image_size=16, limit=4, batch_size=4))
    loaded = ckpt_io.load(out)
    images = torch.from_numpy(train.images[:4]).float() / 255
    made = generate(loaded.model, ids_of(loaded, train.captions[:4]), torch.Generator().manual_seed(0),
                    guidance=1.0, steps=20)
    dist = ((made[:, None] - images[None]) ** 2).flatten(2).mean(2)  # (generated, training image)
    assert torch.equal(dist.argmin(1), torch.arange(4)), (train.captions[:4], dist)


def test_generate_writes_a_grid_or_one_png_each_and_refuses_bad_prompts(trained, tmp_path, capsys):
    from PIL import Image

    grid = tmp_path / "grid.png"
    assert main(["generate", str(trained), "--prompt", "a red circle above a blue square", "--num-samples", "4",
                 "--seed", "1", "--steps", "3", "--guidance", "2", "--out", str(grid)]) == 0
    assert Image.open(grid).size[0] > 64
    assert main(["generate", str(trained), "--prompt", "two green triangles", "--num-samples", "3",
                 "--negative-prompt", "a red circle", "--out", f"{tmp_path}/each/"]) == 0
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == ["000.png", "001.png", "002.png"]
    for args, words in ((["--prompt", "a red zebra"], "word 'zebra'"), ([], "needs a description"),
                        (["--prompt", "a red circle", "--steps", "0"], "steps=0"),
                        (["--prompt", "a red circle", "--sampler", "ddim"], "samples with euler")):
        assert main(["generate", str(trained), *args, "--out", str(tmp_path / "x.png")]) != 0
        assert words in capsys.readouterr().err


def test_eval_gives_geneval_per_task_with_a_judge(trained, tmp_path, capsys):
    import json

    from genforge.train.judge import train_judge

    judge = train_judge(tmp_path / "judge", scenes_per_size=60, max_iters=10)
    capsys.readouterr()  # its training log
    assert main(["eval", str(trained), "--num-samples", "16", "--judge", str(judge), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 16 and 0 <= result["geneval_overall"] <= 1
    assert {"geneval_single_object", "geneval_position", "geneval_colour_binding"} <= set(result)
    assert main(["eval", str(trained), "--metrics", "clipscore"]) != 0
    assert "--clip CKPT" in capsys.readouterr().err


def test_a_frozen_pretrained_text_encoder_is_copied_in_and_stays_as_it_was(tmp_path):
    import dataclasses

    from genforge.data.scenes import make_scenes
    from genforge.data.tokenizer import train_tokenizer
    from genforge.models.encoder import Encoder, EncoderConfig

    _, captions, _ = make_scenes(400, "train", 16, 0)
    tok = train_tokenizer("words", captions + make_scenes(400, "train", 16, 1)[1])
    tok.save(tmp_path / "tokenizer.json")
    enc = Encoder(EncoderConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=24,
                                pad_id=tok.eot_id))
    ckpt_io.save_checkpoint(tmp_path / "enc", {"family": "encoder", "model": dataclasses.asdict(enc.config)},
                            {"model": enc}, tokenizer=tmp_path / "tokenizer.json")
    out = tmp_path / "run"
    assert main(["train", *train_args(out, 4, f"model.text_encoder={tmp_path / 'enc'}", "train.ema_decay=0")]) == 0
    loaded = ckpt_io.load(out)
    assert loaded.model.config.text_encoder_config["n_embd"] == 24 and loaded.model.text.frozen
    mine = loaded.model.text.encoder.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in enc.state_dict().items())  # frozen: not trained
    assert not torch.equal(loaded.model.text.proj.weight, torch.zeros_like(loaded.model.text.proj.weight))
    assert generate(loaded.model, ids_of(loaded, ["a red circle"]), steps=2).shape == (1, 3, 16, 16)


def test_eval_gives_clipscore_fid_and_kid_on_a_genforge_clip(trained, clip, capsys):
    import json

    capsys.readouterr()
    assert main(["eval", str(trained), "--metrics", "clipscore,fid,kid", "--clip", str(clip), "--num-samples", "24",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["clipscore"] <= 100 and result["fid"] >= 0 and "kid" in result and "geneval_overall" not in result
    assert main(["eval", str(trained), "--metrics", "bleu"]) != 0
    assert "--metrics bleu: a text-to-image model has geneval, clipscore, fid, kid" in capsys.readouterr().err


def test_rerank_keeps_each_prompts_best_candidate_by_the_clips_score(trained, clip, tmp_path, capsys):
    import genforge
    from genforge.eval.clipscore import clip_score, load_clip

    model = genforge.load(trained, device="cpu")
    prompts = ["a red circle above a blue square", "two green triangles"]
    best = model.generate(prompts, seed=3, rerank=4, clip=clip, steps=3)
    # the candidates are the same call's draws without reranking, four per prompt in order
    candidates = model.generate([p for p in prompts for _ in range(4)], seed=3, steps=3)
    scores = clip_score(*load_clip(clip), candidates, [p for p in prompts for _ in range(4)]).view(2, 4)
    assert scores.std() > 0  # the CLIP tells the candidates apart, so the choice is tested
    assert torch.equal(best, candidates[scores.argmax(1) + torch.tensor([0, 4])])
    assert torch.equal(model.generate(prompts, seed=3, rerank=1, clip=clip, steps=3), model.generate(prompts, seed=3, steps=3))
    for kw, words in ((dict(rerank=4), "rerank needs a CLIP"), (dict(rerank=0, clip=clip), "rerank=0"),
                      (dict(rerank=65, clip=clip), "rerank=65")):
        with pytest.raises(ConfigError, match=words):
            model.generate(prompts, seed=3, steps=3, **kw)
    capsys.readouterr()
    assert main(["generate", str(trained), "--prompt", prompts[0], "--num-samples", "2", "--steps", "3",
                 "--rerank", "3", "--clip", str(clip), "--out", str(tmp_path / "best.png")]) == 0
    assert main(["generate", str(trained), "--prompt", prompts[0], "--rerank", "3", "--out", str(tmp_path / "x.png")]) != 0
    assert "rerank needs a CLIP" in capsys.readouterr().err
    assert main(["eval", str(trained), "--metrics", "clipscore", "--clip", str(clip), "--num-samples", "8",
                 "--rerank", "2", "--json"]) == 0


def test_a_genforge_clip_text_tower_conditions_frozen(clip, tmp_path):
    """model.text_encoder may name a CLIP: its text tower (word order learnt against images) is
    copied in, frozen, and the run reads the CLIP's tokenizer."""
    out = tmp_path / "run"
    assert main(["train", *train_args(out, 2, f"model.text_encoder={clip}", "train.ema_decay=0")]) == 0
    loaded, tower = ckpt_io.load(out), ckpt_io.load(clip).model.text
    assert loaded.model.text.frozen and loaded.model.config.text_encoder_config["n_embd"] == 16
    mine = loaded.model.text.encoder.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in tower.state_dict().items())
    assert loaded.tokenizer.vocab_size == ckpt_io.load(clip).tokenizer.vocab_size
    with pytest.raises(ConfigError, match="a diffusion checkpoint; expected encoder or clip"):
        main_raises(["train", *train_args(tmp_path / "bad", 2, f"model.text_encoder={out}")])


def main_raises(argv):
    from genforge.run_config import load_config
    from genforge.train.run import run

    return run(load_config(argv[1], [a for a in argv[2:] if not a.startswith("--")]), progress=False)
