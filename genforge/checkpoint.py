"""Checkpoint directories, and the one way to load a model from one:

    config.json          family, model config, run config, genforge version, step
    model.safetensors    weights (other modules of the objective: NAME.safetensors)
    tokenizer.json       when the model has one
    state/               optimizer-PHASE.safetensors + .json, rng.safetensors, trainer.json
    sha256.json          the sha256 of every other file, checked by verify()

A checkpoint is written into a temporary directory `.NAME.tmp-PID-*`, fsynced, then renamed;
`latest` is a symlink replaced atomically afterwards; a run's start removes the temporaries of
writers that died (clean_stale). Only safetensors are read: pickles are refused.
`load(path)` builds the model config.json describes through the family table and loads its
weights; every verb, the Python API and the server load models through it. Every file it reads
must lie inside the checkpoint directory (symlinks followed), and each weight file is checked
against sha256.json first (bit rot, a copy cut short; config.json and tokenizer.json may be edited
by hand and are checked by parsing them): a file is hashed once, then trusted while its size, mtime and inode stay the same (the
stamps are kept under $GENFORGE_CACHE/verified, default ~/.cache/genforge); verify() always
hashes everything.
"""
from __future__ import annotations

import errno
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

from genforge.config import cache_root, from_dict
from genforge.data.paths import inside
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
         merged: bool = True, trainable: bool = False, verify_files: bool = True) -> Loaded:
    """The model of a checkpoint (or of a run directory's latest), weights loaded: the module that
    samples (a GAN's generator, with its EMA weights where the run kept an EMA), a LoRA checkpoint's
    adapters merged unless merged=False. trainable=True gives the whole model in train mode (what
    a fine-tuning or alignment run starts from). The weight files are checked against sha256.json
    first (cached by size and mtime; verify_files=False skips it). CheckpointError for pickles,
    missing, truncated, corrupted or mismatched files, a file outside the directory, an unknown
    family, a model too large for this machine."""
    path, config, fam = peek(ckpt)
    model = build(config, path)
    if fam.part and not trainable:
        model = getattr(model, fam.part)
        modules = {fam.part: model}
    elif fam.part:  # the whole model: each part from its file
        modules = dict(model.named_children())
    else:
        modules = {"model": model}
    tok = (fam.kind in ("text", "score") or bool(config.get("tokenizer"))) and (path / "tokenizer.json").is_file()
    if verify_files:  # the weights; config.json and tokenizer.json are checked by parsing them
        check_sums(path, [f"{name}.safetensors" for name in modules])
    for name, module in modules.items():
        load_module(module, _inside(path, f"{name}.safetensors"))
    if config.get("lora") and merged:
        from genforge.models.lora import merge

        model = merge(model)
    tokenizer = None
    if tok:
        from genforge.data.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_file(_inside(path, "tokenizer.json"))
    model = model.to(device, dtype) if dtype is not None else model.to(device)
    return Loaded(model.train(trainable), config, tokenizer, path)


def peek(ckpt: str | Path) -> tuple[Path, dict, Family]:
    """(checkpoint directory, config.json, its family's table entry) without building the model:
    what callers read to decide how to load or serve a checkpoint."""
    path = resolve(ckpt)
    config = read_config(path)
    return path, config, family_of(config, path)


def build(config: dict, path: Path) -> nn.Module:
    """The (un-loaded) model config.json describes; a PEFT-wrapped one for LoRA checkpoints.
    CheckpointError for a bad model section or a model whose weights would not fit in this
    machine's memory."""
    fam = family_of(config, path)
    try:
        model_cfg = from_dict(fam.config, config.get("model") or {}, "model")
        check_fits(fam, model_cfg, torch.device("cpu"), bytes_per_param=4, what="load")
        model = fam.build(model_cfg)
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


