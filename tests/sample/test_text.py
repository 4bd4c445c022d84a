"""Text sampling: KV-cached generation equals recomputing the whole context each step (also
across the sliding window past block_size), the token choice rules of `pick`, and stop strings
in streamed text."""
import string

import pytest
import torch
from torch import nn

from genforge.data.tokenizer import train_tokenizer
from genforge.models.gpt import GPT, GPTConfig
from genforge.sample.text import generate_ids, pick, stream_text, truncate

V = 37
FLAVOURS = {"gpt2": dict(flavour="gpt2"), "llama": dict(flavour="llama"),
            "llama-gqa": dict(flavour="llama", n_kv_head=2)}


def tiny_gpt(name: str, block_size: int = 64) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=4, n_embd=32, **FLAVOURS[name]))
    with torch.no_grad():  # large random weights: varied continuations, greedy choices far from ties
        for p in model.parameters():
            p.normal_(0.0, 0.5) if p.dim() >= 2 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def prompt(batch=2, length=5, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def reference_ids(model, idx, n, **kw):
    """Sampling without a cache: a full forward over the whole context for every new token.
    Past block_size the context is cut to its last block_size // 2 tokens (stream_ids' rule)."""
    block = model.config.block_size
    ctx, out = idx[:, -block:], []
    with torch.no_grad():
        for _ in range(n):
            logits = model(ctx)[0][:, -1, :].float()
            next_id = pick(logits, kw.get("temperature", 1.0), kw.get("top_k"), kw.get("top_p"), 1.0, None,
                           kw.get("generator"))
            out.append(next_id)
            ctx = torch.cat([ctx, next_id[:, None]], dim=1)
            if ctx.size(1) > block:
                ctx = ctx[:, -(block // 2):]
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("name", list(FLAVOURS))
def test_cached_greedy_equals_uncached(name):
    model = tiny_gpt(name)
    idx = prompt()
    got = generate_ids(model, idx, 40, temperature=0.0)
    assert got.shape == (2, 40)
    assert torch.equal(got, reference_ids(model, idx, 40, temperature=0.0))
    assert min(len(set(row)) for row in got.tolist()) > 5  # not a degenerate constant stream


@pytest.mark.parametrize("name", list(FLAVOURS))
@pytest.mark.parametrize("prompt_len", [5, 16, 23])
def test_sliding_window_past_block_size_equals_reference(name, prompt_len):
    model = tiny_gpt(name, block_size=16)
    idx = prompt(length=prompt_len)
    got = generate_ids(model, idx, 45, temperature=0.0)  # refills the window several times
    assert torch.equal(got, reference_ids(model, idx, 45, temperature=0.0))


def test_sliding_window_is_not_a_one_token_shift():
    """The reference above must tell the half-window rule from a one-token sliding window."""
    model = tiny_gpt("gpt2", block_size=16)
    idx = prompt()
    got = generate_ids(model, idx, 45, temperature=0.0)
    ctx, shifted = idx, []
    with torch.no_grad():
        for _ in range(45):
            shifted.append(model(ctx[:, -16:])[0][:, -1].argmax(-1))
            ctx = torch.cat([ctx, shifted[-1][:, None]], dim=1)
    assert not torch.equal(got, torch.stack(shifted, dim=1))


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                                dict(temperature=1.3, top_p=0.8)])
def test_cached_sampling_equals_uncached_with_the_same_generator(kw):
    model = tiny_gpt("llama", block_size=16)
    idx = prompt()
    got = generate_ids(model, idx, 30, generator=torch.Generator().manual_seed(5), **kw)
    ref = reference_ids(model, idx, 30, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(got, ref)


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    model = tiny_gpt("gpt2")
    idx = prompt()
    a, b, c = (generate_ids(model, idx, 30, temperature=1.0, generator=torch.Generator().manual_seed(s))
               for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_empty_prompt_and_zero_tokens():
    model = tiny_gpt("gpt2")
    with pytest.raises(ValueError, match="non-empty"):
        generate_ids(model, prompt(length=0), 5)
    assert generate_ids(model, prompt(), 0).shape == (2, 0)


# --- pick ---------------------------------------------------------------------------------

def random_logits(seed=0, rows=64, vocab=50):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_top_k_1_is_greedy(temperature):
    logits = random_logits()
    for seed in range(5):
        got = pick(logits, temperature, 1, None, 1.0, None, torch.Generator().manual_seed(seed))
        assert torch.equal(got, logits.argmax(-1))


def test_tiny_top_p_is_greedy():
    logits = random_logits()
    for seed in range(5):
        got = pick(logits, 1.5, None, 1e-6, 1.0, None, torch.Generator().manual_seed(seed))
        assert torch.equal(got, logits.argmax(-1))


def test_temperature_zero_is_greedy_whatever_else_is_set():
    logits = random_logits()
    assert torch.equal(pick(logits, 0.0, None, None, 1.0, None, None), logits.argmax(-1))
    assert torch.equal(pick(logits, 0.0, 10, 0.5, 1.0, None, torch.Generator().manual_seed(0)), logits.argmax(-1))


def test_top_k_and_top_p_only_draw_from_the_kept_tokens():
    logits = random_logits(rows=1, vocab=20).expand(2000, 20)
    gen = torch.Generator().manual_seed(0)
    top3 = set(logits[0].topk(3).indices.tolist())
    assert set(pick(logits, 1.0, 3, None, 1.0, None, gen).tolist()) <= top3
    probs = logits[0].softmax(-1)
    order = probs.argsort(descending=True)
    nucleus = set(order[: int((probs[order].cumsum(0) < 0.9).sum()) + 1].tolist())  # smallest set with mass >= 0.9
    drawn = set(pick(logits, 1.0, None, 0.9, 1.0, None, gen).tolist())
    assert drawn <= nucleus and len(drawn) > 1


def test_sampling_follows_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).log_softmax(-1).expand(20000, 3)
    counts = torch.bincount(pick(logits, 1.0, None, None, 1.0, None, torch.Generator().manual_seed(0)), minlength=3)
    torch.testing.assert_close(counts / 20000, torch.tensor([0.0, 1.0, 2.0]).softmax(-1), atol=0.015, rtol=0)


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, 1.5, -1.0, -1.4]])
    seen = torch.tensor([[True, False, False, False]])
    assert pick(logits, 0.0, None, None, 1.0, seen, None).item() == 0  # no penalty
    assert pick(logits, 0.0, None, None, 1.5, seen, None).item() == 1  # 2.0 / 1.5 < 1.5
    neg = torch.tensor([[-1.0, -1.4, -5.0]])
    seen_neg = torch.tensor([[True, False, False]])
    assert pick(neg, 0.0, None, None, 1.5, seen_neg, None).item() == 1  # -1.0 * 1.5 < -1.4
    assert pick(logits, 0.0, None, None, 1.5, torch.zeros_like(seen), None).item() == 0  # unseen: unchanged


