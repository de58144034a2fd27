"""`foundry serve`: an HTTP service (FastAPI) predicting with one or more runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import run_config
from ..serve import ServeSettings, gather_keys, serve
from ..serve.config import ServeConfig
from .common import section_flags, with_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="complete run directories; the first is the default model")
    p.add_argument("--api-keys-file", help="keys clients send as X-API-Key, one per line (16+ characters each); "
                   "FOUNDRY_API_KEYS (comma-separated) is read too")
    p.add_argument("--api-key", action="append", help="a key on the command line (repeatable; visible in `ps`: "
                   "prefer the file or the environment)")
    section_flags(p, ServeConfig, "serve", {"timeout_s": "--timeout"})


def run(args) -> int:
    if args.api_key is not None:
        print("warning: --api-key puts the key on the command line, where `ps` shows it to every user of this "
              "machine; prefer --api-keys-file FILE or FOUNDRY_API_KEYS", file=sys.stderr)
    keys = gather_keys(args.api_key, args.api_keys_file)
    first = Path(args.runs[0])
    base = run_config(first).serve if (first / "config.yaml").is_file() else ServeConfig()
    cfg = with_flags(base, args, "serve")
    serve(args.runs, host=cfg.host, port=cfg.port, api_keys=keys, allowed_root=cfg.allowed_root,
          settings=ServeSettings(**cfg.model_dump()), backend=cfg.backend, workers=cfg.workers)
    return 0
