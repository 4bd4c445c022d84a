"""Output bias of a language model (`genforge eval CKPT --metrics bias --spec bias.yaml`).

- Templated likelihood gaps (Kurita et al. 2019, Bordia & Bowman 2019 in spirit): for each
  template of the spec filled with each value of its attribute (a value's first word),
  gap = log p(" she" | "The nurse said that") - log p(" he" | ...), the spec's `contrast`
  words, in nats. A word is scored with the space before it and, for a character-level model,
  the space after it, so "he" is not credited with "hero". A model that learnt a 90/10 skew has
  |gap| = log 9 = 2.197; an unbiased one 0.
- CrowS-style pair preference (Nangia et al. 2020, adapted to a causal LM: each sentence's
  total log-likelihood): the share of (more, less) pairs where the model prefers the more
  stereotyping sentence, with a Wilson 95 % interval; 0.5 is no preference.
- Co-occurrence in samples: continuations sampled after each filled template; the shares of
  each word attribute's values among the mentions in them, per filled template and overall,
  and (with the spec's co-occurrence pairs) NPMI over prompt + continuation, as `genforge audit`
  counts them in data. The sampler is passed in (this layer does not sample).
"""
from __future__ import annotations

import itertools
import math
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from genforge.data.audit import WordMatcher, words_of
from genforge.data.audit_stats import Cooccurrence, Distribution
from genforge.data.tokenizer import prompt_ids
from genforge.errors import ConfigError

Sampler = Callable[[str, int], list[str]]  # (prompt, n) -> n continuations


