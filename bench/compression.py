"""Compression on the BANKING77 LoRA run: what each variant costs in accuracy and buys in size and speed.

    .venv/bin/python bench/compression.py --run RUNS/intent-lora/<run-id>   # a run of recipes/customer_service/intent_lora.yaml
    .venv/bin/python bench/compression.py --run ... --only int8,bf16         # some variants

The anchor is fp32 torch eager: a plain Hugging Face AutoModel call on the LoRA-merged weights (written by
`foundry export --merged`), mean pooling and the run's linear head. Every variant is made by
`modelfoundry.compress.compress` in this same process and timed by the same function on the same 3,080 test
queries (model calls on encoded rows, random 32-row batches padded to their own longest text; batch 1 = one
query a call; p50 over `--calls` calls after 3 warm-ups, all cores). Ratios are against the anchor.

Each stage is timed once as it is made; the machine's speed drifts over the half hour that takes (the same
model measured 1,083-1,532 rows/s in different runs), so at the end the anchor and every variant's final model
are timed again in `--rounds` alternating rounds (the order rotating each round), and the speed-ups and goals
come from each model's median over those rounds (`rounds` in the JSON holds every round's figures).
Writes bench/results/compression.json. Run it alone: other processes distort the times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FT = {"finetune_epochs": 1, "finetune_lr": 5e-5}
STUDENT = {"type": "pretrained", "path": "minilm", "layers": 3, "finetune": "full", "pooling": "mean"}


def from_teacher(layers: int, epochs: int = 3) -> dict:
    """A MiniLM student of `layers` layers that starts from the teacher (compress.distill.init: teacher)."""
    return {"student": {**STUDENT, "layers": layers}, "init": "teacher", "epochs": epochs, "lr": 2e-4,
            "temperature": 2.0, "alpha": 0.5}


VARIANTS = {
    "int8": {"quantize": "int8"},
    "int8-static": {"quantize": "int8-static"},
    "bf16": {"quantize": "bf16", "onnx": False},
    "pruned-int8": {"prune": {"method": "structured", "amount": 0.5, **FT}, "quantize": "int8"},
    "pruned-bf16": {"prune": {"method": "structured", "amount": 0.5, **FT}, "quantize": "bf16", "onnx": False},
    "distilled-int8": {"distill": {"student": STUDENT, "epochs": 3, "lr": 2e-4, "temperature": 2.0, "alpha": 0.5},
                       "quantize": "int8"},
    # the same student started from the teacher's embeddings, layers 2, 4, 6 and head (DistilBERT's start)
    "distilled-from-teacher-int8": {"distill": from_teacher(3), "quantize": "int8"},
    # shallower students from the teacher: 2 layers (its 3rd and 6th) and 1 (its 6th)
    "distilled2-from-teacher-int8": {"distill": from_teacher(2), "quantize": "int8"},
    "distilled1-from-teacher-int8": {"distill": from_teacher(1), "quantize": "int8"},
    "distilled1-from-teacher-5ep-int8": {"distill": from_teacher(1, epochs=5), "quantize": "int8"},
    "distilled1-from-teacher-pruned-int8": {"distill": from_teacher(1),
                                            "prune": {"method": "structured", "amount": 0.3, **FT}, "quantize": "int8"},
}


class HFAnchor(nn.Module):
    """AutoModel on the merged weights + mean pooling + the run's head: what a user of plain transformers runs."""

    def __init__(self, merged: Path, col: str):
        super().__init__()
        from safetensors.torch import load_file
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(merged, add_pooling_layer=False).eval()
        head = load_file(merged / "head.safetensors")
        if any(k.startswith("trunk.") and k.endswith("weight") for k in head):
            raise SystemExit("the anchor expects a run with a linear head (model.hidden: [])")
        self.out = nn.Linear(head["out.weight"].shape[1], head["out.weight"].shape[0])
        self.out.load_state_dict({"weight": head["out.weight"], "bias": head["out.bias"]})
        self.col = col

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, lengths = batch[f"text:{self.col}"], batch[f"len:{self.col}"]
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1).clamp_min(1.0))


