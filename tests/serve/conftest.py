"""Serving fixtures: a tiny char model that has seen chat-formatted lines, and real uvicorn servers
on free ports (started in a thread, stopped at the end of the test)."""
from __future__ import annotations

import random
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from genforge.config import load_config

WORDS = "the quick brown fox jumps over a lazy dog while seven bold wizards judge my sphinx".split()


def chat_text(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    turns = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        turns.append(f"system: be brief\nuser: {q}?\nassistant: {a}.\n")
    return "".join(turns)


@pytest.fixture(scope="session")
def serve_ckpt(tmp_path_factory, corpus_text) -> Path:
    """A tiny char GPT trained 20 steps on plain lines plus `role: text` chat lines (read-only)."""
    from genforge.data.prepare import prepare
    from genforge.train.run import run

    root = tmp_path_factory.mktemp("serve")
    corpus = root / "corpus.txt"
    # every printable ASCII character once, so tests can send any ASCII prompt (and HTML/SQL strings)
    corpus.write_text(corpus_text[:8000] + chat_text(150) + "".join(map(chr, range(32, 127))) + "\n", encoding="utf-8")
    data = prepare(str(corpus), "char", root / "data")
    out = root / "run"
    overrides = [f"data.path={data}", f"train.out_dir={out}", "train.max_iters=20", "model.n_layer=2",
                 "model.n_head=2", "model.n_embd=32", "model.block_size=64", "data.batch_size=4",
                 "train.warmup_iters=5", "train.eval_interval=20", "train.eval_iters=1", "train.device=cpu",
                 "train.dtype=float32"]
    run(load_config(None, overrides), progress=False)
    return (out / "latest").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app, port: int | None = None):
    """Serve the ASGI app with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def text_models(serve_ckpt):
    """Two served text models from the one tiny checkpoint: alpha and beta."""
    from genforge.serve.registry import load_served

    return [load_served(f"alpha={serve_ckpt}", "cpu"), load_served(f"beta={serve_ckpt}", "cpu")]


@pytest.fixture
def make_server(text_models):
    """make_server(**limits, api_key=None, feedback=None, extra=[]) -> base URL of a running server."""
    from genforge.serve.app import create_app
    from genforge.serve.limits import Limits
    from genforge.serve.registry import index
    from genforge.serve.review import ReviewConfig
    from genforge.serve.state import ServerState

    stack = []

    def make(api_key: str | None = None, feedback=None, extra: list = (), review: ReviewConfig | None = None,
             **limits) -> str:
        state = ServerState(index([*text_models, *extra]), Limits(**limits), api_key, feedback,
                            review or ReviewConfig(max_tokens=16))
        ctx = running(create_app(state))
        url = ctx.__enter__()
        stack.append(ctx)
        return url

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def server(make_server) -> str:
    return make_server()


def wait_idle(url: str, timeout: float = 30.0) -> dict:
    """/health once no generation runs (or the last reading at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{url}/health").json()
        if (health["running"] == 0 and health["admitted"] == 0) or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


class NoEnd(__import__("torch").nn.Module):
    """The tiny model with its end-of-text logit masked: it generates until told to stop, so
    tests of stopping (disconnects, limits, timeouts) cannot pass by the model stopping itself."""

    def __init__(self, model, eot_id: int):
        super().__init__()
        self.inner, self.eot_id, self.config = model, eot_id, model.config

    def new_cache(self, batch: int):
        return self.inner.new_cache(batch)

    def forward(self, idx, cache=None, pos=0):
        logits, cache = self.inner(idx, cache, pos)
        logits[..., self.eot_id] = float("-inf")  # (B, T, vocab)
        return logits, cache


@pytest.fixture(scope="session")
def endless(text_models):
    """A served text model `endless` that never emits end-of-text."""
    from genforge.api import TextModel
    from genforge.serve.registry import Served

    lm = text_models[0].model
    return Served("endless", "text", TextModel(NoEnd(lm.model, lm.tokenizer.eot_id), lm.tokenizer, lm.path))
