"""`genforge chat --seed S` seeds the conversation once: each reply draws its own seed from S, so
replies differ from turn to turn while the same S replays the same conversation."""
from __future__ import annotations

import io


def test_chat_seeds_once_per_conversation(base_ckpts):
    from genforge.finetune.chat import chat

    def transcript(seed) -> str:
        # one message three times with the history cleared in between: the prompts are equal, so only
        # the sampling's randomness can make the replies differ
        out = io.StringIO()
        chat(str(base_ckpts["llama"]), max_new_tokens=12, temperature=1.0, top_p=1.0, seed=seed, device="cpu",
             stdin=io.StringIO("the fox?\n/reset\nthe fox?\n/reset\nthe fox?\n"), stdout=out)
        return out.getvalue()

    text = transcript(3)
    replies = [t.split("\n(history cleared)")[0] for t in text.split("assistant> ")[1:]]
    assert len(replies) == 3 and len(set(replies)) == 3, replies  # not one seed reused every turn
    assert transcript(3) == text  # the same seed replays the same conversation
    assert transcript(4) != text
