"""`foundry`: a thin map from a verb to the stage function that does the work."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import ValidationError

from .compress.config import CompressConfig
from .config import run_config
from .core.schema import one_line
from .serve.config import ServeConfig

EXIT_BAD_INPUT = 2


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a config field by dotted path, e.g. --set train.lr=3e-4 (repeatable)")


def cmd_train(args) -> int:
    from .config import load_config
    from .core.runs import Run
    from .train import train

    if args.resume:
        from .api import resume

        run = resume(args.resume)
        print(run.path)
        return 0
    if args.config is None:
        raise ValueError("foundry train: give a CONFIG file (or --resume RUN_DIR)")
    cfg = load_config(args.config, args.overrides)
    if args.nproc and args.nproc > 1:
        run = Run.create(Path(cfg.output_dir), cfg.name)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "modelfoundry.cli", "train", str(args.config), "--run-dir", str(run.path)]
        for o in args.overrides:
            cmd += ["--set", o]
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"error: {args.nproc} training processes failed (exit {rc}); see {run.path}", file=sys.stderr)
            return rc
        print(run.path)
        return 0
    run = train(cfg, run_dir=args.run_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        _summary(run.path)
        print(run.path)
    return 0


def _summary(run_path: Path) -> None:
    metrics = json.loads((Path(run_path) / "metrics.json").read_text())
    test = metrics["test"]
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, float))
    print(f"{metrics['split']}: {shown}", file=sys.stderr)
    for name, b in metrics.get("baselines", {}).items():
        key = "f1_macro" if "f1_macro" in b else "rmse" if "rmse" in b else None
        if key:
            print(f"  baseline {name}: {key}={b[key]:.4f}", file=sys.stderr)
    if "cv" in metrics:
        print("  cv: " + "  ".join(f"{k}={v['mean']:.4f}±{v['std']:.4f}" for k, v in metrics["cv"].items()), file=sys.stderr)


EXTRAS = {"onnx": "compress", "onnxruntime": "compress", "onnxscript": "compress", "trafilatura": "crawl",
          "py3langid": "crawl", "lxml": "crawl", "lxml_html_clean": "crawl", "fastapi": "serve", "uvicorn": "serve",
          "prometheus_client": "serve", "multipart": "serve", "python_multipart": "serve", "mlflow": "mlflow",
          "psycopg": "postgres", "sqlalchemy": "postgres"}


def missing_extra(module: str) -> str | None:
    """The extra (pyproject's optional-dependencies) that installs `module`, or None if it is not an optional one."""
    return EXTRAS.get(module.split(".")[0])


def _add_raw_csv(p) -> None:
    p.add_argument("--raw-csv", action="store_true",
                   help="write text cells as they are; by default one starting with = + - @ gets a leading ' so that "
                        "a spreadsheet shows it as text instead of running it as a formula")


def _input_frame(run, path: str, overrides: list[str]):
    """Read an input file with the run's data settings (encoding, delimiter, columns), overridable by --set."""
    from .config import config_to_dict, load_config
    from .data import read_frame

    cfg = run_config(run)
    if overrides:
        cfg = load_config(config_to_dict(cfg), overrides)
    return read_frame(cfg, str(Path(path).resolve()))


def cmd_predict(args) -> int:
    from .predictor import Predictor

    pred = Predictor.load(args.run)
    df = _input_frame(pred.run, args.input, args.overrides)
    out = pred.predict(df)
    from .core.runs import atomic_write_text, csv_text

    text = csv_text(out, raw=args.raw_csv)
    if args.output:
        atomic_write_text(Path(args.output), text)
        print(f"{len(out)} predictions -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_tune(args) -> int:
    from .config import load_config
    from .tune import STORAGE_ENV, tune, work

    if args.storage is None and os.environ.get(STORAGE_ENV):
        args.storage = os.environ[STORAGE_ENV]  # a URL with a password stays out of argv
    cfg = load_config(args.config, args.overrides)
    if cfg.tune is None:
        raise ValueError(f"{args.config}: no `tune` section; add one (see docs/config.md, section tune)")
    if args.worker:  # one of --workers N processes, started by the command below
        work(cfg, args.study or cfg.name, args.storage, args.trials or cfg.tune.trials, args.worker_index)
        return 0
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    sdir = tune(cfg, trials=args.trials, workers=args.workers, storage=args.storage, study=args.study, refit=args.refit)
    print(sdir)
    return 0


def _section_flags(parser, section: type, path: str, names: dict[str, str] | None = None) -> None:
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


def _with_flags(base, args, path: str):
    """`base` (a config section) with the flags given on the command line set, validated again."""
    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith(path + ".") and v is not None}
    try:
        return type(base).model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise ValueError("; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}, got {e['input']!r}"
                                   for e in exc.errors())) from None


