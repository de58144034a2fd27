"""`foundry quickstart`: train the embedded default recipe end to end."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config
from ..train import train
from .common import add_set, summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", default="runs")
    add_set(p)


def run(args) -> int:
    recipe = Path(__file__).parent.parent / "quickstart" / "intents.yaml"  # modelfoundry/quickstart/, package data
    cfg = load_config(recipe, [f"output_dir={Path(args.output_dir).resolve()}", *args.overrides])
    print("quickstart: LoRA fine-tuning of the embedded MiniLM on a BANKING77 sample (77 intents), "
          "then evaluation and the report; a few minutes on 2 CPU cores", file=sys.stderr)
    run = train(cfg)
    summary(run.path)
    acc = json.loads((run.path / "metrics.json").read_text())["test"].get("accuracy")
    print(f"\ntest accuracy {acc:.3f}. Next:\n"
          f"  foundry predict {run.path} {recipe.parent / 'banking77_test.csv'} -o predictions.csv\n"
          f"  open {run.path / 'report.html'}\n"
          f"  foundry serve {run.path}   # then: curl -X POST localhost:8000/v1/predict "
          f"-H 'content-type: application/json' -d '[\"my card has not arrived\"]'\n"
          f"  foundry runs list --output-dir {args.output_dir}", file=sys.stderr)
    print(run.path)
    return 0
