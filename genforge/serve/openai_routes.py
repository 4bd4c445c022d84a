"""OpenAI-compatible routes: /v1/models, /v1/completions, /v1/chat/completions (JSON or SSE),
/v1/images/generations. Every request is checked against the server's limits before it takes
one of the concurrency slots; with none free it gets 429 at once."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from genforge.data.tokenizer import prompt_ids
from genforge.errors import DataError, GenforgeError
from genforge.sample.processors import resample_until
from genforge.serve.audio_lm import add_audio_lm_route
from genforge.serve.chat import render_chat
from genforge.serve.engine import Cancelled, GenerationTimeout, Guard, guarded, guarded_stream
from genforge.serve.errors import APIError, error_body
from genforge.serve.images import check_prompt, check_size, generate_from_prompt, generate_images
from genforge.serve.logprobs import scored_choice
from genforge.serve.music import add_music_route
from genforge.serve.registry import Served
from genforge.serve.schemas import ChatRequest, CompletionRequest, ImageRequest, Sampling
from genforge.serve.speech import add_speech_route
from genforge.serve.state import ServerState


def router(state: ServerState) -> APIRouter:
    """The /v1 routes over state's models, limits and engine."""
    r = APIRouter()

    @r.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": s.id, "object": "model", "created": s.created, "owned_by": "genforge",
                                            "kind": s.kind, "context_length": s.context} for s in state.models.values()]}

    @r.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        s = _model(state, model_id, None)
        return {"id": s.id, "object": "model", "created": s.created, "owned_by": "genforge"}

    @r.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        served = _model(state, req.model, "text")
        if req.echo or req.logprobs is not None:  # log-likelihoods (lm-eval's multiple choice): serve/logprobs.py
            return await _scored(state, request, served, req)
        items = _prompt_items(req.prompt, served)
        prompts = [p if isinstance(p, str) else served.model.tokenizer.decode(p) for p in items]
        # a prompt of token ids is taken as given (its own BOS or none); text gets the tokenizer's BOS
        bos = [isinstance(p, str) for p in items]
        return await _generate(state, request, served, req, prompts, req.max_tokens, [], chat=False, bos=bos)

    @r.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        served = _model(state, req.model, "text")
        prompt, stop = render_chat([m.model_dump() for m in req.messages], served.chat_template)
        limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        max_tokens = state.limits.max_tokens if limit is None else limit
        # a Jinja chat template writes its own BOS (transformers' apply_chat_template adds none)
        jinja = bool(served.chat_template and "jinja" in served.chat_template)
        return await _generate(state, request, served, req, [prompt], max_tokens, stop, chat=True, bos=[not jinja])

    @r.post("/v1/images/generations")
    async def images(req: ImageRequest, request: Request):
        served = _model(state, req.model, None)
        if served.kind not in ("image", "text_image"):
            raise APIError(400, f"model {req.model!r} is a {served.kind} model; this route needs an image model", "model")
        if req.n > state.limits.max_images:
            raise APIError(400, f"n={req.n}: at most {state.limits.max_images} images per request", "n")
        check_size(served.model, req.size)
        if served.kind == "text_image":
            kw = check_prompt(served.model, req, state.clip)
            make = lambda guard: generate_from_prompt(served.model, req.prompt, req.n, req.seed, guard.check, **kw)  # noqa: E731
        else:
            if req.rerank not in (None, 1):
                raise APIError(400, "rerank: only text-to-image models rank candidates against a prompt", "rerank")
            make = lambda guard: generate_images(served.model, req.n, req.seed)  # noqa: E731
        return await _one_shot(state, request, make,
                               lambda pngs: {"created": int(time.time()), "data": [{"b64_json": p} for p in pngs]})

    add_speech_route(r, state, _model, _one_shot)  # /v1/audio/speech (genforge/serve/speech.py)
    add_music_route(r, state, _model, _one_shot)  # /v1/music/generations (genforge/serve/music.py)
    add_audio_lm_route(r, state, _model, _one_shot)  # /v1/audio/generations (genforge/serve/audio_lm.py)
    return r


