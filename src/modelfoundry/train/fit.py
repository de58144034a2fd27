"""Build the configured model for prepared data and fit it: shared by `train`, cross-validation and distillation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..core.infer import TensorData
from ..core.runs import Run
from ..core.spec import BatchKey
from ..data import Prepared
from ..data.augment import TEXT_OPTIONS, Augmenter, check_fits, oversample, synonym_tables
from ..finetune import strategy
from ..models import build_model
from ..models.pretrained import CachedEncoding, cache_frozen_encodings
from ..pretrain import CorpusData
from .loop import FitResult, fit, total_steps

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def train_model(cfg: Config, data: Prepared | CorpusData, run: Run | None, accelerator, resume: bool = False,
                on_epoch=None, teacher: torch.Tensor | None = None, distill: tuple[float, float] | None = None,
                init=None) -> tuple[torch.nn.Module, FitResult]:
    """Build the configured model for `data` and fit it. Shared by `train`, cross-validation and distillation
    (`teacher`: a teacher's outputs for each training row, `distill`: (temperature, alpha), `init`: called with the
    built model before training, to set its starting weights)."""
    torch.manual_seed(cfg.train.seed)
    if isinstance(data, CorpusData):
        return _train_corpus(cfg, data, run, accelerator, resume, on_epoch, init)
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
    if getattr(cfg.model, "backend", "torch") == "keras":  # the same family built in Keras and trained by its fit
        from .keras_fit import check_keras_run, fit_keras

        check_keras_run(cfg, accelerator, teacher, init)
        augmenter = _augmenter(cfg, data, augment, features, targets)
        return fit_keras(cfg, data, features["train"], targets, run, accelerator, resume, on_epoch,
                         augmenter if augmenter.active else None)
    per_epoch = math.ceil(math.ceil(len(targets) / (cfg.train.batch_size * accelerator.num_processes))
                          / cfg.train.grad_accum)
    model = build_model(cfg.model, data.preprocessor.spec().with_steps(total_steps(cfg.train, per_epoch)))
    if data.task == "recommend":  # validation ranks the catalogue for each user, their training items left out
        from ..evaluate.recommend import seen_items

        model.seen_items = seen_items(features["train"]["user"], features["train"]["item"])
    if init is not None:
        init(model)
    finetune = strategy(getattr(cfg.model, "finetune", None))
    if finetune is not None and finetune.frozen:
        # the frozen encoder runs once per text, not once per epoch; only the head trains
        features = {s: cache_frozen_encodings(model, f) for s, f in features.items()}
        swapped = {name: model.encoders[name] for col, name in model.text_encoders().items()
                   if features["train"][BatchKey.text(col)].is_floating_point()}
        for k in swapped:
            model.encoders[k] = CachedEncoding()
        # tokens are gone once encoded
        augment = augment.model_copy(update={k: 0.0 for k in TEXT_OPTIONS})
    augmenter = _augmenter(cfg, data, augment, features, targets)
    # built after the `row` key is in: the dataset was made before it once, and character noise never ran in training
    tr = TensorData(features["train"], targets)
    val = TensorData(features["val"], data.targets["val"]) if "val" in features else None
    result = fit(model, tr, val, data.task, cfg.train, run, accelerator, augment=augmenter, resume=resume,
                 on_epoch=on_epoch, distill=distill)
    model = accelerator.unwrap_model(model)
    for k, enc in swapped.items():
        model.encoders[k] = enc
    return model.eval(), result


def _augmenter(cfg: Config, data: Prepared, augment, features: dict, targets: torch.Tensor) -> Augmenter:
    """The training batches' augmenter; character noise needs each row's text, so it adds a `row` feature."""
    tokenizers = getattr(data.preprocessor, "tokenizers_", {})
    texts = {}
    if augment.text_char_noise and cfg.data.text.pair is None and tokenizers:
        frame, rows = data.frames["train"], data.encoded["train"].rows
        texts = {c: frame[c].fillna("").astype(str).to_numpy()[rows].tolist() for c in tokenizers}
        features["train"] = {**features["train"], "row": torch.arange(len(targets))}
    check_fits(augment, list(features["train"]), data.task)
    return Augmenter(augment, synonym_tables(augment, tokenizers), cfg.data.text.max_length, texts, tokenizers)


def _train_corpus(cfg: Config, data: CorpusData, run: Run | None, accelerator, resume: bool, on_epoch, init
                  ) -> tuple[torch.nn.Module, FitResult]:
    """Self-supervised pretraining: the same loop over packed blocks (masked as they are read, for mlm)."""
    train = data.blocks["train"]
    per_epoch = math.ceil(math.ceil(len(train) / (cfg.train.batch_size * accelerator.num_processes)) / cfg.train.grad_accum)
    model = build_model(cfg.model, data.preprocessor.spec().with_steps(total_steps(cfg.train, per_epoch)))
    if init is not None:
        init(model)
    val = data.blocks.get("val")
    result = fit(model, train, val, data.task, cfg.train, run, accelerator, resume=resume, on_epoch=on_epoch)
    return accelerator.unwrap_model(model).eval(), result