def anchor(run_dir: Path, calls: int) -> tuple[dict, nn.Module, dict]:
    from modelfoundry.adapters import export_merged
    from modelfoundry.compress.measure import measure, tensor_bytes
    from modelfoundry.config import run_config
    from modelfoundry.data import prepare
    from modelfoundry.evaluate import M

    cfg = run_config(run_dir)
    data = prepare(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        merged = export_merged(run_dir, Path(tmp) / "merged")
        model = HFAnchor(merged, next(iter(data.preprocessor.tokenizers_)))
    names = M.canonical(cfg.evaluate.metrics, data.task)
    row = measure("fp32 torch eager (HF AutoModel, merged)", model, data, "test", names, tensor_bytes(model), calls,
                  sum(p.numel() for p in model.parameters()))
    return row, model, data


def alternate(models: dict[str, tuple], calls: int, rounds: int) -> dict[str, dict]:
    """Every model timed at batch 32 and batch 1 in each of `rounds` rounds, the order rotating: per model the
    rounds' figures and their medians."""
    import numpy as np

    from modelfoundry.compress.measure import latency

    keys, out = list(models), {k: {"batch_32_rows_per_s": [], "batch_1_p50_ms": []} for k in models}
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            model, feats = models[k]
            out[k]["batch_32_rows_per_s"].append(latency(model, feats, calls, 32)["rows_per_s"])
            out[k]["batch_1_p50_ms"].append(latency(model, feats, calls, 1)["p50_ms"])
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v['batch_32_rows_per_s'][-1]:,.0f}" for k, v in out.items()),
              flush=True)
    for v in out.values():
        v["median_batch_32_rows_per_s"] = float(np.median(v["batch_32_rows_per_s"]))
        v["median_batch_1_p50_ms"] = float(np.median(v["batch_1_p50_ms"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a complete run of recipes/customer_service/intent_lora.yaml")
    ap.add_argument("--only", help="comma-separated variant names: " + ", ".join(VARIANTS))
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds at the end (0: none)")
    ap.add_argument("--out", default=str(RESULTS / "compression.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig
    from modelfoundry.core.hardware import cpu_has_bf16

    chosen = args.only.split(",") if args.only else list(VARIANTS)
    out_root = Path(tempfile.mkdtemp(prefix="bench-compress-"))
    t0 = time.time()
    from modelfoundry.predictor import Predictor

    first, anchor_model, data = anchor(Path(args.run), args.calls)
    rows = [{"variant": "anchor", **first}]
    finals = {"anchor": (anchor_model, data.encoded["test"].features)}
    print(f"anchor: {rows[0]['metrics']['accuracy']:.4f}, {rows[0]['batch_32']['rows_per_s']} rows/s", flush=True)
    for name in chosen:
        t = time.time()
        run = compress(args.run, CompressConfig.model_validate({**VARIANTS[name], "latency_calls": args.calls}), out_root)
        summary = json.loads((run.path / "compression.json").read_text())
        pred = Predictor.load(run.path)  # the variant's final model, as served
        finals[name] = (pred.model, pred.preprocessor.transform(data.frames["test"]).features)
        if name == chosen[0]:  # the source as trained (LoRA unmerged, fp32): every variant measures it; keep one
            rows.append({"variant": "source", **summary["stages"][0]})
        rows += [{"variant": name, **st} for st in summary["stages"][1:]]
        print(f"{name}: {time.time() - t:.0f} s; " + "; ".join(
            f"{st['stage']} acc {st['metrics']['accuracy']:.4f} {st['batch_32']['rows_per_s']} rows/s"
            for st in summary["stages"][1:]), flush=True)
    base = rows[0]
    acc0 = base["metrics"]["accuracy"]
    for r in rows:
        r["speedup_batch32"] = round(r["batch_32"]["rows_per_s"] / base["batch_32"]["rows_per_s"], 2)
        r["speedup_batch1"] = round(base["batch_1"]["p50_ms"] / r["batch_1"]["p50_ms"], 2)
        r["accuracy_points"] = round(100 * (r["metrics"]["accuracy"] - acc0), 2)
    rounds = alternate(finals, args.calls, args.rounds) if args.rounds else {}
    if rounds:  # the final stage of every variant (and the anchor) by its median over the alternating rounds
        a = rounds["anchor"]
        last = {r["variant"]: r for r in rows if r["variant"] != "source"}  # rows are in stage order: the last wins
        for name, r in last.items():
            m = rounds[name]
            r["batch_32"]["rows_per_s"] = round(m["median_batch_32_rows_per_s"], 1)
            r["batch_1"]["p50_ms"] = round(m["median_batch_1_p50_ms"], 3)
            r["speedup_batch32"] = round(m["median_batch_32_rows_per_s"] / a["median_batch_32_rows_per_s"], 2)
            r["speedup_batch1"] = round(a["median_batch_1_p50_ms"] / m["median_batch_1_p50_ms"], 2)
            r["timed"] = f"median of {args.rounds} alternating rounds"
        for r in rows:
            r.setdefault("timed", "once, as made (against the anchor's first timing)")
        for m in rounds.values():
            m["speedup_batch32_rounds"] = [round(x / y, 2) for x, y in zip(m["batch_32_rows_per_s"],
                                                                              a["batch_32_rows_per_s"])]
    within1 = [r for r in rows if r["accuracy_points"] >= -1.0]
    fastest = max(within1, key=lambda r: r["speedup_batch32"])
    stacked = [r for r in rows if r["variant"].startswith(("pruned", "distilled")) and r["accuracy_points"] >= -2.0
               and r["stage"] in ("int8", "bf16")]
    best_stacked = max(stacked, key=lambda r: r["speedup_batch32"]) if stacked else None
    goals = {
        "fastest_within_1pt": f"{fastest['variant']} / {fastest['stage']}",
        "fastest_within_1pt_speedup_batch32": fastest["speedup_batch32"],
        "fastest_within_1pt_batch1_ms": fastest["batch_1"]["p50_ms"],
        "goal_6x_and_1ms_met": fastest["speedup_batch32"] >= 6 and fastest["batch_1"]["p50_ms"] <= 1.0,
        "stacked_within_2pts": best_stacked and f"{best_stacked['variant']} / {best_stacked['stage']}",
        "stacked_speedup_batch32": best_stacked and best_stacked["speedup_batch32"],
        "goal_10x_stacked_met": bool(best_stacked and best_stacked["speedup_batch32"] >= 10),
    }
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "cpu_bf16": cpu_has_bf16(), "torch": torch.__version__, "threads": torch.get_num_threads()},
              "run": str(Path(args.run).resolve()), "calls": args.calls, "wall_s": round(time.time() - t0, 1),
              "settings": {k: VARIANTS[k] for k in chosen}, "rows": rows, "rounds": rounds, "goals": goals}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\n{'variant':<38}{'stage':<28}{'acc':>8}{'pts':>7}{'MB':>8}{'b1 ms':>8}{'b32 rows/s':>12}{'x':>7}")
    for r in rows:
        print(f"{r['variant']:<38}{r['stage'][:27]:<28}{r['metrics']['accuracy']:>8.4f}{r['accuracy_points']:>7.2f}"
              f"{r['size_mb']:>8.1f}{r['batch_1']['p50_ms']:>8.2f}{r['batch_32']['rows_per_s']:>12,.0f}"
              f"{r['speedup_batch32']:>7.2f}")
    print(json.dumps(goals, indent=1))
    print(f"-> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
