"""Concurrency limit and client disconnects, against a real server with many real connections."""
from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from serve.helpers import wait_idle


def test_excess_requests_get_429_while_admitted_ones_finish(make_server, endless):
    url = make_server(max_concurrent=4, max_tokens=1000, extra=[endless])
    body = {"model": "endless", "prompt": "the", "max_tokens": 1000, "temperature": 1.0, "seed": 1}

    async def one(client: httpx.AsyncClient):
        r = await client.post(f"{url}/v1/completions", json=body)
        return r.status_code, r.json(), time.monotonic()

    async def all_at_once():
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    results = asyncio.run(all_at_once())
    ok = [(b, t) for status, b, t in results if status == 200]
    busy = [(b, t) for status, b, t in results if status == 429]
    assert len(ok) + len(busy) == 50
    assert len(busy) >= 30 and 4 <= len(ok) <= 20
    assert all(b["error"]["type"] == "rate_limit_exceeded" for b, _ in busy)
    assert all(b["usage"]["completion_tokens"] == 1000 and b["choices"][0]["finish_reason"] == "length"
               for b, _ in ok)
    # the refused were answered while the admitted were still generating, not after them
    assert max(t for _, t in busy) < max(t for _, t in ok)
    assert wait_idle(url)["running"] == 0


def test_disconnected_streams_leave_no_generation_running(make_server, endless):
    # each stream asks for a million tokens: minutes of work, unless disconnecting stops it
    url = make_server(max_concurrent=20, max_tokens=1_000_000, timeout_s=600, extra=[endless])
    body = {"model": "endless", "prompt": "a", "max_tokens": 1_000_000, "stream": True}

    async def read_then_leave(client: httpx.AsyncClient) -> int:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    return 1  # leaving the block closes the connection mid-stream
        return 0

    async def wave():
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=20)) as client:
            return sum(await asyncio.gather(*(read_then_leave(client) for _ in range(20))))

    for _ in range(5):  # 100 clients in waves of 20: two shared cores cannot start 100 streams at once
        assert asyncio.run(wave()) == 20
        health = wait_idle(url)
        assert health["running"] == 0 and health["admitted"] == 0


def test_client_gone_before_a_whole_response_stops_generation(make_server, endless):
    url = make_server(max_tokens=1_000_000, timeout_s=600, extra=[endless])
    body = {"model": "endless", "prompt": "a", "max_tokens": 1_000_000}
    with contextlib.suppress(httpx.ReadTimeout):  # the client hung up while the server was still generating
        httpx.post(f"{url}/v1/completions", json=body, timeout=0.5)
    health = wait_idle(url)
    assert health["running"] == 0 and health["admitted"] == 0
