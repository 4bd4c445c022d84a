"""Chat messages -> one prompt string.

The default template suits plain LMs with no chat template: one `role: content` line per message,
then `assistant:` for the model to continue; generation stops where the model starts the next
user turn. A checkpoint whose config.json carries `chat_template` ({role}/{content} line format
plus a generation prefix) uses that instead; one tuned by `genforge finetune` on chat data (or
imported from Hugging Face) carries a Jinja template in tokenizer_config.json, which wins
(`{"jinja": template, "eos": eos token, "bos": bos token}`, rendered as genforge/finetune/template.py does).
"""
from __future__ import annotations

DEFAULT_TEMPLATE = {"message": "{role}: {content}\n", "generation": "assistant:", "stop": ["\nuser:"]}


def render_chat(messages: list[dict], template: dict | None = None) -> tuple[str, list[str]]:
    """(prompt text, stop strings that end the assistant's turn) for OpenAI-style messages."""
    if template and "jinja" in template:
        from genforge.finetune.template import render

        prompt = render(template["jinja"], messages, add_generation_prompt=True, eos=template["eos"],
                        bos=template.get("bos", ""))
        return prompt, [template["eos"]]
    t = template or DEFAULT_TEMPLATE
    text = "".join(t["message"].format(role=m["role"], content=m["content"]) for m in messages)
    return text + t["generation"], list(t.get("stop", []))
