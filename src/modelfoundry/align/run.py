"""`align(cfg)`: a config with an `align:` section -> TRL's trainer for the method -> a complete Run directory whose
model/ is a plain Hugging Face directory (generate, serve and `model.path` take it) with the template it was tuned
with. The losses are TRL's; what is ours is the config, the data handling, the guard, the evaluation and the run."""

from __future__ import annotations

import json
import os
import resource
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..core import progress
from ..core.hardware import resolve_precision
from ..core.runs import Run, Timer, atomic_write_text, read_json, write_json
from ..data import data_files
from ..evaluate import write_card
from ..finetune import STRATEGIES, adapt
from ..models.lm import export_hf
from .data import DEFAULT_TEMPLATE, read_align
from .evaluate import evaluate_align
from .model import Base, load_tokenizer, resolve_base
from .rewards import Rule, Watch, distinct_n

if TYPE_CHECKING:
    from ..config import Config

SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}
OPTIMIZERS = {"adamw": "adamw_torch", "adam": "adamw_torch", "sgd": "sgd"}


def trl_args(cfg: Config, run: Run, has_val: bool, max_length: int) -> dict:
    """TRL/transformers training arguments from the train section; align.options (TRL's own names) win."""
    t, a = cfg.train, cfg.align
    if t.schedule == "plateau":
        raise ValueError("train.schedule plateau needs a validation metric per epoch; alignment runs use constant, "
                         "linear or cosine")
    if t.compile:
        raise ValueError("train.compile compiles our training loop's step; alignment trains in TRL's: set "
                         "align.options.torch_compile: true (transformers' own option) instead")
    bf16 = resolve_precision(t.precision) == "bf16"
    args = dict(output_dir=str(run.path / "cache" / "trl"), use_cpu=not torch.cuda.is_available(), bf16=bf16,
                learning_rate=t.lr, num_train_epochs=t.epochs, max_steps=t.max_steps or -1,
                per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
                gradient_accumulation_steps=t.grad_accum, weight_decay=t.weight_decay if t.optimizer != "adam" else 0.0,
                warmup_steps=t.warmup_ratio, lr_scheduler_type=SCHEDULES[t.schedule], optim=OPTIMIZERS[t.optimizer],
                max_grad_norm=t.grad_clip or 0.0, seed=t.seed, data_seed=t.seed, report_to=[], logging_steps=1,
                save_strategy="no", eval_strategy="epoch" if has_val else "no", disable_tqdm=not progress.enabled(),
                dataloader_num_workers=0)
    if a.method == "grpo":
        args["max_completion_length"] = a.max_new_tokens
        args["reward_weights"] = [r.weight for r in a.rewards]
    else:
        args["max_length"] = max_length
    if a.method == "ipo":
        args["loss_type"] = ["ipo"]
    return {**args, **a.options}


