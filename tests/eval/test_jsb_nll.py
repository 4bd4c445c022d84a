"""The JSB protocol's NLL per frame: against hand-computed Bernoulli values, against an
independent 88-Bernoulli computation, in sliding windows, and end to end from the CLI."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genforge.data import jsb
from genforge.eval.jsb_nll import grammar_mask, jsb_nll, token_nll
from genforge.models.gpt import GPT, GPTConfig


class BernoulliTokens(nn.Module):
    """A model of 88 independent Bernoullis per frame, written in the token encoding: probs(t) is
    frame t's (88,) probabilities. After pitch a (or at a frame's start, a = -1) the next token
    is pitch q > a with probability b_q prod_{a<i<q} (1 - b_i), the delimiter with prod_{i>a} (1 - b_i),
    so a frame's token probabilities multiply to its 88 Bernoulli probabilities."""

    def __init__(self, probs, block_size: int = 4096):
        super().__init__()
        self.probs, self.config = probs, SimpleNamespace(block_size=block_size)
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the metric finds the device

    def forward(self, idx):
        ids = idx[0].tolist()
        logits = torch.full((1, len(ids), jsb.VOCAB_SIZE), -math.inf, dtype=torch.float64)
        frame = 0
        for j, tok in enumerate(ids):
            frame += tok == jsb.FRAME
            b = torch.as_tensor(self.probs(frame), dtype=torch.float64)
            a = tok if tok < jsb.N_PITCHES else -1
            off = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.float64), 1 - b]), 0)  # off[q] = prod_{i<q} (1-b_i)
            rest = off / off[a + 1]  # prod_{a<i<q} (1 - b_i)
            for q in range(a + 1, jsb.N_PITCHES):
                logits[0, j, q] = math.log(b[q] * rest[q])
            logits[0, j, jsb.FRAME] = math.log(rest[jsb.N_PITCHES])
        return logits, None


def constant(p: float):
    return lambda frame: np.full(jsb.N_PITCHES, p)


def test_hand_computed_bernoulli_case():
    # every pitch on with probability 0.1; frame 0 ([60]) is not scored
    # frame 1, two notes on: -2 ln 0.1 - 86 ln 0.9 = 2 x 2.302585 + 86 x 0.105361 = 13.666175
    # frame 2, silence:      -88 ln 0.9 = 88 x 0.105361 = 9.271725
    piece = jsb.encode_piece([(60,), (60, 64), ()])
    result = jsb_nll(BernoulliTokens(constant(0.1)), [piece])
    assert result["frames"] == 2 and result["pieces"] == 1
    assert result["jsb_nll"] == pytest.approx((13.666175 + 9.271725) / 2, abs=1e-5)
    # p = 0.5: every frame costs 88 ln 2 = 60.996952, whatever it holds
    assert jsb_nll(BernoulliTokens(constant(0.5)), [piece])["jsb_nll"] == pytest.approx(60.996952, abs=1e-5)


def test_equals_an_independent_88_bernoulli_computation_frame_weighted():
    rng = np.random.default_rng(0)
    table = rng.uniform(0.02, 0.6, size=(40, jsb.N_PITCHES))  # probabilities change from frame to frame
    pieces = [[tuple(sorted(rng.choice(np.arange(21, 109), size=int(rng.integers(0, 5)), replace=False).tolist()))
               for _ in range(n)] for n in (3, 17, 30)]
    total, frames = 0.0, 0
    for piece in pieces:  # sum over pitches of the Bernoulli NLLs, frames 1.. of each piece
        y = jsb.frame_bits(piece).astype(np.float64)
        p = table[:len(piece)]
        nll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)
        total, frames = total + nll[1:].sum(), frames + len(piece) - 1
    model = BernoulliTokens(lambda f: table[f])
    for grammar in (True, False):
        result = jsb_nll(model, [jsb.encode_piece(p) for p in pieces], grammar=grammar)
        assert result["frames"] == frames == 47
        assert result["jsb_nll"] == pytest.approx(total / frames, rel=1e-9)


def test_sliding_windows_score_every_token_once():
    # a model whose prediction depends only on the previous token: any context gives the same NLLs
    rng = np.random.default_rng(1)
    probs = rng.uniform(0.05, 0.5, jsb.N_PITCHES)
    ids = np.concatenate([[jsb.EOT], jsb.encode_piece([(60, 64, 67), (62,), (), (59, 62, 67)] * 6)])
    whole = token_nll(BernoulliTokens(lambda f: probs), ids)
    for T in (1, 2, 7, 16):
        windowed = token_nll(BernoulliTokens(lambda f: probs, block_size=T), ids)
        np.testing.assert_allclose(windowed, whole, rtol=1e-12)
    assert len(whole) == len(ids) - 1


def test_without_grammar_it_is_the_training_cross_entropy_and_grammar_only_lowers_it():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=jsb.VOCAB_SIZE, n_layer=1, n_head=2, n_embd=16, block_size=64)).eval()
    piece = jsb.encode_piece([(60, 64), (62, 65, 69), (), (48,)] * 3)
    ids = np.concatenate([[jsb.EOT], piece])
    x = torch.as_tensor(ids)
    with torch.no_grad():
        ce = F.cross_entropy(model(x[None, :-1])[0][0], x[1:], reduction="none").double().numpy()
    np.testing.assert_allclose(token_nll(model, ids, grammar=False), ce, rtol=1e-5)
    plain, masked = jsb_nll(model, [piece], grammar=False), jsb_nll(model, [piece], grammar=True)
    assert masked["jsb_nll"] < plain["jsb_nll"]
    frames = 11  # 12 frames, the first not scored
    assert plain["jsb_nll"] == pytest.approx(ce[np.flatnonzero(piece == jsb.FRAME)[0] + 1:].sum() / frames, rel=1e-5)


def test_grammar_allows_exactly_the_encodings_continuations():
    allowed = grammar_mask()
    assert allowed[39].nonzero().flatten().tolist() == [*range(40, 88), jsb.FRAME]  # after MIDI 60: higher, or end
    assert allowed[jsb.FRAME].nonzero().flatten().tolist() == [*range(88), jsb.FRAME]
    assert not allowed[:, jsb.EOT].any()


def test_eval_cli_scores_a_checkpoint_on_its_jsb_test_split(tmp_path, capsys):
    from genforge.cli import main

    rng = np.random.default_rng(2)
    piece = lambda n: [[int(p) for p in sorted(rng.choice(np.arange(50, 80), 3, replace=False))] for _ in range(n)]  # noqa: E731
    (tmp_path / jsb.FILE).write_text(json.dumps({"train": [piece(40) for _ in range(6)], "valid": [piece(30)] * 2,
                                                 "test": [piece(12), piece(25)]}))
    run = tmp_path / "run"
    assert main(["train", "music/jsb", f"data.path={tmp_path / 'data'}", f"data.source=jsb:{tmp_path}",
                 "model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32", "data.batch_size=2",
                 "train.max_iters=2", "train.eval_interval=1", "train.eval_iters=1", "train.warmup_iters=1",
                 f"train.out_dir={run}", "train.threads=1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "best"), "--metrics", "jsb_nll", "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 11 + 24 and result["pieces"] == 2 and result["split"] == "test"
    assert 0 < result["jsb_nll"] < 30 * math.log(jsb.VOCAB_SIZE)
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("hello world\n" * 50)
    assert main(["prepare", str(text), "--out", str(tmp_path / "chars")]) == 0
    assert main(["eval", str(run / "best"), "--metrics", "jsb_nll", "--data", str(tmp_path / "chars")]) == 2
    assert "not JSB Chorales token data" in capsys.readouterr().err
