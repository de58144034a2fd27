"""What every config section shares: the pydantic base (`Section`), dotted paths, `--set` overrides, and errors that
name every problem at once with its dotted path, what is allowed, what was given and a fix. The root config
(modelfoundry.config) composes the stages' sections with these."""

from __future__ import annotations

import difflib
import json
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted.path: leaf value} (empty mappings are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def dotted_paths(d: dict, prefix: str = "") -> dict[str, str]:
    """Every dotted path of a nested dict -> 'dict' for sections and free-form mappings, else 'value'."""
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        out[path] = "dict" if isinstance(v, dict) else "value"
        if isinstance(v, dict):
            out.update(dotted_paths(v, path + "."))
    return out


class ConfigError(ValueError):
    """Every problem in a config, each as `dotted.path: message`."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def _fields_at(root: type[BaseModel], variants: dict[str, type[BaseModel]], loc: tuple) -> list[str]:
    """The valid keys of the section at `loc` (used to suggest a fix for a typo)."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int) or cls is None:
            return []
        if part in variants:
            cls = variants[part]
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = section_class(field.annotation)
    return list(getattr(cls, "model_fields", {}))


def section_class(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = section_class(arg)
        if found is not None:
            return found
    return None


def describe(err: dict, root: type[BaseModel], variants: dict[str, type[BaseModel]]) -> str:
    """One pydantic error as `dotted.path: problem, got value; fix`. `variants`: a tagged union's members by tag (model
    families), whose tag pydantic puts in the error's location."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in variants and err["loc"][0] == "model"))
    path = ".".join(str(p) for p in loc) or "(top level)"
    given = err.get("input")
    given_s = json.dumps(given, default=str, ensure_ascii=False) if not isinstance(given, dict) else "a mapping"
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = [k for k in _fields_at(root, variants, tuple(err["loc"][:-1])) if k != "base_dir"]
        close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = f"valid keys here: {', '.join(valid)}"
        if close:  # a guess by spelling can miss ("column" for a corpus' "field"): a short section lists its keys too
            hint = f"did you mean '{close[0]}'?" + (f" ({hint})" if len(valid) <= 12 else "")
        return f"{path}: unknown key; {hint}"
    if kind == "missing":
        return f"{path}: required, but missing; add it to the config"
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        close = difflib.get_close_matches(str(given), [a.strip(" '") for a in allowed.replace(" or ", ",").split(",")], n=1)
        fix = f"; did you mean '{close[0]}'?" if close else ""
        return f"{path}: must be one of {allowed}, got {given_s}{fix}"
    if kind == "union_tag_invalid":
        return f"{path}: must be one of {', '.join(variants)}, got {json.dumps(err.get('ctx', {}).get('tag'))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(err.get("ctx", {}).values()), "?")
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{path}: must be {op} {bound}, got {given_s}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: {msg}, got {given_s}"


# -------------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=3e-4` -> ("train.lr", 0.0003); the value is read as YAML (lists, numbers, null)."""
    if "=" not in text:
        raise ConfigError([f"--set {text}: expected PATH=VALUE, e.g. --set train.lr=3e-4"], "overrides")
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else ""
    if isinstance(parsed, str):  # YAML 1.1 reads 3e-4 as a string; be kind
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set each dotted path in a copy of `raw`, creating sections as needed."""
    out = json.loads(json.dumps(raw, default=str))
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def yaml_floats(raw: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string; turn such strings back into numbers."""
    if isinstance(raw, dict):
        return {k: yaml_floats(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [yaml_floats(v) for v in raw]
    if isinstance(raw, str) and any(c in raw for c in "eE"):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def reference_markdown(root: type[BaseModel], variants: dict[str, type[BaseModel]], union_field: str) -> str:
    """The config reference (docs/config.md), generated from the schema's field docstrings; the members of the
    tagged union at `union_field` get a table each."""
    lines = ["# Config reference", "", "Generated by `foundry config reference` from the schema; do not edit by hand.", ""]

    def walk(cls: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, field in cls.model_fields.items():
            if name == "base_dir":
                continue
            sub = section_class(field.annotation)
            if sub is not None and name != union_field:
                subs.append((sub, f"{prefix}{name}"))
            default = field.get_default(call_default_factory=True)
            default_s = "required" if field.is_required() else json.dumps(
                default.model_dump(mode="json") if isinstance(default, BaseModel) else default, default=str)
            if len(default_s) > 40:
                default_s = "(section)"
            rows.append(f"| `{prefix}{field.alias or name}` | {default_s} | {one_line(field.description)} |")
        lines.extend([f"## `{prefix.rstrip('.') or 'top level'}`", "", "| key | default | meaning |", "|---|---|---|", *rows, ""])
        for sub, path in subs:
            walk(sub, path + ".")

    walk(root, "")
    for name, cls in variants.items():
        lines.append(f"## `{union_field}` with `type: {name}`")
        lines.extend(["", "| key | default | meaning |", "|---|---|---|"])
        for fname, field in cls.model_fields.items():
            lines.append(f"| `{union_field}.{fname}` | {json.dumps(field.get_default(), default=str)} | {one_line(field.description)} |")
        lines.append("")
    return "\n".join(lines)


def one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "/")
