"""Raw spec dicts: reading a YAML file, setting dotted keys, ``--set`` overrides, and the commented default spec.
Nothing here validates; ``build`` does."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from .schema import Spec, SpecError


def set_value(raw: dict, key: str, value: Any) -> None:
    """Set the dotted ``key`` (e.g. train.lr) of a raw spec dict to ``value`` in place."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise SpecError(f"{key!r}: key must be a dotted path such as train.lr")
    node = raw
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {key} below it")
        node = nxt
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of a raw spec dict with dotted keys set to values (e.g. a trial's sampled values)."""
    out = deep_copy(raw)
    for key, value in values.items():
        set_value(out, key, value)
    return out


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``KEY=VALUE`` override (dotted key, YAML value) to a raw spec dict in place."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment}: must be KEY=VALUE, e.g. train.lr=3e-4")
    key, text = assignment.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SpecError(f"--set {assignment}: key must be a dotted path such as train.lr")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    except RecursionError:
        raise SpecError(f"--set {key}: the value is nested too deeply") from None
    set_value(raw, key, value)


def load_raw(path: str | Path) -> Any:
    """The YAML content of a spec file, unvalidated (errors name the file and the line)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a spec") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec file ({e.strerror or e})") from None
    if raw is None:
        raise SpecError(f"{path}: the spec file is empty; start from `sparsesearch defaults > {path.name}`")
    return raw


def deep_copy(x: Any) -> Any:
    """A copy of a raw spec (nested dicts and lists), shared with nothing."""
    if isinstance(x, dict):
        return {k: deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [deep_copy(v) for v in x]
    return x


def describe_defaults(choices: dict[str, typing.Iterable[str]] | None = None) -> str:
    """The default spec as commented YAML: every key, its default and what it means.

    Args:
        choices: allowed values of keys whose choices are registered elsewhere (e.g. sparsity.method), by
            dotted key; listed after the key's description.
    """
    lines: list[str] = []
    choices = choices or {}

    def walk(cls: type, indent: str, prefix: str = "") -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                lines.append(f"{indent}{f.name}:  # {f.metadata['doc']}")
                walk(hints[f.name], indent + "  ", f"{prefix}{f.name}.")
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            default = list(default) if isinstance(default, tuple) else default
            value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            doc = f.metadata["doc"]
            if f"{prefix}{f.name}" in choices:
                doc += "; choices: " + ", ".join(choices[f"{prefix}{f.name}"])
            lines.append(f"{indent}{f.name}: {value}  # {doc}")

    walk(Spec, "")
    return "\n".join(lines) + "\n"
