"""Run configs read against the family table: a YAML file or a named recipe shipped with
genforge (genforge/recipes/, e.g. `lm/shakespeare_char`), then dotted `key=value` overrides.

The sections are `family`, `model` (the family's model config), `data`, `train`, and for another
way to train the family `method: NAME` with its settings under a section of that name
(`method: dpo` + `dpo: {base: ..., beta: 0.1}`), whose data config replaces the family's.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from genforge.config import RunConfig, TrainConfig, check_keys, from_dict, set_dotted
from genforge.errors import ConfigError
from genforge.families import family, resolve

RECIPES = Path(__file__).resolve().parent / "recipes"


def recipe_names() -> list[str]:
    """The named recipes shipped with genforge ("lm/shakespeare_char", ...)."""
    return sorted(str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.rglob("*.yaml"))


def find_config(spec: str | Path) -> Path:
    """The YAML file spec names: a path, or a named recipe (with or without .yaml)."""
    path = Path(spec)
    if path.is_file():
        return path
    named = RECIPES / (path if path.suffix == ".yaml" else path.with_suffix(".yaml"))
    if not path.is_absolute() and named.is_file():
        return named
    raise ConfigError(f"{spec}: no such config file or named recipe (recipes: {', '.join(recipe_names())})")


def load_config(spec: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML file or named recipe of overrides (or none), apply `key=value` overrides, build
    a RunConfig. Raises ConfigError naming the key for unknown keys, wrong types and invalid values."""
    raw: dict = {}
    if spec is not None:
        path = find_config(spec)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}: {e})".splitlines()[0]) from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a YAML text file (invalid UTF-8 at byte {e.start})") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
    for item in overrides:
        set_dotted(raw, item)
    return build_run_config(raw)


def build_run_config(raw: dict) -> RunConfig:
    raw = dict(raw)
    name = raw.get("family", "gpt")
    fam = family(name)
    method = raw.get("method") or ""
    sections = ["family", "model", "data", "train"]
    settings, data_cls = None, fam.data
    if method:
        if method not in fam.methods:
            known = ", ".join(sorted(fam.methods)) or "none"
            raise ConfigError(f"method={method!r}: family {name} has no such way to train (methods: {known})")
        spec = fam.methods[method]
        settings = from_dict(resolve(spec.settings), raw.get(method) or {}, method)
        data_cls = spec.data
        sections += ["method", method]
        if raw.get("model"):  # a method trains the model of the checkpoint its settings start from
            raise ConfigError(f"model: method {method} trains the model of its base checkpoint ({method}.base); "
                              "remove the model section")
    check_keys(raw, sections, "")
    model = None if method else from_dict(fam.config, raw.get("model") or {}, "model")
    return RunConfig(family=name, model=model,
                     data=from_dict(data_cls, raw.get("data") or {}, "data"),
                     train=from_dict(TrainConfig, raw.get("train") or {}, "train"), method=method, settings=settings)
