"""Checkpoint directories, and the one way to load a model from one:

    config.json          family, model config, run config, genforge version, step
    model.safetensors    weights (other modules of the objective: NAME.safetensors)
    tokenizer.json       when the model has one
    state/               optimizer-PHASE.safetensors + .json, rng.safetensors, trainer.json
    sha256.json          the sha256 of every other file, checked by verify()

A checkpoint is written into a temporary directory, fsynced, then renamed; `latest` is a
symlink replaced atomically afterwards. Only safetensors are read: pickles are refused.
`load(path)` builds the model config.json describes through the family table and loads its
weights; every verb, the Python API and the server load models through it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from genforge.config import from_dict
from genforge.errors import CheckpointError, ConfigError
from genforge.families import Family, family

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
SUMS = "sha256.json"


@dataclass
class Loaded:
    """What load() gives: the model in eval mode, config.json, the tokenizer (a text or score
    family's genforge Tokenizer, else None) and the checkpoint directory."""
    model: nn.Module
    config: dict
    tokenizer: object | None
    path: Path

    @property
    def family(self) -> Family:
        return family(self.config.get("family"))


def load(ckpt: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
         merged: bool = True, trainable: bool = False, verify_files: bool = False) -> Loaded:
    """The model of a checkpoint (or of a run directory's latest), weights loaded: the module that
    samples (a GAN's generator, with its EMA weights where the run kept an EMA), a LoRA checkpoint's
    adapters merged unless merged=False. trainable=True gives the whole model in train mode (what
    a fine-tuning or alignment run starts from). CheckpointError for pickles, missing, truncated
    or mismatched files, an unknown family."""
    if verify_files:
        verify(ckpt)
    path, config, fam = peek(ckpt)
    model = build(config, path)
    if fam.part and not trainable:
        model = getattr(model, fam.part)
        load_module(model, path / f"{fam.part}.safetensors")
    elif fam.part:  # the whole model: each part from its file
        for name, module in model.named_children():
            load_module(module, path / f"{name}.safetensors")
    else:
        load_module(model, path / "model.safetensors")
    if config.get("lora") and merged:
        from genforge.models.lora import merge

        model = merge(model)
    tokenizer = None
    if fam.kind in ("text", "score") and (path / "tokenizer.json").is_file():
        from genforge.data.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_file(path / "tokenizer.json")
    model = model.to(device, dtype) if dtype is not None else model.to(device)
    return Loaded(model.train(trainable), config, tokenizer, path)


def peek(ckpt: str | Path) -> tuple[Path, dict, Family]:
    """(checkpoint directory, config.json, its family's table entry) without building the model:
    what callers read to decide how to load or serve a checkpoint."""
    path = resolve(ckpt)
    config = read_config(path)
    return path, config, family_of(config, path)


def build(config: dict, path: Path) -> nn.Module:
    """The (un-loaded) model config.json describes; a PEFT-wrapped one for LoRA checkpoints."""
    fam = family_of(config, path)
    try:
        model = fam.build(from_dict(fam.config, config.get("model") or {}, "model"))
    except ConfigError as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    if config.get("lora"):
        from genforge.models.lora import wrap

        model = wrap(model, config["lora"])
    return model


def family_of(config: dict, path: Path) -> Family:
    try:
        return family(config.get("family"))
    except ConfigError as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None


def verify(ckpt: str | Path) -> Path:
    """Check every file of a checkpoint against its sha256.json; CheckpointError naming the first
    file that is missing or differs. Checkpoints written before sha256.json pass unchecked."""
    path = resolve(ckpt)
    if not (path / SUMS).is_file():
        return path
    want = json.loads((path / SUMS).read_text())
    for name, digest in want.items():
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing from the checkpoint")
        if _sha256(path / name) != digest:
            raise CheckpointError(f"{path / name}: sha256 differs from {SUMS} (corrupted or changed since it was written)")
    return path


def save_checkpoint(path: Path, config: dict, modules: dict[str, nn.Module], tokenizer: Path | None = None,
                    state: dict[str, dict] | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically; return path.

    `state` maps a file stem under state/ to either tensors (-> .safetensors) or plain JSON data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        for name, module in modules.items():  # a module, or its whole state_dict (gathered FSDP shards)
            if isinstance(module, nn.Module):
                save_model(module, str(tmp / f"{name}.safetensors"))
            else:
                save_file(_unshared(module), str(tmp / f"{name}.safetensors"))
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / "tokenizer.json")
            side = Path(tokenizer).with_name("tokenizer_config.json")  # HF layout: chat template, special tokens
            if side.is_file():
                shutil.copyfile(side, tmp / "tokenizer_config.json")
        if state:
            (tmp / "state").mkdir()
            for stem, value in state.items():
                if value and all(isinstance(v, torch.Tensor) for v in value.values()):
                    save_file(_unshared(value), str(tmp / "state" / f"{stem}.safetensors"))
                else:
                    (tmp / "state" / f"{stem}.json").write_text(json.dumps(value))
        (tmp / SUMS).write_text(json.dumps(_sums(tmp), indent=1))
        _fsync_tree(tmp)
        tmp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def mark_latest(run_dir: Path, ckpt: Path) -> None:
    """Point run_dir/latest at ckpt (an atomic symlink swap)."""
    link = run_dir / "latest"
    tmp = run_dir / f".latest.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(ckpt.name)
    os.replace(tmp, link)


def resolve(path: str | Path) -> Path:
    """The checkpoint directory that `path` names: the directory itself, or a run's latest.

    Raises CheckpointError for a missing path, a pickle file, or a directory with no checkpoint.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES or _looks_pickled(path):
            raise CheckpointError(f"{path}: a PyTorch pickle file; genforge loads only safetensors checkpoint "
                                  "directories (unpickling can run arbitrary code)")
        raise CheckpointError(f"{path}: expected a checkpoint directory (with config.json and model.safetensors)")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if (path / "config.json").is_file():
        return path
    if (path / "latest" / "config.json").is_file():
        return (path / "latest").resolve()
    raise CheckpointError(f"{path}: not a checkpoint directory (no config.json, and no latest/ checkpoint of a run)")


def read_config(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / 'config.json'}: unreadable ({e.__class__.__name__}: {e})") from None


def load_module(module: nn.Module, file: Path) -> None:
    """Load safetensors weights into module, strictly; CheckpointError if corrupt or mismatched."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing from the checkpoint")
    try:
        missing, unexpected = load_model(module, str(file), strict=False)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file}: corrupted or truncated safetensors file ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:  # shape mismatch
        raise CheckpointError(f"{file}: weights do not fit the model in config.json ({str(e).splitlines()[-1].strip()})") from None
    aliases = module.state_dict(keep_vars=True)  # tied weights may be saved under both of their names
    unexpected = [k for k in unexpected if k not in aliases]
    if missing or unexpected:
        raise CheckpointError(f"{file}: weights do not match config.json (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: corrupted or truncated safetensors file ({str(e).splitlines()[0]})") from None


def load_state(ckpt: Path, stem: str):
    """A state/ entry saved by save_checkpoint: tensors or JSON data."""
    st, js = ckpt / "state" / f"{stem}.safetensors", ckpt / "state" / f"{stem}.json"
    if st.is_file():
        return load_tensors(st)
    if js.is_file():
        return json.loads(js.read_text())
    raise CheckpointError(f"{ckpt}: state/{stem} missing; this checkpoint cannot resume training")


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step-N checkpoints of a run (never the latest)."""
    ckpts = sorted(run_dir.glob("step-*"), key=lambda p: p.name)
    latest = (run_dir / "latest").resolve() if (run_dir / "latest").exists() else None
    for old in ckpts[:-keep] if keep > 0 else []:
        if old.resolve() != latest:
            shutil.rmtree(old, ignore_errors=True)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors ready for save_file: on CPU, contiguous, and a tensor sharing memory with an earlier
    one (tied weights in a raw state_dict) cloned, since safetensors refuses shared memory."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _sums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"\x80") or head.startswith(b"PK\x03\x04")  # pickle protocol 2+, torch zip


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