def cmd_serve(args) -> int:
    from .serve import ServeSettings, gather_keys, serve

    if args.api_key is not None:
        print("warning: --api-key puts the key on the command line, where `ps` shows it to every user of this "
              "machine; prefer --api-keys-file FILE or FOUNDRY_API_KEYS", file=sys.stderr)
    keys = gather_keys(args.api_key, args.api_keys_file)
    first = Path(args.runs[0])
    base = run_config(first).serve if (first / "config.yaml").is_file() else ServeConfig()
    cfg = _with_flags(base, args, "serve")
    serve(args.runs, host=cfg.host, port=cfg.port, api_keys=keys, allowed_root=cfg.allowed_root,
          settings=ServeSettings(**cfg.model_dump()), backend=cfg.backend, workers=cfg.workers)
    return 0


def cmd_generate(args) -> int:
    from .predictor import Predictor

    pred = Predictor.load(args.run)
    prompts = list(args.prompt or [])
    if args.file:
        prompts += [line.rstrip("\n") for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError("foundry generate: give --prompt TEXT (repeatable) or --file PROMPTS.txt (one per line)")
    outs = pred.generate(prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_p=args.top_p, seed=args.seed)
    for p, o in zip(prompts, outs):
        print(json.dumps({"prompt": p, "response": o}, ensure_ascii=False) if len(prompts) > 1 or args.json else o)
    return 0


def cmd_evaluate(args) -> int:
    from .core.runs import write_json
    from .data import Prepared
    from .data.schema import check_target
    from .evaluate import M, evaluate_data
    from .predictor import Predictor

    pred = Predictor.load(args.run)
    cfg = run_config(pred.run)
    df = _input_frame(pred.run, args.data, args.overrides)
    check_target(df, cfg.data.target, args.data)
    enc = pred.preprocessor.transform(df, strict=True)
    y = pred.preprocessor.encode_target(df[cfg.data.target].iloc[enc.rows])
    data = Prepared({"test": df}, {"test": enc}, {"test": y}, pred.preprocessor, {})
    names = M.canonical(cfg.evaluate.metrics, pred.task)
    result, _, _ = evaluate_data(pred.model, data, names, "test", baselines=False)
    out = pred.run.path / "evaluations" / f"{Path(args.data).stem}.json"
    write_json(out, {"data": str(Path(args.data).resolve()), **result})
    print(json.dumps(result["test"], indent=2))
    print(f"-> {out}", file=sys.stderr)
    return 0


def cmd_runs(args) -> int:
    from .core.runs import list_runs

    if args.action == "compare":
        from .evaluate.compare import compare_runs

        table = compare_runs(args.runs, plot=args.plot)
        print(table.to_string(index=False))
        print(f"curves -> {args.plot}", file=sys.stderr)
        return 0
    if args.runs:
        raise ValueError("foundry runs list takes no run directories (did you mean: foundry runs compare RUN_A RUN_B)")

    rows = list_runs(args.output_dir)
    if not rows:
        print(f"no runs under {args.output_dir}/", file=sys.stderr)
        return 0
    for r in rows:
        m = r["metrics"]
        key = next((k for k in ("accuracy", "rmse") if k in m), None)
        score = f"{key}={m[key]:.4f}" if key and m[key] is not None else ""
        print(f"{r['status']:<11} {r['created'] or '':<26} {score:<16} {r['run']}")
    return 0


def cmd_config(args) -> int:
    from .config import config_to_yaml, json_schema, load_config, reference_markdown

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
        print(config_to_yaml(cfg), end="")
    return 0


def cmd_quickstart(args) -> int:
    from .config import load_config
    from .train import train

    recipe = Path(__file__).parent / "quickstart" / "intents.yaml"
    cfg = load_config(recipe, [f"output_dir={Path(args.output_dir).resolve()}", *args.overrides])
    print("quickstart: LoRA fine-tuning of the embedded MiniLM on a BANKING77 sample (77 intents), "
          "then evaluation and the report; a few minutes on 2 CPU cores", file=sys.stderr)
    run = train(cfg)
    _summary(run.path)
    acc = json.loads((run.path / "metrics.json").read_text())["test"].get("accuracy")
    print(f"\ntest accuracy {acc:.3f}. Next:\n"
          f"  foundry predict {run.path} {recipe.parent / 'banking77_test.csv'} -o predictions.csv\n"
          f"  open {run.path / 'report.html'}\n"
          f"  foundry serve {run.path}   # then: curl -X POST localhost:8000/v1/predict "
          f"-H 'content-type: application/json' -d '[\"my card has not arrived\"]'\n"
          f"  foundry runs list --output-dir {args.output_dir}", file=sys.stderr)
    print(run.path)
    return 0


def compress_settings(run_cfg, args) -> object:
    """The run's `compress` section, with the command's options and --set compress.* overrides on top."""
    import yaml

    from .config import ConfigError, load_config, parse_override

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
    from .config import config_to_dict

    return load_config({**config_to_dict(run_cfg), "compress": raw}, overrides).compress


def cmd_compress(args) -> int:
    from .compress import compress
    from .core.runs import Run

    source = Run.open(args.run)
    settings = compress_settings(run_config(source), args)
    run = compress(args.run, settings, args.output_dir, source=run_config(source))
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


def _data_config(source: str, target: str | None, overrides: list[str]):
    """A config file, or a bare data file with --target (a minimal config is made for it)."""
    from .config import load_config

    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_config(path, [*overrides, *([f"data.target={target}"] if target else [])])
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return load_config({"name": path.stem.replace(" ", "_") or "data", "data": {"path": str(path.resolve()),
                        "target": target or "label"}}, overrides)


def cmd_crawl(args) -> int:
    from .data.crawl import CrawlOptions, crawl

    if not args.output_dir or not args.output_dir.endswith((".jsonl", ".ndjson")):
        raise ValueError(f"foundry data crawl: -o must name the corpus file, ending in .jsonl (got {args.output_dir!r})")
    opts = CrawlOptions(max_pages=args.max_pages, max_depth=args.max_depth, delay=args.delay,
                        same_domain=not args.any_domain, min_chars=args.min_chars, languages=args.language or [],
                        allow_private=args.allow_private,
                        **({"user_agent": args.user_agent} if args.user_agent else {}))
    summary = crawl(args.source, args.output_dir, opts)
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    print(f"{summary['written']} pages written ({summary['fetched']} fetched, {summary['waiting']} links left "
          f"unvisited; skipped: {skipped}); state -> {summary['state']}", file=sys.stderr)
    print(summary["output"])
    return 0


def cmd_data(args) -> int:
    from .core.runs import write_json

    if args.action == "crawl":
        return cmd_crawl(args)
    cfg = _data_config(args.source, args.target, args.overrides)
    if args.action == "profile":
        from .data import read_frame
        from .data.audit import audit
        from .data.report import write_data_report

        against = read_frame(cfg, str(Path(args.against).resolve())) if args.against else None
        report = audit(cfg, against=against, with_label_issues=False if args.no_label_issues else None)
        out = Path(args.output_dir or ".")
        write_json(out / "data_profile.json", report)
        page = write_data_report(report, out, cfg.name)
        li = report.get("label_issues", {})
        print(f"{report['rows']} rows: {report['duplicates']['count']} duplicates, {report['near_duplicates']['count']} "
              f"near duplicates, {report['leakage']['held_out_rows']} held-out rows leaked from training"
              + (f", {li['flagged']} likely label errors" if "flagged" in li else "")
              + (f", drift in {len(report['drift']['flagged'])} columns" if "drift" in report else ""), file=sys.stderr)
        print(page)
        return 0
    if not args.output_dir:
        raise ValueError("foundry data clean: give -o OUT_DIR (the original file is never overwritten)")
    from .data.repair import clean_data

    out, log, _ = clean_data(cfg, args.output_dir, raw_csv=args.raw_csv)
    counts = log["action"].value_counts().to_dict() if len(log) else {}
    print(f"{len(log)} changes ({', '.join(f'{k}: {v}' for k, v in counts.items()) or 'none'}); "
          f"log -> {Path(args.output_dir) / 'changes.csv'}", file=sys.stderr)
    print(out)
    return 0


def cmd_export(args) -> int:
    from .adapters import export_adapter, export_merged

    if bool(args.merged) == bool(args.adapter):
        raise ValueError("foundry export: give exactly one of --merged OUT_DIR or --adapter OUT_DIR")
    out = export_merged(args.run, args.merged) if args.merged else export_adapter(args.run, args.adapter)
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    print(f"exported {'merged model' if args.merged else 'adapter'}: {size / 1e6:.2f} MB", file=sys.stderr)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry", description="ModelFoundry: raw data to an evaluated model.")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("train", help="train and evaluate; prints the run directory last")
    p.add_argument("config", nargs="?")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or interrupted run from its last checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="launch N processes with torchrun (DDP; gloo on CPU)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    _add_set(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("predict", help="predict raw rows with a run's model and preprocessor")
    p.add_argument("run")
    p.add_argument("input")
    p.add_argument("-o", "--output", help="CSV to write (default: stdout)")
    _add_raw_csv(p)
    _add_set(p)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("tune", help="an Optuna study over the config's `tune.space`; prints the study directory")
    p.add_argument("config")
    p.add_argument("--trials", type=int, help="trials in the study (default: tune.trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
    p.add_argument("--storage", help="a journal file path, or an RDB URL (postgresql://user:pass@host/db) shared by "
                   "machines; FOUNDRY_TUNE_STORAGE is read when this is not given (keeps a password out of `ps`)")
    p.add_argument("--study", help="study name (default: the config's name); the same name resumes it")
    p.add_argument("--refit", action="store_true", help="train the best config on train+val, evaluate on test")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    _add_set(p)
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("serve", help="an HTTP service (FastAPI) predicting with one or more runs")
    p.add_argument("runs", nargs="+", help="complete run directories; the first is the default model")
    p.add_argument("--api-keys-file", help="keys clients send as X-API-Key, one per line (16+ characters each); "
                   "FOUNDRY_API_KEYS (comma-separated) is read too")
    p.add_argument("--api-key", action="append", help="a key on the command line (repeatable; visible in `ps`: "
                   "prefer the file or the environment)")
    _section_flags(p, ServeConfig, "serve", {"timeout_s": "--timeout"})
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("generate", help="a causal-LM run's response to an instruction")
    p.add_argument("run")
    p.add_argument("--prompt", action="append", help="an instruction (repeatable)")
    p.add_argument("--file", help="instructions, one per line")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="JSON lines {prompt, response} even for one prompt")
    p.set_defaults(fn=cmd_generate)

    p = sub.add_parser("evaluate", help="score a run's model on another labelled file")
    p.add_argument("run")
    p.add_argument("data")
    _add_set(p)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("export", help="export a pretrained-model run: the adapter alone, or merged into its base")
    p.add_argument("run")
    p.add_argument("--merged", metavar="OUT_DIR", help="a plain Hugging Face directory with the adapter merged in")
    p.add_argument("--adapter", metavar="OUT_DIR", help="the adapter in PEFT's format")
    _add_set(p)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("compress", help="distill, prune, quantize and export a run to ONNX; prints the variant's run last")
    p.add_argument("run")
    p.add_argument("--quantize", choices=list(get_args(CompressConfig.model_fields["quantize"].annotation)),
                   help="int8 / int8-static (ONNX Runtime), bf16 (torch weights)")
    p.add_argument("--prune", metavar="METHOD:AMOUNT", help="structured:0.3 (remove units) or magnitude:0.5 (zero weights)")
    p.add_argument("--distill", metavar="STUDENT.yaml", help="a YAML file with the student's model section "
                   "(or {student: ..., temperature, alpha, epochs, lr})")
    p.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=None,
                   help="export to ONNX with a parity check (default: on, except for bf16)")
    p.add_argument("-o", "--output-dir", help="where the variant's run goes (default: beside the source's name folder)")
    _add_set(p)
    p.set_defaults(fn=cmd_compress)

    p = sub.add_parser("data", help="profile a data set (duplicates, leakage, label errors, drift), clean a copy, "
                       "or crawl a web site into a text corpus")
    p.add_argument("action", choices=["profile", "clean", "crawl"])
    p.add_argument("source", help="a config file, or (profile) a data file with --target, or (crawl) the start URL")
    p.add_argument("--target", help="the label column (for a bare data file)")
    p.add_argument("--against", help="profile: another file to measure drift against (PSI, KS per column)")
    p.add_argument("-o", "--output-dir", help="profile: where data_profile.json and data_report.html go (default .); "
                   "clean: the folder for the cleaned copy and changes.csv; crawl: the corpus file (.jsonl)")
    p.add_argument("--no-label-issues", action="store_true", help="profile: skip the label-error search")
    _add_raw_csv(p)
    g = p.add_argument_group("crawl (-o names the .jsonl corpus; its .state.json beside it makes a crawl resumable)")
    g.add_argument("--max-pages", type=int, default=100, help="pages to write (default 100)")
    g.add_argument("--max-depth", type=int, default=2, help="links to follow from the start page (default 2)")
    g.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host (default 1; "
                   "robots.txt's Crawl-delay wins when larger)")
    g.add_argument("--min-chars", type=int, default=200, help="drop pages with less text after boilerplate removal")
    g.add_argument("--language", action="append", help="keep only this language (ISO 639-1, e.g. en; repeatable)")
    g.add_argument("--any-domain", action="store_true", help="follow links to other hosts too")
    g.add_argument("--allow-private", action="store_true", help="fetch hosts other than the start URL's that resolve "
                   "to private, loopback or link-local addresses (an intranet crawl); refused by default")
    g.add_argument("--user-agent", help="the User-Agent sent and matched against robots.txt")
    _add_set(p)
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("runs", help="list runs, or compare some side by side")
    p.add_argument("action", choices=["list", "compare"])
    p.add_argument("runs", nargs="*", help="compare: two or more run directories")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--plot", default="runs_compare.png", help="compare: where to write the overlaid curves")
    _add_set(p)
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("config", help="validate, show (resolved), schema (JSON Schema), reference (Markdown)")
    p.add_argument("action", choices=["validate", "show", "schema", "reference"])
    p.add_argument("file", nargs="?")
    _add_set(p)
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("quickstart", help="train the embedded default recipe end to end")
    p.add_argument("--output-dir", default="runs")
    _add_set(p)
    p.set_defaults(fn=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    run()
