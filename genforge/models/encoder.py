"""BERT-style encoder (Devlin et al. 2019): word + position + token-type embeddings, post-norm
blocks of bidirectional attention and a GELU MLP, in the layout of `transformers`' BertModel.

- `embed(idx, mask)`: sentence embeddings, the mean-pooled hidden states L2-normalised (the
  pooling of sentence-transformers, Reimers & Gurevych 2019), as all-MiniLM-L6-v2 gives them;
- `logits(idx, mask)`: (B, n_labels) through a linear head; n_labels=K classifies,
  n_labels=1 is a scalar sequence score (`score`), the shape a reward model needs. The head
  reads BERT's pooler (dense + tanh on [CLS]; head_pool=cls, the layout of `transformers`'
  BertForSequenceClassification, which new fine-tunes get) or the mean-pooled states
  (head_pool=mean, the heads of checkpoints made before; no HF class has that head).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError
from genforge.nn.bidirectional import SelfAttention
from genforge.nn.mlp import MLP


@dataclass
class EncoderConfig:
    vocab_size: int = 30522
    block_size: int = 512  # max_position_embeddings
    type_vocab_size: int = 2
    n_layer: int = 6
    n_head: int = 12
    n_embd: int = 384
    mlp_hidden: int | None = None  # None: 4 * n_embd
    activation: Literal["gelu", "gelu_tanh"] = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.1
    pooler: bool = True  # BertModel's [CLS] dense+tanh, kept so that export gives back the same file
    n_labels: int = 0  # 0: no head; 1: a scalar score; K >= 2: K-way classification
    head_pool: Literal["mean", "cls"] = "mean"  # what the head reads (see the module docstring)
    pad_id: int = 0

    def __post_init__(self):
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd
        for key in ("vocab_size", "block_size", "type_vocab_size", "n_layer", "n_head", "n_embd", "mlp_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_head={self.n_head} must divide model.n_embd={self.n_embd}")
        if self.n_labels < 0:
            raise ConfigError(f"model.n_labels={self.n_labels} must be >= 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.head_pool not in ("mean", "cls"):
            raise ConfigError(f"model.head_pool={self.head_pool!r} must be mean or cls")
        if self.head_pool == "cls" and not self.pooler:
            raise ConfigError("model.head_pool=cls reads BERT's pooler: it needs model.pooler=true")


SIZES = {
    "tiny": dict(vocab_size=1000, block_size=64, n_layer=2, n_head=2, n_embd=32),
    "minilm-l6": dict(vocab_size=30522, block_size=512, n_layer=6, n_head=12, n_embd=384, mlp_hidden=1536),
}


class EncoderBlock(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg.n_embd, cfg.n_head, True, cfg.dropout)
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
        self.mlp = MLP(cfg.n_embd, cfg.mlp_hidden, True, cfg.dropout, approximate)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x, mask))  # post-norm, as in BERT
        return self.ln_2(x + self.mlp(x))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=cfg.pad_id),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            wtt=nn.Embedding(cfg.type_vocab_size, cfg.n_embd),
            ln=nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps),
        ))
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_layer))
        self.pooler = nn.Linear(cfg.n_embd, cfg.n_embd) if cfg.pooler else None
        self.head = nn.Linear(cfg.n_embd, cfg.n_labels) if cfg.n_labels else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, mask: torch.Tensor | None = None,
                token_type: torch.Tensor | None = None, head: bool = False) -> torch.Tensor:
        """Hidden states (B, T, C) of token ids idx (B, T); mask (B, T) True on real tokens. With
        head, the head's outputs (B, n_labels) instead (as `logits`; a classifier trains through
        forward, which is what DistributedDataParallel synchronises)."""
        _, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(f"sequence of {T} tokens exceeds block_size={self.config.block_size}")
        e = self.embeddings
        types = token_type if token_type is not None else torch.zeros_like(idx)
        x = e.wte(idx) + e.wpe(torch.arange(T, device=idx.device)) + e.wtt(types)  # (B, T, C)
        x = self.drop(e.ln(x))
        if mask is not None:
            mask = mask.bool()
        for block in self.h:
            x = block(x, mask)
        if not head:
            return x
        if self.head is None:
            raise ConfigError("model.n_labels=0: this encoder has no head (fine-tune it as a classifier first)")
        if self.config.head_pool == "cls":
            pooled = torch.tanh(self.pooler(x[:, 0]))  # (B, C): BertPooler on [CLS]
        else:
            pooled = mean_pool(x, mask)
        return self.head(self.drop(pooled))  # (B, n_labels)

    def pool(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the hidden states over real tokens: (B, C)."""
        return mean_pool(self(idx, mask), mask)

    def embed(self, idx: torch.Tensor, mask: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
        """Sentence embeddings (B, C): mean-pooled, L2-normalised like sentence-transformers'."""
        z = self.pool(idx, mask)
        return F.normalize(z, dim=-1) if normalize else z

    def logits(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The head's outputs (B, n_labels); ConfigError without a head."""
        return self(idx, mask, head=True)

    def score(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One scalar per sequence (B,): the head of an n_labels=1 encoder (e.g. a reward model)."""
        if self.config.n_labels != 1:
            raise ConfigError(f"model.n_labels={self.config.n_labels}: a scalar score needs n_labels=1")
        return self.logits(idx, mask)[:, 0]


def mean_pool(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of hidden states x (B, T, C) over the real tokens of mask (B, T): (B, C)."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype)[..., None]  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