def sequence_logprobs(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> list[float]:
    """log p(continuation | context) in nats of each (context, continuation), the context after
    the tokenizer's BOS; both are tokenized apart (as lm-eval does), so the score is of exactly
    the continuation's tokens. A row longer than block_size keeps its end."""
    block = model.config.block_size
    rows = []
    for context, continuation in pairs:
        ctx, cont = prompt_ids(tokenizer, context), tokenizer.encode(continuation)
        if not cont:
            raise ConfigError(f"nothing to score: {continuation!r} has no tokens")
        ids = (ctx + cont)[-(block + 1):]
        rows.append((ids, min(len(cont), len(ids) - 1)))
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for k in range(0, len(rows), batch_size):
            batch = rows[k:k + batch_size]
            width = max(len(ids) for ids, _ in batch)
            x = torch.zeros(len(batch), width, dtype=torch.long)
            for i, (ids, _) in enumerate(batch):
                x[i, :len(ids)] = torch.tensor(ids)
            x = x.to(device)
            logp = F.log_softmax(model(x[:, :-1])[0].float(), dim=-1)  # (B, T-1, V)
            for i, (ids, n) in enumerate(batch):
                t = torch.arange(len(ids) - 1 - n, len(ids) - 1, device=device)
                out.append(float(logp[i, t, x[i, t + 1]].sum()))
    return out


def word(tokenizer, w: str) -> str:
    """How a contrast word is scored after a template: with the space before it, and for a
    character-level tokenizer the space after it too (the word ends there)."""
    return " " + w + (" " if getattr(tokenizer, "kind", "") == "char" else "")


def fills(spec, template: str) -> list[dict[str, str]]:
    """Every filling of template's placeholders: {attribute: value} over the product of values."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    names = list(dict.fromkeys(names))
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(spec.attribute(n).values) for n in names))]


def fill(spec, template: str, values: dict[str, str]) -> str:
    return template.format(**{n: spec.attribute(n).values[v][0] for n, v in values.items()})


def template_gaps(model, tokenizer, spec) -> dict:
    """Per filled template, log p(contrast[0]) - log p(contrast[1]); the mean gap and mean |gap|."""
    if not spec.templates:
        raise ConfigError(f"{spec.path}: templates: none given (e.g. \"The {{occupation}} said that\")")
    if spec.contrast is None:
        raise ConfigError(f"{spec.path}: contrast: two words to compare after the templates, e.g. [she, he]")
    a, b = spec.contrast
    prompts = [fill(spec, t, v) for t in spec.templates for v in fills(spec, t)]
    scores = sequence_logprobs(model, tokenizer, [(p, word(tokenizer, w)) for p in prompts for w in (a, b)])
    gaps = {p: scores[2 * i] - scores[2 * i + 1] for i, p in enumerate(prompts)}
    values = list(gaps.values())
    return {"contrast": [a, b], "gaps": gaps, "mean_gap": sum(values) / len(values),
            "mean_abs_gap": sum(abs(g) for g in values) / len(values)}


def wilson(k: int, n: int) -> list[float]:
    """Wilson score 95 % interval of a proportion k/n."""
    if n == 0:
        return [0.0, 1.0]
    z, p = 1.959964, k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [(centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)]


def pair_preference(model, tokenizer, pairs: Sequence[tuple[str, str]]) -> dict:
    """CrowS-style: the share of (more, less) pairs whose first sentence the model finds likelier."""
    if not pairs:
        raise ConfigError("pairs: none given")
    scores = sequence_logprobs(model, tokenizer, [("", s) for p in pairs for s in p])
    diffs = [scores[2 * i] - scores[2 * i + 1] for i in range(len(pairs))]
    k = sum(d > 0 for d in diffs)
    return {"pairs": len(pairs), "prefers_more": k / len(pairs), "prefers_more_ci": wilson(k, len(pairs)),
            "mean_logprob_diff": sum(diffs) / len(diffs)}


def sample_shares(spec, sample: Sampler, n: int) -> dict:
    """Shares of each word attribute's values among the mentions in n continuations of each filled
    template, per template filling and overall, with TV from the attribute's target; NPMI of the
    spec's co-occurrence pairs over prompt + continuation."""
    if not spec.templates:
        raise ConfigError(f"{spec.path}: templates: none given to sample from")
    prompts = [(fill(spec, t, v), set(v)) for t in spec.templates for v in fills(spec, t)]
    attrs = spec.word_attributes()
    matchers = {a.name: WordMatcher(a) for a in attrs}
    overall = {a.name: Distribution(list(a.values), a.target) for a in attrs}
    pairs = [Cooccurrence(x, y, list(spec.attribute(x).values), list(spec.attribute(y).values)) for x, y in spec.cooccurrence]
    per_prompt = {}
    for prompt, filled in prompts:
        continuations = sample(prompt, n)
        local = {a.name: Distribution(list(a.values), a.target) for a in attrs if a.name not in filled}
        for text in continuations:
            words = words_of(text)
            for name, dist in local.items():
                hits = Counter(i for _, i in matchers[name].find(words))
                dist.add(hits)
                overall[name].add(hits)
            whole = words_of(prompt + text)
            found = {name: {i for _, i in m.find(whole)} for name, m in matchers.items()}
            for pair in pairs:
                pair.add(found[pair.first], found[pair.second])
        per_prompt[prompt] = {name: {"shares": dict(zip(d.values, d.result()["shares"])), "mentions": d.result()["total"]}
                              for name, d in local.items()}
    result = {"samples_per_prompt": n, "per_prompt": per_prompt,
              "overall": {name: d.result() for name, d in overall.items() if d.counts.sum()}}
    if pairs:
        result["cooccurrence"] = [p.result() for p in pairs]
    return result


def text_bias(model, tokenizer, spec, sample: Sampler | None = None, n: int = 20) -> dict:
    """Every text bias metric the spec asks for: template gaps (templates + contrast), pair
    preference (pairs), shares in samples (templates, when a sampler is given and n > 0).
    Flat keys for the CLI's line: gap_mean_abs, gap_mean, crows_prefers_more, sample_share_*."""
    out: dict = {}
    if spec.templates and spec.contrast is not None:
        gaps = template_gaps(model, tokenizer, spec)
        out.update(gap_mean_abs=gaps["mean_abs_gap"], gap_mean=gaps["mean_gap"], gaps=gaps["gaps"])
    if spec.pairs:
        pref = pair_preference(model, tokenizer, spec.pairs)
        out.update(crows_pairs=pref["pairs"], crows_prefers_more=pref["prefers_more"],
                   crows_ci=pref["prefers_more_ci"], crows_mean_logprob_diff=pref["mean_logprob_diff"])
    if sample is not None and n > 0 and spec.templates:
        shares = sample_shares(spec, sample, n)
        for name, d in shares["overall"].items():
            for v, s in zip(d["values"], d["shares"]):
                out[f"sample_share_{name}_{v}"] = s
            out[f"sample_tv_{name}"] = d["tv"]
        out["samples"] = shares
    if not out:
        raise ConfigError(f"{spec.path}: nothing to measure: give templates and contrast, pairs, or both")
    return out
