"""Reusable layers shared by model families. No model-specific code lives here."""
from genforge.nn.attention import CausalSelfAttention, KVCache
from genforge.nn.mlp import MLP, SwiGLU
from genforge.nn.positions import RotaryEmbedding

__all__ = ["MLP", "CausalSelfAttention", "KVCache", "RotaryEmbedding", "SwiGLU"]
