"""The training loop, on Accelerate: one loop from a laptop CPU to torchrun/DDP.

Per epoch: seeded data order, optional augmentation, gradient accumulation and clipping, bf16 autocast,
validation on every process (so early-stopping decisions agree without communication), history and
TensorBoard on process 0, and an atomic checkpoint (weights, optimizer, schedule, RNG, early-stopping
state) from which `--resume` continues exactly."""

from __future__ import annotations

import json
import math
import secrets
import shutil
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.infer import TensorData, as_outputs, collate_identity, in_row_order, inference_batches, lm_scores
from ..core.progress import bar
from ..core.runs import Run, atomic_write_text, save_safetensors
from ..core.spec import CORPUS_TASKS, LM_TASKS
from ..data.augment import mixup
from ..evaluate.metrics import compute, metric_mode
from ..evaluate.tracing import tracing_scores
from ..models.dropout import use_fast_dropout
from ..pretrain import Blocks, corpus_scores
from .config import TrainConfig
from .optim import build_optimizer, build_schedule


class EpochSampler(torch.utils.data.Sampler):
    """A permutation seeded by (seed, epoch): the same order after a resume, independent of global RNG.

    With `lengths` (text), batches are length-bucketed: the permutation is cut into chunks of 50 batches,
    each chunk sorted by length and cut into batches, and the batches shuffled, so that a batch pads to a
    length close to its own texts' and not to the longest text in the data."""

    def __init__(self, n: int, seed: int, lengths: torch.Tensor | None = None, batch_size: int = 1):
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.lengths is None:
            return iter(perm.tolist())
        chunk = self.batch_size * 50
        batches = []
        for start in range(0, self.n, chunk):
            part = perm[start: start + chunk]
            part = part[torch.argsort(self.lengths[part], stable=True)]
            batches += list(part.split(self.batch_size))
        order = torch.randperm(len(batches), generator=g).tolist()
        return iter(torch.cat([batches[i] for i in order]).tolist())

    def __len__(self) -> int:
        return self.n


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps the run will take: every epoch's, or train.max_steps when that comes first."""
    steps = steps_per_epoch * cfg.epochs
    return min(steps, cfg.max_steps) if cfg.max_steps is not None else steps


SAMPLE_WEIGHT = "sample_weight"
"""A training feature holding each row's weight in the loss (evaluate.fairness.mitigate: reweigh); never a model input."""


def loss_fn(task: str, logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
            sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    logits = logits.float()
    if task in LM_TASKS:  # the model returned per-example [loss sum, predicted tokens]
        return logits[:, 0].sum() / logits[:, 1].sum().clamp_min(1.0)
    if task == "forecast":  # outputs and targets are (y - y_origin) / MASE scale: their mean absolute error is the MASE
        return F.l1_loss(logits, y.float())
    if task == "knowledge_tracing":  # a logit per answer; -1 marks padding and each chunk's unscored first answer
        mask = y >= 0
        return F.binary_cross_entropy_with_logits(logits[mask], y[mask].float())
    if task == "recommend":  # implicit: [picked, sampled alternatives] logits, a sampled softmax; explicit: the rating
        if logits.shape[1] > 1:
            return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
        return F.mse_loss(logits[:, 0], y.float())
    if task == "anomaly":  # the model returned each row's anomaly score, which it learns to keep low on normal rows
        return (logits[:, 0] * sample_weight).sum() / sample_weight.sum() if sample_weight is not None else logits[:, 0].mean()
    if sample_weight is not None:  # a weighted mean over the batch's rows
        per = (F.cross_entropy(logits, y, weight=weights, reduction="none") if task == "classification"
               else (logits[:, 0] - y.float()) ** 2)
        return (per * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)
    if task == "classification":
        return F.cross_entropy(logits, y, weight=weights)
    return F.mse_loss(logits[:, 0], y.float())


def _objective(task, logits, y, teacher, distill, weights, sample_weight=None) -> torch.Tensor:
    return (loss_fn(task, logits, y, weights, sample_weight) if teacher is None
            else distill_loss(task, logits, y, teacher, *distill, weights))


def distill_loss(task: str, logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 alpha: float, weights: torch.Tensor | None) -> torch.Tensor:
    """Hinton et al.: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * the usual loss. `teacher` holds the
    teacher's log-probabilities (classification) or its standardized predictions (regression)."""
    hard = loss_fn(task, logits, y, weights)
    logits = logits.float()
    if task == "classification":
        t = temperature
        soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher.float() / t, -1), log_target=True,
                        reduction="batchmean") * t * t
    else:
        soft = F.mse_loss(logits[:, 0], teacher.float())
    return alpha * soft + (1 - alpha) * hard


