"""The compress stage: make a trained model cheaper to run, and say what that cost.

Steps, in this order, each optional: distill (a student learns the teacher's soft labels) -> prune (structured
or magnitude, then optional fine-tuning) -> bf16 weights (torch backend) | ONNX export with a parity check ->
int8 (ONNX Runtime, dynamic or static). Every stage is measured (size, parameters, latency at batch 1 and 32,
throughput, every test metric) on the source run's held-out split, and the result is a complete Run directory
of its own, `<runs>/<source-name>-<variant>/<run-id>/`, with compression.json and compression_report.html."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..core.infer import TensorData
from ..core.onnxrt import OnnxModel
from ..core.progress import bar
from ..core.runs import Run, Timer, atomic_copy, read_json, write_json
from ..core.spec import LM_TASKS
from ..data import Prepared, data_files, prepare
from ..evaluate import M, evaluate_data, write_card
from ..evaluate.anomaly import ANOMALY_FILE
from ..evaluate.explain import BACKGROUND_FILE
from ..evaluate.fairness import FAIRNESS_FILE
from ..finetune import adapted_parts, merge_adapters, refuse_virtual
from ..models import save_model, to_bf16
from ..models.keras_zoo import keras_runtime
from ..predictor import Predictor
from ..train import make_accelerator
from ..train.loop import fit
from .config import CompressConfig
from .distill import distill
from .measure import main_metric, measure, tensor_bytes, write_report
from .onnx import export_keras_onnx, export_onnx, parity
from .prune import magnitude_prune, structured_prune
from .quantize import int8_dynamic, int8_static

BATCH_DEPENDENT = 1e-3
"""An output that moves by more than this between a row predicted alone and in a batch gets a note: float
rounding (fp32, bf16) stays well below it, per-batch int8 activation scales do not."""

__all__ = ["compress", "variant_name"]

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def variant_name(ccfg: CompressConfig) -> str:
    parts = []
    if ccfg.distill:
        parts.append("distilled")
    if ccfg.prune:
        parts.append(f"{'pruned' if ccfg.prune.method == 'structured' else 'sparse'}{round(ccfg.prune.amount * 100)}")
    if ccfg.quantize == "bf16":
        parts.append("bf16")
    elif ccfg.quantize != "none":
        parts.append(ccfg.quantize.replace("-", ""))
    elif ccfg.onnx:
        parts.append("onnx")
    return "-".join(parts) or "copy"


def _check_data(source: Run, cfg: Config) -> None:
    """The variant is scored on the source's held-out split, rebuilt from its data files: they must not have changed."""
    for c in source.data_changes(data_files(cfg))[:1]:
        raise ValueError(f"{c['path']}: the data file changed since the source run was trained (sha256 "
                         f"{str(c['then'])[:12]} then, {str(c['now'])[:12]} now); compressing needs the same held-out "
                         "split to compare")


def materialize(pred: Predictor, cfg: Config):
    """The source model as plain weights: a PEFT adapter merged into its base, a frozen base kept in full.
    Returns (model, its model config)."""
    model, mcfg = pred.model, cfg.model
    if mcfg.type != "pretrained":
        return model, mcfg
    try:
        refuse_virtual(model, "compress")
    except ValueError as exc:
        raise ValueError(f"{pred.run.path}: {exc}") from None
    merge_adapters(model)  # already done where the Predictor was loaded with merge=True (the default)
    for part in adapted_parts(model):  # a frozen (linear-probe) encoder is kept in full and trains from here on
        part.finetune = "full"
    model.base = None
    return model, mcfg.model_copy(update={"finetune": "full", "adapter": {}})


def _finetune(model, data: Prepared, cfg: Config, epochs: int, lr: float) -> dict:
    tcfg = cfg.train.model_copy(update={"epochs": epochs, "lr": lr, "early_stopping": None, "warmup_ratio": 0.0})
    model.requires_grad_(True)
    acc = make_accelerator(tcfg.precision, tcfg.grad_accum)
    tr = TensorData(data.encoded["train"].features, data.targets["train"])
    val = TensorData(data.encoded["val"].features, data.targets["val"]) if "val" in data.encoded else None
    result = fit(model, tr, val, data.task, tcfg, None, acc)
    model.eval()
    return {"epochs": epochs, "lr": lr, "best_epoch": result.best_epoch, "history": result.history}


