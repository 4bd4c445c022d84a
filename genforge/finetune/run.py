"""`genforge finetune`: a training run of the one loop (genforge/train/loop.py) whose initial
weights come from a checkpoint, with an objective picked by the model and the data:

- decoder LM + text (or a prepared token directory): next-token loss (objectives/lm.py);
- decoder LM + chat jsonl (messages, or prompt/completion): SFT (objectives/sft.py);
- encoder + labelled jsonl (text, label): classification (objectives/classify.py);

and a method that picks what trains: full, lora (PEFT adapters; also saved in PEFT's format
under OUT/adapter), or freeze (the first N blocks and/or the embeddings stay fixed).

Under torchrun it runs data parallel as `genforge train` does (genforge/train/dist.py): each rank
trains on its own slice of every batch, rank 0 writes OUT (the others read what it wrote).
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from genforge import checkpoint as ckpt_io
from genforge import families
from genforge.config import TrainConfig, from_dict, set_dotted
from genforge.device import resolve_device
from genforge.errors import ConfigError, DataError
from genforge.hf import adapters
from genforge.models import lora
from genforge.train import dist as dist_mod
from genforge.train.loop import train


@dataclass
class FinetuneOptions:
    method: Literal["full", "lora", "freeze"] = "full"
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: lora.DEFAULT_TARGETS
    freeze_layers: int = 0  # method=freeze: the first N blocks keep their weights
    freeze_embeddings: bool = False  # method=freeze: token/position embeddings keep theirs
    batch_size: int = 8
    block_size: int | None = None  # decoder rows (None: the model's block_size)
    max_len: int = 128  # encoder inputs are cut to this many tokens
    val_data: str | None = None  # a held-out file; None: val_fraction of the data
    val_fraction: float = 0.1
    pack: bool = True  # SFT: several examples per row, attention kept within each
    chat_template: str | None = None  # SFT: a Jinja file (default: the tokenizer's, else genforge's)
    # a new classifier head reads BERT's pooler on [CLS] (cls: it exports as BertForSequenceClassification)
    # or the mean of the final states (mean: what sentence-embedding encoders such as all-MiniLM were
    # trained to give; exports without its head)
    head_pool: Literal["cls", "mean"] = "cls"

    def __post_init__(self):
        if self.method == "freeze" and not (self.freeze_layers or self.freeze_embeddings):
            raise ConfigError("--method freeze: say what to freeze (--freeze-layers N and/or --freeze-embeddings)")
        if self.batch_size < 1 or self.max_len < 2:
            raise ConfigError(f"--batch-size {self.batch_size} must be >= 1 and --max-len {self.max_len} >= 2")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction {self.val_fraction}: must be in (0, 1)")


# What differs from TrainConfig's defaults for a fine-tuning run (small data, a good start).
TRAIN_DEFAULTS = dict(max_iters=300, lr=1e-4, min_lr=1e-5, warmup_iters=20, eval_interval=100, eval_iters=10,
                      log_interval=10, weight_decay=0.01)


def train_config(overrides: list[str], opts: FinetuneOptions, out: Path) -> TrainConfig:
    """TrainConfig from fine-tuning defaults and `train.key=value` overrides."""
    raw = {"train": {**TRAIN_DEFAULTS, "lr": 1e-3 if opts.method == "lora" else 1e-4, "out_dir": str(out)}}
    for item in overrides:
        if not item.startswith("train."):
            raise ConfigError(f"override {item!r}: finetune takes train.* overrides (e.g. train.lr=3e-5)")
        set_dotted(raw, item)
    return from_dict(TrainConfig, raw["train"], "train")


def finetune(ckpt: str | Path, data: str | Path, out: str | Path, opts: FinetuneOptions | None = None,
             overrides: list[str] = (), resume: bool = False, progress: bool = True) -> Path:
    """Fine-tune the model of checkpoint ckpt on data into run directory out; return the final
    checkpoint. With resume, continue out's latest checkpoint exactly (same arguments)."""
    opts = opts or FinetuneOptions()
    out = Path(out)
    cfg = train_config(list(overrides), opts, out)
    dist, device = dist_mod.init(resolve_device(cfg.device))  # under torchrun: one process per device
    loaded = ckpt_io.load(ckpt, trainable=True)
    model, base_config, base = loaded.model, loaded.config, loaded.path
    torch.manual_seed(cfg.seed)  # a fresh head and LoRA's A follow train.seed (the same on every rank)
    tok_dir = out / "tokenizer"
    if dist.main:  # rank 0 first: it copies the tokenizer (and tokenizes raw text into OUT/data) ...
        _copy_tokenizer(base, tok_dir)
    else:
        dist_mod.barrier(dist)
    task = _task(model, base_config["family"], base, Path(data), tok_dir, out, opts, cfg, device, dist)
    if dist.main:  # ... then the other ranks read what it wrote
        dist_mod.barrier(dist)
    model, settings = _apply_method(task, opts)
    objective = task.objective(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    task.extra.update(trainable_params=trainable, total_params=sum(p.numel() for p in model.parameters()))
    config = {"family": base_config["family"], "model": dataclasses.asdict(task.model.config), "tokenizer": "tokenizer.json",
              "finetune": {**dataclasses.asdict(opts), "base": str(Path(base).resolve()),
                           "data": str(Path(data).resolve()), "task": task.name,
                           **task.extra}, "run": {"train": dataclasses.asdict(cfg)}}
    if settings:
        config["lora"] = settings
    if task.data is not None:  # absolute, so `genforge eval RUN` finds it from any directory
        config["data"] = {"path": str(Path(task.data).resolve())}
    final = train(objective, task.batches, cfg, out, resume=resume, config=config, tokenizer=tok_dir / "tokenizer.json",
                  progress=progress)
    if settings and dist.main:
        adapters.save_adapter(model, out / "adapter", settings)  # a GPT's in its exported HF model's names
    return final


def _task(model, family: str, base: Path, data: Path, tok_dir: Path, out: Path, opts, cfg, device, dist):
    """The fine-tuning task the family table names for the checkpoint's family (Family.finetune)."""
    ref = families.family(family).finetune
    if not ref:
        raise ConfigError(f"{base / 'config.json'}: family {family!r} cannot be fine-tuned yet")
    return families.resolve(ref)(model, data, tok_dir, out, opts, cfg, device, dist)


def _apply_method(task, opts: FinetuneOptions) -> tuple[nn.Module, dict | None]:
    """(the model to train, the LoRA settings or None): frozen layers, or PEFT adapters around it."""
    if opts.method == "freeze":
        freeze(task.model, opts.freeze_layers, opts.freeze_embeddings)
    if opts.method != "lora":
        return task.model, None
    settings = lora.lora_settings(opts.lora_r, opts.lora_alpha, opts.lora_dropout, opts.target_modules,
                                  (["pooler", "head"] if opts.head_pool == "cls" else ["head"]) if task.name == "classify"
                                  else None)
    return lora.wrap(task.model, settings), settings


def freeze(model: nn.Module, n_layers: int, embeddings: bool) -> None:
    """Stop gradients to the first n_layers blocks and, with embeddings, to the input embeddings
    (for a GPT-2 with tied embeddings that includes the output layer)."""
    blocks = model.transformer.h if hasattr(model, "transformer") else model.h
    if n_layers > len(blocks):
        raise ConfigError(f"--freeze-layers {n_layers}: the model has only {len(blocks)} blocks")
    frozen = [*blocks[:n_layers]]
    if embeddings:
        frozen += [m for name, m in (model.transformer if hasattr(model, "transformer") else model.embeddings).items()
                   if name in ("wte", "wpe", "wtt", "ln")]
    for m in frozen:
        m.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("--freeze-layers/--freeze-embeddings: nothing is left to train")


def _copy_tokenizer(base: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not (base / "tokenizer.json").is_file():
        raise DataError(f"{base}: tokenizer missing (no tokenizer.json): fine-tuning needs the model's tokenizer")
    shutil.copyfile(base / "tokenizer.json", folder / "tokenizer.json")
    if (base / "tokenizer_config.json").is_file():
        shutil.copyfile(base / "tokenizer_config.json", folder / "tokenizer_config.json")