def class_weights(y: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=k).float().clamp_min(1)
    return counts.sum() / (k * counts)


@dataclass
class FitResult:
    best_epoch: int
    best_metric: float | None
    epochs_run: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # the loop's own wall time (what Trainer.train() measures), without building the model


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], str]:
    tensors = {}
    for pid, s in state["state"].items():
        for name, v in s.items():
            tensors[f"{pid}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, json.dumps(state["param_groups"])


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: str) -> dict:
    state: dict = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": json.loads(groups)}


class Checkpointer:
    """checkpoints/<tag>-<epoch>/ written whole, then `checkpoints/<tag>.json` points at it (atomic rename),
    then older folders are removed: a crash at any moment leaves a complete checkpoint."""

    def __init__(self, directory: Path):
        self.dir = directory

    def save(self, tag: str, epoch: int, model: nn.Module, optimizer=None, schedule=None, state: dict | None = None) -> None:
        folder = self.new_folder(tag, epoch)
        frozen = (getattr(model, "base", None) or {}).get("keys", set())  # reloadable from the base directory
        save_safetensors(folder / "model.safetensors", {k: v for k, v in model.state_dict().items() if k not in frozen})
        if optimizer is not None:
            tensors, groups = _flatten_optimizer(optimizer.state_dict())
            save_safetensors(folder / "optimizer.safetensors", tensors, metadata={"param_groups": groups})
            rng = {"cpu": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
            save_safetensors(folder / "rng.safetensors", rng)
            atomic_write_text(folder / "state.json", json.dumps({**(state or {}), "epoch": epoch,
                                                                 "schedule": schedule.state_dict()}))
        self.publish(tag, epoch, folder)

    def new_folder(self, tag: str, epoch: int) -> Path:
        """A new folder every time: re-saving an epoch (after a resume) used to delete the folder the pointer still
        named before the new one existed."""
        return self.dir / f"{tag}-{epoch:04d}-{secrets.token_hex(3)}"

    def publish(self, tag: str, epoch: int, folder: Path) -> None:
        """Point `<tag>.json` at a folder written whole (atomic rename), then remove the tag's older folders."""
        atomic_write_text(self.dir / f"{tag}.json", json.dumps({"folder": folder.name, "epoch": epoch}))
        for old in self.dir.glob(f"{tag}-*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)

    def folder(self, tag: str) -> Path | None:
        pointer = self.dir / f"{tag}.json"
        if not pointer.exists():
            return None
        return self.dir / json.loads(pointer.read_text())["folder"]

    def load_weights(self, tag: str, model: nn.Module) -> None:

        _load_weights(model, self.folder(tag) / "model.safetensors")

    def restore(self, model: nn.Module, optimizer, schedule) -> dict:
        from safetensors import safe_open
        from safetensors.torch import load_file

        folder = self.folder("last")
        _load_weights(model, folder / "model.safetensors")
        with safe_open(folder / "optimizer.safetensors", "pt") as fh:
            groups = fh.metadata()["param_groups"]
        optimizer.load_state_dict(_unflatten_optimizer(load_file(folder / "optimizer.safetensors"), groups))
        state = json.loads((folder / "state.json").read_text())
        schedule.load_state_dict(state.pop("schedule"))
        rng = load_file(folder / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        if torch.cuda.is_available() and "cuda0" in rng:
            torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng])
        return state


def _load_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    frozen = (getattr(model, "base", None) or {}).get("keys", set())
    missing, unexpected = model.load_state_dict(load_file(path), strict=not frozen)
    if unexpected or set(missing) - frozen:
        raise ValueError(f"{path}: checkpoint does not fit the model (missing {sorted(set(missing) - frozen)[:5]}, "
                         f"unexpected {unexpected[:5]})")


def early_stopping_metric(cfg: TrainConfig, val) -> str:
    """The metric that picks the best epoch; one that reads a validation split the data lacks is refused before an
    epoch is spent, not after."""
    stop_metric = cfg.early_stopping.metric if cfg.early_stopping else ("val_loss" if val is not None else "train_loss")
    if stop_metric.startswith("val_") and (val is None or not len(val)):
        raise ValueError(f"train.early_stopping.metric {stop_metric} reads the validation split, and this data has none "
                         "(data.split.val is 0); set train.early_stopping: null (train every epoch), a train_ metric, "
                         "or data.split.val above 0")
    return stop_metric


def stop_value(record: dict, stop_metric: str) -> float | None:
    """The epoch's early-stopping value; a metric the epoch does not report is refused, listing those it does."""
    if stop_metric not in record:
        raise ValueError(f"train.early_stopping.metric: '{stop_metric}' is not reported; "
                         f"available: {', '.join(k for k in record if k != 'epoch')}")
    return record[stop_metric]


def improves(value: float | None, best: float | None, mode: str, cfg: TrainConfig) -> bool:
    """An epoch improves when it beats the best so far by more than early_stopping.min_delta (the first always does)."""
    delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
    return best is None or (value is not None and (value < best - delta if mode == "min" else value > best + delta))


def fit(model: nn.Module, train: TensorData | Blocks, val: TensorData | Blocks | None, task: str, cfg: TrainConfig, run: Run | None,
        accelerator, augment=None, resume: bool = False, on_epoch=None, distill: tuple[float, float] | None = None
        ) -> FitResult:
    """Train `model` in place; on return it holds the best epoch's weights (by the early-stopping metric).
    `on_epoch(record)` is called after every epoch with its metrics (a tuner's pruner listens; it may raise).
    `distill=(temperature, alpha)`: the training features carry a teacher's outputs under `teacher` and the
    loss is the distillation loss. `augment`: the Augmenter for training batches."""
    started = time.perf_counter()
    main = accelerator.is_main_process
    text_lengths = [v for k, v in train.features.items() if k.startswith("len:")]
    lengths = torch.stack(text_lengths).amax(0) if text_lengths and cfg.bucket_by_length else None
    sampler = EpochSampler(len(train), cfg.seed, lengths, cfg.batch_size * accelerator.num_processes)
    loader = torch.utils.data.DataLoader(train, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_identity)
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = math.ceil(math.ceil(len(train) / (cfg.batch_size * accelerator.num_processes)) / cfg.grad_accum)
    schedule = build_schedule(optimizer, cfg, total_steps(cfg, steps_per_epoch))
    per_epoch_schedule = isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau)
    weights = class_weights(train.y, int(train.y.max()) + 1) if task == "classification" and cfg.class_weights == "balanced" else None
    stop_metric = early_stopping_metric(cfg, val)
    mode = metric_mode(stop_metric)
    ckpt = Checkpointer(run.checkpoint_dir) if run is not None else None

    if accelerator.device.type == "cpu":  # torch's CPU dropout costs more than a LoRA step's adapters
        use_fast_dropout(model)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if weights is not None:
        weights = weights.to(accelerator.device)
    raw = accelerator.unwrap_model(model)
    forward = CompiledStep(model) if cfg.compile else model
    start_epoch, best, best_epoch, bad_epochs, history = 0, None, 0, 0, []
    if resume and ckpt is not None and ckpt.folder("last") is not None:
        state = ckpt.restore(raw, optimizer, schedule)
        start_epoch, best, best_epoch, bad_epochs = state["epoch"], state["best"], state["best_epoch"], state["bad_epochs"]
        history = [h for h in run.history() if h["epoch"] <= start_epoch]
        if main:
            run.truncate_history(start_epoch)
    writer = _tensorboard(run) if main and run is not None else None
    best_state = None  # without a run directory the best weights are kept in memory
    use_aug = augment is not None and augment.active
    mix = augment.cfg.mixup if use_aug and task not in LM_TASKS else 0.0
    global_step = start_epoch * steps_per_epoch
    stopped = False
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        if stopped or (cfg.max_steps is not None and global_step >= cfg.max_steps):
            break
        model.train()
        # Accelerate's loader re-applies its own epoch counter at each pass: set that one, so the data
        # order depends only on (seed, epoch) and a resumed run sees the same batches.
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        if hasattr(train, "set_epoch"):  # packed corpora cut their blocks and draw their masks per epoch
            train.set_epoch(epoch)
        progress = _progress(len(loader), f"epoch {epoch}/{cfg.epochs}", main)
        total, count, global_step = _train_epoch(
            model, raw, forward, loader, optimizer, None if per_epoch_schedule else schedule, accelerator, cfg, task,
            augment if use_aug else None, mix, weights, distill, global_step, progress)
        if accelerator.num_processes > 1:  # the epoch's loss over every process's batches
            total, count = accelerator.reduce(torch.tensor([total, count], device=accelerator.device), "sum").tolist()
        record = {"epoch": epoch, "train_loss": round(total / max(count, 1), 6), "lr": optimizer.param_groups[0]["lr"]}
        if val is not None and len(val):
            record.update(validate(raw, val, task, cfg, accelerator, weights))
        value = stop_value(record, stop_metric)
        improved = improves(value, best, mode, cfg)
        if improved:
            best, best_epoch, bad_epochs = value, epoch, 0
        else:
            bad_epochs += 1
        if per_epoch_schedule:
            schedule.step(value)
        stopped = cfg.early_stopping is not None and bad_epochs >= cfg.early_stopping.patience
        history.append(record)
        if main:
            _log_epoch(record, stop_metric, improved)
            if run is not None:
                _record_epoch(run, writer, ckpt, record, improved, raw, optimizer, schedule,
                              {"best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped": stopped})
        if run is None and improved:
            best_state = {k: v.detach().clone() for k, v in raw.state_dict().items()}
        if on_epoch is not None:
            on_epoch(record)
        accelerator.wait_for_everyone()
    if writer:
        writer.close()
    if ckpt is not None and ckpt.folder("best") is not None:
        ckpt.load_weights("best", raw)
    elif best_state is not None:
        raw.load_state_dict(best_state)
    accelerator.wait_for_everyone()
    # prepare() wrapped forward in bf16 autocast; the trained model is evaluated, exported and saved as itself
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return FitResult(best_epoch, best, len(history), stopped, history, round(time.perf_counter() - started, 3))


