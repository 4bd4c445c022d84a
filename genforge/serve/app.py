"""The FastAPI app: OpenAI routes, the playground at /, the reviewer pages at /review, /health."""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from genforge.serve import errors, openai_routes, review
from genforge.serve.middleware import Guards
from genforge.serve.state import ServerState

STATIC = Path(__file__).parent / "static"


def create_app(state: ServerState) -> Guards:
    """The ASGI app serving state.models; the reviewer pages when state.feedback is a FeedbackDB,
    else a page at /review saying how to turn them on."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.engine.shutdown()

    app = FastAPI(title="genforge", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.genforge = state
    errors.install(app)
    errors.install_fallback(app)
    app.include_router(openai_routes.router(state))
    app.include_router(review.prompts_router(state))
    app.include_router(review.router(state) if state.feedback is not None else review.off_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(state.models), "review": state.feedback is not None,
                "running": state.engine.running, "admitted": state.slots.used,
                "max_concurrent": state.limits.max_concurrent}

    @app.get("/", include_in_schema=False)
    async def playground():
        return FileResponse(STATIC / "index.html")

    return Guards(app, state.limits.max_body_bytes, state.api_key, state.limits.body_timeout_s)
