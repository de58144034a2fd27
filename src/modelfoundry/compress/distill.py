"""Knowledge distillation: a student (any model section) learns from the teacher's soft labels and the true
labels, on the teacher's own training split, with a preprocessor of its own."""

from __future__ import annotations

import sys

import pandas as pd
import torch

from ..config import Config, DistillConfig, config_to_dict, load_config
from ..data import Prepared, prepare
from ..train.loop import predict_tensors


def student_config(source: Config, dcfg: DistillConfig) -> Config:
    raw = config_to_dict(source)
    raw["model"] = dcfg.student.model_dump(mode="json")
    raw["train"]["epochs"] = dcfg.epochs or source.train.epochs
    raw["train"]["lr"] = dcfg.lr or source.train.lr
    for key in ("compress", "tune"):
        raw.pop(key, None)
    return load_config(raw)


def teacher_outputs(teacher, teacher_pre, frame: pd.DataFrame, student: Prepared, split: str) -> torch.Tensor:
    """The teacher's log-probabilities (or, for regression, its predictions in the student's target units) for
    the student's rows of one split."""
    enc = teacher_pre.transform(frame)
    if list(enc.rows) != list(student.encoded[split].rows):
        raise ValueError(f"distillation: teacher and student keep different rows of the {split} split "
                         f"({len(enc.rows)} vs {len(student.encoded[split].rows)}); give them the same inputs")
    out = predict_tensors(teacher, enc.features, student.task)
    if student.task == "classification":
        return torch.from_numpy(out).clamp_min(1e-8).log()
    values = teacher_pre.decode_regression(out)
    return student.preprocessor.encode_target(pd.Series(values)).float()


def distill(teacher, teacher_pre, source: Config, dcfg: DistillConfig):
    """Train the student; returns (student model, its config, its prepared data, a record of the run)."""
    from ..train import make_accelerator, train_model

    cfg = student_config(source, dcfg)
    data = prepare(cfg)
    if data.task == "classification" and list(data.preprocessor.classes_) != list(teacher_pre.classes_):
        raise ValueError("distillation: the student's classes differ from the teacher's "
                         f"({data.preprocessor.classes_[:5]} vs {teacher_pre.classes_[:5]})")
    soft = teacher_outputs(teacher, teacher_pre, data.frames["train"], data, "train")
    print(f"distill: training the {cfg.model.type} student for {cfg.train.epochs} epochs "
          f"(T={dcfg.temperature}, alpha={dcfg.alpha})", file=sys.stderr, flush=True)
    accelerator = make_accelerator(cfg.train.precision, cfg.train.grad_accum)
    model, result = train_model(cfg, data, None, accelerator, teacher=soft, distill=(dcfg.temperature, dcfg.alpha))
    record = {"student": cfg.model.model_dump(mode="json"), "temperature": dcfg.temperature, "alpha": dcfg.alpha,
              "epochs": cfg.train.epochs, "lr": cfg.train.lr, "best_epoch": result.best_epoch,
              "history": result.history}
    return model, cfg, data, record
