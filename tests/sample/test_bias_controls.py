"""Generation controls against bias: the phrase blocklist never completes a banned phrase (and
bans nothing else), self-debiasing scales exactly the tokens the bias prefix makes likelier by
exp(decay * delta), rejection sampling redraws until accepted within its bound, logit_bias is
checked like OpenAI's; and the same controls through the Python API and the CLI."""

import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.gpt import GPT, GPTConfig
from genforge.sample.processors import (
    ban_phrases,
    check_logit_bias,
    parse_logit_bias,
    phrase_sequences,
    resample_until,
    self_debias,
)
from genforge.sample.text import generate_ids

V = 37


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32))
    with torch.no_grad():  # large random weights: varied continuations
        for p in model.parameters():
            p.normal_(0.0, 0.5) if p.dim() >= 2 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def prompt(batch=2, length=5, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def _pairs(out: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for row in out for a, b in zip(row[:-1], row[1:])}  # noqa: RUF007 (rows are tensors)


def test_blocklist_never_completes_a_phrase():
    model = tiny_gpt()
    free = generate_ids(model, prompt(4), 60, temperature=1.0, generator=torch.Generator().manual_seed(0))
    (a, b), _ = max(((p, 0) for p in _pairs(free)), key=lambda x: (free == x[0][0]).sum())  # a pair that occurs
    single = int(free[0, 0])
    banned = ban_phrases([[a, b], [single]])
    out = generate_ids(model, prompt(4), 60, temperature=1.0, generator=torch.Generator().manual_seed(0),
                       processors=[banned])
    full = torch.cat([prompt(4), out], dim=1)
    assert (a, b) not in _pairs(full[:, 4:]) and (out != single).all()
    assert (out == a).any()  # the phrase's first token alone is still allowed
    logits = torch.zeros(2, V)
    ids = torch.tensor([[1, a], [1, 2]])
    masked = ban_phrases([[a, b]])(logits, ids)
    assert torch.isneginf(masked[0, b]) and torch.isfinite(masked[0]).sum() == V - 1 and torch.isfinite(masked[1]).all()


def test_phrase_sequences_and_bad_phrases():
    class Tok:
        def encode(self, text):
            return [ord(c) for c in text]

    assert phrase_sequences(Tok(), ["he"]) == [[104, 101], [32, 104, 101]]
    assert phrase_sequences(Tok(), [" he"]) == [[32, 104, 101]]
    with pytest.raises(ValueError, match="empty phrase"):
        phrase_sequences(Tok(), [" "])


def test_self_debias_is_schick_eq_5():
    torch.manual_seed(0)
    logits = torch.randn(2, V)
    bias1, bias2 = torch.randn(2, V), torch.randn(2, V)
    out = self_debias([lambda ids: bias1, lambda ids: bias2], decay=50.0)(logits, torch.zeros(2, 3, dtype=torch.long))
    p = logits.softmax(-1)
    delta = p - torch.maximum(bias1.softmax(-1), bias2.softmax(-1))
    alpha = torch.where(delta >= 0, torch.ones_like(delta), torch.exp(50.0 * delta))
    assert torch.allclose(out.softmax(-1), (alpha * p) / (alpha * p).sum(-1, keepdim=True), atol=1e-6)
    same = self_debias([lambda ids: logits], decay=50.0)(logits, torch.zeros(2, 1, dtype=torch.long))
    assert torch.equal(same, logits)  # a prefix that changes nothing changes nothing


def test_self_debias_with_the_model_itself_lowers_what_the_prefix_raises():
    from genforge.sample.processors import kv_cached_logits

    model, idx = tiny_gpt(), prompt(1, 4)
    prefix = torch.tensor([[5, 6, 7]])
    proc = self_debias([kv_cached_logits(model, prefix)], decay=10.0)
    with torch.inference_mode():  # as the sampler runs processors
        plain = model(idx)[0][:, -1].float()
        biased = model(torch.cat([prefix, idx], 1))[0][:, -1].float()
        out = proc(plain, idx)
    raised = biased.softmax(-1) > plain.softmax(-1)
    assert (out[raised] < plain[raised]).all() and torch.equal(out[~raised], plain[~raised])


def test_resample_until():
    draws = []
    text, n, ok = resample_until(lambda i: draws.append(i) or f"draw {i}", lambda t: t == "draw 2", 5)
    assert (text, n, ok, draws) == ("draw 2", 3, True, [0, 1, 2])
    assert resample_until(lambda i: f"draw {i}", lambda t: False, 3) == ("draw 2", 3, False)
    with pytest.raises(ValueError, match="tries=0"):
        resample_until(lambda i: "", lambda t: True, 0)


def test_logit_bias_checks():
    assert check_logit_bias({"3": -100, 5: 2.5}, 10) == {3: -100.0, 5: 2.5}
    for bad, match in [({"10": 1}, "outside the vocabulary"), ({"-1": 1}, "outside the vocabulary"),
                       ({"x": 1}, "not a token id"), ({"3": 101}, r"\[-100, 100\]"), ({"3": "a"}, "must be a number")]:
        with pytest.raises(ConfigError, match=match):
            check_logit_bias(bad, 10)
    assert parse_logit_bias("3:-100, 7:5") == {3: -100.0, 7: 5.0}
    with pytest.raises(ConfigError, match="expected ID:BIAS"):
        parse_logit_bias("3")


def test_api_and_cli_controls(tiny_ckpt, capsys):
    import genforge
    from genforge.cli import main

    lm = genforge.load(tiny_ckpt, device="cpu")
    tok = lm.tokenizer
    e = tok.encode("e")[0]
    free = lm.generate("The", max_new_tokens=40, seed=0, temperature=1.0)
    assert "e" in free
    assert "e" not in lm.generate("The", max_new_tokens=40, seed=0, temperature=1.0, logit_bias={e: -100})
    assert set(lm.generate("The", max_new_tokens=10, seed=0, logit_bias={e: 100})) == {"e"}
    assert "he" not in lm.generate("T", max_new_tokens=60, seed=1, temperature=1.0, blocklist=["he"])
    many = lm.generate("The", max_new_tokens=20, seed=0, num_samples=3, blocklist=["e"])
    assert len(many) == 3 and all("e" not in t for t in many)
    calls = []

    def score(prompt, text):
        calls.append(text)
        return -1.0 if len(calls) < 3 else 1.0

    assert lm.generate("The", max_new_tokens=8, seed=0, reject=score, reject_tries=5) == calls[2] and len(calls) == 3
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        lm.generate("The", logit_bias={10**6: 1})
    assert main(["generate", str(tiny_ckpt), "--prompt", "T", "--max-new-tokens", "30", "--seed", "0",
                 "--logit-bias", f"{e}:-100", "--block", "th", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "e" not in out[1:] and "th" not in out
    assert main(["generate", str(tiny_ckpt), "--logit-bias", f"{e}:200", "--device", "cpu"]) == 2
    assert "[-100, 100]" in capsys.readouterr().err


def test_prefixed_logits_slides_past_the_context():
    from genforge.sample.processors import prefixed_logits

    model = tiny_gpt()  # block_size 16: 12 ids fit after a prefix of 4
    prefix = torch.tensor([[5, 6, 7, 8]])
    fn = prefixed_logits(model, prefix)
    ids = prompt(1, 3)
    with torch.inference_mode():
        for _ in range(30):
            got = fn(ids)
            full = {k: model(torch.cat([prefix, ids[:, -k:]], 1))[0][:, -1].float() for k in range(1, min(12, ids.size(1)) + 1)}
            kept = [k for k, f in full.items() if torch.allclose(got, f, atol=1e-4)]
            if ids.size(1) <= 12:
                assert ids.size(1) in kept  # the prefix and every id
            else:
                assert kept and min(kept) >= 6  # the prefix and the last half of the room at least
            ids = torch.cat([ids, got.argmax(-1, keepdim=True)], 1)
