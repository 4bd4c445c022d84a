"""Plain ASGI middleware (no BaseHTTPMiddleware, so streaming and disconnects pass untouched):
body size limit (413), API key (401), and security headers on every response."""
from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException

from genforge.serve.errors import error_body

# Pages load their scripts and styles from /static only: no inline script can run, whatever text
# ends up in a page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


async def _send_error(send, status: int, message: str, code: str, extra: list | None = None) -> None:
    body = json.dumps(error_body(status, message, None, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from receive(): the app's HTTPException handler answers it with the 413 error object."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"Request body larger than {max_bytes} bytes")


class Guards:
    """Limits the request body to max_bytes, requires `Authorization: Bearer KEY` on the API routes
    when api_key is set, and adds the security headers."""

    PROTECTED = ("/v1/", "/playground/")

    def __init__(self, app, max_bytes: int, api_key: str | None):
        self.app, self.max_bytes, self.api_key = app, max_bytes, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key and scope["path"].startswith(self.PROTECTED) and not self._authorized(headers):
            return await _send_error(send, 401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                                     "invalid_api_key", [(b"www-authenticate", b"Bearer")])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await _send_error(send, 413, f"Request body larger than {self.max_bytes} bytes",
                                     "request_too_large")
        started, seen = False, 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body without (or lying about) its length
                    raise _TooLarge(self.max_bytes)
            return message

        async def secured_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": list(message.get("headers", [])) + HEADERS}
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, f"Request body larger than {self.max_bytes} bytes", "request_too_large")

    def _authorized(self, headers: dict) -> bool:
        given = headers.get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + self.api_key.encode())
