"""The Python API: `genforge.load(ckpt)` -> TextModel."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from genforge.cpu.decode import for_decoding
from genforge.data.tokenizer import Tokenizer
from genforge.errors import CheckpointError
from genforge.models import FAMILIES
from genforge.sample.text import generate_ids, prompt_ids, stream_text, truncate
from genforge.train import checkpoint as ckpt_io
from genforge.train.device import resolve_device

# From this size on, CPU decoding is bound by streaming weights, and for_decoding's layouts win
# (GPT-2 small: 1.3x in fp32, 2.3x in bf16); below it, per-op overhead dominates and the plain model is as fast.
DECODE_COPY_MIN_PARAMS = 20_000_000


def load_model(ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> tuple[torch.nn.Module, dict, Path]:
    """(model in eval mode, config.json dict, checkpoint dir) from a checkpoint directory."""
    path = ckpt_io.resolve(ckpt)
    config = ckpt_io.read_config(path)
    family = FAMILIES.get(config.get("family"))
    if family is None:
        raise CheckpointError(f"{path / 'config.json'}: unknown family {config.get('family')!r}")
    from genforge.finetune.load import load_checkpoint_model  # LoRA checkpoints load merged

    model, config, path = load_checkpoint_model(path)
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = "bfloat16" if dev.type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise CheckpointError(f"dtype={dtype!r}: expected auto, float32, bfloat16 or float16")
    if dev.type == "cpu":  # CPU matrix-vector products want their own weight layouts (genforge/cpu/decode.py)
        if dtype == "float16":
            raise CheckpointError("dtype=float16 needs a CUDA device; on CPU use float32 or bfloat16")
        model = model.eval()
        if dtype == "bfloat16" or sum(p.numel() for p in model.parameters()) >= DECODE_COPY_MIN_PARAMS:
            model = for_decoding(model, getattr(torch, dtype))
        return model, config, path
    return model.to(dev, getattr(torch, dtype)).eval(), config, path


class TextModel:
    """A language model and its tokenizer, ready to generate."""

    def __init__(self, model, tokenizer: Tokenizer, path: Path):
        self.model, self.tokenizer, self.path = model, tokenizer, path

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> TextModel:
        model, _, path = load_model(ckpt, device, dtype)
        tok_file = path / "tokenizer.json"
        if not tok_file.is_file():
            raise CheckpointError(f"{path}: no tokenizer.json; this checkpoint cannot generate text")
        tokenizer = Tokenizer.from_file(tok_file)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise CheckpointError(f"{tok_file}: {tokenizer.vocab_size} tokens but the model has vocab_size={model.config.vocab_size}")
        return cls(model, tokenizer, path)

    def stream(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None,
               top_p: float | None = None, repetition_penalty: float = 1.0, stop: Sequence[str] = (),
               seed: int | None = None) -> Iterator[str]:
        """Yield the continuation of prompt piece by piece as it is generated."""
        return stream_text(self.model, self.tokenizer, prompt, max_new_tokens, stop=stop, seed=seed,
                           temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)

    def generate(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, repetition_penalty: float = 1.0, stop: Sequence[str] = (),
                 seed: int | None = None, num_samples: int = 1) -> str | list[str]:
        """The continuation of prompt (a list of num_samples continuations when num_samples > 1)."""
        if num_samples == 1:
            return "".join(self.stream(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed))
        device = next(self.model.parameters()).device
        idx = torch.tensor([prompt_ids(self.tokenizer, prompt)] * num_samples, device=device)
        gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        out = generate_ids(self.model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           repetition_penalty=repetition_penalty, generator=gen)
        texts = []
        for row in out.tolist():
            if self.tokenizer.eot_id in row:
                row = row[: row.index(self.tokenizer.eot_id)]
            texts.append(truncate(self.tokenizer.decode(row), stop))
        return texts
