"""`genforge import hf` / `genforge export hf`: Hugging Face checkpoint directories to genforge
checkpoints and back. Architectures: GPT2LMHeadModel and LlamaForCausalLM (family gpt),
BertModel and BertForSequenceClassification (family encoder; the classifier with its head). Weights are read only from safetensors (single or sharded)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from genforge import checkpoint as ckpt_io
from genforge.errors import CheckpointError
from genforge.families import hf_family
from genforge.hf.tokenizer import load_tokenizer
from genforge.version import __version__

DECODERS = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}
ENCODERS = {"BertModel": "bert", "BertForMaskedLM": "bert", "BertForPreTraining": "bert",
            "BertForSequenceClassification": "bert"}
SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def read_hf_dir(folder: str | Path, n_labels: int = 0):
    """(genforge model, tokenizers.Tokenizer, config.json dict) of an HF checkpoint directory.

    Raises CheckpointError naming the file for: no config.json, an unsupported architecture,
    pickle-only weights, missing shards, weights that do not fit the config, no tokenizer.json.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json", what="not a Hugging Face checkpoint directory")
    arch = (config.get("architectures") or [None])[0]
    kind = config.get("model_type")
    found = hf_family(kind)
    if (arch not in DECODERS and arch not in ENCODERS and arch is not None) or found is None:
        raise CheckpointError(f"{folder / 'config.json'}: architecture {arch!r} (model_type {kind!r}) is not supported; "
                              f"expected one of {', '.join([*DECODERS, *ENCODERS])}")
    state = read_weights(folder)
    tok = load_tokenizer(folder)
    try:
        model = found[1].hf.from_hf(config, _check_shapes(config, state, folder), n_labels=n_labels)
    except KeyError as e:
        raise CheckpointError(f"{folder}: {e.args[0]!r} missing from config.json or the weights") from None
    except RuntimeError as e:  # load_state_dict: a tensor whose shape does not fit the config
        raise CheckpointError(f"{folder}: shape mismatch between the weights and config.json "
                              f"({str(e).splitlines()[-1].strip()})") from None
    return model, tok, config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, or of the shards model.safetensors.index.json lists."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return ckpt_io.load_tensors(single)
    if index.is_file():
        weight_map = _read_json(index, what="unreadable shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: expected a non-empty \"weight_map\" of tensor name -> shard file")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise CheckpointError(f"{folder / shard}: shard listed in {index.name} is missing")
            state.update(ckpt_io.load_tensors(folder / shard))
        missing = sorted(set(weight_map) - set(state))
        if missing:
            raise CheckpointError(f"{index}: tensors {missing[:3]} are in the index but in none of the shards")
        return state
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    if pickles:
        raise CheckpointError(f"{folder}: only PyTorch pickle weights ({pickles[0]}); genforge reads safetensors "
                              "(re-save with model.save_pretrained(DIR, safe_serialization=True))")
    raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def import_hf(source: str | Path, out: str | Path) -> Path:
    """Write the genforge checkpoint of an HF directory (or hub repo id) at out; return out."""
    folder = resolve_source(source)
    model, tok, hf_config = read_hf_dir(folder)
    family = hf_family(hf_config.get("model_type"))[0]
    config = {"genforge_version": __version__, "family": family, "model": dataclasses.asdict(model.config),
              "tokenizer": "tokenizer.json", "hf": {"source": str(source), "architecture": _architecture(hf_config)},
              "step": 0}
    if getattr(model.config, "n_labels", 0) and isinstance(hf_config.get("id2label"), dict):  # a classifier's names
        names = {int(i): name for i, name in hf_config["id2label"].items()}
        config["hf"]["labels"] = [names.get(i, f"LABEL_{i}") for i in range(model.config.n_labels)]
    with tempfile.TemporaryDirectory() as tmp:
        tok_file = folder / "tokenizer.json"  # the file itself, byte for byte; else the one built from vocab.txt
        if not tok_file.is_file():
            tok_file = Path(tmp) / "tokenizer.json"
            tok.save(str(tok_file))
        out = ckpt_io.save_checkpoint(Path(out), config, {"model": model}, tok_file)
    for name in SIDE_FILES:  # the chat template, special tokens, generation defaults travel along
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    return out


