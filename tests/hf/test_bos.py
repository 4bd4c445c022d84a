"""A Llama-style tokenizer that adds <s> (its post-processor and add_bos_token say so): genforge
encodes prompts as transformers does, so greedy generation, the served completion and chat,
perplexity and fine-tuning data all see the BOS, and generation equals the transformers
pipeline's greedy output token for token. A tiny random LlamaForCausalLM; nothing is downloaded."""
from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import torch

transformers = pytest.importorskip("transformers")

CORPUS = ("the quick brown fox jumps over the lazy dog. seven bold wizards judge my sphinx of quartz. "
          "a lazy dog sleeps while the quick fox runs.\n") * 20
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
PROMPTS = ["the quick brown", "seven bold wizards judge", "a lazy"]


def bos_tokenizer(folder: Path) -> int:
    """Byte-level BPE with Llama's <unk> <s> </s> (ids 0, 1, 2), a post-processor that puts <s>
    first, and tokenizer_config.json saying add_bos_token; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "</s>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                          show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE}))
    return tok.get_vocab_size()


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf-llama-bos")
    vocab = bos_tokenizer(folder)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      bos_token_id=1, eos_token_id=2, rope_parameters={"rope_theta": 10000.0,
                                                                                        "rope_type": "default"})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(10)  # sharper distributions: greedy choices far from ties
        model.lm_head.weight[:2] = 0  # logit 0 for <unk> and <s>, far below the top: decoded texts compare exactly
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpt(llama_dir, tmp_path_factory) -> Path:
    from genforge.hf.io import import_hf

    return import_hf(llama_dir, tmp_path_factory.mktemp("ckpt") / "llama")


@pytest.fixture(scope="module")
def pipe(llama_dir):
    return transformers.pipeline("text-generation", model=str(llama_dir), tokenizer=str(llama_dir), device="cpu")


def test_prompts_are_encoded_as_transformers_encodes_them(ckpt, llama_dir):
    import genforge
    from genforge.data.tokenizer import prompt_ids

    hf_tok = transformers.AutoTokenizer.from_pretrained(str(llama_dir))
    tok = genforge.load(ckpt, device="cpu").tokenizer
    assert tok.bos_ids == [1] and tok.eot_id == 2
    for p in PROMPTS:
        assert prompt_ids(tok, p) == hf_tok(p).input_ids
        assert hf_tok(p).input_ids[0] == 1


def test_greedy_generation_equals_the_transformers_pipeline(ckpt, pipe):
    import genforge
    from genforge.data.tokenizer import prompt_ids
    from genforge.sample.text import generate_ids

    lm = genforge.load(ckpt, device="cpu")
    differs = 0
    for p in PROMPTS:
        want = pipe(p, max_new_tokens=20, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert lm.generate(p, max_new_tokens=20, temperature=0) == want, p
        without_bos = torch.tensor([prompt_ids(lm.tokenizer, p, bos=False)])  # what genforge did before
        differs += lm.tokenizer.decode(generate_ids(lm.model, without_bos, 20, temperature=0)[0].tolist()) != want
    assert differs  # the BOS changes what this model says: the test would catch it missing


def test_serve_completion_and_chat_equal_the_pipeline(ckpt, pipe):
    from serve.helpers import running

    from genforge.finetune.chat import chat as genforge_chat
    from genforge.serve.app import create_app
    from genforge.serve.limits import Limits
    from genforge.serve.registry import index, load_served
    from genforge.serve.state import ServerState

    state = ServerState(index([load_served(f"llama={ckpt}", "cpu")]), Limits(), None, None)
    messages = [{"role": "user", "content": "the quick brown fox"}]
    with running(create_app(state)) as url:
        completion = httpx.post(f"{url}/v1/completions", json={"model": "llama", "prompt": PROMPTS[0],
                                                               "max_tokens": 20, "temperature": 0}).json()
        chat = httpx.post(f"{url}/v1/chat/completions", json={"model": "llama", "messages": messages,
                                                              "max_tokens": 20, "temperature": 0}).json()
    want = pipe(PROMPTS[0], max_new_tokens=20, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert completion["choices"][0]["text"] == want
    assert completion["usage"]["prompt_tokens"] == len(pipe.tokenizer(PROMPTS[0]).input_ids)
    # a chat: the template writes <s> itself; nothing is added on top (apply_chat_template's rule)
    reply = pipe(messages, max_new_tokens=20, do_sample=False)[0]["generated_text"][-1]["content"]
    assert chat["choices"][0]["message"]["content"] == reply
    assert genforge_chat(ckpt, device="cpu", temperature=0, max_new_tokens=20, stdin=io.StringIO(messages[0]["content"] + "\n"),
                         stdout=io.StringIO())[-1]["content"] == reply.strip()  # `genforge chat` alike


def test_perplexity_scores_the_text_after_its_bos(ckpt, llama_dir, tmp_path):
    from genforge.eval.perplexity import evaluate_checkpoint

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(llama_dir)).eval()
    ids = transformers.AutoTokenizer.from_pretrained(str(llama_dir))(CORPUS).input_ids[:65]  # one window
    text = tmp_path / "text.txt"
    text.write_text(CORPUS)
    ours = evaluate_checkpoint(ckpt, file=str(text), device="cpu", max_windows=1)
    with torch.no_grad():
        want = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert ours["tokens"] == 64 and ours["loss"] == pytest.approx(want, abs=1e-5)


def test_finetune_data_starts_with_the_bos(ckpt, tmp_path):
    import genforge
    from genforge.data.prepare import prepare
    from genforge.data.shards import TokenData
    from genforge.finetune.sft_data import read_examples
    from genforge.finetune.template import load_bos, load_template

    tok = genforge.load(ckpt, device="cpu").tokenizer
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "the quick", "completion": " brown fox"}) + "\n")
    (ids, trained), = read_examples(pairs, tok, *load_template(ckpt), load_bos(ckpt))
    assert ids[:len(prompt := tok.encode("the quick")) + 1] == [1, *prompt] and not any(trained[:len(prompt) + 1])
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "the dog"}]}) + "\n")
    (ids, _), = read_examples(chats, tok, *load_template(ckpt), load_bos(ckpt))
    assert ids[0] == 1 and ids[1] != 1  # the template's own <s>, once

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    data = TokenData(prepare(str(corpus), "char", tmp_path / "data", tokenizer_file=ckpt / "tokenizer.json"))
    for split in ("train", "val"):
        tokens = data.split(split)[0]
        assert tokens[0] == 1 and tokens[-1] == 2  # <s> document </s>
    # worker processes encode as the parent does (their tokenizer is rebuilt from tokenizer.json alone)
    two = TokenData(prepare(str(corpus), "char", tmp_path / "data2", tokenizer_file=ckpt / "tokenizer.json", workers=2))
    assert all((a == b).all() for s in ("train", "val") for a, b in zip(data.split(s), two.split(s)))


@pytest.mark.parametrize("post_processor", [True, False])
@pytest.mark.parametrize("add_bos_token", [True, False, None])
def test_which_config_decides(tmp_path, post_processor, add_bos_token):
    """tokenizer.json's post-processor decides, as in transformers 5; without one, add_bos_token
    (from which transformers 4 built it) does."""
    from tokenizers import Tokenizer as Raw
    from tokenizers import models, pre_tokenizers, processors

    from genforge.data.tokenizer import Tokenizer

    raw = Raw(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    if post_processor:
        raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    raw.save(str(tmp_path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
    if add_bos_token is not None:
        config["add_bos_token"] = add_bos_token
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours = Tokenizer.from_file(tmp_path / "tokenizer.json").bos_ids
    assert ours == ([1] if post_processor or add_bos_token else [])
    if post_processor:
        assert ours + [3, 4] == transformers.AutoTokenizer.from_pretrained(str(tmp_path))("a b").input_ids
