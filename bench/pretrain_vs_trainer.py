"""Next-token pretraining throughput: ModelFoundry vs Hugging Face Trainer as its `run_clm` example uses it.

    .venv/bin/python bench/pretrain_vs_trainer.py               # gpt mini preset, block 128, batch 16, 80 steps
    .venv/bin/python bench/pretrain_vs_trainer.py --steps 20    # a smoke run
    .venv/bin/python bench/pretrain_vs_trainer.py --steps 400 --set train.compile=true --tag compile

Same model (GPT-2 architecture, the `mini` preset: 6 layers x 8 heads x 256, a byte-level BPE of 4,096 tokens trained by
our run), same tokens (the anchor reads our run's packed training stream and cuts it into the same blocks, as run_clm's
group_texts does), same batch, steps, optimizer settings and precision (bf16 where the CPU has AVX-512 BF16 / AMX, as
our `train.precision: auto` picks; Trainer gets `bf16=True` then). Timed: the training loop alone (trainer.train();
our fit loop), each contender in a fresh process, one after the other. Reports tokens/s, the ratio, and MFU: model
FLOPs per token (6 x parameters + 12 x layers x context x width, the PaLM count) x tokens/s over the machine's measured
matmul peak in the same precision (torch.matmul of 2048 x 2048 matrices on all cores). `--set KEY=VALUE` changes our
run only (train.compile: its one-time compile, from an empty cache, is inside the timed loop).
Writes bench/results/pretrain_vs_trainer.json. Run it alone: other processes distort the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
BLOCK, BATCH, LR = 128, 16, 1e-3


def matmul_peak(dtype_name: str) -> float:
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a = torch.randn(2048, 2048, dtype=dtype)
    b = torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    n, t = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t) / 1e9


def auto_precision() -> str:
    """What train.precision: auto picks here (bf16 on AVX-512 BF16 / AMX CPUs)."""
    from modelfoundry.core.hardware import resolve_precision

    return "bf16" if resolve_precision("auto") == "bf16" else "fp32"


def ours(work: Path, steps: int, overrides: list[str]) -> dict:
    import yaml

    cfg = {"name": "clm", "output_dir": str(work / "runs"),
           "data": {"path": str(TEXT), "task": "clm", "text": {"tokenizer": "bpe", "vocab_size": 4096, "lowercase": False},
                    "corpus": {"documents": "blank_line", "block_size": BLOCK, "val": 0.0, "test": 0.05}},
           "model": {"type": "gpt", "preset": "mini"},
           "train": {"epochs": 50, "max_steps": steps, "batch_size": BATCH, "lr": LR, "weight_decay": 0.1,
                     "schedule": "cosine", "warmup_ratio": 0.05, "grad_clip": 1.0, "early_stopping": None},
           "evaluate": {"baselines": False, "report": False}}
    (work / "ours.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    sets = [a for o in overrides for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(work / "ours.yaml"), *sets],
                          capture_output=True, text=True, env={**os.environ, "FOUNDRY_PROGRESS": "0",
                                                               "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor")})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    run = sorted((work / "runs" / "clm").iterdir())[-1]
    m = json.loads((run / "manifest.json").read_text())
    return {"loop_s": m["timings"]["loop_s"], "parameters": m["parameters"], "run": str(run),
            "precision": auto_precision()}


def anchor(run: Path, steps: int, bf16: bool) -> dict:
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments, default_data_collator

    meta = json.loads(next(run.glob("cache/corpus-*/meta.json")).read_text())
    stream = np.fromfile(next(run.glob("cache/corpus-*/train.bin")), dtype=meta["dtype"]).astype(np.int64)
    n = len(stream) // BLOCK * BLOCK  # run_clm's group_texts: concatenate, drop the remainder, cut into blocks
    blocks = torch.from_numpy(stream[:n].reshape(-1, BLOCK))
    data = [{"input_ids": b, "labels": b} for b in blocks]
    config = GPT2Config.from_pretrained(run / "model")
    torch.manual_seed(42)
    model = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                                 weight_decay=0.1, lr_scheduler_type="cosine", warmup_steps=int(0.05 * steps), max_grad_norm=1.0,
                                 bf16=bf16, use_cpu=True, save_strategy="no", eval_strategy="no",
                                 logging_strategy="no", report_to="none", disable_tqdm=True, seed=42,
                                 dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
        t = time.perf_counter()
        trainer.train()
        loop = time.perf_counter() - t
    return {"loop_s": round(loop, 2), "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change our run only")
    ap.add_argument("--tag", default="", help="suffix of the results file (for --set variants)")
    ap.add_argument("--anchor-run", help=argparse.SUPPRESS)
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.anchor_run:
        print(json.dumps(anchor(Path(args.anchor_run), args.steps, args.bf16)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        mine = ours(Path(tmp), args.steps, args.set)
        bf16 = mine["precision"] == "bf16"
        proc = subprocess.run([sys.executable, __file__, "--anchor-run", mine["run"], "--steps", str(args.steps)]
                              + (["--bf16"] if bf16 else []), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        config = json.loads((Path(mine["run"]) / "model" / "config.json").read_text())
    tokens = args.steps * BATCH * BLOCK
    flops_per_token = 6 * mine["parameters"] + 12 * config["n_layer"] * BLOCK * config["n_embd"]
    peak = matmul_peak("bf16" if bf16 else "fp32")
    sys.path.insert(0, str(HERE))
    from pretrain_vs_nanogpt import cpu_flags, cpu_name

    row = {}
    for name, r in (("ours", mine), ("hf_trainer", theirs)):
        tps = tokens / r["loop_s"]
        row[name] = {"loop_s": round(r["loop_s"], 2), "tokens_per_s": round(tps), "parameters": r["parameters"],
                     "mfu": round(tps * flops_per_token / (peak * 1e9), 4)}
    result = {"benchmark": "GPT-2 mini preset, next-token pretraining on Tiny Shakespeare (BPE 4096), block 128, batch 16",
              "steps": args.steps, "tokens": tokens, "overrides": args.set, "precision": "bf16" if bf16 else "fp32",
              "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count()},
              "matmul_peak_gflops": round(peak, 1), "flops_per_token": flops_per_token, **row,
              "ratio_tokens_per_s_ours_over_trainer": round(row["ours"]["tokens_per_s"] / row["hf_trainer"]["tokens_per_s"], 3)}
    name = "pretrain_vs_trainer" + ("" if args.steps == 80 else f"-{args.steps}") + (f"-{args.tag}" if args.tag else "")
    out = HERE / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
