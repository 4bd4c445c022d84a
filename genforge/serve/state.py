"""What every route of one server shares."""
from __future__ import annotations

from dataclasses import dataclass, field

from genforge.serve.engine import Engine
from genforge.serve.limits import Limits, Slots
from genforge.serve.registry import Served


@dataclass
class ServerState:
    models: dict[str, Served]
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    feedback: object | None = None        # a genforge.align.feedback.FeedbackDB when reviewing is on
    review: object | None = None          # serve.review.ReviewConfig
    slots: Slots = None
    engine: Engine = None
    scorer: object | None = None          # (prompt, completion) -> reward: rejection sampling (--reject-with)
    clip: str | None = None               # a clip checkpoint: text-to-image requests with rerank (--clip)

    def __post_init__(self):
        self.slots = self.slots or Slots(self.limits.max_concurrent)
        self.engine = self.engine or Engine(self.limits.max_concurrent)
