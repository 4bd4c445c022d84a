"""Logits processors for the text sampler: `(logits (B, V), ids so far (B, T)) -> logits (B, V)`.

`stream_ids(..., processors=[...])` runs them in order on each step's float32 logits, before the
repetition penalty, temperature, top-k and top-p. Three ship here:

- `allowed_range(lo, hi)`: only tokens in [lo, hi) (a DALL·E image-code span, a grammar's span).
- `logit_bias({id: bias})`: OpenAI's `logit_bias`: add the bias; -100 effectively bans, +100
  effectively forces.
- `classifier_free_guidance(uncond_logits_fn, scale)`: CFG on logits (Ho & Salimans 2022; on
  token logits as in Make-A-Scene, Gafni et al. 2022, and Sanchez et al. 2023, "Stay on topic
  with Classifier-Free Guidance"). `kv_cached_logits` builds its unconditional branch with a KV
  cache of its own.
- `ban_phrases(sequences)`: a blocklist of words and phrases as token sequences (as transformers'
  NoBadWordsLogitsProcessor): the last token of each is banned wherever the ids so far end with
  the rest of it, so a phrase of several tokens is never completed; `phrase_sequences(tokenizer,
  phrases)` gives each phrase's sequences as written and after a space.
- `self_debias(bias_logits_fns, decay)`: self-debiasing (Schick, Udupa & Schütze 2021, TACL,
  "Self-Diagnosis and Self-Debiasing", eq. 4-5): with p(w | x) the model's next-token
  distribution and p(w | sdb_i(x)) the same model's after a bias-describing prefix sdb_i,
  delta(w) = p(w | x) - max_i p(w | sdb_i(x)) and each token's probability is scaled by
  alpha(delta) = 1 if delta >= 0 else exp(decay * delta): tokens the bias prefix makes likelier
  lose probability; `kv_cached_logits(model, prefix_ids)` is each prefix's branch.

And one sequence-level control, `resample_until(make, accept, tries)`: classifier rejection
sampling, a completion drawn again (up to `tries` draws) while a classifier or reward model
rejects it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from genforge.errors import ConfigError, GenforgeError

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def allowed_range(lo: int, hi: int) -> Processor:
    """A processor that sets every logit outside [lo, hi) to -inf. Raises ValueError if empty."""
    if not 0 <= lo < hi:
        raise ValueError(f"allowed_range({lo}, {hi}): need 0 <= lo < hi")

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if lo >= logits.size(-1):
            raise ValueError(f"allowed_range({lo}, {hi}) lies outside the vocabulary of {logits.size(-1)}")
        out = torch.full_like(logits, float("-inf"))
        out[:, lo:hi] = logits[:, lo:hi]
        return out

    return process


def logit_bias(bias: Mapping[int, float]) -> Processor:
    """A processor that adds bias[token] to that token's logit (OpenAI's logit_bias; values are
    not clipped, but the API's range is [-100, 100]). Raises ValueError for a negative id."""
    if any(int(t) < 0 for t in bias):
        raise ValueError(f"logit_bias: token ids must be >= 0, got {sorted(bias)}")
    tokens = torch.tensor([int(t) for t in bias], dtype=torch.long)
    values = torch.tensor([float(v) for v in bias.values()], dtype=torch.float32)

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if tokens.numel() and int(tokens.max()) >= logits.size(-1):
            raise ValueError(f"logit_bias: token {int(tokens.max())} outside the vocabulary of {logits.size(-1)}")
        add = torch.zeros(logits.size(-1), dtype=logits.dtype, device=logits.device)
        add.index_add_(0, tokens.to(logits.device), values.to(logits.device, logits.dtype))
        return logits + add  # (B, V)

    return process


add_logit_bias = logit_bias  # the name controls() can call (its own parameter is logit_bias)


def classifier_free_guidance(uncond_logits_fn: LogitsFn, scale: float) -> Processor:
    """A processor: logits = uncond + scale * (cond - uncond), with cond the sampler's logits and
    uncond = uncond_logits_fn(ids) (B, V), the unconditional model's next-token logits after the
    same ids so far. Scale 1 returns cond unchanged and does not call uncond_logits_fn.

    uncond_logits_fn is called once per step with the whole sequence so far, which only grows
    by one id a step; to avoid a full forward per step it keeps a KV cache of its own and feeds
    only the ids it has not seen. `kv_cached_logits(model, prefix, skip)` is that function: for
    DALL·E-style text-to-image, ids = caption (skip tokens) + image codes, and the unconditional
    branch sees prefix (an empty/null caption) + the same image codes:

        uncond = kv_cached_logits(model, null_caption_ids, skip=caption_ids.size(1))
        generate_ids(model, caption_ids, 256, processors=[classifier_free_guidance(uncond, 3.0),
                                                          allowed_range(img_lo, img_hi)])

    Put masking processors (allowed_range) after this one: a token both branches rule out stays
    -inf, but one only the unconditional branch rules out would turn into nan.
    """
    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return logits
        uncond = uncond_logits_fn(ids).to(logits.dtype)  # (B, V)
        if uncond.shape != logits.shape:
            raise ValueError(f"uncond_logits_fn gave shape {tuple(uncond.shape)}, expected {tuple(logits.shape)}")
        guided = uncond + scale * (logits - uncond)
        return torch.where(torch.isneginf(logits), logits, guided)  # banned stays banned

    return process


