"""/v1/images/generations of a text-to-image checkpoint through the official openai client: the
prompt decides the image, genforge's extensions (seed, guidance_scale, steps, negative_prompt) go
as extra_body, bad input is a 400 naming the field before any work, and the per-request timeout
stops the sampler between steps."""
from __future__ import annotations

import base64

import openai
import pytest
import torch

from genforge.cli import main
from genforge.serve.images import to_png
from serve.test_serve_openai import client

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.text_layers=1", "model.text_width=32",
        "model.text_heads=2", "model.steps=3", "data.num_scenes=128", "data.image_size=16", "data.batch_size=16",
        "train.max_iters=20", "train.eval_interval=100", "train.device=cpu", "train.dtype=float32"]


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    from genforge.serve.registry import load_served

    out = tmp_path_factory.mktemp("t2i") / "run"
    assert main(["train", "t2i/scenes_dit", *TINY, f"train.out_dir={out}", "--no-progress"]) == 0
    served = load_served(f"scenes={out}", "cpu")
    assert served.kind == "text_image"
    return served


def test_prompt_seed_and_options_decide_the_images(make_server, t2i):
    c = client(make_server(extra=[t2i]))
    ask = dict(model="scenes", prompt="a red circle above a blue square", n=2, response_format="b64_json")
    a = c.images.generate(**ask, extra_body={"seed": 5, "guidance_scale": 2.0, "steps": 3})
    b = c.images.generate(**ask, extra_body={"seed": 5, "guidance_scale": 2.0, "steps": 3})
    assert [d.b64_json for d in a.data] == [d.b64_json for d in b.data] and len(a.data) == 2
    other = c.images.generate(**{**ask, "prompt": "two green triangles"}, extra_body={"seed": 5, "steps": 3})
    negative = c.images.generate(**ask, extra_body={"seed": 5, "guidance_scale": 2.0, "steps": 3,
                                                      "negative_prompt": "a blue square"})
    assert other.data[0].b64_json != a.data[0].b64_json != negative.data[0].b64_json
    assert base64.b64decode(a.data[0].b64_json)[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.images.generate(**ask, size="16x16", extra_body={"steps": 2}).data


@pytest.mark.parametrize("ask, param, words", [
    ({"prompt": "a red zebra"}, "prompt", "word 'zebra' is not in the model's vocabulary"),
    ({"prompt": "   "}, "prompt", "empty text"),
    ({"prompt": " ".join(["red"] * 40)}, "prompt", "more than the model's"),
    ({"prompt": "a red circle", "extra_body": {"negative_prompt": "a zebra"}}, "negative_prompt", "zebra"),
    ({"prompt": "a red circle", "extra_body": {"steps": 0}}, None, "steps=0 must be in 1..1000"),
    ({"prompt": "a red circle", "extra_body": {"guidance_scale": 99}}, None, "guidance=99"),
    ({"prompt": "a red circle", "extra_body": {"sampler": "ddpm"}}, None, "samples with euler"),
    ({"prompt": "a red circle", "size": "256x256"}, "size", "the sizes it has: 16x16"),
])
def test_bad_input_is_a_400_naming_it(make_server, t2i, ask, param, words):
    c = client(make_server(extra=[t2i]))
    with pytest.raises(openai.BadRequestError) as e:
        c.images.generate(model="scenes", **ask)
    assert words in e.value.body["message"] and e.value.body["param"] == param


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tests.models.test_clip import TINY as CLIP_TINY

    out = tmp_path_factory.mktemp("clip") / "run"
    assert main(["train", "clip/scenes", *CLIP_TINY, f"train.out_dir={out}", "--no-progress"]) == 0
    return str(out)


def test_rerank_keeps_the_clips_best_of_n_as_the_python_api_does(make_server, t2i, clip):
    c = client(make_server(extra=[t2i], clip=clip))
    ask = dict(model="scenes", prompt="a red circle above a blue square", n=2, response_format="b64_json")
    got = c.images.generate(**ask, extra_body={"seed": 3, "steps": 2, "rerank": 4})
    with torch.inference_mode():
        want = t2i.model.generate(ask["prompt"], 2, seed=3, steps=2, rerank=4, clip=clip)
    assert [base64.b64decode(d.b64_json) for d in got.data] == [to_png(img) for img in want]
    once = c.images.generate(**ask, extra_body={"seed": 3, "steps": 2, "rerank": 1})
    plain = c.images.generate(**ask, extra_body={"seed": 3, "steps": 2})
    assert [d.b64_json for d in once.data] == [d.b64_json for d in plain.data]


@pytest.mark.parametrize("rerank, with_clip, words", [
    (4, False, "this server has no CLIP to rank candidates by (start it with --clip CKPT)"),
    (0, True, "rerank=0: must be in [1, 64]"),
    (65, True, "rerank=65: must be in [1, 64]"),
])
def test_bad_rerank_is_a_400_naming_it(make_server, t2i, clip, rerank, with_clip, words):
    c = client(make_server(extra=[t2i], clip=clip if with_clip else None))
    with pytest.raises(openai.BadRequestError) as e:
        c.images.generate(model="scenes", prompt="a red circle", extra_body={"rerank": rerank})
    assert words in e.value.body["message"] and e.value.body["param"] == "rerank"


def test_serve_clip_is_checked_at_start(t2i, clip, serve_ckpt):
    from genforge.errors import CheckpointError, ConfigError
    from genforge.serve.limits import Limits
    from genforge.serve.server import build_state

    assert build_state([f"scenes={t2i.model.path}"], Limits(), clip=clip, device="cpu").clip == clip
    with pytest.raises(CheckpointError, match="CLIPScore needs a clip checkpoint"):
        build_state([f"scenes={t2i.model.path}"], Limits(), clip=str(t2i.model.path), device="cpu")
    with pytest.raises(ConfigError, match="--clip: reranking needs at least one text-to-image model"):
        build_state([str(serve_ckpt)], Limits(), clip=clip, device="cpu")


def test_the_timeout_stops_the_sampler_between_steps(make_server, t2i):
    steps = []
    model = t2i.model.model
    hook = model.register_forward_hook(lambda *a: steps.append(1))
    try:
        c = client(make_server(extra=[t2i], timeout_s=0.2))
        with pytest.raises(openai.APIStatusError) as e:
            c.images.generate(model="scenes", prompt="a red circle", n=1, extra_body={"steps": 1000})
        assert e.value.status_code == 504
    finally:
        hook.remove()
    assert len(steps) < 1000  # it stopped at a step boundary, long before the thousandth
