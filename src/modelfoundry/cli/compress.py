"""`foundry compress`: distill, prune, quantize and export a run to ONNX; prints the variant's run last."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import get_args

from ..compress import compress
from ..compress.config import CompressConfig
from ..config import ConfigError, load_config, parse_override, run_config
from ..core.runs import Run
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--quantize", choices=list(get_args(CompressConfig.model_fields["quantize"].annotation)),
                   help="int8 / int8-static (ONNX Runtime), bf16 (torch weights)")
    p.add_argument("--prune", metavar="METHOD:AMOUNT", help="structured:0.3 (remove units) or magnitude:0.5 (zero weights)")
    p.add_argument("--distill", metavar="STUDENT.yaml", help="a YAML file with the student's model section "
                   "(or {student: ..., temperature, alpha, epochs, lr})")
    p.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=None,
                   help="export to ONNX with a parity check (default: on, except for bf16)")
    p.add_argument("-o", "--output-dir", help="where the variant's run goes (default: beside the source's name folder)")
    add_set(p)


def compress_settings(run_cfg, args) -> object:
    """The run's `compress` section, with the command's options and --set compress.* overrides on top."""
    import yaml

    raw = run_cfg.compress.model_dump(mode="json") if run_cfg.compress else {}
    if args.quantize:
        raw["quantize"] = args.quantize
        if args.quantize == "bf16" and args.onnx is None:
            raw["onnx"] = False
    if args.onnx is not None:
        raw["onnx"] = args.onnx
    if args.prune:
        method, _, amount = args.prune.partition(":")
        try:
            raw["prune"] = {**(raw.get("prune") or {}), "method": method, "amount": float(amount or 0.3)}
        except ValueError:
            raise ConfigError([f"--prune {args.prune}: expected METHOD:AMOUNT, e.g. structured:0.3"], "options") from None
    if args.distill:
        path = Path(args.distill)
        if not path.is_file():
            raise ConfigError([f"--distill {path}: no such file (a YAML file with the student's model section)"], "options")
        student = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        raw["distill"] = student if isinstance(student, dict) and "student" in student else {"student": student}
    overrides = dict(parse_override(o) for o in args.overrides)
    bad = [k for k in overrides if not k.startswith("compress.")]
    if bad:
        raise ConfigError([f"--set {k}: foundry compress takes compress.* paths (e.g. compress.prune.finetune_epochs=1)"
                           for k in bad], "overrides")
    if not raw and not overrides:
        return None

    return load_config({**run_cfg.to_dict(), "compress": raw}, overrides).compress


def run(args) -> int:
    source = Run.open(args.run)
    source_cfg = run_config(source)  # read once: the settings start from it and the stage measures against it
    settings = compress_settings(source_cfg, args)
    run = compress(args.run, settings, args.output_dir, source=source_cfg)
    summary = json.loads((run.path / "compression.json").read_text())
    key = summary["main_metric"]
    base = summary["stages"][0]
    for st in summary["stages"]:
        print(f"  {st['stage']:<28} {key}={st['metrics'].get(key, float('nan')):.4f}  {st['size_mb']:>8.2f} MB  "
              f"batch1 {st['batch_1']['p50_ms']:.2f} ms  batch32 {st['batch_32']['rows_per_s']:,.0f} rows/s "
              f"({st['batch_32']['rows_per_s'] / base['batch_32']['rows_per_s']:.2f}x)", file=sys.stderr)
    print(f"report -> {run.path / 'compression_report.html'}", file=sys.stderr)
    print(run.path)
    return 0