def parameter_count(fam: Family, model_cfg) -> int | None:
    """Parameters (and buffers) of the model fam builds from model_cfg, counted on the meta
    device, so nothing is allocated; None where the family's builder cannot run there."""
    try:
        with torch.device("meta"):
            model = fam.build(model_cfg)
    except ConfigError:
        raise
    except Exception:  # a builder that needs real tensors: no count, no check
        return None
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def check_fits(fam: Family, model_cfg, device: torch.device, bytes_per_param: int, what: str) -> None:
    """ConfigError when the model's parameters, at bytes_per_param each (4: fp32 weights; 16: also
    gradients and AdamW's two moments), exceed the memory of device (RAM for the CPU): a typo like
    n_embd=10000000 is refused before anything is allocated."""
    total = device_memory(device)
    n = parameter_count(fam, model_cfg) if total else None
    if n is None or n * bytes_per_param <= total:
        return
    raise ConfigError(f"model: {n:.3g} parameters need {_bytes(n * bytes_per_param)} to {what} "
                      f"({bytes_per_param} bytes each), more than the {_bytes(total)} of memory of "
                      f"{'this machine' if device.type == 'cpu' else device}; make the model smaller")


def device_memory(device: torch.device) -> int:
    """Total memory of device in bytes (physical RAM for the CPU); 0 where unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device.index or 0).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, RuntimeError, AssertionError):
        pass
    return 0


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{int(n)} bytes"
        n /= 1000
    return f"{n:.3g} EB"


def verify(ckpt: str | Path) -> Path:
    """Check every file of a checkpoint against its sha256.json, hashing each (no cache);
    CheckpointError naming the first file that is missing, outside the directory or differs.
    Checkpoints written before sha256.json pass unchecked."""
    path = resolve(ckpt)
    check_sums(path, None, cached=False)
    return path


def check_sums(path: Path, names: list[str] | None = None, cached: bool = True) -> None:
    """Check the files `names` of checkpoint directory path (None: all of sha256.json's) against
    sha256.json. With cached, a file whose size, mtime and inode match a stamp left by an earlier
    check is not hashed again. CheckpointError for a file that is missing, unlisted, outside the
    directory or whose sha256 differs; nothing is checked where there is no sha256.json."""
    sums = path / SUMS
    if not sums.is_file():
        return
    want = _read_json(_inside(path, SUMS), dict)
    if not all(isinstance(v, str) for v in want.values()):
        raise CheckpointError(f"{sums}: expected a JSON object of file name -> sha256")
    stamps = _read_stamps(path) if cached else {}
    fresh = {}
    for name in want if names is None else names:
        if name not in want:
            raise CheckpointError(f"{path / name}: not listed in {SUMS} (a file added since the checkpoint was written)")
        file = _inside(path, name)
        if not file.is_file():
            raise CheckpointError(f"{path / name}: missing from the checkpoint")
        stamp = _stamp(file, want[name])
        if stamps.get(name) == stamp:
            fresh[name] = stamp
            continue
        if _sha256(file) != want[name]:
            raise CheckpointError(f"{path / name}: corrupted or truncated: its sha256 differs from the one {SUMS} "
                                  "recorded when it was written; restore it from a copy or train again")
        fresh[name] = stamp
    if any(stamps.get(name) != stamp for name, stamp in fresh.items()):
        _write_stamps(path, {**stamps, **fresh})


def _inside(path: Path, name: str) -> Path:
    """path / name, once it is known to lie inside path after symlinks (CheckpointError if not)."""
    inside(path, name, f"{path}: {name}", CheckpointError)
    return path / name


def _stamp(file: Path, digest: str) -> list:
    st = file.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, digest]


def _stamp_file(path: Path) -> Path:
    root = cache_root() / "verified"
    return root / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")


def _read_stamps(path: Path) -> dict:
    try:
        stamps = json.loads(_stamp_file(path).read_text())
    except (OSError, ValueError):
        return {}
    return stamps.get("files", {}) if isinstance(stamps, dict) and stamps.get("path") == str(path.resolve()) else {}


def _write_stamps(path: Path, stamps: dict) -> None:
    """Remember what was checked (atomically: several processes may load one checkpoint); a cache
    that cannot be written (a read-only home) only costs hashing again next time."""
    file = _stamp_file(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"path": str(path.resolve()), "files": stamps}))
        os.replace(tmp, file)
    except OSError:
        pass


def save_checkpoint(path: Path, config: dict, modules: dict[str, nn.Module], tokenizer: Path | None = None,
                    state: dict[str, dict] | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically; return path.

    `state` maps a file stem under state/ to either tensors (-> .safetensors) or plain JSON data.
    CheckpointError naming the directory and the bytes needed when the disk is full; whatever was
    at `path` before stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        _write(tmp, config, modules, tokenizer, state)
        tmp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            need, free = _size(modules, state), shutil.disk_usage(path.parent).free
            raise CheckpointError(f"{path.parent}: no space left on device to save {path.name} (needs about "
                                  f"{need:,} bytes, {free:,} free); free some space or set train.keep_checkpoints "
                                  "lower") from None
        raise
    return path


def _write(tmp: Path, config: dict, modules: dict, tokenizer: Path | None, state: dict | None) -> None:
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


def _disk_full(e: BaseException) -> bool:
    """ENOSPC (or a quota's EDQUOT), raised by Python or inside safetensors' Rust writer (whose
    SafetensorError carries the OS error only in its message)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, SafetensorError) and ("No space left" in str(e) or "code: 28," in str(e)
                                                or "Disk quota" in str(e))


def _size(modules: dict, state: dict | None) -> int:
    """Bytes of the tensors a checkpoint holds (the JSON beside them is small)."""
    tensors = [t for m in modules.values() for t in (m.state_dict() if isinstance(m, nn.Module) else m).values()]
    tensors += [t for v in (state or {}).values() if isinstance(v, dict) for t in v.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def clean_stale(run_dir: Path) -> list[Path]:
    """Remove the temporary directories (and `latest` links) that writers killed mid-save left in
    run_dir: those whose writer process is gone, or is this process (a restarted container reuses
    its PID, and this process has not begun to save). A live writer's are kept. Returns what went."""
    gone = []
    run_dir = Path(run_dir)
    for tmp in sorted([*run_dir.glob(".step-*.tmp-*"), *run_dir.glob(".latest.tmp-*"), *run_dir.glob(".best.tmp-*")]):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if tmp.is_symlink() or tmp.is_file():
            tmp.unlink(missing_ok=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        gone.append(tmp)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def mark_latest(run_dir: Path, ckpt: Path, name: str = "latest") -> None:
    """Point run_dir/latest (or run_dir/NAME, e.g. best) at ckpt (an atomic symlink swap)."""
    link = run_dir / name
    tmp = run_dir / f".{name}.tmp-{os.getpid()}"
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
        inside(path, "latest", f"{path}: latest", CheckpointError)  # a run's latest names one of its own step-N
        return (path / "latest").resolve()
    raise CheckpointError(f"{path}: not a checkpoint directory (no config.json, and no latest/ checkpoint of a run)")


def read_config(ckpt: Path) -> dict:
    """config.json of checkpoint directory ckpt; CheckpointError unless it is a JSON object."""
    return _read_json(_inside(ckpt, "config.json"), dict, ckpt / "config.json")


def _read_json(file: Path, kind: type, shown: Path | None = None, note: str = ""):
    """The JSON value in file, of type kind; a one-line CheckpointError naming `shown` (default
    file) for a file that is unreadable, not UTF-8, not JSON or holds another type."""
    shown = shown or file
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"{shown}: unreadable ({e.strerror or e.__class__.__name__}){note}") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{shown}: unreadable (not text: invalid UTF-8 at byte {e.start}){note}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{shown}: unreadable (not valid JSON: {e.msg} at line {e.lineno} column {e.colno})"
                              f"{note}") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{shown}: unreadable (expected a JSON {'object' if kind is dict else kind.__name__}, "
                              f"got {type(value).__name__}){note}")
    return value


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
        return load_tensors(_inside(ckpt, f"state/{stem}.safetensors"))
    if js.is_file():
        return _read_json(_inside(ckpt, f"state/{stem}.json"), dict, js, "; this checkpoint cannot resume training")
    raise CheckpointError(f"{ckpt}: state/{stem} missing; this checkpoint cannot resume training")


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step-N checkpoints of a run (never the latest or the best)."""
    ckpts = sorted(run_dir.glob("step-*"), key=lambda p: p.name)
    marked = {(run_dir / name).resolve() for name in ("latest", "best") if (run_dir / name).exists()}
    for old in ckpts[:-keep] if keep > 0 else []:
        if old.resolve() not in marked:
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
