"""Logits processors in the text sampler: without them sampling is bitwise what it was (pinned
tokens), allowed_range never leaves its span, logit_bias bans and forces, CFG at scale 1 is the
conditional model and its KV-cached unconditional branch equals a full forward per step, and
processors compose in order."""
import pytest
import torch

from genforge.models.gpt import GPT, GPTConfig
from genforge.sample.processors import allowed_range, classifier_free_guidance, kv_cached_logits, logit_bias
from genforge.sample.text import generate_ids, stream_text

V = 37


def tiny_gpt(flavour: str = "gpt2", block_size: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=4, n_embd=32, flavour=flavour))
    with torch.no_grad():  # large random weights: varied continuations, greedy choices far from ties
        for p in model.parameters():
            p.normal_(0.0, 0.5) if p.dim() >= 2 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def prompt(batch=2, length=5, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


SAMPLED = dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.3)
# Tokens of the sampler before processors existed (torch 2.x CPU, seed 123), 24 steps past a
# block_size of 16 so the sliding window is crossed.
PINNED = {
    ("gpt2", "sampled"): [[13, 21, 7, 4, 33, 0, 11, 31, 25, 13, 2, 7, 22, 15, 13, 13, 13, 13, 35, 15, 21, 10, 7, 17],
                          [13, 11, 22, 4, 21, 0, 10, 13, 29, 13, 33, 13, 13, 7, 15, 13, 9, 13, 13, 6, 2, 17, 22, 15]],
    ("gpt2", "greedy"): [[21, 33, 13, 13, 13, 2, 13, 13, 13, 13, 13, 13, 15, 11, 22, 10, 21, 11, 7, 31, 20, 11, 13, 4],
                         [10, 22, 28, 0, 2, 2, 13, 13, 13, 7, 13, 9, 2, 35, 13, 2, 21, 21, 13, 15, 21, 13, 13, 15]],
    ("llama", "sampled"): [[24, 1, 23, 29, 29, 7, 24, 9, 7, 12, 1, 2, 2, 31, 4, 8, 1, 20, 31, 1, 9, 33, 7, 1],
                           [33, 33, 5, 33, 9, 11, 32, 4, 27, 1, 30, 32, 9, 18, 35, 2, 9, 3, 1, 9, 29, 1, 9, 15]],
    ("llama", "greedy"): [[24, 1, 23, 24, 29, 15, 3, 34, 24, 16, 10, 4, 1, 1, 33, 1, 1, 1, 9, 13, 9, 13, 1, 10],
                          [33, 33, 33, 14, 29, 33, 3, 3, 3, 15, 2, 31, 1, 7, 28, 1, 34, 15, 35, 31, 29, 12, 1, 9]],
}


def sample(model, processors=None, mode="sampled", n=24, idx=None):
    kw = dict(SAMPLED, generator=torch.Generator().manual_seed(123)) if mode == "sampled" else dict(temperature=0.0)
    if processors is not None:
        kw["processors"] = processors
    return generate_ids(model, prompt() if idx is None else idx, n, **kw)


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["sampled", "greedy"])
def test_without_processors_output_is_unchanged(flavour, mode):
    model = tiny_gpt(flavour)
    assert sample(model, mode=mode).tolist() == PINNED[(flavour, mode)]
    assert sample(model, [], mode=mode).tolist() == PINNED[(flavour, mode)]
    # an identity processor takes the processor path and changes nothing either
    assert sample(model, [lambda logits, ids: logits], mode=mode).tolist() == PINNED[(flavour, mode)]


def test_processors_see_the_whole_sequence_so_far():
    model, idx, seen = tiny_gpt(), prompt(), []
    out = generate_ids(model, idx, 20, temperature=0.0,
                       processors=[lambda logits, ids: seen.append(ids.clone()) or logits])
    full = torch.cat([idx, out], dim=1)
    assert [s.size(1) for s in seen] == list(range(5, 25))  # past block_size=16: not the window
    for s in seen:
        assert torch.equal(s, full[:, : s.size(1)])


@pytest.mark.parametrize("mode", ["sampled", "greedy"])
def test_allowed_range_never_leaves_the_range(mode):
    out = sample(tiny_gpt(), [allowed_range(10, 14)], mode=mode, n=40)
    assert out.min() >= 10 and out.max() < 14
    assert len(out.unique()) > 1


