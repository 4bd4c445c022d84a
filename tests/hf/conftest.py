"""Tiny Hugging Face checkpoint directories, made with `transformers` from configs (no download)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genforge.data.tokenizer import train_tokenizer

transformers = pytest.importorskip("transformers")

TEXT = ("the quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG! "
        "0123456789 ,;:?'\"-\n")


def char_tokenizer_file(folder: Path) -> int:
    """Write a char tokenizer.json into folder; return its vocabulary size."""
    tok = train_tokenizer("char", [TEXT])
    tok.save(folder / "tokenizer.json")
    return tok.vocab_size


def bert_tokenizer_file(folder: Path) -> int:
    """A WordPiece tokenizer.json with [CLS] ... [SEP] post-processing, as BERT's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = sorted(set(TEXT.lower().replace(".", " . ").split()))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    return len(vocab)


def hf_dir(tmp: Path, kind: str) -> Path:
    folder = tmp / f"hf-{kind}"
    folder.mkdir()
    torch.manual_seed(0)
    if kind == "bert":
        vocab = bert_tokenizer_file(folder)
        config = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=48, max_position_embeddings=40)
        model = transformers.BertModel(config)
    else:
        vocab = char_tokenizer_file(folder)
        if kind == "gpt2":
            config = transformers.GPT2Config(vocab_size=vocab, n_positions=48, n_embd=32, n_layer=2, n_head=4)
            model = transformers.GPT2LMHeadModel(config)
        else:
            config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48)
            model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # norms and biases away from their 1/0 init, so a wrong mapping shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """{"gpt2"|"llama"|"bert": a tiny HF checkpoint directory} (read-only: copy before changing)."""
    tmp = tmp_path_factory.mktemp("hf")
    return {kind: hf_dir(tmp, kind) for kind in ("gpt2", "llama", "bert")}