def _model(state: ServerState, model_id: str, kind: str | None) -> Served:
    served = state.models.get(model_id)
    if served is None:
        raise APIError(404, f"The model {model_id!r} does not exist; GET /v1/models lists them", "model",
                       "model_not_found")
    if kind and served.kind != kind:
        raise APIError(400, f"model {model_id!r} is a {served.kind} model; this route needs a {kind} model", "model")
    return served


def _prompt_items(prompt, served: Served) -> list[str | list[int]]:
    """The request's prompts, each a text or a list of token ids (checked against the vocabulary)."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        return [""]
    tok = served.model.tokenizer
    if isinstance(prompt[0], int):
        prompt = [prompt]
    for p in prompt:
        if not isinstance(p, str) and any(not 0 <= i < tok.vocab_size for i in p):
            raise APIError(400, f"prompt: token ids must be in [0, {tok.vocab_size})", "prompt")
    return [p if isinstance(p, str) else list(p) for p in prompt]


async def _scored(state: ServerState, request: Request, served: Served, req: CompletionRequest):
    """/v1/completions with echo and/or logprobs: each choice generated from the prompt's ids,
    then scored in one forward pass (genforge/serve/logprobs.py). Whole JSON answers only."""
    if req.stream:
        field = "echo" if req.echo else "logprobs"
        raise APIError(400, f"{field}: not supported with stream=true on this server; ask without streaming",
                       field, "unsupported_parameter")
    prompts = _prompt_items(req.prompt, served)
    max_tokens = state.limits.max_tokens if req.max_tokens is None else req.max_tokens
    stop = req.stop_list()
    counts = _check(state, served, req, prompts, max_tokens, stop, "prompt")
    # scoring reads the prompt and every generated token but the last in one pass
    if req.logprobs is not None and max(counts) + max_tokens - 1 > served.context:
        raise APIError(400, f"logprobs: a prompt of {max(counts)} tokens plus max_tokens={max_tokens} - 1 is more "
                       f"than this model's context of {served.context} tokens, which scoring reads at once",
                       "max_tokens", "context_length_exceeded")
    jobs = [(i * req.n + j, p, None if req.seed is None else req.seed + j)
            for i, p in enumerate(prompts) for j in range(req.n)]
    sampling = dict(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
                    repetition_penalty=req.repetition_penalty)
    guard = Guard(state.limits.timeout_s)

    def make():
        model, tok = guarded(served.model.model, guard), served.model.tokenizer
        for index, prompt, seed in jobs:
            yield index, scored_choice(model, tok, prompt, max_tokens, stop, seed, req.echo, req.logprobs, **sampling,
                                       processors=served.model.controls(1, **req.controls()))

    _acquire(state)
    stream = state.engine.start(make, guard, state.slots.release)
    results = await _collect(request, stream, len(jobs))
    choices = [{"index": i, "text": r["text"], "logprobs": r["logprobs"],
                "finish_reason": "length" if r["tokens"] >= max_tokens else "stop"} for i, r in enumerate(results)]
    prompt_tokens, completion_tokens = sum(r["prompt_tokens"] for r in results), sum(r["tokens"] for r in results)
    return {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
            "model": served.id, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _check(state: ServerState, served: Served, req: Sampling, prompts: list[str | list[int]], max_tokens: int,
           stop: list[str], field: str, bos: list[bool] | None = None) -> list[int]:
    """Refuse what the limits or the model cannot take (400); returns each prompt's token count
    (a text's with the tokenizer's BOS where bos says so; ids as given)."""
    lim = state.limits
    if (unsupported := req.unsupported()) is not None:
        raise APIError(400, f"{unsupported}: not supported by this server", unsupported, "unsupported_parameter")
    try:  # a bad logit_bias (an id outside the vocabulary, a bias outside [-100, 100]), blocklist or prefix
        served.model.controls(1, **req.controls())
    except GenforgeError as e:
        param = next((f for f in ("blocklist", "self_debias", "debias_decay") if str(e).startswith(f)), "logit_bias")
        raise APIError(400, str(e), param, "invalid_value") from None
    if len(prompts) > lim.max_prompts:
        raise APIError(400, f"prompt: {len(prompts)} prompts, at most {lim.max_prompts} per request", "prompt")
    if req.n * len(prompts) > lim.max_n:
        raise APIError(400, f"n={req.n} x {len(prompts)} prompts: at most {lim.max_n} choices per request", "n")
    if max_tokens > lim.max_tokens:
        raise APIError(400, f"max_tokens={max_tokens}: at most {lim.max_tokens} on this server", "max_tokens")
    if len(stop) > lim.max_stop:
        raise APIError(400, f"stop: {len(stop)} strings, at most {lim.max_stop}", "stop")
    if any(not s or len(s) > lim.max_stop_chars for s in stop):
        raise APIError(400, f"stop: each string must have 1 to {lim.max_stop_chars} characters", "stop")
    tok, counts = served.model.tokenizer, []
    for i, p in enumerate(prompts):
        try:
            n = len(p) if isinstance(p, list) else len(prompt_ids(tok, p, bos[i] if bos else True))
        except DataError as e:
            raise APIError(400, f"{field}: {e}", field) from None
        if n > served.context:
            raise APIError(400, f"This model's maximum context length is {served.context} tokens; the {field} "
                           f"take {n}", field, "context_length_exceeded")
        counts.append(n)
    return counts


def _acquire(state: ServerState) -> None:
    if not state.slots.try_acquire():
        raise APIError(429, f"The server is busy ({state.limits.max_concurrent} generations running); retry shortly",
                       None, "rate_limit_exceeded")


async def _generate(state: ServerState, request: Request, served: Served, req: Sampling, prompts: list[str],
                    max_tokens: int, template_stop: list[str], chat: bool, bos: list[bool]):
    """bos: per prompt, whether it starts with the tokenizer's BOS (where its config adds one)."""
    stop = req.stop_list()
    prompt_tokens = _check(state, served, req, prompts, max_tokens, stop, "messages" if chat else "prompt", bos)
    if req.reject_below is not None and state.scorer is None:
        raise APIError(400, "reject_below: this server has no reward model (genforge serve --reject-with RM)",
                       "reject_below", "unsupported_parameter")
    if req.reject_below is not None and req.stream:
        raise APIError(400, "reject_below: a completion is judged whole; ask without streaming", "reject_below",
                       "unsupported_parameter")
    stop = stop + [s for s in template_stop if s not in stop]
    jobs = [(i * req.n + j, p, None if req.seed is None else req.seed + j, bos[i])
            for i, p in enumerate(prompts) for j in range(req.n)]
    sampling = dict(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
                    repetition_penalty=req.repetition_penalty)
    guard = Guard(state.limits.timeout_s)

    def make():
        for index, prompt, seed, with_bos in jobs:
            sampling["processors"] = served.model.controls(1, **req.controls())  # fresh state per choice
            if req.reject_below is not None:  # classifier rejection sampling: whole completions, redrawn
                def draw(i: int, prompt=prompt, seed=seed, with_bos=with_bos) -> str:
                    sampling["processors"] = served.model.controls(1, **req.controls())
                    return "".join(guarded_stream(served.model, prompt, guard, max_tokens, stop,
                                                  None if seed is None else seed + 7919 * i, with_bos, **sampling))
                text = resample_until(draw, lambda t, p=prompt: state.scorer(p, t) >= req.reject_below,
                                      req.reject_tries)[0]
                yield index, text
                yield index, None
                continue
            for piece in guarded_stream(served.model, prompt, guard, max_tokens, stop, seed, with_bos, **sampling):
                yield index, piece
            yield index, None

    _acquire(state)
    stream = state.engine.start(make, guard, state.slots.release)
    reply = _Reply(served, chat, max_tokens, sum(prompt_tokens) * req.n)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _SSE(reply.events(stream, len(jobs), include_usage), stream.cancel)
    texts = await _collect(request, stream, len(jobs))
    return reply.whole(texts)


