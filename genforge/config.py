"""Dataclass configs, YAML files of overrides, dotted command-line overrides, validation.

A run is described by a RunConfig: which model family, the family's model config, the data and
the training settings (and, for another way to train the family, its method and settings). YAML
holds only what differs from the defaults; `key.sub=value` pairs on the command line override it.
Unknown keys and values of the wrong type raise ConfigError naming the key. genforge/run_config.py
reads run configs (YAML files, named recipes) against the family table.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from genforge.errors import ConfigError


@dataclass
class DataConfig:
    path: str = ""  # a prepared token directory (holds manifest.json)
    source: str | None = None  # when path holds no data yet, `genforge prepare` this source there
    tokenizer: str = "char"  # used with `source`: char | bpe:VOCAB
    batch_size: int = 12
    verify: bool = False  # check every shard's sha256 against the manifest when opening the data
    cda: str | None = None  # used with `source`: counterfactual data augmentation from this word-pair file (docs/bias.md)
    cda_mode: Literal["augment", "replace"] = "augment"  # add each train document's counterfactual, or replace it

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")


@dataclass
class TrainConfig:
    max_iters: int = 2000
    max_minutes: float | None = None  # time budget: stop (evaluate, save) once it is spent
    budget_clock: Literal["wall", "cpu"] = "wall"  # what max_minutes counts: wall-clock or this process's CPU time
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for hidden weight matrices, AdamW for the rest
    muon_lr_scale: float = 1.0  # Muon's lr = this x the schedule's (its updates are RMS-matched to AdamW's)
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    ckpt_interval: int | None = None  # None: checkpoint at every eval
    keep_checkpoints: int = 2
    keep_best: bool = False  # keep the checkpoint of the lowest val_loss as OUT/best (never pruned); train returns it
    early_stop: int = 0  # stop after this many evaluations in a row without a new lowest val_loss (0: never); keeps best
    ema_decay: float = 0.0  # 0 disables the EMA copy of the model
    ema_warmup: bool = False  # ramp the decay as min(ema_decay, (1 + n) / (10 + n)) after n updates
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    seed: int = 1337
    out_dir: str = "runs/default"
    threads: int | None = None  # CPU threads for torch; None leaves torch's default
    # how CPU threads share a step: "ops" splits each op across torch's intra-op threads; "batch"
    # splits each micro-batch into one shard per thread, each on one core (genforge/cpu/shards.py:
    # faster for small models; needs an objective whose loss is a mean over examples)
    cpu_parallel: Literal["ops", "batch"] = "ops"

    def __post_init__(self):
        for key in ("max_iters", "grad_accum", "eval_interval", "eval_iters", "log_interval"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be >= 1")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"train.lr={self.lr}, train.min_lr={self.min_lr}: need 0 <= min_lr <= lr, lr > 0")
        if self.early_stop < 0:
            raise ConfigError(f"train.early_stop={self.early_stop} must be >= 0 (0: never stop early)")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay={self.ema_decay} must be in [0, 1)")
        if self.fsdp and self.ema_decay:
            raise ConfigError("train.ema_decay with train.fsdp=true is not supported yet")
        if self.muon_lr_scale <= 0:
            raise ConfigError(f"train.muon_lr_scale={self.muon_lr_scale} must be > 0")
        if self.fsdp and self.optimizer == "muon":  # Newton-Schulz needs whole matrices, FSDP holds shards
            raise ConfigError("train.optimizer=muon with train.fsdp=true is not supported; use DDP or adamw")


@dataclass
class RunConfig:
    family: str = "gpt"
    model: Any = None  # the family's config dataclass
    data: Any = field(default_factory=DataConfig)  # the family's data config (Family.data), or the method's
    train: TrainConfig = field(default_factory=TrainConfig)
    method: str = ""  # another way to train the family (Family.methods: dpo, ...); "" its own
    settings: Any = None  # the method's settings dataclass (the section named after the method)

    def to_dict(self) -> dict:
        out = {"family": self.family, "model": _asdict(self.model), "data": _asdict(self.data),
               "train": dataclasses.asdict(self.train)}
        if self.method:
            out.update({"method": self.method, self.method: _asdict(self.settings)})
        return out


def _asdict(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def set_dotted(raw: dict, item: str) -> None:
    """Apply one `a.b.c=value` override to a nested dict; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. model.n_layer=6")
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "not YAML"
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem}); quote it, or write a list "
                          "as [a, b]") from None


def from_dict(cls, values: dict, prefix: str):
    """Build dataclass `cls` from a dict, checking every key and type; `prefix` names the section."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    check_keys(values, names, prefix)
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def check_keys(values: dict, names: list[str], prefix: str) -> None:
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; expected one of {', '.join(names)}"
            raise ConfigError(f"{prefix + '.' if prefix else ''}{key}: unknown config key{hint}")


def _coerce(value, tp, key: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: expected a list")
        return origin(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if (tp is dict or origin is dict) and isinstance(value, dict):  # a free-form mapping, e.g. model.rope_scaling
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 3e-4 (no dot in the mantissa) as a string
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def cache_root() -> Path:
    """Where genforge caches what it can make again (parsed corpora, rendered audio, trained judges,
    kernels): $GENFORGE_CACHE, or ~/.cache/genforge."""
    return Path(os.environ.get("GENFORGE_CACHE") or Path.home() / ".cache" / "genforge")
