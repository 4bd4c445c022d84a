"""Frequencies of scaled rotary embeddings, as Llama-family checkpoints name them in
`rope_parameters` (transformers 5) or `rope_scaling` (transformers 4):

- default: inv_freq_i = theta^(-2i/d) (Su et al. 2021).
- linear: position interpolation, every frequency divided by `factor` (Chen et al. 2023).
- dynamic: NTK-aware scaling that raises theta only once a sequence outgrows
  `original_max_position_embeddings` (bloc97/emozilla 2023); within it, default frequencies.
  genforge's rotary table is fixed at block_size, so dynamic is supported while block_size stays
  within that length (where it is exact) and refused past it.
- llama3: low frequencies divided by `factor`, high ones kept, a smooth ramp between
  (Llama 3.1, Meta 2024).
- yarn: NTK-by-parts interpolation plus an attention temperature that scales cos/sin
  (Peng et al. 2023, YaRN, eq. 21).

Each function mirrors transformers' modeling_rope_utils, so imported weights see the same angles.
"""
from __future__ import annotations

import math

import torch

from genforge.errors import ConfigError

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")
# keys each type reads besides rope_type (and rope_theta, which GPTConfig keeps as rope_theta)
_KEYS = {"default": set(), "linear": {"factor"}, "dynamic": {"factor", "original_max_position_embeddings"},
         "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
         "yarn": {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
                  "mscale", "mscale_all_dim", "truncate"}}
_REQUIRED = {"linear": {"factor"}, "dynamic": {"factor"}, "llama3": {"factor", "low_freq_factor", "high_freq_factor",
                                                                    "original_max_position_embeddings"},
             "yarn": {"factor", "original_max_position_embeddings"}}


def check_scaling(scaling: dict | None, block_size: int) -> None:
    """ConfigError (one line) for a rope scaling genforge cannot compute exactly."""
    if not scaling:
        return
    kind = scaling.get("rope_type")
    if kind not in ROPE_TYPES:
        raise ConfigError(f"model.rope_scaling: rope_type={kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    unknown = sorted(set(scaling) - _KEYS[kind] - {"rope_type"})
    if unknown:
        raise ConfigError(f"model.rope_scaling: {unknown} are not {kind} rope settings genforge computes")
    missing = sorted(_REQUIRED.get(kind, set()) - {k for k, v in scaling.items() if v is not None})
    if missing:
        raise ConfigError(f"model.rope_scaling: rope_type={kind} needs {missing}")
    factor = scaling.get("factor")
    if factor is not None and not factor > 0:
        raise ConfigError(f"model.rope_scaling: factor={factor} must be > 0")
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ConfigError("model.rope_scaling: llama3 needs high_freq_factor > low_freq_factor")
    original = scaling.get("original_max_position_embeddings") or block_size
    if kind == "dynamic" and block_size > original:
        raise ConfigError(f"model.rope_scaling: dynamic rope past original_max_position_embeddings={original} "
                          f"changes its frequencies with each sequence's length; block_size={block_size} must "
                          f"stay within it")


def inv_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> tuple[torch.Tensor, float]:
    """(inverse frequencies (head_dim/2,), attention factor that multiplies cos and sin)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    kind = (scaling or {}).get("rope_type", "default")
    if kind in ("default", "dynamic"):  # dynamic: default frequencies within the original length
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    if kind == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    if kind == "yarn":
        return _yarn(head_dim, theta, scaling)
    raise ConfigError(f"model.rope_scaling: rope_type={kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")


def _llama3(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)  # long wavelengths: interpolated
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, smoothed, scaled)


def _yarn(dim: int, base: float, s: dict) -> tuple[torch.Tensor, float]:
    factor, original = s["factor"], s["original_max_position_embeddings"]
    attention = s.get("attention_factor")
    if attention is None:
        mscale, mscale_all = s.get("mscale"), s.get("mscale_all_dim")
        attention = _mscale(factor, mscale) / _mscale(factor, mscale_all) if mscale and mscale_all else _mscale(factor)
    beta_fast, beta_slow = s.get("beta_fast") or 32, s.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:  # the dimension that turns `rotations` times over `original`
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no singularity
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolated = 1 - ramp  # high frequencies keep their angle; low ones are interpolated
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolated) + (1.0 / pos_freqs) * extrapolated
    return inv_freq, float(attention)


def _mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature, eq. 21: 0.1 * mscale * ln(scale) + 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0