class CompiledStep:
    """The training step's forward compiled (torch.compile, static shapes) for the first batch's shapes; a batch of
    other shapes (an epoch's last, a bucket of other lengths) runs uncompiled instead of compiling again (a second
    compile cost ~30 s on 2 cores, more than it saved). It shares the model's parameters: validation, export and
    prediction use the model itself."""

    def __init__(self, model: nn.Module):
        self.model, self.compiled, self.shapes = model, torch.compile(model, dynamic=False), None

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        shapes = {k: tuple(v.shape) for k, v in batch.items()}
        if self.shapes is None:
            self.shapes = shapes
        return (self.compiled if shapes == self.shapes else self.model)(batch)


def _train_epoch(model, raw, forward, loader, optimizer, schedule, accelerator, cfg: TrainConfig, task: str, augment, mix: float,
                 weights, distill, global_step: int, progress) -> tuple[float, int, int]:
    """One pass over the training batches: augmentation, mixup, the objective (plus the model's regulariser),
    accumulation, clipping, the optimizer and per-step schedule (None when it steps per epoch), and the model's
    after-step hook. `forward` is the model or its compiled step. Returns (loss sum, rows, global step)."""
    total, count = 0.0, 0
    for batch in loader:
        teacher = batch.pop("teacher", None)
        sample_weight = batch.pop(SAMPLE_WEIGHT, None)
        if augment is not None:
            batch = augment(batch)
        y = batch.pop("y")
        perm = None
        if mix:
            batch, perm, lam = mixup(batch, mix)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                logits = forward(batch)
            loss = _objective(task, logits, y, teacher, distill, weights, sample_weight)
            if perm is not None:  # mixup: the loss blends the two targets as the inputs were blended
                loss = lam * loss + (1 - lam) * _objective(task, logits, y[perm], None if teacher is None
                                                           else teacher[perm], distill, weights, sample_weight)
            reg = raw.regularization() if hasattr(raw, "regularization") else None
            accelerator.backward(loss if reg is None else loss + reg)
            if accelerator.sync_gradients and cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            if accelerator.sync_gradients:
                global_step += 1
                if hasattr(raw, "after_optimizer_step"):
                    raw.after_optimizer_step(global_step)
            optimizer.zero_grad()
            if accelerator.sync_gradients and schedule is not None:
                schedule.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
        if progress:
            progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
            progress.update(1)
        if cfg.max_steps is not None and global_step >= cfg.max_steps and accelerator.sync_gradients:
            break
    if progress:
        progress.close()
    return total, count, global_step


