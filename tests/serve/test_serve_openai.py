"""The OpenAI-compatible routes through the official `openai` client against a real uvicorn server:
what comes back must equal what genforge's own sampler makes for the same prompt and seed."""
from __future__ import annotations

import base64
import io
import json
import shutil

import httpx
import numpy as np
import openai
import pytest
import torch

from genforge.serve.chat import render_chat


def client(url: str, key: str = "none", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, **kw)


def test_models_and_health(server):
    ids = [m.id for m in client(server).models.list().data]
    assert ids == ["alpha", "beta"]
    assert client(server).models.retrieve("beta").id == "beta"
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["running"] == 0


def test_completion_equals_local_sampling(server, text_models):
    lm = text_models[0].model
    c = client(server).completions.create(model="alpha", prompt="The quick", max_tokens=20, temperature=0.9,
                                          seed=7, top_p=0.95)
    assert c.object == "text_completion" and c.model == "alpha"
    expected = lm.generate("The quick", 20, temperature=0.9, top_p=0.95, seed=7)
    assert c.choices[0].text == expected and c.choices[0].index == 0
    assert c.usage.prompt_tokens == len("The quick")  # char tokenizer: one token per character
    assert c.usage.completion_tokens == len(expected)
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    assert c.choices[0].finish_reason == ("length" if len(expected) == 20 else "stop")


def test_completion_n_prompts_and_stop(server, text_models):
    lm = text_models[0].model
    c = client(server).completions.create(model="alpha", prompt=["a lazy", "seven"], n=2, max_tokens=30, seed=3,
                                          stop=["o", "e"], temperature=1.0)
    assert [ch.index for ch in c.choices] == [0, 1, 2, 3]
    for ch, (prompt, seed) in zip(c.choices, [("a lazy", 3), ("a lazy", 4), ("seven", 3), ("seven", 4)]):
        assert ch.text == lm.generate(prompt, 30, temperature=1.0, seed=seed, stop=["o", "e"])
        assert "o" not in ch.text and "e" not in ch.text
    assert c.choices[0].text != c.choices[1].text or c.choices[2].text != c.choices[3].text  # seeds differ


def test_chat_uses_the_template_and_its_stop(server, text_models):
    lm = text_models[1].model
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the lazy dog?"}]
    c = client(server).chat.completions.create(model="beta", messages=messages, max_tokens=40, seed=1,
                                               temperature=0.7)
    prompt, stop = render_chat(messages)
    assert prompt == "system: be brief\nuser: the lazy dog?\nassistant:" and stop == ["\nuser:"]
    assert c.object == "chat.completion" and c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == lm.generate(prompt, 40, temperature=0.7, seed=1, stop=stop)
    assert c.usage.prompt_tokens == len(prompt)
    two = client(server).chat.completions.create(model="beta", messages=messages, max_tokens=40, seed=1, n=2)
    assert [ch.message.content for ch in two.choices] == [
        lm.generate(prompt, 40, temperature=1.0, seed=s, stop=stop) for s in (1, 2)]
    with pytest.raises(openai.BadRequestError) as e:
        client(server).chat.completions.create(model="beta", messages=[{"role": "user", "content": "ü"}])
    assert e.value.body["param"] == "messages"


