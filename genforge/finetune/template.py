"""Chat templates: Jinja templates in the Hugging Face convention (`messages`,
`add_generation_prompt`, `eos_token`), stored with the tokenizer in tokenizer_config.json
under "chat_template", so `transformers`' apply_chat_template renders them the same way.

`segments` cuts a rendered conversation into (text, trained) pieces: the assistant's replies
are what an SFT run learns; everything else is context. It finds each reply as the difference
between the conversation rendered up to that reply and rendered up to its generation prompt, so
any template that renders conversations incrementally works, including imported ones.
"""
from __future__ import annotations

import json
from pathlib import Path

from genforge.data.tokenizer import EOT
from genforge.errors import DataError

ROLES = ("system", "user", "assistant")

# Plain text around the turns, so any tokenizer (even a char one) can encode it; the tokenizer's
# end-of-text token ends each reply, which is where generation stops.
DEFAULT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def load_template(folder: Path) -> tuple[str, str]:
    """(chat template, eos token) stored with the tokenizer in folder; genforge's template and
    end-of-text token when none is."""
    config = _tokenizer_config(folder)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not template and (Path(folder) / "chat_template.jinja").is_file():
        template = (Path(folder) / "chat_template.jinja").read_text()
    return template or DEFAULT_TEMPLATE, _token(config.get("eos_token")) or EOT


def load_bos(folder: Path) -> str:
    """The bos token that tokenizer_config.json in folder names ("" when none): templates that
    start with {{ bos_token }} get it, as in transformers."""
    return _token(_tokenizer_config(folder).get("bos_token")) or ""


def _tokenizer_config(folder: Path) -> dict:
    file = Path(folder) / "tokenizer_config.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def _token(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def save_template(folder: Path, template: str, eos: str) -> Path:
    """Write (or update) tokenizer_config.json in folder with the chat template and eos token."""
    file = Path(folder) / "tokenizer_config.json"
    config = json.loads(file.read_text()) if file.is_file() else {"tokenizer_class": "PreTrainedTokenizerFast"}
    config.update(chat_template=template, eos_token=eos)
    text = json.dumps(config, indent=2)
    if not file.is_file() or file.read_text() != text:  # unchanged: not rewritten (other ranks read it)
        file.write_text(text)
    return file


def render(template: str, messages: list[dict], add_generation_prompt: bool = False, eos: str = EOT,
           bos: str = "") -> str:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise DataError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # transformers' settings
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                eos_token=eos, bos_token=bos)
    except TemplateError as e:
        raise DataError(f"chat template: {e}") from None


def segments(template: str, messages: list[dict], eos: str = EOT, bos: str = "") -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_assistant_reply) pieces, in order."""
    full = render(template, messages, eos=eos, bos=bos)
    out: list[tuple[str, bool]] = []
    done = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(template, messages[:i], add_generation_prompt=True, eos=eos, bos=bos)
        upto = render(template, messages[: i + 1], eos=eos, bos=bos)
        if not (upto.startswith(prompt) and full.startswith(upto) and len(prompt) >= done):
            raise DataError("chat template: it does not render conversations incrementally, so replies cannot be "
                            "told apart from prompts")
        out += [(prompt[done:], False), (upto[len(prompt):], True)]
        done = len(upto)
    out.append((full[done:], False))
    return [(text, trained) for text, trained in out if text]


def check_messages(messages, where: str) -> list[dict]:
    """messages as a list of {"role", "content"} dicts; DataError naming `where` otherwise."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list of {{\"role\", \"content\"}} objects")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{j}] needs a string \"content\"")
        if m.get("role") not in ROLES:
            raise DataError(f"{where}: messages[{j}].role={m.get('role')!r}: expected one of {', '.join(ROLES)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant message, so there is nothing to learn")
    return [{"role": m["role"], "content": m["content"]} for m in messages]
