"""`foundry export`: export a pretrained-model run: the adapter alone, or merged into its base."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..adapters import export_adapter, export_merged
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--merged", metavar="OUT_DIR", help="a plain Hugging Face directory with the adapter merged in")
    p.add_argument("--adapter", metavar="OUT_DIR", help="the adapter in PEFT's format")
    add_set(p)


def run(args) -> int:
    if bool(args.merged) == bool(args.adapter):
        raise ValueError("foundry export: give exactly one of --merged OUT_DIR or --adapter OUT_DIR")
    out = export_merged(args.run, args.merged) if args.merged else export_adapter(args.run, args.adapter)
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    print(f"exported {'merged model' if args.merged else 'adapter'}: {size / 1e6:.2f} MB", file=sys.stderr)
    print(out)
    return 0
