"""lm-evaluation-harness's `local-completions` model (a client no one here wrote) runs a small
generate_until task, defined over a local jsonl, against a real server: the answers it records
are exactly the server's greedy completions, and its exact_match is their score."""
from __future__ import annotations

import json

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness (lm_eval) is not installed")
pytest.importorskip("tenacity", reason="lm_eval[api] (tenacity, aiohttp) is not installed")

PROMPTS = [("the quick", " brown"), ("a lazy", " dog"), ("seven bold", " wizards"), ("my sphinx", " of")]

TASK = """\
task: genforge_tiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def test_lm_eval_local_completions(tmp_path, server, text_models, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "target": t}) + "\n" for p, t in PROMPTS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "genforge_tiny.yaml").write_text(TASK.format(data=data))
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=f"model=alpha,base_url={server}/v1/completions,tokenized_requests=False,"
                   "tokenizer_backend=None,num_concurrent=1,max_retries=1",
        tasks=["genforge_tiny"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        log_samples=True)
    samples = results["samples"]["genforge_tiny"]
    lm = text_models[0].model
    got = {s["doc"]["prompt"]: s["resps"][0][0] for s in samples}
    want = {p: lm.generate(p, 8, temperature=0, stop=["\n"]) for p, _ in PROMPTS}
    assert got == want
    score = sum(want[p].strip() == t.strip() for p, t in PROMPTS) / len(PROMPTS)
    assert results["results"]["genforge_tiny"]["exact_match,none"] == pytest.approx(score)
