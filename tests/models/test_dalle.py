"""The DALL·E-style family (models/dalle.py, objectives/dalle.py, sample/t2i_dalle.py): guided
sampling equals a reference that runs the whole GPT every step, scale 1 is the conditional model,
codes never leave the image-code span, one seed gives one image bitwise, condition dropout trains
on the null caption, a run resumes exactly, a tiny model overfits a few captions, and bad
prompts, sampling settings and tokenizers are refused."""
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.data import caption_batches as captions
from genforge.errors import ConfigError, DataError
from genforge.models.dalle import Dalle, DalleConfig
from genforge.models.vqvae import VQVAE, VQVAEConfig
from genforge.objectives.dalle import DalleObjective
from genforge.run_config import load_config
from genforge.sample.processors import allowed_range
from genforge.sample.t2i_dalle import generate, sample_codes
from genforge.sample.text import generate_ids
from genforge.train.log import read_metrics
from genforge.train.run import run

VQ = dict(image_size=16, channels=3, width=8, codebook_size=16, code_dim=4)


def tiny(sharp: bool = True, **kw) -> Dalle:
    """A small random Dalle; sharp: its GPT's matrices drawn wider than at initialisation, so that
    its next-code distributions are far from uniform and depend on the caption (as a trained model's do)."""
    torch.manual_seed(0)
    cfg = dict(image_size=16, channels=3, text_vocab=12, text_len=5, text_pad=11, vqvae_config=VQ, n_layer=2,
               n_head=2, n_embd=16)
    model = Dalle(DalleConfig(**(cfg | kw))).eval()
    if sharp:
        with torch.no_grad():
            for p in model.gpt.parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.5)
    return model


def captions_of(model: Dalle, *rows: list[int]) -> torch.Tensor:
    ids = model.null_caption(len(rows))
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids


def reference_codes(model: Dalle, ids, guidance, negative=None) -> torch.Tensor:
    """Greedy codes with guidance, the whole GPT over both streams every step (no cache, no processors)."""
    lo, hi = model.image_range
    cond, uncond = model.prefix(ids), model.prefix(model.null_caption(len(ids)) if negative is None else negative)
    out = []
    for _ in range(model.n_codes):
        c = model.gpt(cond)[0][:, -1].double()
        u = model.gpt(uncond)[0][:, -1].double()
        code = (u + guidance * (c - u))[:, lo:hi].argmax(-1)  # (B,)
        out.append(code)
        cond, uncond = (torch.cat([s, (code + lo)[:, None]], 1) for s in (cond, uncond))
    return torch.stack(out, 1)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_guided_greedy_codes_equal_a_full_forward_reference(guidance):
    model = tiny().double()
    ids = captions_of(model, [1, 2, 3], [4, 5])
    negative = captions_of(model, [6], [7, 8, 9, 10])
    with torch.no_grad():
        assert torch.equal(sample_codes(model, ids, guidance=guidance, temperature=0), reference_codes(model, ids, guidance))
        assert torch.equal(sample_codes(model, ids, guidance=guidance, negative=negative, temperature=0),
                           reference_codes(model, ids, guidance, negative))
        if guidance != 1.0:  # the references differ, so the comparisons above tell the branches apart
            assert not torch.equal(reference_codes(model, ids, guidance), reference_codes(model, ids, 1.0))


def test_guidance_1_samples_the_conditional_model():
    model = tiny()
    ids = captions_of(model, [1, 2, 3], [4, 5], [6])
    codes = sample_codes(model, ids, torch.Generator().manual_seed(3), guidance=1.0, temperature=1.0)
    lo, hi = model.image_range
    plain = generate_ids(model.gpt, model.prefix(ids), model.n_codes, generator=torch.Generator().manual_seed(3),
                         processors=[allowed_range(lo, hi)])
    assert torch.equal(codes, plain - lo)
    guided = sample_codes(model, ids, torch.Generator().manual_seed(3), guidance=4.0, temperature=1.0)
    assert not torch.equal(codes, guided)


