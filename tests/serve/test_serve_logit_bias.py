"""logit_bias and genforge's other generation controls on /v1/completions and chat, through the
official openai client: -100 bans a token, +100 forces it, the server's text equals the Python
API's with the same controls and seed, and bad values are 400s naming logit_bias as OpenAI does."""
from __future__ import annotations

import httpx
import openai
import pytest


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def test_minus_100_bans_and_plus_100_forces(server, text_models):
    lm = text_models[0].model
    e, x = str(lm.tokenizer.encode("e")[0]), str(lm.tokenizer.encode("x")[0])
    kw = dict(model="alpha", prompt="The quick", max_tokens=40, temperature=1.0, seed=5)
    free = client(server).completions.create(**kw).choices[0].text
    banned = client(server).completions.create(**kw, logit_bias={e: -100}).choices[0].text
    assert "e" in free and "e" not in banned
    assert banned == lm.generate("The quick", 40, temperature=1.0, seed=5, logit_bias={int(e): -100})
    forced = client(server).completions.create(**kw, logit_bias={x: 100}).choices[0].text
    assert forced == "x" * 40
    chunks = client(server).completions.create(**kw, logit_bias={e: -100}, stream=True)
    assert "".join(c.choices[0].text for c in chunks) == banned
    scored = client(server).completions.create(**kw, logit_bias={x: 100}, logprobs=1)
    assert scored.choices[0].text == "x" * 40


def test_chat_logit_bias_and_blocklist(server):
    messages = [{"role": "user", "content": "the lazy dog?"}]
    kw = dict(model="beta", messages=messages, max_tokens=40, temperature=1.0, seed=2)
    free = client(server).chat.completions.create(**kw).choices[0].message.content
    blocked = client(server).chat.completions.create(**kw, extra_body={"blocklist": ["the", "a"]}).choices[0].message.content
    assert "a" not in blocked and "the" not in blocked and blocked != free


@pytest.mark.parametrize("bias, match", [
    ({"1000000": 1}, "outside the vocabulary"),
    ({"-3": 1}, "outside the vocabulary"),
    ({"abc": 1}, "not a token id"),
    ({"5": 101}, r"\[-100, 100\]"),
    ({"5": -100.5}, r"\[-100, 100\]"),
])
def test_bad_logit_bias_is_a_400(server, bias, match):
    import re

    for create in (lambda: client(server).completions.create(model="alpha", prompt="the", max_tokens=4, logit_bias=bias),
                   lambda: client(server).chat.completions.create(model="alpha", max_tokens=4, logit_bias=bias,
                                                                  messages=[{"role": "user", "content": "hi"}])):
        with pytest.raises(openai.BadRequestError) as e:
            create()
        error = e.value.body
        assert error["param"] == "logit_bias" and re.search(match, error["message"])
    r = httpx.post(f"{server}/v1/completions", json={"model": "alpha", "prompt": "the", "blocklist": [" "]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "blocklist"


def test_rejection_sampling_redraws_until_the_reward_model_accepts(text_models, server):
    from genforge.serve.app import create_app
    from genforge.serve.limits import Limits
    from genforge.serve.registry import index
    from genforge.serve.state import ServerState
    from serve.helpers import running

    calls = []

    def scorer(prompt: str, text: str) -> float:
        calls.append(text)
        return 1.0 if len(calls) == 3 else -1.0  # the third draw is the first accepted

    state = ServerState(index(text_models), Limits())
    state.scorer = scorer
    lm = text_models[0].model
    with running(create_app(state)) as url:
        c = client(url).completions.create(model="alpha", prompt="The", max_tokens=12, temperature=1.0, seed=4,
                                           extra_body={"reject_below": 0.0, "reject_tries": 5})
        assert len(calls) == 3 and c.choices[0].text == calls[2]
        assert c.choices[0].text == lm.generate("The", 12, temperature=1.0, seed=4 + 7919 * 2)
        with pytest.raises(openai.BadRequestError, match="judged whole"):
            client(url).completions.create(model="alpha", prompt="The", max_tokens=4, stream=True,
                                           extra_body={"reject_below": 0.0})
    with pytest.raises(openai.BadRequestError, match="no reward model"):
        client(server).completions.create(model="alpha", prompt="The", max_tokens=4, extra_body={"reject_below": 0.0})
