"""What a fine-tuning run trains on: the model (with a head where the task needs one), the
batches, the objective. One builder per kind of task."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from genforge.errors import ConfigError, DataError


@dataclass
class Task:
    name: str  # lm | sft | classify
    model: nn.Module
    batches: object
    objective: Callable[[nn.Module], object]
    extra: dict = field(default_factory=dict)  # recorded in config.json's "finetune"
    data: Path | None = None  # prepared token data (lm): config.json's data.path, what `genforge eval` reads


def classify_task(model, data: Path, tok_dir: Path, out: Path, opts, cfg, device, dist) -> Task:
    """An encoder with a K-way head on labelled jsonl (text, label); dist: this rank (train/dist.py)."""
    from genforge.finetune.classify_data import ClassifyBatches, label_names, read_labelled
    from genforge.hf.tokenizer import load_tokenizer
    from genforge.objectives.classify import ClassifyObjective

    texts, labels = read_labelled(data)
    names = label_names(labels)
    if opts.val_data:
        val_texts, val_labels = read_labelled(Path(opts.val_data))
        train_idx = range(len(texts))
    else:
        train_idx, val_idx = split(len(texts), opts.val_fraction, cfg.seed)
        val_texts, val_labels = [texts[i] for i in val_idx], [labels[i] for i in val_idx]
    unknown = sorted({str(v) for v in val_labels} - {str(v) for v in names})
    if unknown:
        raise DataError(f"{opts.val_data or data}: validation labels {unknown[:3]} never occur in the training data")
    index = {v: i for i, v in enumerate(names)}
    train = ([texts[i] for i in train_idx], [index[labels[i]] for i in train_idx])
    val = (val_texts, [index[v] for v in val_labels])
    model = with_head(model, len(names), opts.head_pool)
    if model.config.head_pool == "mean" and model.pooler is not None:
        model.pooler.requires_grad_(False)  # that head never reads it (and DDP wants every trained weight used)
    batches = ClassifyBatches(load_tokenizer(tok_dir), train, val, opts.batch_size,
                              min(opts.max_len, model.config.block_size), cfg.seed, device, model.config.pad_id,
                              dist.rank, dist.world)
    return Task("classify", model, batches, ClassifyObjective, {"labels": names})


def with_head(model, n_labels: int, pool: str = "cls"):
    """The encoder with an n_labels head: its own if it has one that size, else a new one on
    BERT's pooler (pool=cls: the layout of BertForSequenceClassification, so the classifier
    exports whole; an encoder without a pooler gets a fresh one) or on the mean of the final
    states (pool=mean)."""
    from genforge.models.encoder import Encoder

    have = model.config.n_labels
    if have == n_labels:
        return model
    if have:
        raise ConfigError(f"the checkpoint's head has {have} labels but the data has {n_labels}")
    pooler = model.config.pooler or pool == "cls"
    new = Encoder(dataclasses.replace(model.config, n_labels=n_labels, pooler=pooler, head_pool=pool))
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("head.", "pooler.")) for k in missing), (missing, unexpected)
    return new


def decoder_task(model, data: Path, tok_dir: Path, out: Path, opts, cfg, device, dist) -> Task:
    """A decoder LM on chat jsonl (SFT) or on text / prepared tokens (next-token loss); dist: this
    rank (train/dist.py)."""
    from genforge.data.tokenizer import Tokenizer
    from genforge.finetune.sft_data import is_chat_jsonl

    block = min(opts.block_size or model.config.block_size, model.config.block_size)
    if is_chat_jsonl(data):
        return _sft_task(model, data, tok_dir, block, opts, cfg, device, dist)
    from genforge.data.batches import TokenBatches
    from genforge.data.shards import TokenData
    from genforge.objectives.lm import LMObjective

    if not data.exists():
        raise DataError(f"{data}: no such file or directory")
    if not (data / "manifest.json").is_file():  # raw text: tokenize it with the model's own tokenizer
        from genforge.data.prepare import prepare

        prepared = out / "data"
        if not (prepared / "manifest.json").is_file():
            field = "text" if data.suffix in (".jsonl", ".parquet") else None  # TRL's plain-text field
            prepare(str(data), "char", prepared, field=field, tokenizer_file=tok_dir / "tokenizer.json")
        data = prepared
    tokens = TokenData(data)
    tok = Tokenizer.from_file(tok_dir / "tokenizer.json")
    if tokens.vocab_size > model.config.vocab_size or tokens.vocab_size != tok.vocab_size:
        raise DataError(f"{data}: its tokenizer ({tokens.vocab_size} tokens) is not the model's "
                        f"({tok.vocab_size} tokens); prepare it with --tokenizer-file CKPT/tokenizer.json")
    batches = TokenBatches(tokens, opts.batch_size, block, cfg.seed, device, dist.rank, dist.world)
    return Task("lm", model, batches, LMObjective, {"block_size": block}, data=tokens.path)


def _sft_task(model, data: Path, tok_dir: Path, block: int, opts, cfg, device, dist) -> Task:
    import numpy as np

    from genforge.data.tokenizer import Tokenizer
    from genforge.finetune.sft_data import SFTBatches, pack, read_examples
    from genforge.finetune.template import load_bos, load_template, save_template
    from genforge.objectives.sft import SFTObjective

    template, eos = load_template(tok_dir)
    bos = load_bos(tok_dir)
    if opts.chat_template:
        path = Path(opts.chat_template)
        if not path.is_file():
            raise DataError(f"--chat-template {path}: no such file")
        template = path.read_text()
    tok = Tokenizer.from_file(tok_dir / "tokenizer.json")
    if tok.tok.token_to_id(eos) is None:
        raise DataError(f"{tok_dir / 'tokenizer.json'}: the end-of-turn token {eos!r} is not in the vocabulary")
    save_template(tok_dir, template, eos)  # the checkpoint keeps the template its replies were trained in
    examples = read_examples(data, tok, template, eos, bos)
    if opts.val_data:
        val = read_examples(Path(opts.val_data), tok, template, eos, bos)
    else:
        train_idx, val_idx = split(len(examples), opts.val_fraction, cfg.seed)
        examples, val = [examples[i] for i in train_idx], [examples[i] for i in val_idx]
    X, Y, D, cut = pack(examples, block, opts.pack)
    if cut:
        print(f"{data}: {cut} examples longer than block_size={block} tokens were cut short", flush=True)
    vX, vY, vD, _ = pack(val, block, opts.pack)
    if not (Y != -100).any():
        raise DataError(f"{data}: no trained tokens (every reply was cut off by block_size={block})")
    batches = SFTBatches((X, Y, D), (vX, vY, vD), opts.batch_size, cfg.seed, device, dist.rank, dist.world)
    return Task("sft", model, batches, SFTObjective, {"block_size": block, "rows": len(X),
                                                         "trained_tokens": int(np.sum(Y != -100))})


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of n examples: a seeded shuffle, the last `fraction` (at least 1) held out."""
    if n < 2:
        raise DataError(f"need at least 2 examples to hold some out for validation, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, round(n * fraction))
    return order[:-k], order[-k:]
