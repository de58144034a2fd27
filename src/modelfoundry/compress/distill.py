"""Knowledge distillation: a student (any model section) learns from the teacher's soft labels and the true
labels, on the teacher's own training split, with a preprocessor of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from ..core.infer import predict_tensors
from ..data import Prepared, prepare
from ..finetune import encoder_layers
from ..models.pretrained import PretrainedEncoder
from ..train import make_accelerator, train_model
from .config import DistillConfig

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def student_config(source: Config, dcfg: DistillConfig) -> Config:
    return source.override({"model": dcfg.student.model_dump(mode="json"), "train.epochs": dcfg.epochs or source.train.epochs,
                            "train.lr": dcfg.lr or source.train.lr, "compress": None, "tune": None})


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


def spread(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers for a shallower student, ending with the teacher's last (whose states the
    teacher's head was trained on): 6 -> 3 gives [1, 3, 5], 6 -> 2 gives [2, 5], 12 -> 6 every other from 1."""
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict:
    """Load the teacher's weights into a shallower student of the same architecture, in place: every tensor
    outside the Transformer layers (embeddings, final norms, head) by name, the layers by `spread`. The teacher
    must be plain weights (adapters merged). Returns {encoder key: teacher layers kept}."""
    renames, kept = {}, {}
    t_names = {id(m): n for n, m in teacher.named_modules()}
    s_names = {id(m): n for n, m in student.named_modules()}
    for key, enc in student.encoders.items():
        t_enc = teacher.encoders[key] if key in teacher.encoders else None
        if not isinstance(enc, PretrainedEncoder) or not isinstance(t_enc, PretrainedEncoder):
            raise ValueError(f"compress.distill.init: teacher needs a pretrained encoder for '{key}' in both "
                             f"teacher and student (found {type(t_enc).__name__} and {type(enc).__name__})")
        s_layers = encoder_layers(enc.model, "compress.distill.init")
        t_layers = encoder_layers(t_enc.model, "compress.distill.init")
        if len(s_layers) > len(t_layers):
            raise ValueError(f"compress.distill.init: teacher: the student has {len(s_layers)} layers, the teacher "
                             f"only {len(t_layers)}")
        kept[key] = spread(len(t_layers), len(s_layers))
        for i, t in enumerate(kept[key]):
            renames[s_names[id(s_layers[i])] + "."] = t_names[id(t_layers[t])] + "."
    source, state = teacher.state_dict(), {}
    for name, value in student.state_dict().items():
        prefix = next((p for p in renames if name.startswith(p)), None)
        t_name = renames[prefix] + name[len(prefix):] if prefix else name
        if t_name not in source or source[t_name].shape != value.shape:
            found = "missing" if t_name not in source else f"shape {tuple(source[t_name].shape)}"
            raise ValueError(f"compress.distill.init: teacher: the student's {name} {tuple(value.shape)} has no "
                             f"counterpart in the teacher ({t_name}: {found}); give the student the teacher's "
                             "model.path, pooling and head (model.hidden)")
        state[name] = source[t_name]
    student.load_state_dict(state)
    return kept


def distill(teacher, teacher_pre, source: Config, dcfg: DistillConfig, cache_dir: Path | None = None):
    """Train the student; returns (student model, its config, its prepared data, a record of the run).
    `cache_dir`: the text-encoding cache to use (the teacher run's)."""
    cfg = student_config(source, dcfg)
    if dcfg.init == "teacher":
        t_path = getattr(source.model, "path", None)
        same = t_path is not None and (t_path == cfg.model.path or Path(t_path).resolve() == Path(cfg.model.path).resolve())
        if source.model.type != "pretrained" or not same:
            raise ValueError(f"compress.distill.init: teacher needs the student's model.path to be the teacher's "
                             f"(student {cfg.model.path!r}, teacher {t_path!r})")
    data = prepare(cfg, cache_dir=cache_dir)
    if data.task == "classification" and list(data.preprocessor.classes_) != list(teacher_pre.classes_):
        raise ValueError("distillation: the student's classes differ from the teacher's "
                         f"({data.preprocessor.classes_[:5]} vs {teacher_pre.classes_[:5]})")
    soft = teacher_outputs(teacher, teacher_pre, data.frames["train"], data, "train")
    print(f"distill: training the {cfg.model.type} student for {cfg.train.epochs} epochs "
          f"(T={dcfg.temperature}, alpha={dcfg.alpha})", file=sys.stderr, flush=True)
    accelerator = make_accelerator(cfg.train.precision, cfg.train.grad_accum)
    kept: dict = {}
    init = (lambda student: kept.update(init_from_teacher(student, teacher))) if dcfg.init == "teacher" else None
    model, result = train_model(cfg, data, None, accelerator, teacher=soft, distill=(dcfg.temperature, dcfg.alpha),
                                init=init)
    record = {"student": cfg.model.model_dump(mode="json"), "temperature": dcfg.temperature, "alpha": dcfg.alpha,
              "epochs": cfg.train.epochs, "lr": cfg.train.lr, "init": dcfg.init, "best_epoch": result.best_epoch,
              "history": result.history}
    if kept:
        record["teacher_layers"] = kept
    return model, cfg, data, record
