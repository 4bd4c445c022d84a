"""Serving fixtures: a tiny char model that has seen chat-formatted lines, and real uvicorn servers
serving it (started in a thread on a free port, stopped at the end of the test). tests/serve is a
package (serve.*) so that this conftest never shadows tests/conftest.py as module `conftest`."""
from __future__ import annotations

from pathlib import Path

import pytest

from genforge.run_config import load_config
from serve.helpers import NoEnd, chat_text, running


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

@pytest.fixture(scope="session")
def text_models(serve_ckpt):
    """Two served text models from the one tiny checkpoint: alpha and beta."""
    from genforge.serve.registry import load_served

    return [load_served(f"alpha={serve_ckpt}", "cpu"), load_served(f"beta={serve_ckpt}", "cpu")]


@pytest.fixture
def make_server(text_models):
    """make_server(**limits, api_key=None, feedback=None, extra=[], clip=None) -> base URL of a running server."""
    from genforge.serve.app import create_app
    from genforge.serve.limits import Limits
    from genforge.serve.registry import index
    from genforge.serve.review import ReviewConfig
    from genforge.serve.state import ServerState

    stack = []

    def make(api_key: str | None = None, feedback=None, extra: list = (), review: ReviewConfig | None = None,
             clip: str | None = None, **limits) -> str:
        state = ServerState(index([*text_models, *extra]), Limits(**limits), api_key, feedback,
                            review or ReviewConfig(max_tokens=16), clip=clip)
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

@pytest.fixture(scope="session")
def endless(text_models):
    """A served text model `endless` that never emits end-of-text."""
    from genforge.api import TextModel
    from genforge.serve.registry import Served

    lm = text_models[0].model
    return Served("endless", "text", TextModel(NoEnd(lm.model, lm.tokenizer.eot_id), lm.tokenizer, lm.path))
