"""PEFT adapters beyond training: export the adapter alone, or merge it into its base."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.paths import resolve_model_path
from ..core.progress import bar
from ..core.runs import atomic_write_text, save_safetensors
from ..core.spec import CORPUS_TASKS
from ..finetune import STRATEGIES, adapted_parts
from ..predictor import Predictor

__all__ = ["export_adapter", "export_merged"]

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json")


def _encoder(pred: Predictor):
    found = adapted_parts(pred.model)  # a causal LM: the whole model is the pretrained one
    if not found:
        raise ValueError(f"{pred.run.path}: not a pretrained-model run; nothing to export")
    return found[0]


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A folder to write an export into, renamed to `out` only once every file is in it: an interrupted export
    leaves no `out` (so nothing half-written loads) and removes its partial folder. An existing non-empty `out`
    is refused rather than overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: already exists and is not an empty folder; choose a new output folder "
                         "(nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def export_adapter(run_dir: str | Path, out: str | Path) -> Path:
    """The adapter in PEFT's own format (adapter_config.json + adapter_model.safetensors), loadable with
    `PeftModel.from_pretrained(base, out)`."""
    pred = Predictor.load(run_dir, merge=False)
    enc = _encoder(pred)
    if not hasattr(enc.model, "peft_config"):
        raise ValueError(f"{run_dir}: finetune is '{enc.finetune}', which has no adapter to export")
    out = Path(out)
    with _staged(out) as tmp:
        enc.model.save_pretrained(str(tmp), safe_serialization=True)
    return out


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """A plain Hugging Face directory: the encoder with its adapter merged in (config.json, model.safetensors,
    the tokenizer), plus head.safetensors and foundry_head.json (pooling, classes) for the task head.
    A causal-LM run exports the merged decoder alone."""
    pb = bar(2, "export", unit="step")
    pb.set_postfix_str("loading the run")
    pred = Predictor.load(run_dir, merge=False)
    if pred.task in CORPUS_TASKS:
        raise ValueError(f"{run_dir}: a pretraining run's model/ is already a plain Hugging Face directory (adapters "
                         f"merged); use {pred.run.model_dir} as it is (model.path, from_pretrained)")
    enc = _encoder(pred)
    pb.update(1)
    pb.set_postfix_str("merging and writing")
    if STRATEGIES[enc.finetune].virtual:
        raise ValueError(f"{run_dir}: finetune is '{enc.finetune}': its virtual tokens are inputs, not weight changes, "
                         f"so there is nothing to merge; export it with --adapter OUT_DIR instead")
    out = Path(out)
    with _staged(out) as tmp:
        _write_merged(pred, enc, tmp)
    pb.update(1)
    pb.close()
    return out


def _write_merged(pred: Predictor, enc, tmp: Path) -> None:
    model = enc.model.merge_and_unload() if hasattr(enc.model, "peft_config") else enc.model
    model.save_pretrained(str(tmp), safe_serialization=True)
    base = Path(json.loads((pred.run.model_dir / "architecture.json").read_text())["model"]["path"])

    base = resolve_model_path(str(base))
    for name in TOKENIZER_FILES:
        if (base / name).exists():
            shutil.copy(base / name, tmp / name)
    shutil.copy(pred.run.model_dir / "tokenizer_0.json", tmp / "tokenizer.json")
    if pred.task == "causal_lm":  # nothing beside the decoder: AutoModelForCausalLM loads it as it is
        return
    head = {k: v for k, v in pred.model.state_dict().items() if not k.startswith("encoders.")}
    save_safetensors(tmp / "head.safetensors", head)
    atomic_write_text(tmp / "foundry_head.json", json.dumps(
        {"pooling": enc.pooling, "classes": pred.classes, "task": pred.task, "run": str(pred.run.path)}, indent=2))