def compress(run_dir: str | Path, ccfg: CompressConfig | None = None, output_dir: str | Path | None = None, *,
             source: Config) -> Run:
    """Compress a complete run (settings: `ccfg`, else the run's `compress` section). `source` is the run's own config
    (`config.run_config(run_dir)`; `modelfoundry.compress` reads it for you). Returns the variant's Run."""
    timer = Timer()
    cfg = source
    keras = getattr(cfg.model, "backend", "torch") == "keras"
    if keras:  # tf2onnx exports from TensorFlow: a run trained on Keras' torch backend is read there too
        keras_runtime("tensorflow")
    pred = Predictor.load(run_dir, backend="torch")
    if pred.task in LM_TASKS:
        raise ValueError(f"{run_dir}: a {pred.task} language-model run; compress works on classification and "
                         "regression runs")
    if pred.task in ("recommend", "knowledge_tracing"):  # embedding tables and an LSTM of a few hundred kB
        raise ValueError(f"{run_dir}: a {pred.task} run; compress works on classification and regression runs (a "
                         "recommender ranks with every item's vector and a knowledge tracer reads whole histories: "
                         "neither has a per-row ONNX graph, and both are small already)")
    ccfg = ccfg or cfg.compress
    if ccfg is None:
        raise ValueError(f"{run_dir}: no compression asked; give --quantize/--prune/--distill/--onnx or a "
                         "`compress` section in the run's config")
    if keras and (ccfg.prune or ccfg.distill or not ccfg.onnx):
        asked = [k for k, v in (("prune", ccfg.prune), ("distill", ccfg.distill), ("onnx: false", not ccfg.onnx)) if v]
        raise ValueError(f"{run_dir}: a model.backend keras run compresses by ONNX export (tf2onnx) and int8 in ONNX "
                         f"Runtime (compress.onnx, compress.quantize: int8 | int8-static); not {', '.join(asked)}")
    _check_data(pred.run, cfg)
    name = f"{pred.run.manifest().get('name', cfg.name)}-{variant_name(ccfg)}"
    root = Path(output_dir) if output_dir else pred.run.path.parent.parent
    run = Run.create(root, name)
    lock = run.lock().acquire()
    out_cfg = cfg.override({"compress": ccfg.model_dump(mode="json")})
    run.start(out_cfg.to_yaml(), cfg.train.seed, data_files(cfg))
    try:
        with run.recording():
            summary = _stages(pred, cfg, ccfg, run)
            summary["total_s"] = timer()
            write_json(run.path / "compression.json", summary)
            write_report(run, summary)
            shutil.copy(pred.run.path / "data_profile.json", run.path / "data_profile.json")
            write_card(run, out_cfg, read_json(run.path / "data_profile.json"), read_json(run.path / "metrics.json"))
            run.finish("complete", source=str(pred.run.path), variant=variant_name(ccfg),
                       backend=summary["backend"], timings={"total_s": summary["total_s"]})
    finally:
        lock.release()
    return run


def _log(msg: str) -> None:
    print(f"compress: {msg}", file=sys.stderr, flush=True)


class _Stages:
    """Each step's model measured on the held-out split, in order (the source first), with a progress bar."""

    def __init__(self, data, split: str, names: list[str], calls: int):
        self.data, self.split, self.names, self.calls = data, split, names, calls
        self.stages: list[dict] = []
        self.bar = bar(desc="compress", unit="stage")

    def measure(self, label: str, model, size: int | None = None, params_of=None) -> dict:
        counted = params_of if params_of is not None else model
        stage = measure(label, model, self.data, self.split, self.names, tensor_bytes(model) if size is None else size,
                        self.calls, sum(p.numel() for p in counted.parameters()))
        self.stages.append(stage)
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)
        return stage


def _stages(pred: Predictor, cfg: Config, ccfg: CompressConfig, run: Run) -> dict:
    cache = pred.run.path / "cache"  # the source run's text encodings, reused (a pretrained student's too)
    data = prepare(cfg, cache_dir=cache)
    split = "test" if "test" in data.encoded else "val"
    names = M.canonical(cfg.evaluate.metrics, data.task)
    _log(f"measuring the source on {len(data.targets[split])} {split} rows")
    st = _Stages(data, split, names, ccfg.latency_calls)
    st.measure("source", pred.model)
    model, mcfg = materialize(pred, cfg)
    pre = data.preprocessor
    record: dict = {"notes": []}
    if ccfg.distill:
        model, student_cfg, data, record["distill"] = distill(model, pre, cfg, ccfg.distill, cache)
        mcfg, pre, st.data = student_cfg.model, data.preprocessor, data
        _log(f"student {st.measure('distilled', model)['metrics']}")
    if ccfg.prune:
        record["prune"] = _prune(model, data, cfg, ccfg.prune, st)
        if record["prune"].get("sparsity"):
            record["notes"].append(f"magnitude pruning zeroed {record['prune']['sparsity']:.1%} of the linear/conv "
                                   "weights; dense kernels do not get faster and the file is not smaller from zeros")
    spec = model.spec
    pre.save(run.model_dir)
    # what the source run applies or explains with travels with the variant: its fairness rule, its background rows
    for src, dst in ((pred.run.model_dir / FAIRNESS_FILE, run.model_dir / FAIRNESS_FILE),
                     (pred.run.model_dir / ANOMALY_FILE, run.model_dir / ANOMALY_FILE),
                     (pred.run.path / BACKGROUND_FILE, run.path / BACKGROUND_FILE)):
        if src.is_file():
            atomic_copy(src, dst)
    if ccfg.quantize == "bf16":
        to_bf16(model)
        st.measure("bf16", model)
    backend, final = "torch", model
    if ccfg.onnx:
        backend = "onnx"
        record.update(_export(model, data, ccfg, run, st))
        save_model(model, mcfg, spec, run.model_dir, weights=False)  # architecture.json: what the graph was made from
        final = OnnxModel(run.model_dir / "model.onnx")
    else:
        save_model(model, mcfg, spec, run.model_dir)
    record["notes"] += _batch_notes(st.stages)
    st.bar.close()
    result, _, _ = evaluate_data(final, data, names, split, baselines=False)
    result.update(variant=variant_name(ccfg), source=str(pred.run.path), backend=backend)
    write_json(run.path / "metrics.json", result)
    return {"name": run.path.parent.name, "source": str(pred.run.path), "variant": variant_name(ccfg),
            "backend": backend, "split": split, "rows": int(len(data.targets[split])), "threads": torch.get_num_threads(),
            "main_metric": main_metric(data.task), "metrics": names if len(names) <= 8 else names[:8],
            "settings": ccfg.model_dump(mode="json"), "stages": st.stages, **record}


