"""`genforge serve`: load the checkpoints, open the feedback database, run uvicorn."""
from __future__ import annotations

import sys
from pathlib import Path

from genforge.errors import ConfigError, DataError
from genforge.serve.limits import Limits
from genforge.serve.registry import index, load_served
from genforge.serve.review import ReviewConfig
from genforge.serve.state import ServerState


def read_prompts(path: str | Path) -> list[str]:
    """Prompts to review from a text file: one per line, blank lines skipped, `\\n` for a newline."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read prompts ({e})") from None
    prompts = [line.replace("\\n", "\n") for line in lines if line.strip()]
    if not prompts:
        raise DataError(f"{path}: no prompts (expected one per line)")
    return prompts


def build_state(ckpts: list[str], limits: Limits, api_key: str | None = None, feedback_db: str | None = None,
                prompts: str | None = None, review: ReviewConfig | None = None, device: str = "auto",
                reject_with: str | None = None, clip: str | None = None) -> ServerState:
    """Everything the app serves, loaded and checked (errors name the checkpoint, file or option)."""
    if not ckpts:
        raise ConfigError("serve: give at least one checkpoint")
    if prompts and not feedback_db:
        raise ConfigError("--prompts needs --feedback-db DB (where the ratings go)")
    models = index([load_served(c, device) for c in ckpts])
    feedback = None
    if feedback_db:
        from genforge.align.feedback import open_db

        if not any(s.kind == "text" for s in models.values()):
            raise ConfigError("--feedback-db: reviewing needs at least one text model")
        feedback = open_db(feedback_db)
        if prompts:
            feedback.add_prompts(read_prompts(prompts), f"file:{Path(prompts).name}")
    state = ServerState(models, limits, api_key, feedback, review or ReviewConfig())
    if reject_with:  # requests with reject_below redraw what this reward model scores below it
        from genforge.api import load_scorer

        state.scorer = load_scorer(reject_with)
    if clip:  # requests with rerank N keep the best of N candidates by this CLIP
        t2i = [s.model for s in models.values() if s.kind == "text_image"]
        if not t2i:
            raise ConfigError("--clip: reranking needs at least one text-to-image model")
        for model in t2i:  # loaded now, once per model: one that is no CLIP fails here, not at the first request
            model.scorer(clip)
        state.clip = clip
    return state


def serve(state: ServerState, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server until interrupted."""
    import uvicorn

    from genforge.serve.app import create_app

    pages = "playground /" + (", reviewer page /review" if state.feedback is not None else "")
    print(f"serving {', '.join(state.models)} on http://{host}:{port} ({pages})", file=sys.stderr)
    if host not in ("127.0.0.1", "localhost", "::1") and not state.api_key:
        print(f"warning: --host {host} exposes the API to the network without --api-key", file=sys.stderr)
    uvicorn.run(create_app(state), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