def test_a_seed_reproduces_an_image_bitwise():
    model = tiny()
    ids = captions_of(model, [1, 2, 3], [4, 5])
    a, b = (generate(model, ids, torch.Generator().manual_seed(7)) for _ in range(2))
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, generate(model, ids, torch.Generator().manual_seed(8)))


def test_codes_never_leave_the_image_code_span(monkeypatch):
    """Even when the GPT favours text ids and BOI by far, with guidance amplifying them, at a high
    temperature and with top_k: every step draws a code."""
    model = tiny()
    lo, hi = model.image_range
    forward = model.gpt.forward

    def favour_the_rest(*args, **kw):
        logits, cache = forward(*args, **kw)
        boost = torch.full_like(logits, 30.0)
        boost[..., lo:hi] = 0
        return logits + boost, cache

    monkeypatch.setattr(model.gpt, "forward", favour_the_rest)
    ids = captions_of(model, [1, 2], [3], [4, 5, 6], [7])
    for kw in (dict(guidance=1.0, temperature=5.0), dict(guidance=8.0, temperature=2.0, top_k=3)):
        codes = sample_codes(model, ids, torch.Generator().manual_seed(0), **kw)
        assert codes.shape == (4, model.n_codes) and codes.min() >= 0 and codes.max() < hi - lo


def test_check_runs_before_every_token_step():
    model = tiny()
    calls = []
    sample_codes(model, captions_of(model, [1]), check=lambda: calls.append(1))
    assert len(calls) == model.n_codes

    def cancel():
        if len(calls) == 10:
            raise TimeoutError("request cancelled")
        calls.append(1)

    calls.clear()
    with pytest.raises(TimeoutError):
        sample_codes(model, captions_of(model, [1]), check=cancel)


def test_bad_sampling_settings_and_ids_are_refused():
    model = tiny()
    ids = captions_of(model, [1, 2])
    for kw, match in ((dict(guidance=-1), "guidance=-1"), (dict(guidance=31), "guidance=31"),
                      (dict(temperature=-0.5), "temperature=-0.5"), (dict(top_k=17), r"top_k=17 must be in \[0, 16\]")):
        with pytest.raises(ConfigError, match=match):
            generate(model, ids, **kw)
    with pytest.raises(ValueError, match=r"ids: expected caption ids \(batch, 5\)"):
        generate(model, ids[:, :3])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 12\)"):
        generate(model, ids + 12)
    with pytest.raises(ValueError, match="negative has 2 captions for 1 prompts"):
        generate(model, ids, negative=captions_of(model, [1], [2]))


def test_configs_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="model.vqvae must name a vqvae checkpoint"):
        tiny(vqvae_config={})
    with pytest.raises(ConfigError, match="encodes 3-channel 16x16 images; the data has 3-channel 32x32"):
        tiny(image_size=32)
    with pytest.raises(ConfigError, match="model.text_pad=12 must be a text id"):
        tiny(text_pad=12)
    with pytest.raises(ConfigError, match="cond_dropout"):
        DalleConfig(cond_dropout=1.0)


def test_the_vqvae_stays_frozen_and_in_eval_mode():
    model = tiny().train()
    assert model.gpt.training and not model.vqvae.training
    objective = DalleObjective(model)
    trainable = set(map(id, objective.parameters("main")))
    assert trainable == set(map(id, model.gpt.parameters()))
    x = torch.rand(3, 3, 16, 16)
    loss, _ = objective.loss((x, captions_of(model, [1], [2], [3]), torch.zeros(3, dtype=torch.bool)))
    loss.backward()
    assert all(p.grad is None for p in model.vqvae.parameters())


def test_dropped_captions_train_the_null_caption():
    model = tiny()
    objective = DalleObjective(model)
    x, ids = torch.rand(2, 3, 16, 16), captions_of(model, [1, 2], [3])
    keep, drop = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    dropped, text = objective.per_example((x, ids, drop))
    null, _ = objective.per_example((x, model.null_caption(2), keep))
    assert torch.equal(dropped, null) and torch.equal(text, torch.zeros(2))
    kept, _ = objective.per_example((x, ids, keep))
    assert not torch.equal(kept, dropped)
    # drawn from the batch's generator: the same seed, the same captions dropped
    model.config.cond_dropout = 0.5
    draws = [objective.draw(torch.zeros(64, 1), torch.Generator().manual_seed(s))[0] for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2]) and 10 < int(draws[0].sum()) < 54