def kv_cached_logits(model, prefix: torch.Tensor, skip: int = 0) -> LogitsFn:
    """A `uncond_logits_fn` for classifier_free_guidance over a model with the sampler's interface
    (`model(idx, cache, pos) -> (logits, cache)`, `new_cache(batch)`, `config.block_size`).

    Called with ids (B, T), it returns the model's next-token logits (B, V) after
    prefix (B, P) followed by ids[:, skip:], prefilling on the first call and then feeding only
    the new ids through its own cache. Raises ValueError when that sequence is empty or longer
    than block_size (this branch keeps no sliding window).
    """
    if prefix.dim() != 2:
        raise ValueError("prefix must be a (batch, tokens) tensor")
    state = {"cache": None, "pos": 0, "last": None}

    def logits_fn(ids: torch.Tensor) -> torch.Tensor:
        new = ids[:, skip + max(0, state["pos"] - prefix.size(1)):]  # (B, unseen)
        if state["cache"] is None:
            new = torch.cat([prefix.to(ids.device), new], dim=1)  # (B, P + T - skip)
            state["cache"] = model.new_cache(ids.size(0))
        if state["pos"] + new.size(1) > model.config.block_size:
            raise ValueError(f"unconditional context of {state['pos'] + new.size(1)} tokens exceeds "
                             f"block_size={model.config.block_size}")
        if new.size(1) == 0:
            if state["last"] is None:
                raise ValueError("kv_cached_logits: nothing to condition on (empty prefix and no new ids)")
            return state["last"]  # called again with the same ids
        state["last"] = model(new, state["cache"], state["pos"])[0][:, -1, :].float()  # (B, V)
        state["pos"] += new.size(1)
        return state["last"]

    return logits_fn


def phrase_sequences(tokenizer, phrases: Sequence[str]) -> list[list[int]]:
    """Token sequences of each phrase as written and after a space (a word inside a sentence),
    deduplicated. ValueError for an empty phrase."""
    seqs: dict[tuple[int, ...], None] = {}
    for phrase in phrases:
        if not phrase.strip():
            raise ValueError("blocklist: an empty phrase bans nothing")
        for text in dict.fromkeys([phrase, phrase if phrase.startswith(" ") else " " + phrase]):
            ids = tuple(tokenizer.encode(text))
            if ids:
                seqs[ids] = None
    return [list(s) for s in seqs]


def ban_phrases(sequences: Sequence[Sequence[int]]) -> Processor:
    """A processor setting to -inf the last token of each sequence wherever the ids so far end
    with its other tokens (always, for a sequence of one token). ValueError for an empty one."""
    if any(len(s) == 0 for s in sequences):
        raise ValueError("ban_phrases: an empty token sequence")
    singles = torch.tensor(sorted({s[0] for s in sequences if len(s) == 1}), dtype=torch.long)
    longer = [(torch.tensor(s[:-1], dtype=torch.long), int(s[-1])) for s in sequences if len(s) > 1]

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        if singles.numel():
            out[:, singles.to(logits.device)] = float("-inf")
        for prefix, last in longer:
            n = prefix.numel()
            if ids.size(1) >= n:
                hit = (ids[:, -n:] == prefix.to(ids.device)).all(dim=1)  # (B,)
                out[hit, last] = float("-inf")
        return out

    return process


def self_debias(bias_logits_fns: Sequence[LogitsFn], decay: float = 50.0) -> Processor:
    """Self-debiasing (see the module docstring): logits + decay * min(0, p - max_i p_bias_i),
    i.e. probabilities scaled by alpha(delta). bias_logits_fns: one LogitsFn per bias prefix
    (kv_cached_logits(model, prefix_ids)). ValueError for none, or decay < 0."""
    if not bias_logits_fns:
        raise ValueError("self_debias: give at least one bias prefix")
    if decay < 0:
        raise ValueError(f"self_debias: decay={decay} must be >= 0")

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits, dim=-1)  # (B, V)
        biased = torch.stack([torch.softmax(fn(ids).to(logits.dtype), dim=-1) for fn in bias_logits_fns]).amax(0)
        delta = (p - biased).clamp(max=0)
        return torch.where(torch.isneginf(logits), logits, logits + decay * delta)

    return process


