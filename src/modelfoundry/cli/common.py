"""What the verbs share: exit codes, the --set and --raw-csv flags, flags made from a config section, reading an input
file the way a run read its data, the metrics summary, and the extra that brings a missing module."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import ValidationError

from ..config import load_config, run_config
from ..core.schema import one_line
from ..data import read_frame
from ..evaluate.metrics import HEADLINE


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a config field by dotted path, e.g. --set train.lr=3e-4 (repeatable)")


def summary(run_path: Path) -> None:
    metrics = json.loads((Path(run_path) / "metrics.json").read_text())
    test = metrics["test"]
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, float))
    print(f"{metrics['split']}: {shown}", file=sys.stderr)
    for name, b in metrics.get("baselines", {}).items():
        key = next((k for k in HEADLINE.values() if k in b), None)
        if key:
            print(f"  baseline {name}: {key}={b[key]:.4f}", file=sys.stderr)
    if "cv" in metrics:
        print("  cv: " + "  ".join(f"{k}={v['mean']:.4f}±{v['std']:.4f}" for k, v in metrics["cv"].items()), file=sys.stderr)


def add_raw_csv(p) -> None:
    p.add_argument("--raw-csv", action="store_true",
                   help="write text cells as they are; by default one starting with = + - @ gets a leading ' so that "
                        "a spreadsheet shows it as text instead of running it as a formula")


def input_frame(run, path: str, overrides: list[str]):
    """Read an input file with the run's data settings (encoding, delimiter, columns), overridable by --set."""
    cfg = run_config(run)
    if overrides:
        cfg = load_config(cfg.to_dict(), overrides)
    return read_frame(cfg, str(Path(path).resolve()))


def section_flags(parser, section: type, path: str, names: dict[str, str] | None = None) -> None:
    """One flag per field of a config section, with the field's docstring as help; a flag left out keeps the
    config's value (defaults live in the section class only)."""
    for name, field in section.model_fields.items():
        flag = (names or {}).get(name, "--" + name.replace("_", "-"))
        ann = field.annotation
        args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) in (Union, UnionType) else [ann]
        kind = args[0]
        extra: dict = {"type": kind, "metavar": name.upper()} if kind in (int, float, str) else {}
        if kind is bool:
            extra = {"action": argparse.BooleanOptionalAction}
        elif get_origin(kind) is Literal:
            extra = {"choices": list(get_args(kind))}
        parser.add_argument(flag, dest=f"{path}.{name}", default=None, help=f"{one_line(field.description)} "
                            f"(default: {field.default}; config: {path}.{name})".lstrip(), **extra)


def with_flags(base, args, path: str):
    """`base` (a config section) with the flags given on the command line set, validated again."""
    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith(path + ".") and v is not None}
    try:
        return type(base).model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise ValueError("; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}, got {e['input']!r}"
                                   for e in exc.errors())) from None


def data_config(source: str, target: str | None, overrides: list[str]):
    """A config file, or a bare data file with --target (a minimal config is made for it)."""
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_config(path, [*overrides, *([f"data.target={target}"] if target else [])])
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return load_config({"name": path.stem.replace(" ", "_") or "data", "data": {"path": str(path.resolve()),
                        "target": target or "label"}}, overrides)
