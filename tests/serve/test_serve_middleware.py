"""The middleware's own answers against a real uvicorn server: 401, both 413s and the 408 of a
stalled body are one error object each ({"error": {..., "code"}}) with the same security headers
as every other response."""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx

from genforge.serve.middleware import HEADERS

SECURITY = {name.decode(): value.decode() for name, value in HEADERS}


def assert_secured(r: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get(name) == value, f"{r.status_code} lacks {name}"


def test_every_refusal_carries_the_security_headers_and_a_code(make_server):
    url = make_server(api_key="s3cret", max_body_bytes=1000)
    key = {"authorization": "Bearer s3cret", "content-type": "application/json"}
    r = httpx.post(f"{url}/v1/completions", json={"model": "alpha", "prompt": "a"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert_secured(r)

    r = httpx.post(f"{url}/v1/completions", content=b"x" * 2000, headers=key)  # Content-Length says too much
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert_secured(r)

    def chunks():  # no Content-Length: the limit counts the bytes as they arrive
        for _ in range(10):
            yield b"a" * 500

    r = httpx.post(f"{url}/v1/completions", content=chunks(), headers=key)
    assert r.status_code == 413 and r.json() == {"error": {
        "message": "Request body larger than 1000 bytes", "type": "invalid_request_error", "param": None,
        "code": "request_too_large"}}
    assert_secured(r)
    ok = httpx.get(f"{url}/v1/models", headers=key)
    assert ok.status_code == 200
    assert_secured(ok)


def _raw(url: str, head: bytes, body: bytes, wait: float) -> bytes:
    """Send head + part of a body on a raw socket, then read what the server answers within wait
    seconds (nothing, if it holds the connection open that long)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as s:
        s.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_a_stalled_body_gets_408_after_the_body_timeout(make_server):
    url = make_server(body_timeout_s=0.5)
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    data = _raw(url, head, b'{"model": "alpha", ', wait=20)  # 19 of the 100 bytes, then nothing
    status, _, rest = data.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), data[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    lines = dict(line.split(b": ", 1) for line in headers.split(b"\r\n"))
    assert {k.decode().lower(): v.decode() for k, v in lines.items()}.items() >= SECURITY.items()
    assert lines.get(b"connection") == b"close"  # the server hung up: the stalled client holds nothing
    assert json.loads(body)["error"]["code"] == "request_timeout"

    # a chunked body that stops coming is the same
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = _raw(url, head, b"5\r\n{\"mod\r\n", wait=20)
    assert data.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in data


def test_a_slow_whole_body_within_the_timeout_is_served(make_server):
    url = make_server(body_timeout_s=10)

    def slowly():
        body = json.dumps({"model": "alpha", "prompt": "a", "max_tokens": 2}).encode()
        for i in range(0, len(body), 10):
            time.sleep(0.05)
            yield body[i:i + 10]

    r = httpx.post(f"{url}/v1/completions", content=slowly(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["choices"]