def test_a_tiny_model_overfits_a_handful_of_captions():
    """Four scenes with four captions: after training, greedy sampling of each caption gives its
    own image's codes (which differ, so the caption is what tells them apart)."""
    torch.manual_seed(0)
    data = captions.read_scenes("shapes", 4, "train", 16, seed=3)
    tok = captions.caption_tokenizer(captions.CaptionDataConfig(), data.captions)
    T = captions.longest(tok, data.captions)
    ids = torch.from_numpy(captions.encode_captions(tok, data.captions, T))
    x = torch.from_numpy(data.images).float() / 255
    model = tiny(text_vocab=tok.vocab_size, text_len=T, text_pad=captions.pad_id(tok), n_embd=32, cond_dropout=0.0, sharp=False)
    with torch.no_grad():  # codebook entries on the encoder's outputs, so that these images use many codes
        z = model.vqvae.encoder(x).permute(0, 2, 3, 1).reshape(-1, VQ["code_dim"])
        model.vqvae.codebook.copy_(z[torch.randperm(len(z))[:VQ["codebook_size"]]])
    target = model.codes(x)
    assert len({tuple(row.tolist()) for row in target}) == 4
    assert overfit(model, x, ids) < 0.05
    model.eval()
    assert torch.equal(sample_codes(model, ids, guidance=1.0, temperature=0), target)
    images = generate(model, ids, guidance=1.0, temperature=0)
    assert torch.equal(images, model.decode(target))


def overfit(model, x: torch.Tensor, ids: torch.Tensor, steps: int = 150) -> float:
    """The loss after `steps` Adam steps of the DALL·E objective on one batch (no caption dropped)."""
    objective = DalleObjective(model.train())
    opt = torch.optim.Adam(list(objective.parameters("main")), lr=3e-3)
    batch = (x, ids, torch.zeros(len(x), dtype=torch.bool))
    for _ in range(steps):
        loss, _ = objective.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def saved_vqvae(tmp_path_factory, config: dict, name: str):
    """An untrained 32x32 VQ-VAE of config (seed 0), saved as a checkpoint."""
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**(config | {"image_size": 32})))
    path = tmp_path_factory.mktemp(name) / "vq"
    return ckpt_io.save_checkpoint(path, {"family": "vqvae", "model": dataclasses.asdict(model.config)},
                                   {"model": model})


@pytest.fixture(scope="module")
def vqvae_ckpt(tmp_path_factory):
    return saved_vqvae(tmp_path_factory, VQ, "vqvae")


def dalle_config(out, vq, *extra, max_iters=6):
    return load_config(None, [
        "family=dalle", "data.source=builtin:scenes", "data.num_scenes=48", "data.batch_size=8",
        f"model.vqvae={vq}", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.dropout=0.1",
        "model.cond_dropout=0.3", "model.text_loss_weight=0.1", f"train.max_iters={max_iters}",
        "train.lr_decay_iters=6", "train.warmup_iters=1", "train.eval_interval=3", "train.eval_iters=1",
        "train.log_interval=1", "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}", *extra])