def resample_until(make: Callable[[int], str], accept: Callable[[str], bool], tries: int) -> tuple[str, int, bool]:
    """Classifier rejection sampling: (completion, draws made, accepted). make(i) draws the i-th
    completion (i = 0, 1, ...; a caller seeds draw i with seed + i); the first accept(text)
    returns; after `tries` rejected draws the last one is returned with accepted False.
    ValueError for tries < 1."""
    if tries < 1:
        raise ValueError(f"tries={tries} must be >= 1")
    text = ""
    for i in range(tries):
        text = make(i)
        if accept(text):
            return text, i + 1, True
    return text, tries, False


def prefixed_logits(model, prefix: torch.Tensor, skip: int = 0) -> LogitsFn:
    """A LogitsFn: the model's next-token logits (B, V) after prefix (B, P) + ids[:, skip:], KV
    cached; once that outgrows block_size, the prefix stays and only the last half of the room
    after it is kept (one prefill per half window, as the sampler's sliding window)."""
    block, P = model.config.block_size, prefix.size(1)
    room = block - P
    state = {"fn": None, "start": skip}  # the ids from `start` on follow the prefix in the cache

    def logits_fn(ids: torch.Tensor) -> torch.Tensor:
        if ids.size(1) - state["start"] > room:  # full: keep the prefix and the last half of the room
            state["start"], state["fn"] = ids.size(1) - max(1, room // 2), None
        if state["fn"] is None:
            state["fn"] = kv_cached_logits(model, prefix, skip=state["start"])
        return state["fn"](ids)

    return logits_fn


def check_logit_bias(bias: Mapping, vocab_size: int) -> dict[int, float]:
    """OpenAI's logit_bias ({token id (an int or its string): bias}) checked: ids in
    [0, vocab_size), biases numbers in [-100, 100]. ConfigError naming the first bad entry."""
    out: dict[int, float] = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"logit_bias: key {key!r} is not a token id") from None
        if not 0 <= token < vocab_size:
            raise ConfigError(f"logit_bias: token id {token} is outside the vocabulary [0, {vocab_size})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise ConfigError(f"logit_bias: bias {value!r} of token {token} must be a number in [-100, 100]")
        out[token] = float(value)
    return out


def controls(model, tokenizer, batch: int = 1, logit_bias: Mapping | None = None, blocklist: Sequence[str] = (),
             debias_prefixes: Sequence[str] = (), debias_decay: float = 50.0) -> list[Processor]:
    """The generation controls as processors for one generation of `batch` rows: self-debiasing
    first (it reads the model's own distribution), then the blocklist and logit_bias (masks and
    biases last, as classifier_free_guidance asks). ConfigError for a bad logit_bias, an empty
    phrase or a negative decay."""
    from genforge.data.tokenizer import prompt_ids

    out: list[Processor] = []
    if debias_prefixes:
        if debias_decay < 0:
            raise ConfigError(f"debias_decay={debias_decay} must be >= 0")
        skip = len(getattr(tokenizer, "bos_ids", ()))  # the prompt's own BOS: the prefix brings one
        device = next(model.parameters()).device
        fns = []
        for prefix in debias_prefixes:
            if not prefix.strip():
                raise ConfigError("self_debias: an empty bias prefix")
            ids = None
            for sep in ("\n", " "):  # the prefix on a line of its own, or before a space (no newline token)
                try:
                    ids = torch.tensor([prompt_ids(tokenizer, prefix.rstrip() + sep)] * batch, device=device)
                    break
                except GenforgeError as e:  # a character the tokenizer does not know
                    error = e
            if ids is None:
                raise ConfigError(f"self_debias: {error}") from None
            if ids.size(1) >= model.config.block_size:
                raise ConfigError(f"self_debias: the prefix {prefix[:40]!r} takes {ids.size(1)} tokens; the model's "
                                  f"context is {model.config.block_size}")
            fns.append(prefixed_logits(model, ids, skip=skip))
        out.append(self_debias(fns, debias_decay))
    if blocklist:
        if any(not p.strip() for p in blocklist):
            raise ConfigError("blocklist: an empty phrase bans nothing")
        out.append(ban_phrases(phrase_sequences(tokenizer, blocklist)))
    if logit_bias:
        out.append(add_logit_bias(check_logit_bias(logit_bias, model.config.vocab_size)))
    return out


def parse_logit_bias(text: str | None, where: str = "--logit-bias") -> dict[int, float]:
    """{id: bias} from "ID:BIAS,ID:BIAS" (the CLI's form; ranges are checked by check_logit_bias)."""
    out: dict[int, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        token, sep, value = item.partition(":")
        try:
            if not sep:
                raise ValueError
            out[int(token)] = float(value)
        except ValueError:
            raise ConfigError(f"{where} {item!r}: expected ID:BIAS, e.g. 50256:-100") from None
    return out
