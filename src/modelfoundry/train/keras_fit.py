"""model.backend: keras: the configured family built in Keras 3 and trained by Keras' own `fit`, with the torch loop's
contract kept: the same seeded batch order per epoch (so a resume sees the same batches), the same losses (class
weights and per-row weights as a weighted mean), optimizer (no weight decay on biases, norms and embeddings),
warmup + schedule, gradient clipping and accumulation, validation metrics computed by our metrics registry,
early stopping, history.jsonl, TensorBoard, and checkpoints (`checkpoints/{last,best}-*/weights.safetensors`, the
optimizer's variables in `last`) that `--resume` continues from."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.infer import TensorData
from ..core.runs import Run, atomic_write_text, save_safetensors
from ..evaluate.metrics import metric_mode
from ..models.keras_io import KerasModule
from ..models.keras_zoo import build_keras, keras_runtime
from .loop import (
    SAMPLE_WEIGHT,
    Checkpointer,
    EpochSampler,
    FitResult,
    _log_epoch,
    _tensorboard,
    class_weights,
    early_stopping_metric,
    improves,
    stop_value,
    total_steps,
    validate,
)

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config

OPTIMIZER_FILE = "optimizer.safetensors"
WEIGHTS_FILE = "weights.safetensors"
UNSUPPORTED_AUGMENT = ("mixup",)
"""Augmentations the keras backend refuses: mixup blends two rows' losses, which Keras' fit does not take."""


def check_keras_run(cfg: Config, accelerator, teacher=None, init=None) -> None:
    """What the keras backend does not do, refused before anything is built, each naming the option."""
    if accelerator.num_processes > 1:
        raise ValueError("model.backend: keras trains in one process (torchrun/accelerate launch run the torch "
                         "backend); drop --nproc, or set model.backend: torch")
    if teacher is not None or init is not None:
        raise ValueError("compress.distill: the keras backend has no distillation; distill a torch run")
    if cfg.train.precision == "bf16":
        raise ValueError("train.precision: bf16 is the torch loop's autocast; the keras backend trains in float32 "
                         "(precision auto means float32 there, and Keras' ONNX export needs a float32 model): set "
                         "train.precision: auto or fp32, or model.backend: torch")
    if cfg.train.compile:
        raise ValueError("train.compile: torch.compile is the torch loop's; Keras compiles its own step (XLA / "
                         "tf.function by its backend): drop it, or set model.backend: torch")
    for name in UNSUPPORTED_AUGMENT:
        if getattr(cfg.data.augment, name):
            raise ValueError(f"data.augment.{name}: not on model.backend: keras (supported there: oversample and "
                             "the per-row augmentations); set it to 0 or use model.backend: torch")


def _schedule(keras, cfg, total: int):
    """The torch loop's per-step LambdaLR (warmup, then constant / linear / cosine) as a Keras schedule; plateau is
    a plain rate that the epoch callback cuts."""
    if cfg.schedule == "plateau":
        return cfg.lr
    warmup = int(cfg.warmup_ratio * total)
    if cfg.schedule == "constant" and not warmup:
        return cfg.lr
    return keras.saving.get_registered_object("modelfoundry>StepSchedule")(cfg.lr, warmup, total, cfg.schedule,
                                                                           cfg.grad_accum)


def _optimizer(keras, model, cfg, total: int):
    kw = {"learning_rate": _schedule(keras, cfg, total)}
    if cfg.grad_clip:
        kw["global_clipnorm"] = cfg.grad_clip
    if cfg.grad_accum > 1:
        kw["gradient_accumulation_steps"] = cfg.grad_accum
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=cfg.momentum, weight_decay=cfg.weight_decay or None, **kw)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(weight_decay=cfg.weight_decay or None, **kw)
    else:
        opt = keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **kw)
    if cfg.weight_decay:  # as the torch optimizer: no decay for biases, norms and embeddings
        opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables
                                                if len(v.shape) < 2 or "emb" in v.path.lower() or "positions" in v.path])
    return opt


def _loss(keras, task: str):
    if task == "classification":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanAbsoluteError() if task == "forecast" else keras.losses.MeanSquaredError()


def _batches(keras, module: KerasModule, features: dict, y: torch.Tensor, task: str, cfg, row_weights, augment):
    """A Keras PyDataset over our tensors in the torch loop's order: a permutation seeded by (seed, epoch). Text keeps
    its full padded width: Keras' TensorFlow input pipeline fixes each input's shape from its first batches."""

    width = {k: v.shape[1] for k, v in features.items() if k.startswith("text:")}

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.sampler = EpochSampler(len(y), cfg.seed)
            self.epoch, self.order = 1, None

        def set_epoch(self, epoch: int) -> None:
            self.epoch, self.order = epoch, None

        @property
        def num_batches(self):
            return math.ceil(len(y) / cfg.batch_size)

        def __getitem__(self, i):
            if self.order is None:
                self.sampler.set_epoch(self.epoch)
                self.order = torch.tensor(list(iter(self.sampler)))
            idx = self.order[i * cfg.batch_size: (i + 1) * cfg.batch_size]
            batch = {k: v[idx] for k, v in features.items()}
            if augment is not None:  # text augmentation may change a batch's width: back to the fixed one
                batch = augment(batch)
                for key in [k for k in batch if k.startswith("text:")]:
                    t = batch[key][:, :width[key]]
                    batch[key] = torch.nn.functional.pad(t, (0, width[key] - t.shape[1]))
            target = y[idx].numpy()
            if task == "regression":
                target = target.reshape(-1, 1).astype(np.float32)
            elif task == "forecast":
                target = target.astype(np.float32)
            if row_weights is None:
                return module.feeds(batch), target
            w = row_weights[idx].numpy().astype(np.float32)
            return module.feeds(batch), target, w * (len(w) / max(float(w.sum()), 1e-12))  # a weighted mean

    return Batches()


class _Checkpoints(Checkpointer):
    """The torch loop's checkpoint folders and pointers (`checkpoints/<tag>-<epoch>-<hex>/`, then `<tag>.json`), holding
    a Keras model's variables: `weights.safetensors`, and in `last` the optimizer's variables and the early-stopping
    state."""

    def save(self, tag: str, epoch: int, model, state: dict | None = None) -> None:
        folder = self.new_folder(tag, epoch)
        folder.mkdir(parents=True, exist_ok=True)
        # variables by position, as safetensors: 2 ms for the credit MLP, where Keras' .keras/.weights.h5 took 45 ms (two
        # writes in an improving epoch were most of a small model's epoch); the model itself is rebuilt from the config
        _save_variables(folder / WEIGHTS_FILE, model.weights)
        if state is not None:  # the optimizer's variables too (Keras' own save drops its weight-decay exclusions)
            _save_variables(folder / OPTIMIZER_FILE, model.optimizer.variables)
            atomic_write_text(folder / "state.json", json.dumps({**state, "epoch": epoch}))
        self.publish(tag, epoch, folder)


def fit_keras(cfg: Config, data, features: dict, targets: torch.Tensor, run: Run | None, accelerator,
              resume: bool = False, on_epoch=None, augment=None) -> tuple[KerasModule, FitResult]:
    """Build the configured family in Keras for `data` and fit it; returns the wrapped model holding the best
    epoch's weights, and the fit's record (as the torch loop's)."""
    started = time.perf_counter()
    tcfg, task = cfg.train, data.task
    keras = keras_runtime(cfg.model.keras_backend)
    keras.utils.set_random_seed(tcfg.seed)
    spec = data.preprocessor.spec()
    module = KerasModule(build_keras(cfg.model, spec, cfg.model.keras_backend), spec)
    val = TensorData(data.encoded["val"].features, data.targets["val"]) if "val" in data.encoded else None
    stop_metric = early_stopping_metric(tcfg, val)
    weights = class_weights(targets, int(targets.max()) + 1) if task == "classification" and tcfg.class_weights == "balanced" else None
    features = dict(features)
    row_weights = features.pop(SAMPLE_WEIGHT, None)
    if weights is not None:
        row_weights = weights[targets] * (row_weights if row_weights is not None else 1.0)
    steps_per_epoch = math.ceil(math.ceil(len(targets) / tcfg.batch_size) / tcfg.grad_accum)
    total = total_steps(tcfg, steps_per_epoch)
    model = module.keras_model
    model.compile(optimizer=_optimizer(keras, model, tcfg, total), loss=_loss(keras, task))
    ckpt = _Checkpoints(run.checkpoint_dir) if run is not None else None
    state = {"best": None, "best_epoch": 0, "bad_epochs": 0, "plateau_best": None, "plateau_bad": 0}
    history: list[dict] = []
    start_epoch = 0
    if resume and ckpt is not None and ckpt.folder("last") is not None:
        folder = ckpt.folder("last")
        _restore(model, folder)
        saved = json.loads((folder / "state.json").read_text())
        start_epoch = saved.pop("epoch")
        state.update(saved)
        history = [h for h in run.history() if h["epoch"] <= start_epoch]
        run.truncate_history(start_epoch)
    batches = _batches(keras, module, features, targets, task, tcfg, row_weights, augment)
    writer = _tensorboard(run) if run is not None else None
    mode = metric_mode(stop_metric)
    best_weights: list = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.set_epoch(epoch + 1)
            _reseed(self.model, tcfg.seed, epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            if tcfg.max_steps is not None and int(self.model.optimizer.iterations) >= tcfg.max_steps:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            n = epoch + 1
            opt = self.model.optimizer
            record = {"epoch": n, "train_loss": round(float(logs["loss"]), 6),
                      "lr": float(keras.ops.convert_to_numpy(opt.learning_rate))}
            if val is not None and len(val):
                record.update(validate(module, val, task, tcfg, accelerator, weights))
            value = stop_value(record, stop_metric)
            improved = improves(value, state["best"], mode, tcfg)
            if improved:
                state.update(best=value, best_epoch=n, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            if tcfg.schedule == "plateau" and value is not None:  # torch's ReduceLROnPlateau (threshold 1e-4, rel)
                pb = state["plateau_best"]
                if pb is None or (value < pb * (1 - 1e-4) if mode == "min" else value > pb * (1 + 1e-4)):
                    state.update(plateau_best=value, plateau_bad=0)
                else:
                    state["plateau_bad"] += 1
                    if state["plateau_bad"] > tcfg.plateau_patience:
                        opt.learning_rate.assign(float(keras.ops.convert_to_numpy(opt.learning_rate)) * tcfg.plateau_factor)
                        state["plateau_bad"] = 0
            stopped = tcfg.early_stopping is not None and state["bad_epochs"] >= tcfg.early_stopping.patience
            history.append(record)
            _log_epoch(record, stop_metric, improved)
            if run is not None:
                run.append_history(record)
                if writer:
                    for k, v in record.items():
                        if k != "epoch" and v is not None:
                            writer.add_scalar(k, v, n)
                    writer.flush()
                if improved:
                    ckpt.save("best", n, self.model)
                ckpt.save("last", n, self.model, {**state, "stopped": stopped})
            elif improved:
                best_weights[:] = [w.copy() for w in self.model.get_weights()]
            if on_epoch is not None:
                on_epoch(record)
            if stopped:
                self.model.stop_training = True

    done = start_epoch >= tcfg.epochs or (tcfg.max_steps is not None
                                          and int(model.optimizer.iterations) >= tcfg.max_steps)
    if not done and not (ckpt is not None and resume and _stopped(ckpt)):
        model.fit(batches, epochs=tcfg.epochs, initial_epoch=start_epoch, callbacks=[Epochs()], verbose=0, shuffle=False)
    if writer:
        writer.close()
    if ckpt is not None and ckpt.folder("best") is not None:
        _load_variables(ckpt.folder("best") / WEIGHTS_FILE, model.weights)
    elif best_weights:
        model.set_weights(best_weights)
    return module, FitResult(state["best_epoch"], state["best"], len(history),
                             bool(tcfg.early_stopping and state["bad_epochs"] >= tcfg.early_stopping.patience),
                             history, round(time.perf_counter() - started, 3))


def _save_variables(path: Path, variables) -> None:
    save_safetensors(path, {str(i): torch.from_numpy(np.array(v.numpy())) for i, v in enumerate(variables)},
                     metadata={"paths": json.dumps([v.path for v in variables])})


def _load_variables(path: Path, variables) -> None:
    """Assign saved variables by position, after checking that names (less an optimizer's own prefix, which differs
    between processes: "adam_w" / "adam_w_3") and shapes fit."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(path)
    with safe_open(path, "pt") as fh:
        paths = json.loads(fh.metadata()["paths"])
    same = len(paths) == len(variables) and all(
        p.split("/", 1)[-1] == v.path.split("/", 1)[-1] and tuple(tensors[str(i)].shape) == tuple(v.shape)
        for i, (p, v) in enumerate(zip(paths, variables)))
    if not same:
        raise ValueError(f"{path}: the checkpoint does not fit this model (its variables' names or shapes differ)")
    for i, v in enumerate(variables):
        v.assign(tensors[str(i)].numpy())


def _restore(model, folder: Path) -> None:
    """The last checkpoint's weights and optimizer variables into the freshly built and compiled model."""
    _load_variables(folder / WEIGHTS_FILE, model.weights)
    model.optimizer.build(model.trainable_variables)
    _load_variables(folder / OPTIMIZER_FILE, model.optimizer.variables)


def _reseed(model, seed: int, epoch: int) -> None:
    """Dropout's random streams as a function of (seed, epoch, layer): Keras keeps them in seed-generator variables
    that a saved model does not hold, so a resumed run would draw other masks. Set per epoch, it draws the same."""
    import numpy as np

    states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    for i, v in enumerate(states):
        v.assign(np.array([seed * 1009 + i, epoch << 20], dtype=v.dtype))


def _stopped(ckpt: _Checkpoints) -> bool:
    """The last checkpoint was written by the epoch that stopped early: nothing is left to train."""
    return bool(json.loads((ckpt.folder("last") / "state.json").read_text()).get("stopped"))
