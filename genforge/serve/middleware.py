"""Plain ASGI middleware (no BaseHTTPMiddleware, so streaming and disconnects pass untouched):
body size limit (413), body-read timeout (408), API key (401), and security headers on every
response, its own error answers included."""
from __future__ import annotations

import asyncio
import hmac
import json

from starlette.exceptions import HTTPException

from genforge.serve.errors import error_body

# Pages load their scripts and styles from /static only: no inline script can run, whatever text
# ends up in a page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' data:; "
       "connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class BodyError(HTTPException):
    """A request body refused while it arrives (too large, too slow). Raised from receive(), it
    reaches the app's HTTPException handler, which answers it with its code and headers; the
    middleware answers it itself when it escapes the app."""

    def __init__(self, status: int, message: str, code: str, close: bool = False):
        super().__init__(status, message, {"connection": "close"} if close else None)
        self.code = code

    @classmethod
    def too_large(cls, max_bytes: int) -> BodyError:
        return cls(413, f"Request body larger than {max_bytes} bytes", "request_too_large")

    @classmethod
    def too_slow(cls, seconds: float) -> BodyError:
        # the rest of the body may still come: the connection cannot carry another request
        return cls(408, f"Request body not received within {seconds:g} s", "request_timeout", close=True)


async def _send_error(send, e: BodyError | HTTPException, code: str | None, extra: list | None = None) -> None:
    """The middleware's own answer: the app's error object, with the security headers."""
    body = json.dumps(error_body(e.status_code, str(e.detail), None, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (e.headers or {}).items()]
    await send({"type": "http.response.start", "status": e.status_code, "headers": headers + (extra or []) + HEADERS})
    await send({"type": "http.response.body", "body": body})


class Guards:
    """Limits the request body to max_bytes arriving within body_timeout_s, requires
    `Authorization: Bearer KEY` on the API routes when api_key is set, and adds the security headers."""

    PROTECTED = ("/v1/", "/playground/")

    def __init__(self, app, max_bytes: int, api_key: str | None, body_timeout_s: float = 30.0):
        self.app, self.max_bytes, self.api_key, self.body_timeout_s = app, max_bytes, api_key, body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key and scope["path"].startswith(self.PROTECTED) and not self._authorized(headers):
            refused = HTTPException(401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'")
            return await _send_error(send, refused, "invalid_api_key", [(b"www-authenticate", b"Bearer")])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await _send_error(send, BodyError.too_large(self.max_bytes), "request_too_large")
        started, seen, body_done = False, 0, False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def limited_receive():
            nonlocal seen, body_done
            if body_done:  # the app listening for a disconnect: that may wait as long as the response takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                raise BodyError.too_slow(self.body_timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:  # a chunked body without (or lying about) its length
                    raise BodyError.too_large(self.max_bytes)
            else:
                body_done = True
            return message

        async def secured_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": list(message.get("headers", [])) + HEADERS}
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except BodyError as e:
            if not started:
                await _send_error(send, e, e.code)

    def _authorized(self, headers: dict) -> bool:
        given = headers.get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + self.api_key.encode())
