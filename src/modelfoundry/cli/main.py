"""`foundry`: a thin map from a verb to the stage function that does the work. One module per verb (cli/<verb>.py:
HELP, add_arguments, run); a verb's module, and so its stage, is imported only when that verb runs (or its --help is
asked), so `foundry --help` does not load torch."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from .errors import EXIT_BAD_INPUT, missing_extra

VERBS = ("train", "predict", "explain", "tune", "serve", "generate", "evaluate", "export", "compress", "data", "runs", "config", "quickstart", "federated")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `verb`'s module is imported and given its flags (all of them when verb is "*")."""
    parser = argparse.ArgumentParser(prog="foundry", description="ModelFoundry: raw data to an evaluated model.")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name in VERBS:
        if verb in (name, "*"):
            mod = import_module(f".{name}", __package__)
            p = sub.add_parser(name, help=_HELP[name])
            mod.add_arguments(p)
            p.set_defaults(fn=mod.run)
        else:
            sub.add_parser(name, help=_HELP[name], add_help=False)
    return parser


_HELP = {
    "train": "train and evaluate; prints the run directory last",
    "predict": "predict raw rows with a run's model and preprocessor",
    "explain": "per-row attributions: SHAP per column for tables, Integrated Gradients per token for text",
    "tune": "an Optuna study over the config's `tune.space`; prints the study directory",
    "serve": "an HTTP service (FastAPI) predicting with one or more runs",
    "generate": "a causal-LM run's response to an instruction",
    "evaluate": "score a run's model on another labelled file",
    "export": "export a pretrained-model run: the adapter alone, or merged into its base",
    "compress": "distill, prune, quantize and export a run to ONNX; prints the variant's run last",
    "data": "profile a data set (duplicates, leakage, label errors, drift), clean a copy, "
                       "or crawl a web site into a text corpus",
    "runs": "list runs, or compare some side by side",
    "config": "validate, show (resolved), schema (JSON Schema), reference (Markdown)",
    "quickstart": "train the embedded default recipe end to end",
    "federated": "join a federation as one of its sites (a Flower SuperNode)",
}


def _verb(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = _verb(argv)
    args = build_parser(verb if verb in VERBS else None).parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError and DataError are ValueErrors; importing them
        # here would load the data stack (torch, pandas, scikit-learn) before the verb that may not need it
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:  # an optional dependency: name the extra that brings it
        extra = missing_extra(exc.name or "")
        if extra is None:
            raise
        print(f"error: this needs the {extra} extra (missing module {exc.name!r}): pip install 'modelfoundry[{extra}]'",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `foundry` console script (and `python -m modelfoundry.cli`): main(), then a quick exit.

    Tearing down an interpreter that has loaded torch costs 1.5-2.5 s here, nearly all of it the final garbage
    collection of torch's modules. Everything a verb writes is closed and renamed into place before it
    returns, so once main() is done the exit handlers run, the streams are flushed and the process leaves
    without that teardown. If a non-daemon thread still runs, the normal exit waits for it instead."""
    import atexit
    import threading

    rc = main()
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(rc)
    atexit._run_exitfuncs()  # library handlers (logging, multiprocessing, weakref.finalize) still run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written anyway
            pass
    os._exit(rc)