def export_hf(ckpt: str | Path, out: str | Path, max_shard_bytes: int | None = None) -> Path:
    """Write the HF directory of a genforge checkpoint at out (atomically); return out."""

    loaded = ckpt_io.load(ckpt, trainable=True)
    model, config, path = loaded.model, loaded.config, loaded.path
    if loaded.family.hf is None:
        raise CheckpointError(f"{path / 'config.json'}: family {config['family']!r} has no Hugging Face layout")
    hf_config, state = loaded.family.hf.to_hf(model)
    labels = (config.get("finetune") or {}).get("labels") or (config.get("hf") or {}).get("labels")
    if "id2label" in hf_config and labels and len(labels) == len(hf_config["id2label"]):  # the classes by name
        hf_config.update(id2label={i: str(n) for i, n in enumerate(labels)}, label2id={str(n): i for i, n in enumerate(labels)})
    if getattr(model.config, "tie_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the input embedding; safetensors refuses shared memory
    hf_config.update(torch_dtype="float32", transformers_version=_transformers_version())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_weights(tmp, {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, max_shard_bytes)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2))
        _write_tokenizer_files(path, tmp, loaded.family.kind)
        # mkdtemp makes the directory 0700 and safetensors writes its files 0600: readable like the rest
        for f in tmp.iterdir():
            if f.is_file():
                f.chmod(0o644)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_source(source: str | Path) -> Path:
    """A local directory as is; otherwise a hub repo id, downloaded (CheckpointError offline)."""
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: expected a Hugging Face checkpoint directory, got a file")
        return path
    if str(source).count("/") != 1 or str(source).startswith((".", "/")):
        raise CheckpointError(f"{source}: no such directory (and not a hub repo id like org/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors", "*.jinja"]))
    except Exception as e:  # offline, unknown repo, gated...: all mean "give me a local directory"
        raise CheckpointError(f"{source}: not a local directory, and downloading it from the Hugging Face hub failed "
                              f"({e.__class__.__name__}); pass a local checkpoint directory") from None


def _write_weights(folder: Path, state: dict[str, torch.Tensor], max_shard_bytes: int | None) -> None:
    total = sum(v.numel() * v.element_size() for v in state.values())
    if not max_shard_bytes or total <= max_shard_bytes:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_tokenizer_files(ckpt: Path, folder: Path, kind: str) -> None:
    if not (ckpt / "tokenizer.json").is_file():
        raise CheckpointError(f"{ckpt}: tokenizer missing (no tokenizer.json to export)")
    shutil.copyfile(ckpt / "tokenizer.json", folder / "tokenizer.json")
    for name in SIDE_FILES:
        if (ckpt / name).is_file():
            shutil.copyfile(ckpt / name, folder / name)
    if kind == "text" and not (folder / "tokenizer_config.json").is_file():  # a decoder's generation settings
        from genforge.data.tokenizer import EOT, Tokenizer

        tok = Tokenizer.from_file(folder / "tokenizer.json")
        eos = EOT if tok.eot_id is not None else None
        tc = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "bos_token": eos, "unk_token": eos,
              "model_max_length": 1_000_000}
        (folder / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))
    if kind == "text" and not (folder / "generation_config.json").is_file():
        from genforge.data.tokenizer import Tokenizer

        eot = Tokenizer.from_file(folder / "tokenizer.json").eot_id
        (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": eot, "eos_token_id": eot}, indent=2))


def _check_shapes(config: dict, state: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """The embedding must match the config's vocabulary and width: say so before building."""
    for key in ("transformer.wte.weight", "wte.weight", "model.embed_tokens.weight"):
        if key in state:
            width = config.get("n_embd") or config.get("hidden_size")
            if tuple(state[key].shape) != (config.get("vocab_size"), width):
                raise CheckpointError(f"{folder}: shape mismatch: {key} is {tuple(state[key].shape)}, config.json says "
                                      f"vocab_size={config.get('vocab_size')} x hidden {width}")
    return state


def _read_json(file: Path, what: str) -> dict:
    if not file.is_file():
        raise CheckpointError(f"{file.parent}: {what} (no {file.name})")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def _architecture(hf_config: dict) -> str:
    return (hf_config.get("architectures") or [{"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}.get(
        hf_config.get("model_type"), "BertModel")])[0]


def _transformers_version() -> str:
    try:
        import transformers

        return transformers.__version__
    except ImportError:
        return "4.40.0"