def test_allowed_range_rejects_an_empty_range():
    with pytest.raises(ValueError, match="lo < hi"):
        allowed_range(5, 5)


def test_logit_bias_bans_and_forces():
    model = tiny_gpt()
    frequent = int(sample(model, mode="sampled").flatten().mode().values)  # 13: the model's favourite
    banned = sample(model, [logit_bias({frequent: -100})], mode="sampled", n=40)
    assert (banned != frequent).all()
    assert (sample(model, [logit_bias({frequent: -100})], mode="greedy", n=40) != frequent).all()
    forced = sample(model, [logit_bias({7: 100.0})], mode="greedy", n=30)
    assert (forced == 7).all()


def test_cfg_scale_one_is_the_conditional_model():
    model, uncond_model = tiny_gpt(), tiny_gpt(seed=5)
    calls = []
    cfg = classifier_free_guidance(lambda ids: calls.append(1) or uncond_model(ids)[0][:, -1, :], 1.0)
    for mode in ("sampled", "greedy"):
        assert sample(model, [cfg], mode=mode).tolist() == PINNED[("gpt2", mode)]
    assert calls == []


def test_cfg_mixes_logits_and_its_cached_branch_equals_a_full_forward():
    model, uncond_model = tiny_gpt(block_size=64), tiny_gpt(block_size=64, seed=5)
    idx, null = prompt(length=6), prompt(length=2, seed=9)  # caption of 6 tokens; a null caption of 2

    def full(ids):  # the unconditional branch without a cache: a forward over everything each step
        return uncond_model(torch.cat([null, ids[:, 6:]], dim=1))[0][:, -1, :].float()

    plain = sample(model, mode="sampled", n=30, idx=idx)
    guided = sample(model, [classifier_free_guidance(full, 3.0)], mode="sampled", n=30, idx=idx)
    cached = sample(model, [classifier_free_guidance(kv_cached_logits(uncond_model, null, skip=6), 3.0)],
                    mode="sampled", n=30, idx=idx)
    assert not torch.equal(guided, plain)  # guidance does something
    assert torch.equal(cached, guided)

    # one step by hand: uncond + s * (cond - uncond)
    cond = torch.randn(2, V)
    uncond = torch.randn(2, V)
    got = classifier_free_guidance(lambda ids: uncond, 2.5)(cond, idx)
    torch.testing.assert_close(got, uncond + 2.5 * (cond - uncond))


def test_cfg_keeps_banned_tokens_banned():
    cond = torch.randn(2, V)
    cond[:, :5] = float("-inf")
    got = classifier_free_guidance(lambda ids: torch.randn(2, V), 0.5)(cond, prompt())
    assert torch.isneginf(got[:, :5]).all() and torch.isfinite(got[:, 5:]).all()


def test_processors_compose_in_order():
    model = tiny_gpt()
    # bias first, then the range: the forced token 3 lies outside [10, 14), so the range wins
    bias_then_range = sample(model, [logit_bias({3: 100.0}), allowed_range(10, 14)], mode="greedy")
    assert bias_then_range.min() >= 10 and bias_then_range.max() < 14
    # the range first, then the bias: 3 comes back from -inf only to -inf + 100 = -inf; 11 is forced
    assert (sample(model, [allowed_range(10, 14), logit_bias({11: 100.0})], mode="greedy") == 11).all()
    order = []
    first = lambda logits, ids: order.append("a") or logits * 2  # noqa: E731
    second = lambda logits, ids: order.append("b") or logits + 1  # noqa: E731
    seen = []
    generate_ids(model, prompt(), 1, temperature=0.0,
                 processors=[first, second, lambda logits, ids: seen.append(logits) or logits])
    raw = model(prompt())[0][:, -1, :].float()
    assert order == ["a", "b"]
    torch.testing.assert_close(seen[0], raw * 2 + 1)


def test_stream_text_takes_processors():
    from genforge.data.tokenizer import train_tokenizer

    tok = train_tokenizer("char", ["abcdefghij "])
    model = tiny_gpt()
    text = "".join(stream_text(model, tok, "ab", 12, temperature=0.0, processors=[allowed_range(0, 4)]))
    allowed = {tok.decode([i]) for i in range(4)}
    assert text and set(text) <= allowed
