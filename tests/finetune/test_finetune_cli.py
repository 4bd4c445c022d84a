"""`genforge finetune`, `merge` and `chat` end to end on tiny imported checkpoints: each method
for a decoder LM and an encoder classifier, resume equal to an uninterrupted run, LoRA adapters
in PEFT's format and merged, SFT with a stored chat template, chat over piped stdin."""
from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.cli import main

pytest.importorskip("peft")

FAST = ["train.device=cpu", "train.dtype=float32", "train.warmup_iters=2", "train.eval_iters=2", "train.log_interval=2"]


def ok(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def finetune(capsys, ckpt, data, out, *args, iters=8):
    text = ok(capsys, ["finetune", ckpt, "--data", data, "--out", out, "--no-progress", "--batch-size", "4",
                       *args, f"train.max_iters={iters}", "train.eval_interval=4", *FAST])
    return text


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_full_finetune_of_a_decoder_on_text(tmp_path, base_ckpts, text_file, capsys):
    out = finetune(capsys, base_ckpts["llama"], text_file, tmp_path / "run")
    ckpt = tmp_path / "run" / "step-0000008"
    assert f"checkpoint: {ckpt}" in out and "val_loss" in out
    config = json.loads((ckpt / "config.json").read_text())
    assert config["family"] == "gpt" and config["finetune"]["task"] == "lm" and config["finetune"]["method"] == "full"
    before, after = weights(base_ckpts["llama"]), weights(ckpt)
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("c_attn.weight"))
    assert ok(capsys, ["generate", ckpt, "--prompt", "the", "--max-new-tokens", "5", "--seed", "0"]).startswith("the")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_equals_an_uninterrupted_run(tmp_path, base_ckpts, text_file, capsys, method):
    # the schedule's length pinned (lr_decay_iters) so the first half runs the whole run's schedule
    args = ["--method", method, "train.lr_decay_iters=8"]
    finetune(capsys, base_ckpts["gpt2"], text_file, tmp_path / "straight", *args, iters=8)
    finetune(capsys, base_ckpts["gpt2"], text_file, tmp_path / "resumed", *args, iters=4)
    finetune(capsys, base_ckpts["gpt2"], text_file, tmp_path / "resumed", *args, "--resume", iters=8)
    a, b = weights(tmp_path / "straight" / "step-0000008"), weights(tmp_path / "resumed" / "step-0000008")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_freeze_keeps_the_first_layers(tmp_path, base_ckpts, text_file, capsys):
    finetune(capsys, base_ckpts["gpt2"], text_file, tmp_path / "run", "--method", "freeze", "--freeze-layers", "1",
             "--freeze-embeddings")
    before, after = weights(base_ckpts["gpt2"]), weights(tmp_path / "run" / "step-0000008")
    for k in before:
        # GPT-2 ties the output layer to the token embedding: it stays fixed with it
        frozen = k.startswith(("transformer.h.0.", "transformer.wte", "transformer.wpe", "lm_head"))
        assert torch.equal(before[k], after[k]) == frozen, k


def test_lora_sft_merge_export_and_chat(tmp_path, base_ckpts, chat_file, capsys, monkeypatch):
    out = finetune(capsys, base_ckpts["gpt2"], chat_file, tmp_path / "run", "--method", "lora", "--lora-r", "4",
                   "--target-modules", "c_attn,c_fc", "train.lr=1e-2", iters=12)
    ckpt = tmp_path / "run" / "step-0000012"
    assert f"adapter: {tmp_path / 'run'}/adapter" in out
    config = json.loads((ckpt / "config.json").read_text())
    assert config["finetune"]["task"] == "sft" and config["lora"]["r"] == 4
    assert "Assistant:" in json.loads((ckpt / "tokenizer_config.json").read_text())["chat_template"]
    adapter = tmp_path / "run" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["target_modules"] in (["c_attn", "c_fc"], ["c_fc", "c_attn"])
    assert all("lora_" in k for k in load_file(str(adapter / "adapter_model.safetensors")))
    assert ok(capsys, ["generate", ckpt, "--prompt", "the", "--max-new-tokens", "5", "--seed", "0"]).startswith("the")
    # merge: from the LoRA checkpoint, and from base + the PEFT adapter directory; both as the LoRA model computes
    ok(capsys, ["merge", ckpt, "--out", tmp_path / "merged"])
    ok(capsys, ["merge", base_ckpts["gpt2"], "--adapter", adapter, "--out", tmp_path / "merged2"])
    lora_model = ckpt_io.load(ckpt, trainable=True).model.eval()
    idx = torch.randint(0, 30, (2, 12))
    base = ckpt_io.load(base_ckpts["gpt2"], trainable=True).model.eval()
    with torch.no_grad():
        want = lora_model(idx)[0]
        assert not torch.allclose(want, base(idx)[0], atol=1e-4)
        for merged in ("merged", "merged2"):
            loaded = ckpt_io.load(tmp_path / merged, trainable=True)
            model, cfg, _ = loaded.model, loaded.config, loaded.path
            assert "lora" not in cfg
            torch.testing.assert_close(model.eval()(idx)[0], want, atol=1e-5, rtol=1e-5)
    ok(capsys, ["export", "hf", tmp_path / "merged", "--out", tmp_path / "hf"])
    assert (tmp_path / "hf" / "tokenizer_config.json").is_file()
    ok(capsys, ["export", "hf", ckpt, "--out", tmp_path / "hf-lora"])  # a LoRA checkpoint exports merged
    transformers = pytest.importorskip("transformers")
    with torch.no_grad():
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf-lora").eval()
        torch.testing.assert_close(hf(idx).logits, want, atol=1e-4, rtol=1e-4)
    # chat: two user lines piped in, two streamed replies, the history in the second prompt
    monkeypatch.setattr("sys.stdin", io.StringIO("the fox?\nthe dog?\n"))
    text = ok(capsys, ["chat", tmp_path / "merged", "--max-new-tokens", "12", "--seed", "0", "--device", "cpu"])
    assert text.count("assistant> ") == 2