async def _collect(request: Request, stream, n: int) -> list:
    """All pieces of a generation joined per choice (or each choice's one scored dict), cancelling
    it when the client disconnects first."""
    texts: list = [""] * n
    watch = asyncio.create_task(_watch_disconnect(request, stream))
    try:
        async for index, piece in stream:
            if isinstance(piece, dict):  # a scored choice (serve/logprobs.py)
                texts[index] = piece
            elif piece is not None:
                texts[index] += piece
    except GenerationTimeout:
        raise APIError(504, "The generation ran past the server's per-request timeout", None, "timeout") from None
    except Cancelled:  # the client is gone: nobody reads this answer (nginx's "client closed request")
        raise APIError(499, "client closed the request", None, "client_closed") from None
    finally:
        watch.cancel()
        stream.cancel()
    return texts


async def _watch_disconnect(request: Request, stream) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.1)
    stream.cancel()


async def _one_shot(state: ServerState, request: Request, fn, respond):
    guard = Guard(state.limits.timeout_s)
    _acquire(state)
    stream = state.engine.start(lambda: iter([fn(guard)]), guard, state.slots.release)
    try:
        async for result in stream:
            return respond(result)
    except GenerationTimeout:
        raise APIError(504, "The generation ran past the server's per-request timeout", None, "timeout") from None
    except GenforgeError as e:  # a setting the model refused (guidance, steps, sampler out of range)
        raise APIError(400, str(e)) from None
    raise Cancelled()