def test_repetition_penalty_in_generation_reduces_repeats():
    model = tiny_gpt("gpt2")
    idx = prompt(batch=1)
    plain = generate_ids(model, idx, 30, temperature=0.0)[0].tolist()
    penalized = generate_ids(model, idx, 30, temperature=0.0, repetition_penalty=3.0)[0].tolist()
    assert len(set(penalized)) > len(set(plain)) + 5


# --- stream_text ----------------------------------------------------------------------------

class Scripted(nn.Module):
    """A 'model' whose greedy continuation of any prompt is the given token ids."""

    def __init__(self, script: list[int], vocab: int, prompt_len: int):
        super().__init__()
        self.script, self.prompt_len = script, prompt_len
        self.config = GPTConfig(vocab_size=vocab, block_size=1024, n_layer=1, n_head=1, n_embd=8)
        self.dummy = nn.Parameter(torch.zeros(1))

    def new_cache(self, batch):
        return None

    def forward(self, idx, cache=None, pos=0):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        for t in range(T):
            k = pos + t + 1 - self.prompt_len  # the script token that follows position pos + t
            if 0 <= k < len(self.script):
                logits[:, t, self.script[k]] = 10.0
        return logits, cache


@pytest.fixture(scope="module")
def char_tok():
    return train_tokenizer("char", [string.ascii_letters + " \n.!"])


def stream(tok, text, stop=(), prompt_text="a", max_new_tokens=100):
    model = Scripted(tok.encode(text) if text else [], tok.vocab_size, len(tok.encode(prompt_text)))
    return list(stream_text(model, tok, prompt_text, max_new_tokens, stop=stop, temperature=0.0))


def test_stream_without_stop_emits_everything_piecewise(char_tok):
    pieces = stream(char_tok, "hello there\n", max_new_tokens=12)
    assert "".join(pieces) == "hello there\n"
    assert len(pieces) == 12  # one character per step: nothing held back without stop strings


@pytest.mark.parametrize("text, stop, expected", [
    ("abc XYZ def", ["XY"], "abc "),
    ("aXb XXY c", ["XY"], "aXb X"),  # a partial match is emitted once it cannot become the stop string
    ("XYZ abc", ["XY"], ""),
    ("abc\n\ndef", ["\n\n", "Z"], "abc"),
    ("abc def", ["Z"], "abc def"),
    ("ab.cd!ef", ["!", "."], "ab"),  # the earliest of several stop strings
])
def test_stop_strings_are_not_emitted_and_nothing_after(char_tok, text, stop, expected):
    pieces = stream(char_tok, text, stop, max_new_tokens=len(text))
    assert "".join(pieces) == expected
    assert not any(s in p for p in pieces for s in stop)


def test_stream_stops_at_end_of_text(char_tok):
    script = char_tok.encode("abc") + [char_tok.eot_id] + char_tok.encode("def")
    model = Scripted(script, char_tok.vocab_size, 1)
    assert "".join(stream_text(model, char_tok, "a", 20, temperature=0.0)) == "abc"


def test_stream_holds_back_incomplete_utf8():
    tok = train_tokenizer("bpe:300", ["plain ascii text only. " * 20])
    text = "a😀b é"
    script = tok.encode(text)
    assert len(script) > len(text)  # the emoji is several byte tokens
    model = Scripted(script, tok.vocab_size, len(tok.encode("x")))
    pieces = list(stream_text(model, tok, "x", len(script), temperature=0.0))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_truncate():
    assert truncate("abc XYZ d", ["XY", "c"]) == "ab"
    assert truncate("abc", ["Z"]) == "abc"
    assert truncate("abc", []) == "abc"
