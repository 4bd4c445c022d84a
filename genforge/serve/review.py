"""The reviewer pages: log in with a token from `genforge reviewers add`, see a prompt and two
outputs side by side (random order, models hidden; two texts, or two images of a prompt queued
for text-to-image models), pick the better one or a tie, optionally score
each 1-5 and comment. Pages render through Jinja2 with autoescaping (outputs are untrusted text)
and run no script at all; every state-changing POST needs the session's CSRF token. The same flow
is open to scripts as JSON under /review/api (log in, next pair, rate, own ratings)."""
from __future__ import annotations

import hmac
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from genforge.align.feedback import FeedbackDB, Pair, Session
from genforge.errors import DataError
from genforge.serve.errors import APIError
from genforge.serve.state import ServerState

COOKIE = "genforge_review"
IMAGE_SOURCE = ":image"  # a queued prompt whose source ends so asks text-to-image models for two images
MUSIC_SOURCE = ":music"  # ... asks music models for two pieces; the prompt holds conditions ("key=D meter=3/4")
WAV_URL = "data:audio/wav;base64,"
_WAV_DATA = re.compile(r"data:audio/wav;base64,[A-Za-z0-9+/]+={0,2}")
MUSIC_TOKENS = 512  # events of each piece a reviewer hears
PNG_URL = "data:image/png;base64,"
_PNG_DATA = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]+={0,2}")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))  # autoescapes .html


@dataclass(frozen=True)
class ReviewConfig:
    pairs_per_prompt: int = 1
    max_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


class Rating(BaseModel):
    pair_id: int
    choice: str
    rating_a: int | None = Field(None, ge=1, le=5)
    rating_b: int | None = Field(None, ge=1, le=5)
    comment: str = ""


class Login(BaseModel):
    token: str


class PromptIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=10_000)
    kind: Literal["text", "image", "music"] = "text"  # image: two text-to-image models' images; music: two pieces


class Reviewing:
    """Pairs to rate: made on demand from queued prompts, by two models or two samples of one."""

    def __init__(self, state: ServerState):
        self.state, self.db, self.cfg = state, state.feedback, state.review or ReviewConfig()
        self._lock = threading.Lock()  # one pair made at a time: two reviewers never double a prompt's pairs

    def next_pair(self, reviewer_id: int) -> Pair | None:
        pair = self.db.next_pair(reviewer_id)
        if pair is not None:
            return pair
        with self._lock:
            pair = self.db.next_pair(reviewer_id)  # another request may have made one meanwhile
            if pair is None and (todo := self.db.prompt_needing_pair(self.cfg.pairs_per_prompt)) is not None:
                pair = self.db.pair(self._make_pair(*todo))
        return pair

    def _make_pair(self, prompt_id: int, prompt: str, source: str) -> int:
        if source.endswith(IMAGE_SOURCE):
            return self._make_image_pair(prompt_id, prompt)
        if source.endswith(MUSIC_SOURCE):
            return self._make_music_pair(prompt_id, prompt)
        texts = [s for s in self.state.models.values() if s.kind == "text"]
        rng = random.Random()
        chosen = rng.sample(texts, 2) if len(texts) >= 2 else [texts[0], texts[0]]
        seeds = [rng.randrange(2**31) for _ in chosen]
        c = self.cfg
        outputs = []
        for served, seed in zip(chosen, seeds):
            try:
                outputs.append(served.model.generate(prompt, c.max_tokens, c.temperature, top_p=c.top_p,
                                                     stop=list(c.stop), seed=seed))
            except DataError as e:  # a playground prompt this model's tokenizer cannot read
                outputs.append(f"[{served.id} cannot read this prompt: {e}]")
        params = {"max_tokens": c.max_tokens, "temperature": c.temperature, "top_p": c.top_p, "stop": list(c.stop),
                  "seed_a": seeds[0], "seed_b": seeds[1]}
        return self.db.add_pair(prompt_id, outputs[0], chosen[0].id, outputs[1], chosen[1].id, params)


    def _two_models(self, kind: str, what: str, model_name: str) -> tuple[list, list[int]]:
        """Two served models of `kind` (one twice when there is one) and a seed for each; 409 with none."""
        models = [s for s in self.state.models.values() if s.kind == kind]
        if not models:
            raise APIError(409, f"{what} is queued but this server has no {model_name} model")
        rng = random.Random()
        chosen = rng.sample(models, 2) if len(models) >= 2 else [models[0], models[0]]
        return chosen, [rng.randrange(2**31) for _ in chosen]

    def _make_image_pair(self, prompt_id: int, prompt: str) -> int:
        """A pair of images (PNG data URLs) of prompt from two text-to-image models (or two seeds of one)."""
        from genforge.serve.images import generate_from_prompt

        chosen, seeds = self._two_models("text_image", "an image prompt", "text-to-image")
        outputs = []
        for served, seed in zip(chosen, seeds):
            try:
                outputs.append(PNG_URL + generate_from_prompt(served.model, prompt, 1, seed, None)[0])
            except DataError as e:  # a word this model's vocabulary does not have
                outputs.append(f"[{served.id} cannot read this prompt: {e}]")
        return self.db.add_pair(prompt_id, outputs[0], chosen[0].id, outputs[1], chosen[1].id,
                                {"kind": "image", "seed_a": seeds[0], "seed_b": seeds[1]})


    def _make_music_pair(self, prompt_id: int, prompt: str) -> int:
        """A pair of pieces (WAV data URLs) under the prompt's conditions from two music models (or two
        seeds of one)."""
        from genforge.errors import ConfigError
        from genforge.serve.music import conditions_of, piece_json

        chosen, seeds = self._two_models("music", "a music prompt", "music")
        outputs = []
        for served, seed in zip(chosen, seeds):
            try:
                [piece] = served.model.generate(1, MUSIC_TOKENS, seed=seed, **conditions_of(prompt))
                outputs.append(WAV_URL + piece_json(piece)["b64_wav"])
            except (ConfigError, DataError) as e:  # a key, meter or style this model has no token for
                outputs.append(f"[{served.id} cannot play this prompt: {e}]")
        return self.db.add_pair(prompt_id, outputs[0], chosen[0].id, outputs[1], chosen[1].id,
                                {"kind": "music", "max_tokens": MUSIC_TOKENS, "seed_a": seeds[0], "seed_b": seeds[1]})