def _more_of(stream, index: int) -> str:
    """The text pieces of choice index already waiting in stream, taken out: when the client reads
    slower than the model writes, one event carries them all instead of one event per token."""
    more = []
    while stream.pending and stream.pending[0][1] is None and isinstance(stream.pending[0][0], tuple):
        i, piece = stream.pending[0][0]
        if i != index or piece is None:
            break
        more.append(piece)
        stream.pending.popleft()
    return "".join(more)


class _SSE(StreamingResponse):
    """Server-sent events whose generation is cancelled however the response ends (done or client gone)."""

    def __init__(self, events, on_close):
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


class _Reply:
    """OpenAI's response objects for one request: whole (JSON) or as stream chunks."""

    def __init__(self, served: Served, chat: bool, max_tokens: int, prompt_tokens: int):
        self.served, self.chat, self.max_tokens, self.prompt_tokens = served, chat, max_tokens, prompt_tokens
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def _tokens(self, text: str) -> int:
        return len(self.served.model.tokenizer.tok.encode(text, add_special_tokens=False).ids)

    def _finish(self, completion_tokens: int) -> str:
        return "length" if completion_tokens >= self.max_tokens else "stop"

    def _usage(self, completion_tokens: int) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens + completion_tokens}

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.served.id}

    def whole(self, texts: list[str]) -> dict:
        counts = [self._tokens(t) for t in texts]
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                        "finish_reason": self._finish(c)} for i, (t, c) in enumerate(zip(texts, counts))]
        else:
            choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": self._finish(c)}
                       for i, (t, c) in enumerate(zip(texts, counts))]
        return {**self._head(self.object), "choices": choices, "usage": self._usage(sum(counts))}

    def _chunk(self, index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            body = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            body = {**self._head("text_completion"), "choices": [choice]}
        return f"data: {json.dumps(body)}\n\n"

    async def events(self, stream, n: int, include_usage: bool):
        texts = [""] * n
        try:
            if self.chat:
                for i in range(n):
                    yield self._chunk(i, None, None, first=True)
            async for index, piece in stream:
                if piece is None:
                    yield self._chunk(index, None, self._finish(self._tokens(texts[index])))
                else:
                    piece += _more_of(stream, index)
                    texts[index] += piece
                    yield self._chunk(index, piece, None)
        except GenerationTimeout:
            body = error_body(504, "The generation ran past the server's per-request timeout", None, "timeout")
            yield f"data: {json.dumps(body)}\n\n"
            return
        except Cancelled:  # the client is gone: nobody reads an error event
            raise
        except Exception as e:  # the model failed mid-stream: an error event ends it, not a dropped connection
            logging.getLogger("genforge.serve").exception("generation failed mid-stream")
            body = error_body(500, f"internal error: {type(e).__name__}", None, "internal_error")
            yield f"data: {json.dumps(body)}\n\n"
            return
        if include_usage:
            usage = {**self._head(self.object + ".chunk" if self.chat else self.object), "choices": [],
                     "usage": self._usage(sum(self._tokens(t) for t in texts))}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
