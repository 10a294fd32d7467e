"""Profiles as overlays: a params file may name its base (`extends: params.yaml`) and is deep-merged onto it.

A profile says only what it changes; everything else is its base's, visibly (the `extends:` line, and
`facerealism config --params FILE` prints each value with the file it came from). Merging follows the config
classes: a section (a config class) merges key by key, every other value — numbers, lists, and dict-valued
settings such as register.required — is replaced whole, so a profile can also drop a base's gate rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from facerealism.config.base import ConfigError, Section

EXTENDS = "extends"


def read_yaml(path: Path) -> dict:
    """One params file as a mapping; ConfigError naming the file (and line) when it is missing or not YAML."""
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """(file name, its mapping without `extends`), the deepest base first.

    Raises:
        ConfigError: a file is missing or not YAML, `extends` is not a file name, or the chain loops.
    """
    if path.resolve() in seen:
        chain = " -> ".join(str(p.name) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: extends: the chain loops ({chain})")
    data = read_yaml(path)
    base = data.pop(EXTENDS, None)
    if base is None:
        return [(str(path), data)]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: extends: must be the file name of the base params file, got {base!r}")
    base_path = path.parent / base  # relative to the profile, so a profile and its base travel together
    if not base_path.exists():
        raise ConfigError(f"{path}: extends: base params file not found: {base_path}")
    return [*layers(base_path, (*seen, path.resolve())), (str(path), data)]


def _field_class(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The config class of the section `key` inside `model`; None when `key` is a plain setting or unknown."""
    if model is None:
        return None
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            ann = field.annotation
            return ann if isinstance(ann, type) and issubclass(ann, Section) else None
    return None


def merge(base: dict, overlay: dict, model: type[BaseModel] | None, source: str, sources: dict[str, str],
          prefix: str = "") -> dict:
    """`overlay` deep-merged onto `base` (a new dict); records `source` for each key `overlay` sets."""
    out = dict(base)
    for key, value in overlay.items():
        path = f"{prefix}{key}"
        section = _field_class(model, key)
        if section is not None and isinstance(value, dict) and isinstance(out.get(key, {}), dict):
            out[key] = merge(out.get(key, {}), value, section, source, sources, f"{path}.")
            continue
        out[key] = value
        for k in [k for k in sources if k.startswith(f"{path}.")]:  # a base's parts of a replaced value
            del sources[k]
        record(sources, path, source)
    return out


def merged_layers(path: Path, model: type[BaseModel]) -> tuple[dict, dict[str, str]]:
    """The mapping of `path` merged onto its bases, and the file each set key came from."""
    data: dict = {}
    sources: dict[str, str] = {}
    for name, layer in layers(Path(path)):
        data = merge(data, layer, model, name, sources)
    return data, sources


def record(sources: dict[str, str], key: str, source: str) -> None:
    sources.pop(key, None)  # re-inserted last: the latest writer of a key is listed last
    sources[key] = source


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    # YAML parsing gives numbers, booleans, lists and null the same spelling as params.yaml.
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def set_nested(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {k} is not a section")
        node[k] = child = dict(child)  # merged layers may share dicts with a base: never write through
        node = child
    node[keys[-1]] = value
