"""Where an alignment run's rewards come from: a reward checkpoint trained from the policy (its
tokenizer checked against the policy's), or a user's Python function (prompt, completion) ->
float, named FILE.py:FUNCTION or MODULE:FUNCTION (`genforge align --rule`, `ppo.reward`)."""
from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from torch import nn

from genforge import checkpoint as ckpt_io
from genforge.errors import CheckpointError, ConfigError, DataError

Rule = Callable[[str, str], float]  # (prompt, completion) -> score; higher is better


def load_rule(spec: str, key: str = "--rule") -> Rule:
    """`path/to/file.py:function` or `package.module:function` -> the function; ConfigError naming
    `key` when there is no such file, module or function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"{key} {spec!r}: expected FILE.py:FUNCTION or MODULE:FUNCTION")
    if target.endswith(".py"):
        if not Path(target).is_file():
            raise ConfigError(f"{key} {spec!r}: {target} not found")
        module_spec = importlib.util.spec_from_file_location("genforge_user_rule", target)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{key} {spec!r}: no module {e.name!r}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{key} {spec!r}: {target} has no function {name!r}")
    return fn


def check_same_tokenizer(policy_dir: Path, reward_dir: Path) -> None:
    """DataError unless both checkpoints read text with the same vocabulary: the reward model
    scores the policy's token ids as they are."""
    def vocab(d: Path) -> dict:
        f = d / "tokenizer.json"
        if not f.is_file():
            raise DataError(f"{d}: tokenizer.json missing")
        return json.loads(f.read_text(encoding="utf-8"))["model"].get("vocab") or {}

    a, b = vocab(policy_dir), vocab(reward_dir)
    if a != b:
        raise DataError(f"tokenizer mismatch: the reward model {reward_dir} reads {len(b)} tokens, the policy "
                        f"{policy_dir} {len(a)} other ones; train the reward model from this policy "
                        f"(model.base={policy_dir})")


def load_reward(path: str | Path, policy_dir: Path) -> tuple[nn.Module, Path]:
    """(reward model of checkpoint path, its directory), checked against the policy's tokenizer."""
    loaded = ckpt_io.load(path, trainable=True)
    model, config, rdir = loaded.model, loaded.config, loaded.path
    if config.get("family") != "reward":
        raise CheckpointError(f"{rdir}: family {config.get('family')!r}, expected a reward model (family reward)")
    check_same_tokenizer(policy_dir, rdir)
    return model, rdir


def reward_of(spec: str, policy_dir: Path, key: str) -> tuple[nn.Module | Rule, str]:
    """(the frozen reward model or the function spec names, where it came from): a checkpoint
    path or run directory that exists, else FILE.py:FUNCTION / MODULE:FUNCTION."""
    if not spec:
        raise ConfigError(f"{key}: required (a reward checkpoint trained from the base, or FILE.py:FUNCTION)")
    if Path(spec).exists():
        model, rdir = load_reward(spec, policy_dir)
        return model.eval().requires_grad_(False), str(rdir)
    return load_rule(spec, key), spec
