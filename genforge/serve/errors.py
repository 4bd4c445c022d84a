"""OpenAI's error object: `{"error": {"message", "type", "param", "code"}}` with the HTTP status."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
         404: "invalid_request_error", 405: "invalid_request_error", 408: "invalid_request_error",
         413: "invalid_request_error",
         429: "rate_limit_exceeded", 500: "server_error", 503: "server_error", 504: "timeout"}


class APIError(Exception):
    """An error answered as OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Every error the app answers, including FastAPI's own, as an OpenAI error object."""

    @app.exception_handler(APIError)
    async def _api(request: Request, e: APIError):
        headers = {"Retry-After": "1"} if e.status == 429 else None
        return error_response(e.status, e.message, e.param, e.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        err = e.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        return error_response(400, f"{param or 'body'}: {err.get('msg', 'invalid value')}", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        # the middleware's BodyError (413, 408) carries its code; Starlette's own (404, 405) have none
        return error_response(e.status_code, str(e.detail), None, getattr(e, "code", None), getattr(e, "headers", None))


def install_fallback(app: FastAPI) -> None:
    """Anything unexpected: a 500 OpenAI error object (the traceback goes to the server log only)."""

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        return error_response(500, f"internal error: {type(e).__name__}", None, "internal_error")