def test_a_run_resumes_exactly_and_its_checkpoint_generates(tmp_path, vqvae_ckpt):
    full = run(dalle_config(tmp_path / "full", vqvae_ckpt), progress=False)
    assert run(dalle_config(tmp_path / "cut", vqvae_ckpt, max_iters=3), progress=False).name == "step-0000003"
    resumed = run(dalle_config(tmp_path / "cut", vqvae_ckpt), resume=True, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[v for _, name, v in read_metrics(d / "metrics.csv") if name == "loss"] for d in (full.parent, resumed.parent)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    vq = load_file(vqvae_ckpt / "model.safetensors")
    assert all(torch.equal(a[f"vqvae.{k}"], v) for k, v in vq.items())  # the tokenizer's weights, untouched

    loaded = ckpt_io.load(full)
    model, tok = loaded.model, loaded.tokenizer
    assert loaded.family.kind == "text_image" and model.config.vqvae_config["image_size"] == 32
    names = {name for _, name, _ in read_metrics(full.parent / "metrics.csv")}
    assert {"val_loss", "val_text_loss", "val_uncond_loss", "image_loss"} <= names
    T = model.config.text_len
    ids = torch.from_numpy(captions.encode_captions(tok, ["a red square", "two blue circles"], T))
    images = generate(model, ids, torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32)
    # bad prompts: the caption tokenizer's one-line DataErrors
    with pytest.raises(DataError, match="word 'dragon' is not in the model's vocabulary"):
        captions.encode_captions(tok, ["a red dragon"], T, "prompt")
    with pytest.raises(DataError, match="prompt 0: empty text"):
        captions.encode_captions(tok, ["  "], T, "prompt")
    with pytest.raises(DataError, match=f"more than the model's {T}"):
        captions.encode_captions(tok, [" ".join(["red"] * (T + 1))], T, "prompt")


def test_a_run_refuses_data_its_vqvae_cannot_encode(tmp_path, vqvae_ckpt):
    with pytest.raises(ConfigError, match="encodes 3-channel 32x32 images; the data has 3-channel 16x16"):
        run(dalle_config(tmp_path / "bad", vqvae_ckpt, "data.image_size=16"), progress=False)
    with pytest.raises(ConfigError, match="a dalle checkpoint; expected vqvae"):
        full = run(dalle_config(tmp_path / "ok", vqvae_ckpt, max_iters=1), progress=False)
        run(dalle_config(tmp_path / "bad2", full), progress=False)


def test_the_shipped_recipes_fit_together():
    """t2i/scenes_dalle reads the checkpoint vqvae/scenes writes, at the image size it was trained on."""
    vq, dalle = load_config("vqvae/scenes"), load_config("t2i/scenes_dalle")
    assert (vq.family, dalle.family) == ("vqvae", "dalle")
    assert dalle.model.vqvae == f"{vq.train.out_dir}/latest"
    assert dalle.data.source == vq.data.source and dalle.data.image_size == vq.data.image_size
    assert vq.model.image_size in (0, vq.data.image_size)


def tiny_encoder_config(vocab: int, pad: int) -> dict:
    from genforge.models.encoder import EncoderConfig

    return dataclasses.asdict(EncoderConfig(vocab_size=vocab, block_size=8, n_layer=1, n_head=2, n_embd=12, pad_id=pad))


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_with_a_frozen_encoder_guided_codes_equal_a_full_forward_reference(guidance):
    """The caption as the encoder's states before BOI: cached, guided sampling is what running
    the whole GPT over [states, BOI, codes so far] for both captions every step gives."""
    model = tiny(text_encoder_config=tiny_encoder_config(12, 11))
    assert model.image_range == (0, 16) and model.boi == 16 and model.gpt.config.vocab_size == 17
    assert model.prefix_len == 6 and model.gpt.config.block_size == 6 + model.n_codes
    with torch.no_grad():
        for p in model.text.proj.parameters():
            p.normal_(0, 1.0)
    ids = captions_of(model, [1, 2, 3], [4, 5])
    with torch.no_grad():
        states = {k: model.states(c) for k, c in (("c", ids), ("u", model.null_caption(2)))}
        streams = {k: model.prefix(ids) for k in states}
        out = []
        for _ in range(model.n_codes):
            c, u = (model.gpt(streams[k], prefix=states[k])[0][:, -1].double() for k in ("c", "u"))
            code = (u + guidance * (c - u)).argmax(-1)
            out.append(code)
            streams = {k: torch.cat([s, code[:, None]], 1) for k, s in streams.items()}
    ours = sample_codes(model, ids, guidance=guidance, temperature=0.0)
    assert torch.equal(ours, torch.stack(out, 1))
    assert not torch.equal(ours[0], ours[1])  # the states condition the codes


def test_a_frozen_encoder_predicts_no_caption_tokens():
    with pytest.raises(ConfigError, match="text_loss_weight must be 0 with model.text_encoder"):
        DalleConfig(text_encoder="runs/minilm", text_loss_weight=0.1)


def test_a_run_with_a_frozen_pretrained_text_encoder_keeps_it_and_generates(tmp_path, vqvae_ckpt):
    from genforge.data.scenes import make_scenes
    from genforge.data.tokenizer import train_tokenizer
    from genforge.models.encoder import Encoder, EncoderConfig

    tok = train_tokenizer("words", make_scenes(400, "train", 16, 0)[1] + make_scenes(400, "train", 16, 1)[1])
    tok.save(tmp_path / "tokenizer.json")
    torch.manual_seed(1)
    enc = Encoder(EncoderConfig(**tiny_encoder_config(tok.vocab_size, tok.eot_id) | {"block_size": 32}))
    ckpt_io.save_checkpoint(tmp_path / "enc", {"family": "encoder", "model": dataclasses.asdict(enc.config)},
                            {"model": enc}, tokenizer=tmp_path / "tokenizer.json")
    out = run(dalle_config(tmp_path / "run", vqvae_ckpt, f"model.text_encoder={tmp_path / 'enc'}",
                           "model.text_loss_weight=0", max_iters=3), progress=False)
    loaded = ckpt_io.load(out)
    model = loaded.model
    assert model.text.frozen and model.config.text_encoder_config["n_embd"] == 12
    assert model.gpt.config.vocab_size == model.vqvae.config.codebook_size + 1
    mine = model.text.encoder.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in enc.state_dict().items())  # frozen: not trained
    ids = torch.from_numpy(captions.encode_captions(loaded.tokenizer, ["a red square"], model.config.text_len))
    assert generate(model, ids, torch.Generator().manual_seed(0)).shape == (1, 3, 32, 32)


