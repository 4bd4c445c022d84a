"""Generation off the event loop: each generation runs in a worker thread and hands its pieces to
the request's coroutine through an asyncio queue. A generation stops at its next model call once
its request is cancelled (client gone) or past its deadline, so no work outlives its request."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from genforge.sample.text import stream_text


class Cancelled(Exception):
    """The request that wanted this generation is gone."""


class GenerationTimeout(Exception):
    """The request ran past the server's per-request timeout."""


class Guard:
    """Cancellation and deadline of one request, checked before every model call."""

    def __init__(self, timeout_s: float):
        self.cancel = threading.Event()
        self.deadline = time.monotonic() + timeout_s

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        if time.monotonic() > self.deadline:
            raise GenerationTimeout()


class _Guarded:
    """The sampler's view of a model (forward, new_cache, config, parameters) with a guard."""

    def __init__(self, model, guard: Guard):
        self._model, self._guard = model, guard
        self.config = model.config

    def __call__(self, *args, **kw):
        self._guard.check()
        return self._model(*args, **kw)

    def new_cache(self, batch: int):
        return self._model.new_cache(batch)

    def parameters(self):
        return self._model.parameters()


def guarded(model, guard: Guard):
    """The sampler's view of model, checking guard before every model call."""
    return _Guarded(model, guard)


def guarded_stream(text_model, prompt: str, guard: Guard, max_new_tokens: int, stop: Sequence[str],
                   seed: int | None, bos: bool = True, **sampling) -> Iterator[str]:
    """text_model.stream, stopping with Cancelled / GenerationTimeout when the guard says so;
    bos=False for a prompt a chat template rendered (it writes its own BOS)."""
    return stream_text(_Guarded(text_model.model, guard), text_model.tokenizer, prompt, max_new_tokens,
                       stop=stop, seed=seed, bos=bos, **sampling)


class Stream:
    """Async iterator over a generation's items; cancel() (or the guard) stops the thread."""

    END = object()

    def __init__(self, guard: Guard):
        self.guard = guard
        self.pending: deque = deque()  # (item, error) handed over by the thread, not yet taken
        self._ready = asyncio.Event()

    def put(self, item, error: BaseException | None = None) -> None:
        """Called on the event loop's thread only (the worker goes through call_soon_threadsafe)."""
        self.pending.append((item, error))
        self._ready.set()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self):
        while not self.pending:
            self._ready.clear()
            await self._ready.wait()
        item, error = self.pending.popleft()
        if error is not None:
            raise error
        if item is Stream.END:
            self.pending.appendleft((item, error))  # stays ended
            raise StopAsyncIteration
        return item

    def cancel(self) -> None:
        self.guard.cancel.set()


class Engine:
    """Worker threads for generations, and a count of the ones running (GET /health shows it)."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genforge-gen")
        self.running = 0
        self._lock = threading.Lock()
        self._guards: set[Guard] = set()  # of the generations running, so shutdown can stop them

    def _count(self, delta: int, guard: Guard) -> None:
        with self._lock:
            self.running += delta
            (self._guards.add if delta > 0 else self._guards.discard)(guard)

    def start(self, make: Callable[[], Iterator], guard: Guard, on_exit: Callable[[], None]) -> Stream:
        """Run make() in a worker thread now; its items arrive through the returned Stream.

        on_exit runs in the thread when it ends (done, failed or cancelled): the request's slot is
        given back only when its generation has really stopped.
        """
        loop = asyncio.get_running_loop()
        stream = Stream(guard)

        def put(item, error=None) -> None:
            try:
                loop.call_soon_threadsafe(stream.put, item, error)
            except RuntimeError:  # the event loop is closed: the server is shutting down
                stream.guard.cancel.set()

        def work() -> None:
            self._count(1, guard)
            try:
                for item in make():
                    put(item)
                put(Stream.END)
            except BaseException as e:  # handed to the coroutine, which re-raises it
                put(Stream.END, e)
            finally:
                self._count(-1, guard)
                on_exit()

        self.pool.submit(work)
        return stream

    def shutdown(self) -> None:
        """Stop every generation at its next model call, and the worker threads."""
        with self._lock:
            for guard in self._guards:
                guard.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
