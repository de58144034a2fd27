"""Character-level Tiny Shakespeare, the "baby GPT" on a CPU: nanoGPT itself vs ModelFoundry, side by side.

    .venv/bin/python bench/pretrain_vs_nanogpt.py                  # both, the README's CPU command, 2000 iterations
    .venv/bin/python bench/pretrain_vs_nanogpt.py --iters 200      # a smoke run (not for results)

The anchor is nanoGPT at a pinned commit (fetched into /work/.mirror, or --nanogpt DIR), run with its README's CPU
command: `train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0` (fp32 on CPU, as nanoGPT runs there). Its data: nanoGPT's own shakespeare_char preparation, done here
without the download (the text is ../shared/data/tinyshakespeare/input.txt): characters sorted into ids, the first 90%
of the text for training, the last 10% for validation. nanoGPT reads its vocabulary size from a meta.pkl there: the
bench writes that one file in nanoGPT's own format (pickle) for the anchor; nothing of ours reads it.

Ours: the same text split into two files, `data.task: clm`, a character tokenizer, `model: {type: gpt, preset: nano}`
(4 layers x 4 heads x 128, GPT-2 architecture), block 64, batch 12, the same optimizer settings (AdamW lr 1e-3, weight
decay 0.1, 100 warm-up steps then cosine, clipping at 1.0) and the same 2000 steps (train.max_steps), at our default
precision (bf16 autocast where the CPU has AVX-512 BF16 / AMX, else fp32).

Val loss, the same measure for both: the mean next-character loss over every non-overlapping 64-character window of
the validation text (nanoGPT's model loaded from its checkpoint with weights_only=True; ours is the run's test.loss,
whose blocks predict 63 of 64 positions). nanoGPT's own estimate (20 random batches) is reported beside it. Wall time:
each process from start to end, and the training loop alone (nanoGPT: its iterations; ours: fit's loop).
Writes bench/results/pretrain_vs_nanogpt.json. Run it alone: other processes distort the times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle  # noqa: S403  (nanoGPT's meta.pkl format, written for the anchor; nothing of ours reads pickle)
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT = Path("/work/.mirror/karpathy+nanoGPT/repo")
ARGS = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
        "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]


def checkout(src: Path, dest: Path) -> str:
    """nanoGPT's files at the mirror's HEAD (a bare snapshot: git archive), and that commit."""
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(src), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def prepare(work: Path, nano: Path) -> tuple[str, str]:
    data = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(data))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(data)
    train, val = data[: int(n * 0.9)], data[int(n * 0.9):]
    folder = nano / "data" / "shakespeare_char"
    np.array([stoi[c] for c in train], dtype=np.uint16).tofile(folder / "train.bin")
    np.array([stoi[c] for c in val], dtype=np.uint16).tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as fh:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, fh)
    (work / "train.txt").write_text(train, encoding="utf-8")
    (work / "val.txt").write_text(val, encoding="utf-8")
    return train, val


def run_nanogpt(nano: Path, iters: int, env: dict) -> dict:
    out = nano / "out"
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *ARGS, f"--max_iters={iters}",
           f"--lr_decay_iters={iters}", f"--out_dir={out}"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=nano, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"nanoGPT failed:\n{proc.stderr[-3000:]}")
    log = proc.stdout
    evals = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", log)
    iter_ms = [float(t) for t in re.findall(r"iter \d+: loss [\d.]+, time ([\d.]+)ms", log)]
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "loop_s": round(sum(iter_ms) / 1000, 1),
            "val_loss_own_estimate": float(evals[-1][2]) if evals else None, "checkpoint": str(out / "ckpt.pt")}


def nanogpt_val_loss(nano: Path, ckpt: Path, val_ids: np.ndarray, block: int = 64) -> float:
    import torch

    sys.path.insert(0, str(nano))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**state["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state["model"].items()})
    model.eval()
    data = torch.from_numpy(val_ids.astype(np.int64))
    starts = torch.arange(0, len(data) - block - 1, block)
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in starts.split(64):
            x = torch.stack([data[s: s + block] for s in chunk])
            y = torch.stack([data[s + 1: s + 1 + block] for s in chunk])
            _, loss = model(x, y)
            total += float(loss) * y.numel()
            count += y.numel()
    return total / count


def auto_precision() -> str:
    """What train.precision: auto picks here (bf16 on AVX-512 BF16 / AMX CPUs)."""
    from modelfoundry.core.hardware import resolve_precision

    return "bf16" if resolve_precision("auto") == "bf16" else "fp32"


def run_ours(work: Path, iters: int, env: dict, overrides: list[str]) -> dict:
    cfg = {
        "name": "shakespeare_char", "output_dir": str(work / "runs"),
        "data": {"path": str(work / "train.txt"), "test_path": str(work / "val.txt"), "task": "clm",
                 "text": {"tokenizer": "char", "lowercase": False},
                 "corpus": {"documents": "file", "block_size": 64, "val": 0.0, "test": 0.0}},
        "model": {"type": "gpt", "preset": "nano", "dropout": 0.0},
        "train": {"epochs": 100, "max_steps": iters, "batch_size": 12, "lr": 1e-3, "weight_decay": 0.1,
                  "schedule": "cosine", "warmup_ratio": 100 / iters if iters > 100 else 0.0, "grad_clip": 1.0,
                  "early_stopping": None},
        "evaluate": {"baselines": False, "report": False},
    }
    import yaml

    path = work / "ours.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    started = time.perf_counter()
    sets = [x for o in overrides for x in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(path), *sets], capture_output=True,
                          text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ours failed:\n{proc.stderr[-3000:]}")
    run = sorted((work / "runs" / "shakespeare_char").iterdir())[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    return {"wall_s": round(wall, 1), "loop_s": round(manifest["timings"]["loop_s"], 1),
            "val_loss": metrics["test"]["loss"], "bits_per_byte": metrics["test"]["bits_per_byte"],
            "precision": next((o.split("=", 1)[1] for o in overrides if o.startswith("train.precision=")),
                              auto_precision()), "run": str(run)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--nanogpt", type=Path, default=NANOGPT, help="a nanoGPT git checkout or bare snapshot")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change our run (e.g. train.lr=3e-3 train.max_steps=1000): a recipe of ours, not the anchor's")
    ap.add_argument("--tag", default="", help="suffix of the results file (for --set variants)")
    ap.add_argument("--against", type=Path, help="a results file of this script from this machine: take nanoGPT's "
                    "numbers from it instead of running it again (for --set variants; recorded in the result)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # train.compile's kernels compile from scratch, as on a user's first run (not from an earlier run's cache)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "FOUNDRY_PROGRESS": "0",
               "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor")}
        nano = work / "nanoGPT"
        commit = checkout(args.nanogpt, nano)
        prepare(work, nano)
        val_ids = np.fromfile(nano / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16)
        if args.against:
            before = json.loads(args.against.read_text())
            anchor = {k: v for k, v in before["nanogpt"].items() if k != "commit"}
            anchor["from"] = f"{args.against.name} (not rerun)"
            if before["nanogpt"]["commit"] != commit or before["machine"]["cpu"] != cpu_name():
                raise SystemExit(f"{args.against}: another nanoGPT commit or another CPU; run both again")
        else:
            print(f"nanoGPT @ {commit[:10]}: {args.iters} iterations ...", file=sys.stderr, flush=True)
            anchor = run_nanogpt(nano, args.iters, env)
            anchor["val_loss"] = round(nanogpt_val_loss(nano, Path(anchor.pop("checkpoint")), val_ids), 4)
        print(f"   {anchor}", file=sys.stderr, flush=True)
        print("ModelFoundry ...", file=sys.stderr, flush=True)
        ours = run_ours(work, args.iters, env, args.set)
        ours.pop("run")
        print(f"   {ours}", file=sys.stderr, flush=True)
    result = {
        "benchmark": "char-level Tiny Shakespeare, baby GPT (4x4x128, block 64, batch 12), same steps",
        "iters": args.iters, "tokens_trained": args.iters * 12 * 64,
        "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version()},
        "nanogpt": {"commit": commit, **anchor}, "ours": {**ours, "overrides": args.set},
        "ratios": {"wall_time_ours_over_nanogpt": round(ours["wall_s"] / anchor["wall_s"], 3),
                   "loop_time_ours_over_nanogpt": round(ours["loop_s"] / anchor["loop_s"], 3),
                   "val_loss_ours_minus_nanogpt": round(ours["val_loss"] - anchor["val_loss"], 4)},
        "note": "val loss: mean next-character loss (nats) over the validation text's 64-character windows",
    }
    name = "pretrain_vs_nanogpt" + ("" if args.iters == 2000 else f"-{args.iters}") + (f"-{args.tag}" if args.tag else "")
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"]), f"-> {out}")
    if not math.isfinite(ours["val_loss"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
