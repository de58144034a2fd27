"""The same recipe on both backends (issue 27): every recipe that uses a classic family (mlp, cnn, rnn, transformer),
trained with model.backend torch and keras (TensorFlow), same seeds and splits, one after another in this process and
alone on the machine; then the keras runs' ONNX export (tf2onnx) parity and the int8 speed-up in ONNX Runtime.

    .venv/bin/python bench/keras_backend_bench.py [--seeds 2] [--only credit_scoring,digits] [--no-compress]
    .venv/bin/python bench/keras_backend_bench.py --only none     # only the per-epoch overhead probe (below)

Per recipe and backend: the headline test metric of each seed (its mean, and the spread between seeds, which is what
"within the run-to-run spread" is measured against), epochs run, and the training loop's wall time (manifest
timings.loop_s: fitting only, not data preparation or evaluation). Then `keras_overhead`: where a small table's keras
epoch goes (graph tracing in the first epoch, per-step cost, a checkpoint write). JSON in
bench/results/keras_backend.json, written after every recipe (an interrupted bench keeps what it measured), with the CPU
it ran on."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# fastest first; voice_commands needs `python datasets/fetch_fsdd.py` (skipped when its manifest is absent)
RECIPES = ["finance/credit_scoring", "healthcare/heart_disease", "education/student_grades",
           "manufacturing/predictive_maintenance", "finance/stock_forecast", "healthcare/wearable_motions",
           "healthcare/esol_solubility", "manufacturing/engine_rul", "vision/digits", "smart_home/voice_commands",
           "customer_service/intent_from_scratch"]
COMPRESSED = {"finance/credit_scoring", "manufacturing/engine_rul", "vision/digits", "customer_service/intent_from_scratch"}


def machine() -> dict:
    import keras
    import tensorflow as tf
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name

    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def _available(recipe: str) -> bool:
    from modelfoundry.config import load_config

    cfg = load_config(REPO / "recipes" / f"{recipe}.yaml")
    return all(p is None or Path(p).exists() for p in (cfg.resolve_path(cfg.data.path),
                                                        cfg.resolve_path(cfg.data.test_path)))


def one(recipe: str, backend: str, seed: int, out_dir: Path) -> dict:
    from modelfoundry.api import train
    from modelfoundry.config import load_config
    from modelfoundry.evaluate import M

    cfg = load_config(REPO / "recipes" / f"{recipe}.yaml",
                      [f"model.backend={backend}", f"train.seed={seed}", f"output_dir={out_dir}",
                       "evaluate.cv=null", "evaluate.report=false", "train.precision=fp32"])
    t = time.perf_counter()
    run = train(cfg)
    wall = time.perf_counter() - t
    metrics = json.loads((run.path / "metrics.json").read_text())
    manifest = run.manifest()
    name = M.headline(cfg.data.task if cfg.data.task != "auto" else _task(run.path), metrics["test"])
    return {"seed": seed, "metric": name, "value": metrics["test"][name], "epochs": manifest.get("epochs_run"),
            "loop_s": manifest["timings"]["loop_s"], "total_s": round(wall, 1), "run": str(run.path)}


def _task(run_path: Path) -> str:
    return json.loads((run_path / "model" / "architecture.json").read_text())["spec"]["task"]


def compressed(run_path: str) -> dict:
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    variant = compress(run_path, CompressConfig(quantize="int8"))
    summary = json.loads((variant.path / "compression.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}

    return {"parity_max_abs_diff": summary["onnx"]["parity_max_abs_diff"], "parity_rows": summary["onnx"]["parity_rows"],
            "stages": {k: {"size_mb": v["size_mb"], "batch1_p50_ms": v["batch_1"]["p50_ms"],
                           "batch32_rows_per_s": v["batch_32"]["rows_per_s"], "metrics": v["metrics"]}
                       for k, v in stages.items()},
            "int8_over_keras_batch32": round(stages["int8"]["batch_32"]["rows_per_s"]
                                             / stages["source"]["batch_32"]["rows_per_s"], 2),
            "int8_over_onnx_fp32_batch32": round(stages["int8"]["batch_32"]["rows_per_s"]
                                                 / stages["onnx fp32"]["batch_32"]["rows_per_s"], 2)}


def overhead() -> dict:
    """Where a small table's keras epoch goes (credit_scoring's MLP, Keras' fit on in-memory arrays): the first epoch
    (it traces the train step into a graph) vs a later one, and a checkpoint write as Keras' .keras vs our safetensors."""
    import tempfile

    from safetensors.numpy import save_file

    from modelfoundry.config import load_config
    from modelfoundry.data import prepare
    from modelfoundry.models.keras_io import KerasModule
    from modelfoundry.models.keras_zoo import build_keras, keras_runtime

    keras = keras_runtime("tensorflow")
    cfg = load_config(REPO / "recipes" / "finance" / "credit_scoring.yaml", ["model.backend=keras", "evaluate.cv=null"])
    data = prepare(cfg)
    spec = data.preprocessor.spec()
    m = KerasModule(build_keras(cfg.model, spec, "tensorflow"), spec)
    m.keras_model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = m.feeds(data.encoded["train"].features), data.targets["train"].numpy()
    times = []
    for _ in range(4):
        t = time.perf_counter()
        m.keras_model.fit(x, y, batch_size=cfg.train.batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        for i in range(5):
            m.keras_model.save(Path(d) / f"m{i}.keras")
        keras_save = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        for i in range(5):
            save_file({str(j): v.numpy() for j, v in enumerate(m.keras_model.weights)}, str(Path(d) / f"m{i}.st"))
        st_save = (time.perf_counter() - t) / 5
    steps = -(-len(y) // cfg.train.batch_size)
    return {"recipe": "finance/credit_scoring (keras mlp)", "steps_per_epoch": steps, "first_epoch_s": round(times[0], 3),
            "later_epoch_s": round(statistics.mean(times[1:]), 3),
            "ms_per_step_later": round(1000 * statistics.mean(times[1:]) / steps, 2),
            "checkpoint_keras_file_s": round(keras_save, 4), "checkpoint_safetensors_s": round(st_save, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-compress", action="store_true")
    args = ap.parse_args()
    from modelfoundry.models.keras_zoo import keras_runtime

    keras_runtime("tensorflow")
    out_dir = REPO / "bench" / "work" / "keras_backend"
    result_path = REPO / "bench" / "results" / "keras_backend.json"
    results = {"machine": machine(), "seeds": args.seeds, "note": "same recipe, seeds and splits; torch backend vs "
               "Keras 3 on TensorFlow; train.precision fp32 on both (the keras backend trains in float32)",
               "recipes": {}}
    if result_path.exists() and args.only:
        results["recipes"] = json.loads(result_path.read_text()).get("recipes", {})
    recipes = [r for r in RECIPES if not args.only or r.split("/")[-1] in args.only.split(",")]
    for recipe in recipes:
        if not _available(recipe):
            print(f"skip {recipe}: data not present", file=sys.stderr)
            continue
        entry = {}
        for backend in ("torch", "keras"):
            runs = [one(recipe, backend, 42 + i, out_dir) for i in range(args.seeds)]
            values = [r["value"] for r in runs]
            entry[backend] = {"runs": runs, "metric": runs[0]["metric"], "mean": round(statistics.mean(values), 4),
                              "spread": round(max(values) - min(values), 4),
                              "loop_s_mean": round(statistics.mean(r["loop_s"] for r in runs), 1),
                              "s_per_epoch": round(statistics.mean(r["loop_s"] / max(r["epochs"] or 1, 1)
                                                                   for r in runs), 2)}
        t, k = entry["torch"], entry["keras"]
        entry["difference"] = round(k["mean"] - t["mean"], 4)
        entry["within_spread"] = abs(entry["difference"]) <= max(t["spread"], k["spread"])
        scale = 100 if t["metric"] in ("accuracy", "f1_macro", "roc_auc", "r2", "balanced_accuracy") else None
        entry["within_1_point"] = abs(entry["difference"]) * scale <= 1 if scale else None  # points of a 0-1 metric
        entry["keras_over_torch_s_per_epoch"] = round(k["s_per_epoch"] / max(t["s_per_epoch"], 1e-9), 2)
        if recipe in COMPRESSED and not args.no_compress:
            entry["keras_onnx"] = compressed(k["runs"][0]["run"])
        results["recipes"][recipe] = entry
        result_path.write_text(json.dumps(results, indent=2))
        print(f"{recipe}: {t['metric']} torch {t['mean']} (spread {t['spread']}) keras {k['mean']} (spread "
              f"{k['spread']}); s/epoch torch {t['s_per_epoch']} keras {k['s_per_epoch']}", file=sys.stderr, flush=True)
    results["keras_overhead"] = overhead()
    result_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["keras_overhead"]))
    print(json.dumps({r: {k: v for k, v in e.items() if k in ("difference", "within_spread",
                                                                "within_1_point", "keras_over_torch_s_per_epoch")}
                      for r, e in results["recipes"].items()}, indent=2))


if __name__ == "__main__":
    main()
