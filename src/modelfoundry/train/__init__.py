"""The train stage: config -> data -> model -> loop -> evaluation -> a complete Run directory."""

from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

import pandas as pd
import torch

from ..config import Config, config_to_yaml, run_config
from ..core.hardware import resolve_precision
from ..core.infer import TensorData
from ..core.runs import Run, Timer, write_json
from ..data import Prepared, data_files, prepare
from ..data.augment import Augmenter, check_fits, oversample, synonym_tables
from ..models import build_model, save_model
from .loop import FitResult, fit

__all__ = ["train", "train_model", "make_accelerator", "TensorData"]


def make_accelerator(precision: str, grad_accum: int = 1):
    """A fresh Accelerator (its state is a process-wide singleton; reset what a previous run set)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=resolve_precision(precision), gradient_accumulation_steps=grad_accum,
                       cpu=not torch.cuda.is_available())


def _distributed_run_dir(cfg: Config) -> Path:
    """Under torchrun every process must agree on one run directory without talking: derive it from the launch."""
    key = "-".join(os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))
    return Path(cfg.output_dir) / cfg.name / f"dist-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def train_model(cfg: Config, data: Prepared, run: Run | None, accelerator, resume: bool = False,
                on_epoch=None, teacher: torch.Tensor | None = None, distill: tuple[float, float] | None = None,
                init=None) -> tuple[torch.nn.Module, FitResult]:
    """Build the configured model for `data` and fit it. Shared by `train`, cross-validation and distillation
    (`teacher`: a teacher's outputs for each training row, `distill`: (temperature, alpha), `init`: called with the
    built model before training, to set its starting weights)."""
    torch.manual_seed(cfg.train.seed)
    features = {s: data.encoded[s].features for s in ("train", "val") if s in data.encoded}
    augment, swapped = cfg.data.augment, {}
    targets = data.targets["train"]
    if augment.oversample:
        if data.task != "classification":
            raise ValueError(f"data.augment.oversample: needs a classification target; this task is {data.task}")
        if teacher is not None:
            raise ValueError("data.augment.oversample: cannot be combined with distillation (synthetic rows have no "
                             "teacher outputs)")
        features["train"], targets = oversample(features["train"], targets, augment, cfg.train.seed)
    if teacher is not None:
        features["train"] = {**features["train"], "teacher": teacher}
    per_epoch = math.ceil(math.ceil(len(targets) / (cfg.train.batch_size * accelerator.num_processes))
                          / cfg.train.grad_accum)
    model = build_model(cfg.model, {**data.preprocessor.spec(), "total_steps": per_epoch * cfg.train.epochs})
    if init is not None:
        init(model)
    if getattr(cfg.model, "finetune", None) == "linear_probe":
        # the frozen encoder runs once per text, not once per epoch; only the head trains
        from ..models.pretrained import CachedEncoding, cache_frozen_encodings

        features = {s: cache_frozen_encodings(model, f) for s, f in features.items()}
        swapped = {k: model.encoders[k] for k in model.encoders if f"text:{k.removeprefix('text__')}" in features["train"]
                   and features["train"][f"text:{k.removeprefix('text__')}"].is_floating_point()}
        for k in swapped:
            model.encoders[k] = CachedEncoding()
        # tokens are gone once encoded
        augment = augment.model_copy(update={k: 0.0 for k in ("text_token_dropout", "text_swap", "text_delete",
                                                              "text_synonym", "text_insert", "text_char_noise")})
    tokenizers = getattr(data.preprocessor, "tokenizers_", {})
    texts = {}
    if augment.text_char_noise and cfg.data.text.pair is None and tokenizers:
        frame, rows = data.frames["train"], data.encoded["train"].rows
        texts = {c: frame[c].fillna("").astype(str).to_numpy()[rows].tolist() for c in tokenizers}
        features["train"] = {**features["train"], "row": torch.arange(len(targets))}
    # built after the `row` key is in: the dataset was made before it once, and character noise never ran in training
    tr = TensorData(features["train"], targets)
    val = TensorData(features["val"], data.targets["val"]) if "val" in features else None
    check_fits(augment, list(features["train"]), data.task)
    augmenter = Augmenter(augment, synonym_tables(augment, tokenizers), cfg.data.text.max_length, texts, tokenizers)
    result = fit(model, tr, val, data.task, cfg.train, run, accelerator, augment=augmenter, resume=resume,
                 on_epoch=on_epoch, distill=distill)
    model = accelerator.unwrap_model(model)
    for k, enc in swapped.items():
        model.encoders[k] = enc
    return model.eval(), result


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
    timer = Timer()
    lock = None
    try:  # from here on, whatever fails releases the run's lock
        if resume is not None:
            run = Run.open(resume)
            lock = run.lock().acquire() if int(os.environ.get("RANK", "0")) == 0 else None  # before any check or write
            cfg = run_config(run)
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


def _train(cfg: Config, run: Run, accelerator, timer: Timer, frame, test_frame, resume, on_epoch, cache_dir) -> Run:
    from ..evaluate import evaluate_run

    main = accelerator.is_main_process
    from ..track import Tracker

    tracker = None
    try:
        if main:
            tracker = Tracker(cfg, run.path)
            user_on_epoch = on_epoch

            def on_epoch(record, _user=user_on_epoch):
                tracker.epoch(record)
                if _user is not None:
                    _user(record)
        data = prepare(cfg, frame, test_frame, cache_dir=Path(cache_dir) if cache_dir else run.path / "cache")
        if main:
            run.start(config_to_yaml(cfg), cfg.train.seed, data_files(cfg) if frame is None else {})
            if cfg.evaluate.report and data.task != "causal_lm":  # what a person reads first: data_report.html
                from ..data.audit import audit
                from ..data.report import write_data_report

                quality = audit(cfg, with_label_issues=False, frame=frame)
                data.profile.update({k: quality[k] for k in ("duplicates", "near_duplicates", "leakage",
                                                             "all_missing_columns")})
                write_data_report({**quality, "splits": data.profile["splits"]}, run.path, cfg.name)
            write_json(run.path / "data_profile.json", data.profile)
            data.preprocessor.save(run.model_dir)
        accelerator.wait_for_everyone()
        t_fit = Timer()
        model, result = train_model(cfg, data, run, accelerator, resume=resume is not None, on_epoch=on_epoch)
        if main:
            saved = save_model(model, cfg.model, model.spec, run.model_dir)
            timings = {"fit_s": t_fit(), "loop_s": result.seconds}
            evaluate_run(run, cfg, data, model, frame)
            timings["total_s"] = timer()
            run.finish("complete", timings=timings, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                       parameters=sum(p.numel() for p in model.parameters()),
                       trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       saved_model=saved,
                       stopped_early=result.stopped_early, processes=accelerator.num_processes)
            tracker.finish(run, "complete")
        accelerator.wait_for_everyone()
    except KeyboardInterrupt:
        if main:
            run.finish("interrupted", error="interrupted (Ctrl-C)")
            if tracker is not None:
                tracker.finish(run, "interrupted")
            print(f"interrupted; the last checkpoint is kept. Continue with: foundry train --resume {run.path}",
                  file=sys.stderr)
        raise
    except BaseException as exc:
        status = getattr(exc, "run_status", "failed")
        if main and run.manifest_path.exists():
            run.finish(status, error=f"{type(exc).__name__}: {exc}")
        elif main:
            run.update_manifest(status=status, error=f"{type(exc).__name__}: {exc}")
        if main and tracker is not None and tracker.active and tracker.mlflow.active_run() is not None:
            tracker.finish(run, status)
        raise
    return run
