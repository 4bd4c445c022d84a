"""`genforge chat`: a terminal conversation with a (chat-tuned) decoder. Each line read is a user
message; the reply streams as it is generated; the history stays in the prompt (oldest turns
dropped when it outgrows the context). /reset forgets the history, /quit (or end of input) ends."""
from __future__ import annotations

import random
import sys
from typing import TextIO

from genforge.finetune.template import DEFAULT_TEMPLATE, load_bos, load_template, render
from genforge.sample.text import prompt_ids, stream_text


def chat(ckpt: str, system: str | None = None, max_new_tokens: int = 200, temperature: float = 0.7,
         top_k: int | None = None, top_p: float | None = 0.9, seed: int | None = None, device: str = "auto",
         stdin: TextIO | None = None, stdout: TextIO | None = None, controls: dict | None = None) -> list[dict]:
    """Run the conversation on stdin/stdout; return the messages exchanged. seed seeds the whole
    conversation once: each reply draws its own seed from it, so replies differ from turn to turn
    and the same inputs replay the same conversation. controls: TextModel.controls' keywords
    (logit_bias, blocklist, self_debias, debias_decay)."""
    import genforge

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    lm = genforge.load(ckpt, device=device)
    template, eos = load_template(lm.path)
    bos = load_bos(lm.path)
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    # a model that never learned to end its reply stops where genforge's template starts the next turn
    stops = [eos, "\nUser:"] if template == DEFAULT_TEMPLATE else [eos]
    interactive = stdin.isatty()
    seeds = random.Random(seed) if seed is not None else None
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line or line.strip() == "/quit":
            break
        text = line.rstrip("\n")
        if text.strip() == "/reset":
            messages = list(start)
            stdout.write("(history cleared)\n")
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        prompt = _fit(lm, template, eos, bos, messages, max_new_tokens)
        stdout.write("assistant> ")
        pieces = []
        # the template writes its own BOS (as transformers' apply_chat_template): none added here
        for piece in stream_text(lm.model, lm.tokenizer, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                 top_p=top_p, stop=stops, bos=False, seed=seeds.randrange(2**63) if seeds else None,
                                 processors=lm.controls(1, **(controls or {}))):
            pieces.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        stdout.flush()
        messages.append({"role": "assistant", "content": "".join(pieces).strip()})
    return messages


def _fit(lm, template: str, eos: str, bos: str, messages: list[dict], max_new_tokens: int) -> str:
    """The prompt for the next reply; the oldest exchanges are dropped (not the system message,
    not the last user message) until it leaves room for max_new_tokens in the context."""
    room = max(1, lm.model.config.block_size - max_new_tokens)
    while True:
        prompt = render(template, messages, add_generation_prompt=True, eos=eos, bos=bos)
        first = 1 if messages[0]["role"] == "system" else 0
        if len(prompt_ids(lm.tokenizer, prompt, bos=False)) <= room or len(messages) - first <= 1:
            return prompt
        del messages[first]
