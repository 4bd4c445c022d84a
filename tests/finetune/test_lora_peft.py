"""LoRA adapters cross to PEFT both ways, for GPT-2 and Llama: a `genforge finetune --method lora`
run's adapter loads with PEFT onto `genforge export hf`'s model and computes what the LoRA
checkpoint does; an adapter PEFT trains on the exported HF model merges with `genforge merge
--adapter` into what PEFT computes. PEFT and transformers themselves; tiny models, no download."""
from __future__ import annotations

import json

import pytest
import torch

from genforge import checkpoint as ckpt_io
from genforge.cli import main

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

FAST = ["train.device=cpu", "train.dtype=float32", "train.warmup_iters=1", "train.eval_iters=1",
        "train.eval_interval=6", "train.max_iters=6", "train.lr=2e-2"]
HF_TARGETS = {"gpt2": ["c_attn", "c_fc", "c_proj"],
              "llama": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]}
IDX = torch.randint(0, 30, (2, 16), generator=torch.Generator().manual_seed(0))


def ok(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(IDX)
    return out.logits if hasattr(out, "logits") else out[0]


@pytest.fixture(scope="module")
def exported(base_ckpts, tmp_path_factory):
    """{"gpt2"|"llama": the HF directory `genforge export hf` writes for the base checkpoint}."""
    tmp = tmp_path_factory.mktemp("exported")
    for kind in ("gpt2", "llama"):
        assert main(["export", "hf", str(base_ckpts[kind]), "--out", str(tmp / kind)]) == 0
    return {kind: tmp / kind for kind in ("gpt2", "llama")}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_genforge_adapter_loads_in_peft_on_the_exported_model(tmp_path, base_ckpts, exported, text_file, capsys, kind):
    ok(capsys, ["finetune", base_ckpts[kind], "--data", text_file, "--out", tmp_path / "run", "--no-progress",
                "--method", "lora", "--lora-r", "4", "--batch-size", "4", *FAST])
    adapter = tmp_path / "run" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == HF_TARGETS[kind]  # the exported model's module names
    assert config["fan_in_fan_out"] == (kind == "gpt2")  # GPT2LMHeadModel's Conv1D layers
    want = logits(ckpt_io.load(tmp_path / "run").model)  # the LoRA checkpoint (merged)
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported[kind])
    base = logits(hf)
    assert not torch.allclose(want, base, atol=1e-3)  # the adapter learned something
    with_adapter = peft.PeftModel.from_pretrained(hf, str(adapter))
    torch.testing.assert_close(logits(with_adapter), want, atol=1e-5, rtol=1e-5)

    # ... and the same adapter merges back: genforge merge BASE --adapter equals merging the run
    ok(capsys, ["merge", base_ckpts[kind], "--adapter", adapter, "--out", tmp_path / "merged"])
    torch.testing.assert_close(logits(ckpt_io.load(tmp_path / "merged").model), want, atol=1e-5, rtol=1e-5)


VARIANTS = {"plain": lambda kind: {},
            "rslora+alpha_pattern": lambda kind: {"use_rslora": True, "alpha_pattern": {HF_TARGETS[kind][1]: 2.0}},
            "rank_pattern+modules_to_save": lambda kind: {"rank_pattern": {HF_TARGETS[kind][0]: 2},
                                                          "modules_to_save": ["lm_head"] if kind == "llama" else None}}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peft_adapter_on_the_hf_model_merges_in_genforge(tmp_path, base_ckpts, exported, capsys, kind, variant):
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported[kind])
    extra = VARIANTS[variant](kind)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=HF_TARGETS[kind], fan_in_fan_out=kind == "gpt2",
                             task_type="CAUSAL_LM", **extra)
    trained = peft.get_peft_model(hf, config)
    torch.manual_seed(1)
    with torch.no_grad():  # as if trained: B away from its zero init
        for name, p in trained.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.normal_(0, 0.2)
    want = logits(trained)
    trained.save_pretrained(tmp_path / "adapter")
    ok(capsys, ["merge", base_ckpts[kind], "--adapter", tmp_path / "adapter", "--out", tmp_path / "merged"])
    loaded = ckpt_io.load(tmp_path / "merged")
    assert loaded.config["model"] == ckpt_io.read_config(base_ckpts[kind])["model"]
    torch.testing.assert_close(logits(loaded.model), want, atol=1e-4, rtol=1e-4)  # float32 sums in another order


def test_adapters_that_do_not_fit_are_refused(tmp_path, base_ckpts, exported, capsys):
    from genforge.errors import CheckpointError
    from genforge.hf.adapters import merge_adapter

    base = ckpt_io.load(base_ckpts["llama"], trainable=True).model
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported["llama"])
    peft.get_peft_model(hf, peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(tmp_path / "dora")
    with pytest.raises(CheckpointError, match="use_dora=True is not supported"):
        merge_adapter(base, tmp_path / "dora")
    gpt2 = ckpt_io.load(base_ckpts["gpt2"], trainable=True).model  # a Llama adapter on a GPT-2 model
    peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(exported["llama"]),
                        peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "llama")
    with pytest.raises(CheckpointError, match="model.layers.0.self_attn.q_proj is not a module of the GPT2LMHeadModel"):
        merge_adapter(gpt2, tmp_path / "llama")


def test_an_adapter_with_no_hf_counterpart_keeps_genforge_names(tmp_path, capsys):
    from genforge.hf.adapters import save_adapter
    from genforge.models import lora
    from genforge.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(flavour="llama", vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32))
    settings = lora.lora_settings(r=2, targets=["c_attn", "lm_head"])
    save_adapter(lora.wrap(model, settings), tmp_path / "adapter", settings)
    assert "lm_head has no Hugging Face module genforge maps" in capsys.readouterr().out
    assert sorted(json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"]) == \
        ["c_attn", "lm_head"]
