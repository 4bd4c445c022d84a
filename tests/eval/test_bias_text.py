"""Text output bias: log-likelihoods against an explicit chain rule, template gaps and CrowS pair
preference on a bigram model whose probabilities are known, shares in samples counted exactly,
`genforge eval --metrics bias` end to end, and bad specs and pair files as one-line errors."""
import itertools
import math

import pytest
import torch
from torch import nn

from genforge.cli import main
from genforge.data.tokenizer import train_tokenizer
from genforge.errors import ConfigError, DataError
from genforge.eval.bias_spec import load_spec, parse_spec
from genforge.eval.bias_text import pair_preference, sample_shares, sequence_logprobs, template_gaps, text_bias, wilson

TEXT = "The nurse said that she was here. The pilot said that he was here.\n"
SPEC = {"attributes": {"job": {"values": {"nurse": ["nurse"], "pilot": ["pilot"]}},
                       "gender": {"values": {"male": ["he", "him"], "female": ["she", "her"]}}},
        "templates": ["The {job} said that"], "contrast": ["she", "he"]}


class Bigram(nn.Module):
    """Next-token logits from the current token alone: probabilities a test can multiply out."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.table = nn.Embedding(vocab, vocab)
        nn.init.normal_(self.table.weight, std=2.0)
        self.config = type("C", (), {"block_size": 128, "vocab_size": vocab})()

    def forward(self, idx, cache=None, pos=0):
        return self.table(idx), None

    def logp(self, ids: list[int]) -> float:
        """log p(ids[1:] | ids[0]) by the chain rule, one token at a time."""
        with torch.no_grad():
            return sum(float(self.table.weight[a].log_softmax(-1)[b]) for a, b in itertools.pairwise(ids))


@pytest.fixture(scope="module")
def tok_model():
    tok = train_tokenizer("char", [TEXT])
    return tok, Bigram(tok.vocab_size)


def test_sequence_logprobs_is_the_chain_rule(tok_model):
    tok, model = tok_model
    pairs = [("The nurse said that", " she "), ("", "The pilot."), ("The", " he")]
    got = sequence_logprobs(model, tok, pairs, batch_size=2)  # padding in a batch changes nothing
    for (ctx, cont), lp in zip(pairs, got):
        ids = tok.bos_ids + tok.encode(ctx) + tok.encode(cont) if ctx else (tok.bos_ids or [tok.eot_id]) + tok.encode(cont)
        n = len(tok.encode(cont))
        full = model.logp(ids)
        assert lp == pytest.approx(full - model.logp(ids[: len(ids) - n]), abs=1e-4)


def test_template_gaps_by_hand(tok_model):
    tok, model = tok_model
    r = template_gaps(model, tok, parse_spec(SPEC))
    for job in ("nurse", "pilot"):
        ctx = tok.bos_ids + tok.encode(f"The {job} said that")
        she, he = ctx + tok.encode(" she "), ctx + tok.encode(" he ")  # char level: the space after the word too
        assert r["gaps"][f"The {job} said that"] == pytest.approx(model.logp(she) - model.logp(he), abs=1e-4)
    assert r["mean_abs_gap"] == pytest.approx(sum(abs(g) for g in r["gaps"].values()) / 2)


def test_pair_preference(tok_model):
    tok, model = tok_model
    pairs = [("The nurse said that she was here.", "The nurse said that he was here."),
             ("The pilot said that he was here.", "The pilot said that she was here."),
             ("he was here.", "she was here.")]
    r = pair_preference(model, tok, pairs)
    start = tok.bos_ids or [tok.eot_id]
    k = sum(model.logp(start + tok.encode(a)) > model.logp(start + tok.encode(b)) for a, b in pairs)
    assert r["pairs"] == 3 and r["prefers_more"] == pytest.approx(k / 3)
    lo, hi = wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook Wilson interval of 8/10


def test_sample_shares_counts_exactly():
    spec = parse_spec(SPEC | {"cooccurrence": [["gender", "job"]]})
    texts = {"The nurse said that": [" she was", " she left", " he ran", " her own"],
             "The pilot said that": [" he was", " he was", " he was", " nobody"]}
    r = sample_shares(spec, lambda prompt, n: texts[prompt][:n], 4)
    assert r["per_prompt"]["The nurse said that"]["gender"]["shares"] == {"male": 0.25, "female": 0.75}
    assert r["per_prompt"]["The pilot said that"]["gender"]["mentions"] == 3
    assert r["overall"]["gender"]["counts"] == [4, 3]
    cells = {(c["gender"], c["job"]): c for c in r["cooccurrence"][0]["cells"]}
    assert cells[("female", "nurse")]["together"] == 3 and cells[("male", "pilot")]["together"] == 3


def test_eval_metrics_bias_cli(tiny_ckpt, tmp_path, capsys):
    spec = tmp_path / "bias.yaml"
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the lazy dog judge\tthe lazy fox judge\nfive boxing kings\tfive boxing wizards\n")
    spec.write_text("attributes:\n  animal:\n    values: {dog: [dog], fox: [fox]}\n"
                    "  thing:\n    values: {quartz: [quartz], sphinx: [sphinx]}\n"
                    'templates: ["The {thing} and the"]\ncontrast: [dog, fox]\npairs: pairs.tsv\n')
    assert main(["eval", str(tiny_ckpt), "--metrics", "bias", "--spec", str(spec), "--num-samples", "3",
                 "--device", "cpu", "--json"]) == 0
    import json

    r = json.loads(capsys.readouterr().out)
    assert set(r["gaps"]) == {"The quartz and the", "The sphinx and the"}
    assert r["gap_mean_abs"] == pytest.approx(sum(abs(g) for g in r["gaps"].values()) / 2)
    assert r["crows_pairs"] == 2 and 0 <= r["crows_prefers_more"] <= 1
    assert r["samples"]["samples_per_prompt"] == 3 and math.isfinite(r["perplexity"])


def test_bad_inputs(tmp_path, tiny_ckpt, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a stereotype\tits counterpart\nan unpaired line\n")
    spec = tmp_path / "bias.yaml"
    spec.write_text("attributes:\n  g:\n    values: {m: [he]}\npairs: pairs.txt\n")
    with pytest.raises(DataError, match=r"pairs.txt:2: unpaired line 'an unpaired line'"):
        load_spec(spec)
    spec.write_text("attributes:\n  g:\n    values: {m: []}\n")
    with pytest.raises(ConfigError, match=r"values.m: empty word list"):
        load_spec(spec)
    with pytest.raises(ConfigError, match="nothing to measure"):
        text_bias(None, None, parse_spec({"attributes": {"g": {"values": {"m": ["he"]}}}}))
    with pytest.raises(ConfigError, match="no attribute 'job'"):
        parse_spec({"attributes": {"g": {"values": {"m": ["he"]}}}, "templates": ["The {job} said"]})
    spec.write_text("attributes:\n  g:\n    values: {m: [he]}\npairs: pairs.txt\n")
    assert main(["eval", str(tiny_ckpt), "--metrics", "bias", "--spec", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genforge eval: error: ") and "unpaired line" in err and err.count("\n") == 1
