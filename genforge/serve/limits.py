"""The server's limits, and the counter that turns away generations past the concurrency limit."""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000      # request body; larger -> 413
    body_timeout_s: float = 30.0         # the whole request body must arrive within this; else 408
    max_concurrent: int = 4              # generations at once; more -> 429 at once, no queue
    max_tokens: int = 512                # per choice; the default for chat when the request names none
    max_n: int = 8                       # choices per request (n x prompts)
    max_stop: int = 4                    # stop strings, as in OpenAI's API
    max_stop_chars: int = 100
    max_prompts: int = 16                # prompts in one completions request
    timeout_s: float = 120.0             # wall-clock per request; past it generation stops -> 504 / error event
    max_images: int = 8


class Slots:
    """Non-blocking admission: a request holds a slot for its whole generation."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.used -= 1