def _trainer(cfg: Config, base: Base, tok, frames: dict, run: Run, max_length: int, rules: list, watch: Watch | None):
    """TRL's trainer for the method, on the model (a PEFT adapter around it where model.finetune asks)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    a, m = cfg.align, cfg.model
    method = a.method
    strategy = STRATEGIES[m.finetune]
    if strategy.frozen or strategy.virtual:
        raise ValueError(f"model.finetune {m.finetune}: alignment trains full weights or a weight adapter (lora, "
                         "adalora, ia3, loha, vera)")
    if method == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(base.path, num_labels=1, use_safetensors=True)
        model.config.pad_token_id = tok.pad_token_id
        task_type = "SEQ_CLS"
    else:
        model = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True)
        task_type = "CAUSAL_LM"
    model = adapt(model, m.finetune, m.adapter, None, task_type)
    keep = {"sft": ["prompt", "completion"], "grpo": None}.get(method, ["prompt", "chosen", "rejected"])

    def dataset(frame):
        return Dataset.from_pandas(frame if keep is None else frame[keep], preserve_index=False)

    train_ds = dataset(frames["train"])
    val_ds = dataset(frames["val"]) if len(frames.get("val", ())) and method != "grpo" else None
    args = trl_args(cfg, run, val_ds is not None, max_length)
    common = dict(model=model, train_dataset=train_ds, eval_dataset=val_ds, processing_class=tok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRL's advice for GPUs and the hub
        if method == "sft":
            from trl import SFTConfig, SFTTrainer
            return SFTTrainer(args=SFTConfig(**args), **common)
        if method == "reward":
            from trl import RewardConfig, RewardTrainer
            return RewardTrainer(args=RewardConfig(**args), **common)
        if method in ("dpo", "ipo"):
            from trl import DPOConfig, DPOTrainer
            return DPOTrainer(args=DPOConfig(**args), **common)
        if method == "orpo":
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
            return ORPOTrainer(args=ORPOConfig(**args), **common)
        if method == "kto":
            from trl import KTOConfig, KTOTrainer
            from trl.data_utils import unpair_preference_dataset

            common["train_dataset"] = unpair_preference_dataset(train_ds)
            common["eval_dataset"] = unpair_preference_dataset(val_ds) if val_ds is not None else None
            return KTOTrainer(args=KTOConfig(**args), **common)
        from trl import GRPOConfig, GRPOTrainer

        funcs = [watch.wrap(r) if i == 0 else r for i, r in enumerate(rules)]
        trainer = GRPOTrainer(args=GRPOConfig(**args), reward_funcs=funcs, **common)
        greedy = list(dict.fromkeys(frames["train"]["prompt"].tolist()))[: a.guard.greedy_prompts]
        trainer.add_callback(guard_callback(a.guard, watch, greedy, base.eos_id, a.max_new_tokens))
        return trainer


def collapse(batches: list[list[str]], g) -> tuple[float, float, bool]:
    """(distinct-2 of the replies of the first `g.window` reward calls, of the last `g.window`, whether the last fell
    below `g.min_distinct_2` times the first). Before 2 windows have passed: the first window against itself."""
    first = distinct_n([t for batch in batches[: g.window] for t in batch], 2)
    now = distinct_n([t for batch in batches[-g.window:] for t in batch], 2)
    return first, now, len(batches) >= 2 * g.window and first > 0 and now < g.min_distinct_2 * first


def greedy_distinct_2(model, tok, prompts: list[str], eos_id: int, max_new_tokens: int) -> float:
    """distinct-2 of the policy's greedy replies to `prompts`. Training goes on as if this had not run: the model is
    put back in training mode, and generation leaves torch's random state (the rollouts' stream) where it was."""
    from .evaluate import generate_replies

    was_training = model.training
    try:
        return distinct_n(generate_replies(model, tok, prompts, eos_id, max_new_tokens), 2)
    finally:
        model.train(was_training)


def guard_callback(g, watch: Watch, greedy: list[str] | None = None, eos_id: int = -1, max_new_tokens: int = 0):
    """A TrainerCallback: after every step, the distinct-2 of the latest replies (kept in `trace` for the history);
    with `greedy` prompts (guard.greedy_prompts), every `g.window` steps also the distinct-2 of the policy's greedy
    replies to them (in `greedy_trace`) against its value before training. When either collapses (see GuardConfig), a
    warning, the event in `fired`, and with action stop the end of training."""
    from transformers import TrainerCallback

    class Guard(TrainerCallback):
        def __init__(self):
            self.fired, self.trace, self.greedy_trace, self.greedy_first = None, {}, {}, None

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            if greedy:
                self.greedy_first = greedy_distinct_2(model, processing_class, greedy, eos_id, max_new_tokens)
                self.greedy_trace[0] = round(self.greedy_first, 4)

        def _fire(self, step: int, first: float, now: float, replies: str):
            self.fired = {"step": step, "replies": replies, "distinct_2_first": round(first, 4),
                          "distinct_2_now": round(now, 4), "action": g.action}
            print(f"guard: distinct-2 of the {replies} replies fell from {first:.3f} to {now:.3f} "
                  f"(< {g.min_distinct_2} x) at step {step}: the policy may be hacking its reward"
                  + ("; stopping" if g.action == "stop" else ""), file=sys.stderr, flush=True)

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            step = state.global_step
            if watch.batches:
                first, now, fell = collapse(watch.batches, g)
                self.trace[step] = round(now, 4)
                if fell and self.fired is None:
                    self._fire(step, first, now, "sampled")
            if greedy and step % g.window == 0:
                now = greedy_distinct_2(model, processing_class, greedy, eos_id, max_new_tokens)
                self.greedy_trace[step] = round(now, 4)
                if self.fired is None and self.greedy_first and now < g.min_distinct_2 * self.greedy_first:
                    self._fire(step, self.greedy_first, now, "greedy")
            if self.fired is not None and g.action == "stop":
                control.should_training_stop = True
            return control
    return Guard()


SHOWN = ("loss", "reward", "kl", "rewards/margins", "accuracy", "eval_loss")


def progress_callback(method: str):
    """A TrainerCallback in place of transformers' printer: a progress bar with the latest loss / reward / KL, or
    (bars off: a log file, CI) one line at every tenth of the run."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress.bar(total=state.max_steps, desc=f"align {method}", unit="step")
            self.every, self.last = max(1, state.max_steps // 10), {}

        def on_log(self, args, state, control, logs=None, **kw):
            self.last.update({k: v for k, v in (logs or {}).items() if k in SHOWN})
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in self.last.items()}, refresh=False)
            step = state.global_step
            if not progress.enabled() and "loss" in (logs or {}) and (step % self.every == 0 or step == state.max_steps):
                shown = "  ".join(f"{k}={v:.4g}" for k, v in self.last.items())
                print(f"align {method}: step {step}/{state.max_steps}  {shown}", file=sys.stderr, flush=True)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(1)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()
    return Progress()