# --- a two-stream tokenizer (the VQ-VAE's streams=value_chroma) ------------------------------------

VQ2 = VQ | {"streams": "value_chroma", "chroma_size": 4}


def split_reference_codes(model: Dalle, ids, guidance) -> torch.Tensor:
    """Greedy guided codes, the whole GPT every step, each position's argmax over its own stream's span."""
    lo, hi = model.image_range
    mask = model.code_mask()
    cond, uncond = model.prefix(ids), model.prefix(model.null_caption(len(ids)))
    out = []
    for k in range(model.n_codes):
        c = model.gpt(cond)[0][:, -1].double()
        u = model.gpt(uncond)[0][:, -1].double()
        code = (u + guidance * (c - u))[:, lo:hi].masked_fill(~mask[k], float("-inf")).argmax(-1)
        out.append(code)
        cond, uncond = (torch.cat([s, (code + lo)[:, None]], 1) for s in (cond, uncond))
    return torch.stack(out, 1)


def test_two_streams_put_the_value_codes_before_the_chroma_codes():
    model = tiny(vqvae_config=VQ2)
    assert model.n_codes == 2 * 4 * 4 and model.code_spans == [(0, 16), (16, 20)]
    assert model.image_range == (12, 32) and model.boi == 32
    x = torch.rand(3, 3, 16, 16)
    codes = model.codes(x)
    assert codes.shape == (3, 32)
    assert int(codes[:, :16].max()) < 16 and int(codes[:, 16:].min()) >= 16 and int(codes[:, 16:].max()) < 20
    assert torch.equal(model.decode(codes), model.vqvae.reconstruct(x))
    mask = model.code_mask()
    assert mask.shape == (32, 20) and mask[15, :16].all() and not mask[15, 16:].any() and mask[16, 16:].all() and not mask[16, :16].any()


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_two_stream_guided_greedy_codes_equal_a_full_forward_reference(guidance):
    model = tiny(vqvae_config=VQ2).double()
    ids = captions_of(model, [1, 2, 3], [4, 5])
    with torch.no_grad():
        assert torch.equal(sample_codes(model, ids, guidance=guidance, temperature=0),
                           split_reference_codes(model, ids, guidance))