def _record_epoch(run: Run, writer, ckpt: Checkpointer, record: dict, improved: bool, raw, optimizer, schedule,
                  state: dict) -> None:
    """history.jsonl, TensorBoard, and the checkpoints (best when it improved; last always, with the early-stopping
    state a resume needs)."""
    run.append_history(record)
    if writer:
        for k, v in record.items():
            if k != "epoch" and v is not None:
                writer.add_scalar(k, v, record["epoch"])
        writer.flush()
    if improved:
        ckpt.save("best", record["epoch"], raw)
    ckpt.save("last", record["epoch"], raw, optimizer, schedule, state)


@torch.no_grad()
def validate(model: nn.Module, val: TensorData, task: str, cfg: TrainConfig, accelerator, weights) -> dict:
    model.eval()
    if task in CORPUS_TASKS:
        record = corpus_scores(model, val, max(cfg.batch_size, 32), accelerator.device, accelerator.autocast)
        model.train()
        return {"val_loss": record["loss"], "val_perplexity": record["perplexity"]}
    if task == "causal_lm":
        record = lm_scores(model, val.features, max(cfg.batch_size, 64), accelerator.device, accelerator.autocast)
        model.train()
        return {f"val_{k}": v for k, v in record.items()}
    if task == "knowledge_tracing":
        record = tracing_scores(model, val, max(cfg.batch_size, 64), accelerator)
        model.train()
        return {f"val_{k}": v for k, v in record.items() if k != "answers"}
    losses, outs, rows = [], [], []
    for idx, batch in inference_batches(val.features, val.y, max(cfg.batch_size, 256)):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        y = batch.pop("y")
        with accelerator.autocast():
            logits = model(batch).float()
        losses.append(float(loss_fn(task, logits, y, weights)) * len(y))
        outs.append(as_outputs(logits, task))
        rows += idx
    out = in_row_order(np.concatenate(outs), rows)
    record = {"val_loss": round(sum(losses) / len(val), 6)}
    if task != "recommend":
        record.update({f"val_{k}": v for k, v in compute(task, val.y.numpy(), out).items()})
    elif getattr(model, "seen_items", None) is not None:  # the whole catalogue ranked, training items excluded
        from ..evaluate.recommend import validation_ranking

        ranked = validation_ranking(model, val.features["user"], val.features["item"], model.seen_items)
        record.update({f"val_{k}": v for k, v in ranked.items()})
    model.train()
    return record


def tensorboard_without_tensorflow() -> None:
    """TensorBoard imports TensorFlow for its file writer whenever it is installed (the keras extra): 3-4 s and
    hundreds of MB in every torch run (and in every library that imports it: stable-baselines3). Its own switch, a
    `tensorboard.compat.notf` module, keeps it on the bundled stub it uses without TensorFlow (the same event files)."""
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def _tensorboard(run: Run):
    tensorboard_without_tensorflow()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a core dependency; tolerate a trimmed install
        return None
    return SummaryWriter(log_dir=str(run.path / "tensorboard"))


def _progress(total: int, desc: str, main: bool):
    return bar(total, desc, unit="step", show=main)


def _log_epoch(record: dict, metric: str, improved: bool) -> None:
    shown = {k: v for k, v in record.items() if k in ("train_loss", "val_loss", metric)}
    text = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    print(f"epoch {record['epoch']:>3}  {text}{'  *' if improved else ''}", file=sys.stderr, flush=True)
