"""Issue 21, item 7: a generation that fails part-way through a stream ends with an SSE error
event (after the pieces already sent), not a dropped connection; the server keeps serving."""
from __future__ import annotations

import json

import httpx
import torch


class FailsAfter(torch.nn.Module):
    """The tiny model, until its n-th forward pass raises (as a corrupted weight's NaN would make
    torch.multinomial raise)."""

    def __init__(self, model, n: int):
        super().__init__()
        self.inner, self.n, self.config = model, n, model.config

    def new_cache(self, batch: int):
        return self.inner.new_cache(batch)

    def forward(self, idx, cache=None, pos=0):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return self.inner(idx, cache, pos)


def test_a_stream_that_fails_midway_ends_with_an_error_event(text_models, make_server):
    from genforge.api import TextModel
    from genforge.serve.registry import Served

    lm = text_models[0].model
    flaky = Served("flaky", "text", TextModel(FailsAfter(lm.model, 6), lm.tokenizer, lm.path))
    url = make_server(extra=[flaky])
    body = {"model": "flaky", "prompt": "the quick", "max_tokens": 40, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    pieces = [json.loads(e) for e in events[:-1]]
    assert pieces and all(p["choices"][0]["text"] for p in pieces)  # what was generated arrived first
    error = json.loads(events[-1])["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error" and "RuntimeError" in error["message"]
    assert "[DONE]" not in events
    good = httpx.post(f"{url}/v1/completions", json={"model": "alpha", "prompt": "a", "max_tokens": 3}, timeout=60)
    assert good.status_code == 200