def test_each_position_draws_a_code_of_its_own_stream(monkeypatch):
    """The GPT favours chroma codes by far (and text ids and BOI): value positions still draw value
    codes, at a high temperature, with guidance, with top_k."""
    model = tiny(vqvae_config=VQ2)
    lo = model.image_range[0]
    forward = model.gpt.forward

    def favour_chroma(*args, **kw):
        logits, cache = forward(*args, **kw)
        boost = torch.full_like(logits, 30.0)
        boost[..., lo:lo + 16] = 0
        return logits + boost, cache

    monkeypatch.setattr(model.gpt, "forward", favour_chroma)
    ids = captions_of(model, [1, 2], [3], [4, 5, 6])
    for kw in (dict(guidance=1.0, temperature=5.0), dict(guidance=8.0, temperature=2.0, top_k=3)):
        codes = sample_codes(model, ids, torch.Generator().manual_seed(0), **kw)
        assert codes.shape == (3, 32)
        assert int(codes[:, :16].max()) < 16 and int(codes[:, 16:].min()) >= 16 and int(codes[:, 16:].max()) < 20
    images = generate(model, ids, torch.Generator().manual_seed(0))
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_a_tiny_two_stream_model_overfits_a_handful_of_captions():
    torch.manual_seed(0)
    data = captions.read_scenes("shapes", 4, "train", 16, seed=3)
    tok = captions.caption_tokenizer(captions.CaptionDataConfig(), data.captions)
    T = captions.longest(tok, data.captions)
    ids = torch.from_numpy(captions.encode_captions(tok, data.captions, T))
    x = torch.from_numpy(data.images).float() / 255
    model = tiny(text_vocab=tok.vocab_size, text_len=T, text_pad=captions.pad_id(tok), n_embd=32, cond_dropout=0.0,
                 sharp=False, vqvae_config=VQ2 | {"chroma_size": 8})
    with torch.no_grad():  # codebooks on these images' values and colours, so that they use many codes
        value, chroma = model.vqvae.split(x)
        z = model.vqvae.encoder(value).permute(0, 2, 3, 1).reshape(-1, VQ["code_dim"])
        model.vqvae.codebook.copy_(z[torch.randperm(len(z))[:VQ["codebook_size"]]])
        model.vqvae.chroma.seed_spread(chroma)
    target = model.codes(x)
    assert len({tuple(row.tolist()) for row in target}) == 4 and len(target[:, 16:].unique()) > 2
    assert overfit(model, x, ids) < 0.05
    model.eval()
    assert torch.equal(sample_codes(model, ids, guidance=1.0, temperature=0), target)
    assert torch.equal(generate(model, ids, guidance=1.0, temperature=0), model.decode(target))


@pytest.fixture(scope="module")
def split_vqvae_ckpt(tmp_path_factory):
    return saved_vqvae(tmp_path_factory, VQ2, "vqvae2")


def test_a_two_stream_run_resumes_exactly_and_its_checkpoint_generates(tmp_path, split_vqvae_ckpt):
    full = run(dalle_config(tmp_path / "full", split_vqvae_ckpt), progress=False)
    run(dalle_config(tmp_path / "cut", split_vqvae_ckpt, max_iters=3), progress=False)
    resumed = run(dalle_config(tmp_path / "cut", split_vqvae_ckpt), resume=True, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "vqvae.chroma.codebook" in a
    loaded = ckpt_io.load(full)
    ids = torch.from_numpy(captions.encode_captions(loaded.tokenizer, ["a red square"], loaded.model.config.text_len))
    assert loaded.model.n_codes == 128
    assert generate(loaded.model, ids, torch.Generator().manual_seed(0)).shape == (1, 3, 32, 32)


def test_the_two_stream_recipes_fit_together():
    vq, dalle = load_config("vqvae/scenes_split"), load_config("t2i/scenes_dalle_split")
    assert vq.model.streams == "value_chroma" and dalle.model.vqvae == f"{vq.train.out_dir}/latest"
    assert dalle.data.source == vq.data.source and dalle.data.image_size == vq.data.image_size
