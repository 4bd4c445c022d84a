"""Decoder-only transformer language model in two flavours chosen by config:

- "gpt2": learned positions, LayerNorm, GELU MLP, tied input/output embeddings
  (Radford et al. 2019; layout of nanoGPT and of `transformers`' GPT2LMHeadModel).
- "llama": rotary positions, RMSNorm, SwiGLU MLP, optional grouped-query attention, no biases
  (Touvron et al. 2023; layout of `transformers`' LlamaForCausalLM).

`forward(idx, cache=None, pos=0) -> (logits, cache)` is the interface samplers use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.cpu import attention as cpu_attention
from genforge.cpu import fused_gpt
from genforge.errors import ConfigError
from genforge.nn import MLP, CausalSelfAttention, KVCache, RotaryEmbedding, SwiGLU
from genforge.nn.rope_scaling import check_scaling as check_rope_scaling


@dataclass
class GPTConfig:
    flavour: Literal["gpt2", "llama"] = "gpt2"
    vocab_size: int = 0  # 0: taken from the training data's tokenizer
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int | None = None  # None: n_head (no grouping)
    n_embd: int = 384
    mlp_hidden: int | None = None  # None: 4*n_embd (gpt2), ~8/3*n_embd rounded to 64 (llama)
    activation: Literal["gelu_tanh", "gelu"] = "gelu_tanh"  # gpt2 MLP: GPT-2's tanh approximation or exact erf
    dropout: float = 0.0
    bias: bool | None = None  # None: True for gpt2, False for llama
    tie_embeddings: bool | None = None  # None: True for gpt2, False for llama
    norm_eps: float | None = None  # None: 1e-5 (gpt2), 1e-6 (llama)
    rope_theta: float = 10000.0
    # llama: scaled rotary frequencies, {"rope_type": linear|dynamic|llama3|yarn, ...} as in transformers'
    # rope_parameters (genforge/nn/rope_scaling.py); None: plain RoPE
    rope_scaling: dict | None = None

    def __post_init__(self):
        gpt2 = self.flavour == "gpt2"
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.bias is None:
            self.bias = gpt2
        if self.tie_embeddings is None:
            self.tie_embeddings = gpt2
        if self.norm_eps is None:
            self.norm_eps = 1e-5 if gpt2 else 1e-6
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd if gpt2 else 64 * math.ceil(8 * self.n_embd / 3 / 64)
        for key in ("block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_head={self.n_head} must divide model.n_embd={self.n_embd}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"model.n_kv_head={self.n_kv_head} must divide model.n_head={self.n_head}")
        if self.flavour == "llama" and (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"model: head size n_embd/n_head={self.n_embd // self.n_head} must be even for rotary positions")
        if self.flavour == "gpt2" and self.n_kv_head != self.n_head:
            raise ConfigError("model.n_kv_head: grouped-query attention needs flavour=llama")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.rope_scaling and self.flavour != "llama":
            raise ConfigError("model.rope_scaling: rotary positions need flavour=llama")
        check_rope_scaling(self.rope_scaling, self.block_size)


# Named presets; a preset is a dict of GPTConfig fields.
SIZES = {
    "nano": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    "small-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, rope: RotaryEmbedding | None):
        super().__init__()
        Norm = nn.LayerNorm if cfg.flavour == "gpt2" else nn.RMSNorm
        norm_kw = dict(eps=cfg.norm_eps) if cfg.flavour == "llama" else dict(eps=cfg.norm_eps, bias=cfg.bias)
        self.ln_1 = Norm(cfg.n_embd, **norm_kw)
        self.attn = CausalSelfAttention(cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.dropout, rope,
                                        cpu_attention.attend)  # CPU under bf16: genforge.cpu's attention core
        self.ln_2 = Norm(cfg.n_embd, **norm_kw)
        if cfg.flavour == "gpt2":
            approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
            self.mlp = MLP(cfg.n_embd, cfg.mlp_hidden, cfg.bias, cfg.dropout, approximate)
        else:
            self.mlp = SwiGLU(cfg.n_embd, cfg.mlp_hidden, cfg.bias, cfg.dropout)

    def forward(self, x, cache=None, layer=0, pos=0, mask=None, positions=None):
        x = x + self.attn(self.ln_1(x), cache, layer, pos, mask, positions)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ConfigError("model.vocab_size must be set (>= 1), or taken from the data's tokenizer")
        self.config = cfg
        llama = cfg.flavour == "llama"
        rope = RotaryEmbedding(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta,
                               cfg.rope_scaling) if llama else None
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity(),
            h=nn.ModuleList(Block(cfg, rope) for _ in range(cfg.n_layer)),
            ln_f=nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps) if llama else nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias),
        ))
        if not llama:
            self.transformer["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2 paper: scale residual projections by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        cfg = self.config
        p = self.transformer.wte.weight  # the residual stream's dtype, also after cpu.decode.for_decoding
        return KVCache(cfg.n_layer, batch, cfg.n_kv_head, max_len or cfg.block_size, cfg.n_embd // cfg.n_head,
                       dtype or p.dtype, p.device)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0,
                doc_ids: torch.Tensor | None = None, prefix: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, KVCache | None]:
        """Logits (B, T, vocab) for token ids idx (B, T) whose first token sits at position `pos`.

        doc_ids (B, T): several documents packed in a row (training, no cache): a token attends
        only to earlier tokens of its own document, and positions restart at each document, so
        each one computes what it would alone.

        prefix (B, P, n_embd): embeddings that take the first P positions, before idx's tokens
        (a frozen text encoder's states before a DALL·E-style model's image codes); the logits
        then cover all P + T positions."""
        x = self.transformer.wte(idx)  # (B, T, C)
        if prefix is not None:
            if doc_ids is not None:
                raise ValueError("prefix embeddings and packed documents do not mix")
            x = torch.cat([prefix.to(x.dtype), x], 1)  # (B, P + T, C)
        T = x.size(1)
        if pos + T > self.config.block_size:
            raise ValueError(f"sequence of {pos + T} tokens exceeds block_size={self.config.block_size}")
        mask = positions = None
        if doc_ids is not None:
            mask, positions = packed_mask(doc_ids)
        if "wpe" in self.transformer:
            if positions is not None:
                x = x + self.transformer.wpe(positions)
            elif cache is not None:  # decoding: a slice of the table costs one op, not arange + lookup
                x = x + self.transformer.wpe.weight[pos : pos + T]
            else:
                x = x + self.transformer.wpe(torch.arange(pos, pos + T, device=idx.device))
        x = self.transformer.drop(x)
        fused = fused_gpt.blocks(self, x) if cache is None and mask is None else None  # CPU, bf16 autocast: one C++ op pair
        if fused is not None:
            x = fused
        else:
            for i, block in enumerate(self.transformer.h):
                x = block(x, cache, i, pos, mask, positions)
        x = self.transformer.ln_f(x)
        return self.lm_head(x), cache  # (B, T, vocab)


def packed_mask(doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention mask (B, 1, T, T) bool: causal and within one document, positions (B, T)
    counted from each document's first token) for document ids (B, T) of packed rows."""
    B, T = doc_ids.shape
    same = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    idx = torch.arange(T, device=doc_ids.device).expand(B, T)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T) start of each token's document
    return (same & causal)[:, None], idx - first
