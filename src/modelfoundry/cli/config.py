"""`foundry config`: validate, show (resolved), schema (JSON Schema), reference (Markdown)."""

from __future__ import annotations

import argparse
import json

from ..config import json_schema, load_config, reference_markdown
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["validate", "show", "schema", "reference"])
    p.add_argument("file", nargs="?")
    add_set(p)


def run(args) -> int:
    if args.action == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.action == "reference":
        print(reference_markdown())
        return 0
    if args.file is None:
        raise ValueError(f"foundry config {args.action}: give a config FILE")
    cfg = load_config(args.file, args.overrides)
    if args.action == "validate":
        print(f"{args.file}: valid")
    else:
        print(cfg.to_yaml(), end="")
    return 0
