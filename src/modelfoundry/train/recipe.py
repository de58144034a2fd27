"""`train`: config -> data -> model -> loop -> evaluation -> a complete Run directory (the recipe the CLI runs)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
import yaml

from ..core.runs import Run, Timer, write_json
from ..core.schema import flatten
from ..core.spec import CORPUS_TASKS, LM_TASKS
from ..data import data_files, prepare
from ..data.audit import audit
from ..data.pii import scan_frame
from ..data.pii import summary as pii_summary
from ..data.report import write_data_report
from ..evaluate import Usage, evaluate_run, write_card
from ..evaluate.fairness import check_columns, reweighing
from ..models import save_model
from ..pretrain import prepare_corpus
from .accel import make_accelerator
from .cv import cross_validate
from .fit import train_model
from .loop import SAMPLE_WEIGHT
from .track import Tracker

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def _distributed_run_dir(cfg: Config) -> Path:
    """Under torchrun every process must agree on one run directory without talking: derive it from the launch."""
    key = "-".join(os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))
    return Path(cfg.output_dir) / cfg.name / f"dist-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _check_same_config(run: Run, cfg: Config | None) -> None:
    """A resumed run continues with the config it started with (`config.run_config(run)`, which `foundry train --resume`
    and `modelfoundry.resume` pass); another config is refused, naming the keys that differ."""
    if cfg is None:
        raise ValueError(f"{run.path}: resume needs the run's own config: train(run_config(run), resume=run), "
                         "or modelfoundry.resume(run)")
    recorded = flatten(yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8")))
    given = flatten(cfg.to_dict())
    differ = sorted(k for k in set(recorded) | set(given) if recorded.get(k) != given.get(k))
    if differ:
        raise ValueError(f"{run.path}: cannot resume with another config; these keys differ from the run's: "
                         f"{', '.join(differ[:8])}{' ...' if len(differ) > 8 else ''}")


def _check_same_data(run: Run, files: dict[str, Path | None]) -> None:
    """A resumed run continues on the data it started with: its checkpoint's weights, label map and tokenizer
    came from it. A data file that changed since (by sha256) is refused, naming it."""
    for c in run.data_changes(files)[:1]:
        found = "missing" if c["now"] is None else f"sha256 {c['now'][:12]}..."
        raise ValueError(f"{run.path}: cannot resume: the {c['split']} data {c['path']} changed since the run "
                         f"started (sha256 {str(c['then'])[:12]}..., now {found}); start a new run with `foundry train`")


def train(cfg: Config, *, frame: pd.DataFrame | None = None, test_frame: pd.DataFrame | None = None,
          resume: str | Path | None = None, run_dir: str | Path | None = None, on_epoch=None,
          cache_dir: str | Path | None = None) -> Run:
    """Train and evaluate the model a config describes. Returns the complete Run.

    `resume` continues a killed or interrupted run from its last checkpoint (same config, same data).
    `cache_dir`: where text encodings are cached (default: the run's cache/ folder, which a resume reuses).
    `on_epoch(record)` sees every epoch's metrics; an exception with `run_status` (a pruned trial) ends the
    run with that status."""
    if getattr(cfg, "align", None) is not None:
        raise ValueError("this config has an align: section: run it with modelfoundry.api.train (or "
                         "modelfoundry.align.align, or `foundry train`); modelfoundry.train.train is the supervised loop")
    if getattr(cfg, "federated", None) is not None:
        raise ValueError("this config has a federated: section: run it with modelfoundry.api.train (or "
                         "modelfoundry.federated.federated, or `foundry train`)")
    timer = Timer()
    lock = None
    try:  # from here on, whatever fails releases the run's lock
        if resume is not None:
            run = Run.open(resume)
            lock = run.lock().acquire() if int(os.environ.get("RANK", "0")) == 0 else None  # before any check or write
            _check_same_config(run, cfg)
            if run.status == "complete":
                raise ValueError(f"{run.path}: this run is already complete; nothing to resume")
            if frame is None:
                _check_same_data(run, data_files(cfg))  # before anything is written: the run stays resumable
        accelerator = make_accelerator(cfg.train.precision, cfg.train.grad_accum)
        if resume is None:
            if run_dir is None and accelerator.num_processes > 1:
                run_dir = _distributed_run_dir(cfg)
            if run_dir is not None:
                run = Run(Path(run_dir))
                run.path.mkdir(parents=True, exist_ok=True)
            else:
                run = Run.create(Path(cfg.output_dir), cfg.name)
            lock = run.lock().acquire() if accelerator.is_main_process else None
        return _train(cfg, run, accelerator, timer, frame, test_frame, resume, on_epoch, cache_dir)
    finally:
        if lock is not None:
            lock.release()


def reweigh(cfg: Config, data) -> None:
    """evaluate.fairness.mitigate: reweigh: each training row's weight in the loss (the loop's sample_weight
    feature), and the table of weights in the profile."""
    if data.task != "classification":
        raise ValueError("evaluate.fairness.mitigate: reweigh weights the classification loss by group and label; this "
                         "target is a regression target")
    train = data.encoded["train"]
    frame = data.frames["train"].iloc[train.rows]
    weights, table = reweighing(cfg.evaluate.fairness, frame, data.targets["train"].numpy())
    train.features[SAMPLE_WEIGHT] = torch.tensor(weights, dtype=torch.float32)
    data.profile["reweighing"] = table


def personal_data_warning(data, cfg: Config, pii: dict | None) -> None:
    """Record the personal data in the training table (data_profile.json `pii`; scanned here unless the audit did)
    and warn before training when a flagged column is a model input: the model can learn it and repeat it."""
    data.profile["pii"] = scan_frame(data.raw["data"]) if pii is None else pii
    inputs = {c: kinds for c, kinds in data.profile["pii"].items() if data.preprocessor.schema.get(c, "ignore") != "ignore"
              and c != cfg.data.target}
    data.profile["pii_in_features"] = sorted(inputs)
    if inputs:
        print(f"warning: personal data in model inputs: {pii_summary(inputs)}. The model can learn it and repeat it: "
              "remove it with `foundry data clean` (data.fixes.pii: redact | hash | drop_column), or leave the column "
              "out (data.types: {column: ignore}).", file=sys.stderr, flush=True)


def _show_fold(k: int):
    def show(i, scores):
        print(f"cv fold {i + 1}/{k}: " + "  ".join(f"{n}={v:.4f}" for n, v in scores.items() if v is not None),
              file=sys.stderr, flush=True)
    return show


def _train(cfg: Config, run: Run, accelerator, timer: Timer, frame, test_frame, resume, on_epoch, cache_dir) -> Run:
    main = accelerator.is_main_process

    tracker = None

    def ended(status: str) -> None:  # after the lifecycle recorded a run that did not complete
        if tracker is not None and tracker.active and tracker.mlflow.active_run() is not None:
            tracker.finish(run, status)
        if status == "interrupted":
            print(f"interrupted; the last checkpoint is kept. Continue with: foundry train --resume {run.path}",
                  file=sys.stderr)

    with run.recording(active=main, on_end=ended):
        if main:
            tracker = Tracker(cfg, run.path)
            user_on_epoch = on_epoch

            def on_epoch(record, _user=user_on_epoch):
                tracker.epoch(record)
                if _user is not None:
                    _user(record)
        cache = Path(cache_dir) if cache_dir else run.path / "cache"
        if cfg.data.task in CORPUS_TASKS:
            if frame is not None or test_frame is not None:
                raise ValueError(f"data.task {cfg.data.task}: pretraining reads its corpus from data.path (a text "
                                 "file, folder, JSONL or table), not from a DataFrame")
            data = prepare_corpus(cfg, cache)
        else:
            data = prepare(cfg, frame, test_frame, cache_dir=cache)
        if cfg.evaluate.fairness is not None and data.task not in LM_TASKS:  # before training, not after it
            check_columns(cfg.evaluate.fairness, list(data.raw["data"].columns), str(cfg.data.path or "the data"))
            if cfg.evaluate.fairness.mitigate == "reweigh":
                reweigh(cfg, data)
        if main:
            run.start(cfg.to_yaml(), cfg.train.seed, data_files(cfg) if frame is None else {})
            pii = None
            tabular = data.task not in (*LM_TASKS, "recommend", "knowledge_tracing")  # a table of feature rows: audited, scanned for PII
            if cfg.evaluate.report and tabular:  # what a person reads first: data_report.html
                quality = audit(cfg, with_label_issues=False, frame=data.raw["data"], test_frame=data.raw.get("test"))
                data.profile.update({k: quality[k] for k in ("duplicates", "near_duplicates", "leakage",
                                                             "all_missing_columns")})
                write_data_report({**quality, "splits": data.profile["splits"]}, run.path, cfg.name)
                pii = quality["pii"]
            if tabular:
                personal_data_warning(data, cfg, pii)
            write_json(run.path / "data_profile.json", data.profile)
            data.preprocessor.save(run.model_dir)
        accelerator.wait_for_everyone()
        t_fit = Timer()
        model, result = train_model(cfg, data, run, accelerator, resume=resume is not None, on_epoch=on_epoch)
        if main:
            saved = save_model(model, cfg.model, model.spec, run.model_dir)
            if data.task in CORPUS_TASKS:  # the model directory is also a plain Hugging Face one (model.path takes it)
                model.export_hf(run.model_dir, data.preprocessor.tokenizer,
                                data.preprocessor.eos_id if data.task == "clm" else None)
            timings = {"fit_s": t_fit(), "loop_s": result.seconds}
            cv = (cross_validate(cfg, data.raw["data"], _show_fold(cfg.evaluate.cv.folds),
                                 str(cfg.resolve_path(cfg.data.path)) if frame is None else None)
                  if cfg.evaluate.cv else None)  # the table this run read, not a second read
            usage = None if not tabular else Usage(
                train_rows=len(data.encoded["train"]), epochs=result.epochs_run, seconds=timer(),
                threads=torch.get_num_threads() * accelerator.num_processes)
            metrics = evaluate_run(run, cfg, data, model, cv, usage=usage)
            write_card(run, cfg, data.profile, metrics)
            timings["total_s"] = timer()
            run.finish("complete", timings=timings, **({"cost": metrics["cost"]} if "cost" in metrics else {}), best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                       parameters=sum(p.numel() for p in model.parameters()),
                       trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       saved_model=saved,
                       stopped_early=result.stopped_early, processes=accelerator.num_processes)
            tracker.finish(run, "complete")
        accelerator.wait_for_everyone()
    return run