def _prune(model, data: Prepared, cfg: Config, p, st: _Stages) -> dict:
    """Prune (structured or magnitude), measure, then optionally fine-tune and measure again."""
    record = structured_prune(model, p.amount) if p.method == "structured" else magnitude_prune(model, p.amount)
    st.measure(f"{'pruned' if p.method == 'structured' else 'sparse'} {p.amount:g}", model)
    if p.finetune_epochs:
        lr = p.finetune_lr or cfg.train.lr / 10
        _log(f"fine-tuning the pruned model for {p.finetune_epochs} epochs at lr {lr:g}")
        record["finetune"] = _finetune(model, data, cfg, p.finetune_epochs, lr)
        if p.method == "magnitude":  # fine-tuning moves the zeros; prune again so the sparsity holds
            record["after_finetune"] = magnitude_prune(model, p.amount)
        st.measure(f"{st.stages[-1]['stage']} + fine-tuned", model)
    return record


def _export(model, data: Prepared, ccfg: CompressConfig, run: Run, st: _Stages) -> dict:
    """ONNX export with its parity check, then int8 (dynamic or static) if asked; model/model.onnx is the last."""
    record: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        feats = data.encoded[st.split].features
        _log("exporting to ONNX")
        record["onnx"] = (export_keras_onnx(model, fp32) if getattr(model, "keras_model", None) is not None
                          else export_onnx(model, _example(feats), fp32))
        onnx_model = OnnxModel(fp32)
        rows = {k: v[: ccfg.parity_rows] for k, v in feats.items()}
        diff = parity(model, onnx_model, rows, data.task)
        record["onnx"].update(parity_max_abs_diff=diff, parity_rows=len(next(iter(rows.values()))),
                              parity_tolerance=ccfg.parity_tolerance)
        if diff > ccfg.parity_tolerance:
            raise ValueError(f"ONNX parity check failed: outputs differ from torch's by up to {diff:.3g} on "
                             f"held-out rows (compress.parity_tolerance = {ccfg.parity_tolerance:g})")
        _log(f"ONNX parity: max |diff| {diff:.2e} on {record['onnx']['parity_rows']} rows")
        st.measure("onnx fp32", onnx_model, fp32.stat().st_size, params_of=model)
        last = fp32
        if ccfg.quantize in ("int8", "int8-static"):
            last = Path(tmp) / "model.int8.onnx"
            if ccfg.quantize == "int8":
                record["quantize"] = int8_dynamic(fp32, last)
            else:
                record["quantize"] = int8_static(fp32, last, data.encoded["train"].features, onnx_model.inputs,
                                                 ccfg.calibration_rows)
            st.measure(ccfg.quantize, OnnxModel(last), last.stat().st_size, params_of=model)
        atomic_copy(last, run.model_dir / "model.onnx")
    return record


def _batch_notes(stages: list[dict]) -> list[str]:
    """A note for each stage whose answers depend on the rows batched with them."""
    notes = []
    for s in stages:
        c = s["batch_consistency"]
        if c.get("changed") or c["max_abs_diff"] > BATCH_DEPENDENT:
            notes.append(
                f"{s['stage']}: a row's answer depends on the rows batched with it (of {c['rows']} held-out rows "
                f"predicted alone, outputs moved by up to {c['max_abs_diff']:.3g}"
                + (f" and {c['changed']} label(s) changed" if "changed" in c else "") + ")"
                + (". Dynamic int8 takes each activation scale over the whole batch; with a server's dynamic batching "
                   "the same request can get other probabilities under other traffic. int8-static's calibrated "
                   "ranges do not depend on the batch" if s["stage"] == "int8" else "") + ".")
    return notes


def _example(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A small export batch of the longest rows: batch and text length both above 1, so that neither axis is
    specialised by the exporter."""
    lengths = [v for k, v in features.items() if k.startswith("len:")]
    n = len(next(iter(features.values())))
    order = torch.argsort(torch.stack(lengths).amax(0), descending=True) if lengths else torch.arange(n)
    return TensorData(features).__getitems__(order[: min(4, n)].tolist())