def test_streaming_completion_matches_whole(server):
    kw = dict(model="alpha", prompt="five boxing", max_tokens=25, seed=11, temperature=1.0)
    whole = client(server).completions.create(**kw).choices[0].text
    chunks = list(client(server).completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert len(chunks) > 3  # it really streamed, piece by piece
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(whole)


def test_streaming_chat(server):
    kw = dict(model="alpha", messages=[{"role": "user", "content": "a quick fox?"}], max_tokens=20, seed=5)
    whole = client(server).chat.completions.create(**kw).choices[0].message.content
    chunks = list(client(server).chat.completions.create(stream=True, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


BAD = [  # (request fields, the param the error names)
    (dict(temperature=-1), "temperature"),
    (dict(temperature=3), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(max_tokens=-1), "max_tokens"),
    (dict(max_tokens=100_000), "max_tokens"),
    (dict(n=0), "n"),
    (dict(n=50), "n"),
    (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(stop=[""]), "stop"),
    (dict(stop=["x" * 500]), "stop"),
    (dict(logprobs=21), "logprobs"),
    (dict(logprobs=2, stream=True), "logprobs"),
    (dict(echo=True, stream=True), "echo"),
    (dict(logprobs=1, max_tokens=60, prompt="the quick"), "max_tokens"),
    (dict(presence_penalty=0.5), "presence_penalty"),
    (dict(prompt="é unknown to the char tokenizer"), "prompt"),
    (dict(prompt="x" * 65), "prompt"),
    (dict(prompt=[[10_000]]), "prompt"),
    (dict(seed="abc"), "seed"),
]


@pytest.mark.parametrize("fields,param", BAD, ids=[p + str(i) for i, (_, p) in enumerate(BAD)])
def test_bad_parameters_are_400_openai_errors(server, fields, param):
    body = {"model": "alpha", "prompt": "the", "max_tokens": 4, **fields}
    r = httpx.post(f"{server}/v1/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].split(".")[0] == param
    assert error["message"]


def test_client_errors(server):
    c = client(server)
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="nope", prompt="a")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="alpha", messages=[])
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="alpha", prompt="a" * 100, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    r = httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_api_key(make_server):
    url = make_server(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").models.list()
    assert httpx.post(f"{url}/v1/completions", json={"model": "alpha", "prompt": "a"}).status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200
    assert client(url, "s3cret").completions.create(model="alpha", prompt="a", max_tokens=3).choices


def test_body_over_the_limit_is_413(server):
    body = b'{"model": "alpha", "prompt": "' + b"a" * 3_000_000 + b'"}'
    r = httpx.post(f"{server}/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit counts the bytes as they arrive
        for _ in range(30):
            yield b"a" * 100_000

    r = httpx.post(f"{server}/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_timeout_stops_generation(make_server, endless):
    url = make_server(timeout_s=0.5, max_tokens=1_000_000, extra=[endless])
    r = httpx.post(f"{url}/v1/completions", json={"model": "endless", "prompt": "a", "max_tokens": 1_000_000},
                   timeout=60)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"


class Pixels(torch.nn.Module):
    """A stand-in image model: sample() draws (n, 3, 8, 6) uniform pixels from the generator."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def sample(self, n, cond=None, generator=None):
        return torch.rand(n, 3, 8, 6, generator=generator) * self.scale


def test_images_generations(make_server):
    from PIL import Image

    from genforge.serve.registry import Served

    url = make_server(extra=[Served("pixels", "image", Pixels())])
    c = client(url)
    result = c.images.generate(model="pixels", prompt="anything", n=2, response_format="b64_json",
                               extra_body={"seed": 4})
    expected = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(4))
    for data, want in zip(result.data, expected):
        image = Image.open(io.BytesIO(base64.b64decode(data.b64_json)))
        assert image.format == "PNG" and image.size == (6, 8) and image.mode == "RGB"
        got = torch.from_numpy(np.array(image)).float().permute(2, 0, 1) / 255  # (3, 8, 6)
        assert torch.allclose(got, want, atol=1 / 255)
    with pytest.raises(openai.BadRequestError):
        c.images.generate(model="alpha", prompt="x")  # a text model
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="pixels", prompt="x")  # an image model


def test_streaming_past_the_timeout_ends_with_an_error_event(make_server, endless):
    url = make_server(timeout_s=0.5, max_tokens=1_000_000, extra=[endless])
    body = {"model": "endless", "prompt": "a", "max_tokens": 1_000_000, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) > 1 and json.loads(events[-1])["error"]["type"] == "timeout"
    assert "[DONE]" not in events


def test_chat_template_from_the_checkpoint(tmp_path, serve_ckpt, make_server):
    from genforge.serve.registry import load_served

    ckpt = tmp_path / "run" / "step-0000020"
    shutil.copytree(serve_ckpt, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["chat_template"] = {"message": "<{role}>{content}\n", "generation": "<assistant>", "stop": ["<user>"]}
    (ckpt / "config.json").write_text(json.dumps(config))
    served = load_served(str(ckpt), "cpu")
    assert served.id == "run/step-0000020"
    url = make_server(extra=[served])
    c = client(url).chat.completions.create(model=served.id, messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=12, seed=2)
    want = served.model.generate("<user>hi\n<assistant>", 12, temperature=1.0, seed=2, stop=["<user>"])
    assert c.choices[0].message.content == want


def test_a_tuned_chat_models_jinja_template_wins(tmp_path, serve_ckpt):
    """A checkpoint that carries a Jinja chat template with its tokenizer (SFT, HF import) is
    prompted the way it was trained, and stops at its end-of-turn token."""
    from genforge.finetune.template import DEFAULT_TEMPLATE, render, save_template
    from genforge.serve.registry import load_served

    ckpt = tmp_path / "run" / "step-0000020"
    shutil.copytree(serve_ckpt, ckpt)
    save_template(ckpt, DEFAULT_TEMPLATE, "<|eot|>")
    served = load_served(str(ckpt), "cpu")
    assert served.chat_template == {"jinja": DEFAULT_TEMPLATE, "eos": "<|eot|>", "bos": ""}
    messages = [{"role": "user", "content": "hi"}]
    prompt, stop = render_chat(messages, served.chat_template)
    assert prompt == render(DEFAULT_TEMPLATE, messages, add_generation_prompt=True, eos="<|eot|>")
    assert prompt == "User: hi\nAssistant:" and stop == ["<|eot|>"]
