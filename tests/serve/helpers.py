"""Helpers of the serving tests: chat-formatted text, real uvicorn servers on free ports, waiting
for a server to go idle, and a model that never ends its text."""
from __future__ import annotations

import random
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import torch

from tests.conftest import wait_until

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "bold", "wizards", "judge", "my", "sphinx"]


def chat_text(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    turns = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        turns.append(f"system: be brief\nuser: {q}?\nassistant: {a}.\n")
    return "".join(turns)

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
    def started() -> bool:
        assert thread.is_alive() or server.started, "uvicorn stopped before it started"
        return server.started

    wait_until(started, 30, "uvicorn to start", interval=0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

def wait_idle(url: str, timeout: float = 30.0) -> dict:
    """/health once no generation runs (or the last reading at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{url}/health").json()
        if (health["running"] == 0 and health["admitted"] == 0) or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


class NoEnd(torch.nn.Module):
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
