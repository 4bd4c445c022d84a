"""Language-model evaluation: mean cross-entropy (nats/token), perplexity, and bits per character
(char tokenizer) or per byte (BPE), so models with different tokenizers compare fairly."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from genforge.errors import DataError


def evaluate_tokens(model, ids: np.ndarray, batch_size: int = 16, max_windows: int | None = None) -> tuple[float, int]:
    """(total nats, tokens scored) over `ids` cut into non-overlapping windows of block_size + 1.

    Every token after the first of each window is scored once, with the window's earlier tokens
    as its context.
    """
    T = model.config.block_size
    n_windows = (len(ids) - 1) // T
    if n_windows == 0:
        raise DataError(f"need more than block_size={T} tokens to evaluate, got {len(ids)}")
    if max_windows:
        n_windows = min(n_windows, max_windows)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, n_windows, batch_size):
            rows = [ids[i * T:i * T + T + 1] for i in range(start, min(start + batch_size, n_windows))]
            block = torch.from_numpy(np.stack(rows).astype(np.int64)).to(device)
            logits, _ = model(block[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), block[:, 1:].flatten(), reduction="sum")
            total += loss.item()
            count += block[:, 1:].numel()
    return total, count


def report(total_nats: float, tokens: int, units: int, unit: str) -> dict[str, float]:
    """loss, perplexity and bits per `unit` (char or byte) given `units` of scored text."""
    loss = total_nats / tokens
    return {"loss": loss, "perplexity": math.exp(loss), f"bits_per_{unit}": total_nats / math.log(2) / units,
            "tokens": tokens}


def evaluate_checkpoint(ckpt, data: str | None = None, file: str | None = None, split: str = "val",
                        device: str = "auto", errors: str = "strict", max_windows: int | None = None) -> dict:
    """Evaluate a language-model checkpoint on a prepared split (default: the data it was trained
    on) or on a text file; returns loss, perplexity, bits per char/byte, tokens."""
    from pathlib import Path

    from genforge import checkpoint as ckpt_io
    from genforge.data.readers import read_text
    from genforge.data.shards import TokenData
    from genforge.device import resolve_device

    lm = ckpt_io.load(ckpt, resolve_device(device))
    tok = lm.tokenizer
    if lm.family.kind != "text" or tok is None:
        raise DataError(f"{lm.path}: a {lm.config.get('family')} checkpoint is not a language model with a tokenizer")
    unit = "char" if tok.kind == "char" else "byte"
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise DataError(f"{file}: no such file")
        try:
            # the tokenizer's BOS first where its config adds one, as the text was seen in training
            ids = np.array(tok.bos_ids + tok.encode(read_text(path, errors)), dtype=np.int64)
        except DataError as e:
            raise DataError(f"{file}: {e}") from None
        shards, source = [ids], str(file)
    else:
        data = data or ckpt_data_path(lm)
        td = TokenData(data)
        if td.vocab_size != tok.vocab_size:
            raise DataError(f"{data}: vocab_size {td.vocab_size} does not match the checkpoint's tokenizer "
                            f"({tok.vocab_size} tokens); evaluate on data prepared with its tokenizer.json")
        shards, source = td.split(split), f"{data} [{split}]"
    total, count, units = 0.0, 0, 0
    for ids in shards:
        if len(ids) <= lm.model.config.block_size:
            continue
        nats, n = evaluate_tokens(lm.model, ids, max_windows=max_windows)
        specials = {tok.eot_id, *tok.bos_ids}  # scored, but no text of their own
        text = tok.decode(int(i) for i in ids[1:n + 1] if i not in specials)
        total, count, units = total + nats, count + n, units + (len(text) if unit == "char" else len(text.encode()))
    if count == 0:
        raise DataError(f"{source}: fewer tokens than block_size={lm.model.config.block_size}; nothing to evaluate")
    return {"source": source, **report(total, count, units, unit)}


def ckpt_data_path(lm) -> str:
    """The prepared data directory a checkpoint trained on. config.json records it absolute; a
    relative path (older checkpoints: relative to where training ran) is tried as given, beside
    the checkpoint, and below the directory training ran in (found from train.out_dir).
    DataError naming every path tried when none holds a manifest.json."""
    from pathlib import Path

    recorded = (lm.config.get("data") or {}).get("path")
    if not recorded:
        raise DataError(f"{lm.path}: the checkpoint does not record its data; pass --data DIR or --file F")
    tried, ckpt = [Path(recorded)], Path(lm.path).resolve()
    if not tried[0].is_absolute():
        tried.append(ckpt / recorded)
        cwd = _training_dir(ckpt, ((lm.config.get("run") or {}).get("train") or {}).get("out_dir"))
        if cwd is not None:
            tried.append(cwd / recorded)
    for path in tried:
        if (path / "manifest.json").is_file():
            return str(path)
    where = ", ".join(str(p.absolute()) for p in dict.fromkeys(tried))
    raise DataError(f"{lm.path}: the data it trained on (data.path={recorded}) is not at {where}; "
                    "pass --data DIR (a directory made by `genforge prepare`) or --file F")


def _training_dir(ckpt, out_dir: str | None):
    """The working directory of the run that wrote ckpt (an absolute OUT_DIR/step-N), or None."""
    from pathlib import Path

    if not out_dir or Path(out_dir).is_absolute():
        return None
    parts = len(Path(out_dir).parts)
    run_dir = ckpt.parent
    if len(run_dir.parts) > parts and run_dir.parts[-parts:] == Path(out_dir).parts:
        return Path(*run_dir.parts[:-parts])
    return None