def audio_of(pair: Pair, output: str) -> str | None:
    """output as an <audio> source when the pair compares music and it is a WAV data URL, else None."""
    return output if pair.params.get("kind") == "music" and _WAV_DATA.fullmatch(output) else None


def image_of(pair: Pair, output: str) -> str | None:
    """output as an <img> source when the pair compares images and it is a PNG data URL, else None
    (shown as text)."""
    return output if pair.params.get("kind") == "image" and _PNG_DATA.fullmatch(output) else None


def _session(db: FeedbackDB, request: Request) -> Session | None:
    return db.session(request.cookies.get(COOKIE))


def _csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())


def _set_cookie(response, sid: str) -> None:
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/review", max_age=12 * 3600)


def router(state: ServerState) -> APIRouter:
    """The reviewer pages (/review, /review/login, /review/rate) and their JSON API (/review/api)."""
    r = APIRouter()
    db, reviewing = state.feedback, Reviewing(state)

    @r.get("/review/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None})

    @r.post("/review/login")
    def login(request: Request, token: str = Form("")):
        found = db.login(token.strip())
        if found is None:
            return TEMPLATES.TemplateResponse(request, "login.html", {"error": "Unknown token."}, status_code=401)
        response = RedirectResponse("/review", status_code=303)
        _set_cookie(response, found[0])
        return response

    @r.post("/review/logout")
    def logout(request: Request, csrf: str = Form("")):
        session = _session(db, request)
        if session is None or not _csrf_ok(session, csrf):
            raise APIError(403, "missing or wrong CSRF token", "csrf")
        db.logout(request.cookies[COOKIE])
        return RedirectResponse("/review/login", status_code=303)

    @r.get("/review", response_class=HTMLResponse)
    def page(request: Request):
        session = _session(db, request)
        if session is None:
            return RedirectResponse("/review/login", status_code=303)
        pair = reviewing.next_pair(session.reviewer_id)
        slots = ["a", "b"]
        random.shuffle(slots)  # which output shows on the left says nothing about its model
        sides = [{"slot": s, "text": getattr(pair, f"output_{s}"), "image": image_of(pair, getattr(pair, f"output_{s}")),
                  "audio": audio_of(pair, getattr(pair, f"output_{s}"))} for s in slots] if pair else []
        done = len(db.ratings_of(session.reviewer_id))
        return TEMPLATES.TemplateResponse(request, "review.html", {"session": session, "pair": pair, "sides": sides,
                                                                   "done": done})

    @r.post("/review/rate")
    def rate(request: Request, csrf: str = Form(""), pair_id: int = Form(...), choice: str = Form(...),
             rating_a: str = Form(""), rating_b: str = Form(""), comment: str = Form("")):
        session = _session(db, request)
        if session is None:
            raise APIError(401, "log in at /review/login first")
        if not _csrf_ok(session, csrf):
            raise APIError(403, "missing or wrong CSRF token", "csrf")
        _store(db, session, Rating(pair_id=pair_id, choice=choice, rating_a=_score(rating_a, "rating_a"),
                                   rating_b=_score(rating_b, "rating_b"), comment=comment))
        return RedirectResponse("/review", status_code=303)

    _api_routes(r, db, reviewing)
    return r


def _score(value: str, name: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit():
        raise APIError(400, f"{name}={value!r}: expected 1 to 5", name)
    return int(value)


def _store(db: FeedbackDB, session: Session, rating: Rating) -> int:
    try:
        return db.rate(session.reviewer_id, rating.pair_id, rating.choice, rating.rating_a, rating.rating_b,
                       rating.comment)
    except DataError as e:
        raise APIError(400, str(e), "choice" if "choice" in str(e) else None) from None


def _api_routes(r: APIRouter, db: FeedbackDB, reviewing: Reviewing) -> None:
    def need(request: Request, write: bool = False) -> Session:
        session = _session(db, request)
        if session is None:
            raise APIError(401, "log in first: POST /review/api/login {\"token\": ...}")
        if write and not _csrf_ok(session, request.headers.get("x-csrf-token")):
            raise APIError(403, "missing or wrong X-CSRF-Token header", "csrf")
        return session

    @r.post("/review/api/login")
    def api_login(body: Login):
        found = db.login(body.token.strip())
        if found is None:
            raise APIError(401, "unknown reviewer token", "token")
        response = JSONResponse({"reviewer": found[1].reviewer, "csrf": found[1].csrf})
        _set_cookie(response, found[0])
        return response

    @r.get("/review/api/next")
    def api_next(request: Request):
        pair = reviewing.next_pair(need(request).reviewer_id)
        if pair is None:
            return {"pair": None}
        return {"pair": {"id": pair.id, "prompt": pair.prompt, "a": pair.output_a, "b": pair.output_b,
                         "kind": pair.params.get("kind", "text")}}

    @r.post("/review/api/rate")
    def api_rate(rating: Rating, request: Request):
        return {"rating_id": _store(db, need(request, write=True), rating)}

    @r.get("/review/api/ratings")
    def api_ratings(request: Request):
        return {"ratings": db.ratings_of(need(request).reviewer_id)}

    @r.get("/review/api/ratings/{rating_id}")
    def api_rating(rating_id: int, request: Request):
        mine = [x for x in db.ratings_of(need(request).reviewer_id) if x["id"] == rating_id]
        if not mine:  # someone else's rating looks exactly like a missing one
            raise APIError(404, f"rating {rating_id}: not found")
        return mine[0]


def off_router() -> APIRouter:
    """Without a feedback database: the reviewer pages say how to turn reviewing on (the JSON API
    under /review/api stays a 404 error object)."""
    r = APIRouter()

    @r.get("/review", response_class=HTMLResponse)
    @r.get("/review/login", response_class=HTMLResponse)
    def off(request: Request):
        return TEMPLATES.TemplateResponse(request, "review_off.html", {})

    return r


def prompts_router(state: ServerState) -> APIRouter:
    """POST /playground/review-prompt: the playground sends a prompt to the reviewers' queue."""
    r = APIRouter()

    @r.post("/playground/review-prompt")
    def queue(body: PromptIn):
        if state.feedback is None:
            raise APIError(404, "reviewing is off: start the server with --feedback-db DB")
        if body.kind == "image" and not any(s.kind == "text_image" for s in state.models.values()):
            raise APIError(400, "kind=image: this server has no text-to-image model to make the pair", "kind")
        if body.kind == "music":
            from genforge.serve.music import conditions_of

            if not any(s.kind == "music" for s in state.models.values()):
                raise APIError(400, "kind=music: this server has no music model to make the pair", "kind")
            try:
                conditions_of(body.prompt)
            except DataError as e:
                raise APIError(400, str(e), "prompt") from None
        source = "playground" + {"image": IMAGE_SOURCE, "music": MUSIC_SOURCE}.get(body.kind, "")
        return {"queued": state.feedback.add_prompts([body.prompt], source)}

    return r