def test_chat_keeps_history_and_streams(tmp_path, base_ckpts, chat_file, capsys):
    from genforge.finetune.chat import chat

    finetune(capsys, base_ckpts["llama"], chat_file, tmp_path / "run", "--no-pack", iters=4)

    class Writes(io.StringIO):
        count = 0

        def write(self, s):
            self.count += 1
            return super().write(s)

    stdout = Writes()
    messages = chat(str(tmp_path / "run"), system="BE QUICK.", max_new_tokens=10, temperature=0, device="cpu",
                    stdin=io.StringIO("the fox?\n/reset\nthe dog?\n/quit\nnever read\n"), stdout=stdout)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]  # /reset dropped the first exchange
    assert messages[1]["content"] == "the dog?" and "(history cleared)" in stdout.getvalue()
    assert stdout.count > 6  # replies arrive piece by piece


@pytest.mark.parametrize("method", ["full", "lora"])
def test_encoder_classifier(tmp_path, base_ckpts, labels_file, capsys, method):
    out = finetune(capsys, base_ckpts["bert"], labels_file, tmp_path / "run", "--method", method, "train.lr=3e-3",
                   iters=12)
    assert "val_acc" in out
    ckpt = tmp_path / "run" / "step-0000012"
    config = json.loads((ckpt / "config.json").read_text())
    assert config["finetune"]["labels"] == ["dog", "fox"] and config["model"]["n_labels"] == 2
    loaded = ckpt_io.load(ckpt, trainable=True)
    model, _, _ = loaded.model, loaded.config, loaded.path
    assert model.config.n_labels == 2 and model.head is not None
    if method == "lora":
        assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("args,match", [
    (["--method", "freeze"], "say what to freeze"),
    (["--method", "freeze", "--freeze-layers", "9"], "only 2 blocks"),
    (["model.n_layer=3"], "train.* overrides"),
    (["--method", "lora", "--target-modules", "q_proj"], "q_proj"),
])
def test_bad_options(tmp_path, base_ckpts, text_file, capsys, args, match):
    rc = main(["finetune", str(base_ckpts["gpt2"]), "--data", str(text_file), "--out", str(tmp_path / "r"), *args, *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err


def test_bad_labels(tmp_path, base_ckpts, capsys):
    data = tmp_path / "l.jsonl"
    data.write_text('{"text": "the fox", "label": "fox"}\n{"text": "the dog", "label": [1]}\n')
    rc = main(["finetune", str(base_ckpts["bert"]), "--data", str(data), "--out", str(tmp_path / "r"), *FAST])
    assert rc == 2 and "l.jsonl:2: \"label\" must be a string or an integer" in capsys.readouterr().err


def test_server_renders_chats_with_the_trained_template(tmp_path, base_ckpts, chat_file, capsys):
    """An SFT checkpoint is served with the template its replies were trained in."""
    pytest.importorskip("fastapi")
    from genforge.finetune.template import DEFAULT_TEMPLATE, render
    from genforge.serve.chat import render_chat
    from genforge.serve.registry import load_served

    finetune(capsys, base_ckpts["gpt2"], chat_file, tmp_path / "run", iters=2)
    served = load_served(str(tmp_path / "run"), device="cpu")
    messages = [{"role": "user", "content": "the fox?"}]
    prompt, stop = render_chat(messages, served.chat_template)
    assert prompt == render(DEFAULT_TEMPLATE, messages, add_generation_prompt=True) == "User: the fox?\nAssistant:"
    assert stop == ["<|endoftext|>"]
    assert load_served(str(base_ckpts["gpt2"]), device="cpu").chat_template is None  # no template: serve's default
