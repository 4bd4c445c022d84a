"""/v1/completions' `logprobs` (top-k per token) and `echo` in OpenAI's legacy shape: checked
field by field against the model's own log-softmax, through the openai client, and end to end
by lm-evaluation-harness's `local-completions` running a multiple-choice task (log-likelihood
requests: token ids in, echo + logprobs out) whose scores must equal in-process ones."""
from __future__ import annotations

import json
import math

import httpx
import openai
import pytest
import torch

CHOICES = [  # (context, choices, gold): lm-eval asks for log p(choice | context) of each
    ("the quick brown", [" fox", " dog", " cat"], 0),
    ("a lazy", [" dog", " fox"], 0),
    ("seven bold", [" wizards", " sphinx", " dogs"], 0),
    ("my", [" sphinx", " quick", " over"], 1),
    ("jumps", [" over", " the", " a"], 2),
]

TASK = """\
task: genforge_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def log_softmax(lm, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([ids[:-1]]))[0][0].float().log_softmax(-1)  # (T - 1, V)


def loglikelihood(lm, context: str, continuation: str) -> tuple[float, bool]:
    """In process: sum of log p(continuation token | everything before), and whether each is the argmax."""
    ctx, cont = lm.tokenizer.encode(context), lm.tokenizer.encode(continuation)
    logp = log_softmax(lm, ctx + cont)[len(ctx) - 1:]
    picked = logp[torch.arange(len(cont)), torch.tensor(cont)]
    return picked.sum().item(), bool((logp.argmax(-1) == torch.tensor(cont)).all())


def test_echo_logprobs_are_the_models_log_softmax(server, text_models):
    lm = text_models[0].model
    ids = lm.tokenizer.encode("the quick brown")
    r = httpx.post(f"{server}/v1/completions", json={"model": "alpha", "prompt": ids, "max_tokens": 2,
                                                      "temperature": 0, "logprobs": 3, "echo": True})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    n = len(ids) + 2
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None  # the first token has no context
    assert choice["text"] == "the quick brown" + "".join(lp["tokens"][len(ids):])
    assert lp["text_offset"] == [len("".join(lp["tokens"][:i])) for i in range(n)]
    full = ids + [lm.tokenizer.tok.token_to_id(t) for t in lp["tokens"][len(ids):]]
    logp = log_softmax(lm, full)
    for i in range(1, n):
        assert lp["token_logprobs"][i] == pytest.approx(logp[i - 1, full[i]].item(), abs=1e-5)
        top = logp[i - 1].topk(3)
        want = {lm.tokenizer.decode([j]): v for j, v in zip(top.indices.tolist(), top.values.tolist())}
        got = lp["top_logprobs"][i]
        assert set(want) <= set(got) and len(got) <= 4  # the top 3, and the token itself
        assert all(got[t] == pytest.approx(v, abs=1e-5) for t, v in want.items())
    assert max(lp["top_logprobs"][-1].values()) == lp["token_logprobs"][-1]  # greedy: the generated token is top-1
    assert r.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 2, "total_tokens": n}


def test_a_whole_context_is_scored(server, text_models):
    """lm-eval's windows fill the context (max_length=context): the one generated token is not scored."""
    lm = text_models[0].model
    ids = (lm.tokenizer.encode("the quick brown fox jumps over the lazy dog. ") * 8)[:text_models[0].context]
    body = {"model": "alpha", "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 0, "echo": True}
    r = httpx.post(f"{server}/v1/completions", json=body)
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1
    logp = log_softmax(lm, ids)
    assert sum(lp["token_logprobs"][1:len(ids)]) == pytest.approx(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
                                                                 .sum().item(), abs=1e-3)
    assert all(len(top) == 1 for top in lp["top_logprobs"][1:])  # logprobs=0: the token itself only
    r = httpx.post(f"{server}/v1/completions", json={**body, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_logprobs_without_echo_through_the_openai_client(server, text_models):
    c = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    r = c.completions.create(model="alpha", prompt="the quick", max_tokens=5, temperature=0, logprobs=2)
    plain = c.completions.create(model="alpha", prompt="the quick", max_tokens=5, temperature=0)
    choice = r.choices[0]
    assert choice.text == plain.choices[0].text  # the same greedy completion as without logprobs
    assert "".join(choice.logprobs.tokens) == choice.text
    assert all(v is not None for v in choice.logprobs.token_logprobs)  # conditioned on the prompt
    assert choice.logprobs.text_offset[0] == 0
    echo = c.completions.create(model="alpha", prompt="the quick", max_tokens=0, echo=True)
    assert echo.choices[0].text == "the quick" and echo.choices[0].logprobs is None


def test_lm_eval_multiple_choice_matches_in_process_loglikelihoods(tmp_path, make_server, text_models, monkeypatch):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness (lm_eval) is not installed")
    pytest.importorskip("tenacity", reason="lm_eval[api] (tenacity, aiohttp) is not installed")
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    lm = text_models[0].model
    tok_dir = lm.path  # lm-eval tokenizes with transformers, which reads the checkpoint's own tokenizer.json
    data = tmp_path / "choice.jsonl"
    data.write_text("".join(json.dumps({"context": c, "choices": ch, "gold": g}) + "\n" for c, ch, g in CHOICES))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "genforge_choice.yaml").write_text(TASK.format(data=data))
    server = make_server()
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=f"model=alpha,base_url={server}/v1/completions,tokenizer={tok_dir},tokenizer_backend=huggingface,"
                   "num_concurrent=1,max_retries=1,batch_size=4",
        tasks=["genforge_choice"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        log_samples=True)
    samples = sorted(results["samples"]["genforge_choice"], key=lambda s: s["doc_id"])
    assert len(samples) == len(CHOICES)
    correct = 0
    for sample, (context, choices, gold) in zip(samples, CHOICES):
        want = [loglikelihood(lm, context, c) for c in choices]
        got = [tuple(r[0]) for r in sample["resps"]]
        assert [g[1] for g in got] == [w[1] for w in want], context
        assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4), context
        correct += max(range(len(choices)), key=lambda i: want[i][0]) == gold
    assert results["results"]["genforge_choice"]["acc,none"] == pytest.approx(correct / len(CHOICES))
    assert not math.isnan(results["results"]["genforge_choice"]["acc,none"])