def quiet_libraries() -> None:
    """No per-call progress bars from transformers (weights loading, shards) and datasets (map): ours shows the run."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _template(cfg: Config, base: Base) -> str:
    if cfg.align.template is not None:
        return cfg.align.template
    if base.template is not None:
        return base.template
    return cfg.data.prompt_template or DEFAULT_TEMPLATE


def save_aligned(trainer, tok, base: Base, run: Run, method: str, template: str, max_length: int) -> None:
    """model/: the trained model as a plain HF directory (an adapter merged; the adapter itself in model/adapter/),
    and preprocessor.json + tokenizer_0.json, which Predictor reads for generation (task causal_lm) or marks a
    reward model (task reward)."""
    model = trainer.model
    out = run.model_dir
    if hasattr(model, "peft_config"):
        model.save_pretrained(out / "adapter", safe_serialization=True)
    export_hf(model, out, tok.backend_tokenizer, base.eos_id if method != "reward" else None, base.context)
    if method == "reward":
        (out / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": base.context,
             "eos_token": tok.eos_token, "pad_token": tok.pad_token}, indent=2), encoding="utf-8")
        state = {"task": "reward", "template": template, "max_length": max_length}
    else:
        state = {"task": "causal_lm", "prompt": "prompt", "response": "completion", "template": template,
                 "max_length": max_length, "eos_id": base.eos_id, "aligned": method}
        atomic_write_text(out / "tokenizer_0.json", tok.backend_tokenizer.to_str())
    atomic_write_text(out / "preprocessor.json", json.dumps(state, indent=2, ensure_ascii=False))


def align(cfg: Config, run_dir: str | Path | None = None) -> Run:
    """Train the config's `align:` method and evaluate it: a complete Run (see the module docstring)."""
    if cfg.align is None:
        raise ValueError("align(cfg): the config has no align: section")
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"align: needs TRL and datasets ({exc.name} is not installed): pip install "
                          "'modelfoundry[align]'") from None
    timer = Timer()
    run = Run(Path(run_dir)) if run_dir else Run.create(Path(cfg.output_dir), cfg.name)
    run.path.mkdir(parents=True, exist_ok=True)
    lock = run.lock().acquire()
    try:
        with run.recording():
            torch.manual_seed(cfg.train.seed)
            quiet_libraries()
            run.start(cfg.to_yaml(), cfg.train.seed, data_files(cfg))
            base = resolve_base(cfg.model.path, run.path / "cache")
            if cfg.align.method != "reward" and not base.decoder:
                raise ValueError(f"model.path {base.path}: an encoder cannot generate; align.method "
                                 f"{cfg.align.method} needs a decoder (gpt-mini, a causal-LM or pretraining run); an "
                                 "encoder can be a reward model (method reward)")
            tok = load_tokenizer(base)
            template = _template(cfg, base)
            max_length = min(cfg.align.max_length or base.context, base.context)
            data = read_align(cfg, tok, template, max_length)
            write_json(run.path / "data_profile.json", data.profile)
            rules = [Rule(r, i, cfg.output_dir, cfg.base_dir) for i, r in enumerate(cfg.align.rewards)]
            watch = Watch() if cfg.align.method == "grpo" else None
            trainer = _trainer(cfg, base, tok, data.frames, run, max_length, rules, watch)
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            for cb in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(cb)
            trainer.add_callback(progress_callback(cfg.align.method))
            t_fit = Timer()
            with warnings.catch_warnings():  # TRL calls transformers' gradient-checkpointing names deprecated in v5
                warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
                trainer.train()
            fit_s = t_fit()
            guard_cb = next((c for c in trainer.callback_handler.callbacks if hasattr(c, "trace")), None)
            if guard_cb is not None and 0 in guard_cb.greedy_trace:  # the greedy guard's baseline, before training
                run.append_history({"step": 0, "greedy_distinct_2": guard_cb.greedy_trace[0]})
            for record in trainer.state.log_history:
                if guard_cb is not None and record.get("step") in guard_cb.trace:
                    record = {**record, "train_distinct_2": guard_cb.trace[record["step"]]}
                if guard_cb is not None and record.get("step") in guard_cb.greedy_trace:
                    record = {**record, "greedy_distinct_2": guard_cb.greedy_trace[record["step"]]}
                run.append_history(record)
            save_aligned(trainer, tok, base, run, cfg.align.method, template, max_length)
            guard = guard_cb.fired if guard_cb is not None else None
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cost = {"fit_s": round(fit_s, 2), "steps": trainer.state.global_step, "peak_memory_mb": round(peak_mb),
                    "threads": torch.get_num_threads(), "precision": "bf16" if trainer.args.bf16 else "fp32"}
            tokens = next((h.get("num_tokens") for h in reversed(trainer.state.log_history) if "num_tokens" in h), None)
            if tokens:
                cost["train_tokens"] = int(tokens)
                cost["tokens_per_s"] = round(tokens / fit_s, 1)
            model = trainer.model
            del trainer
            evaluate_align(cfg, run, base, tok, data, model, rules, template, cost, guard)
            write_card(run, cfg, data.profile, read_json(run.path / "metrics.json"))
            run.finish("complete", timings={"fit_s": fit_s, "total_s": timer()}, method=cfg.align.method,
                       parameters=sum(p.numel() for p in model.parameters()),
                       trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       base_model=str(base.path), threads=int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())),
                       **({"guard": guard} if guard else {}))
    finally:
        lock.release()
    return run

