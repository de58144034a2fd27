"""Alignment benchmarks (issue 22), each part alone on the machine, JSON in bench/results/:

    .venv/bin/python bench/align_bench.py tang         # the recipe chain: SFT -> reward model -> DPO, SFT -> GRPO
    .venv/bin/python bench/align_bench.py tang-char    # a character-level base (tang_char.yaml) -> SFT -> GRPO
    .venv/bin/python bench/align_bench.py preference   # the real preference sets in ../shared/data/preference
    .venv/bin/python bench/align_bench.py overhead     # the same DPO / GRPO settings: plain TRL vs through us

tang: form compliance (4 verses of the asked 5 or 7 characters) of the SFT model and of the GRPO model on 200
held-out titles (greedy), distinct-2 of both, GRPO's wall time; the reward model's held-out pairwise accuracy beside
"the longer reply wins"; DPO's held-out implicit-reward accuracy and the reward model's win rate of DPO vs SFT.
preference: a reward model and DPO on gpt-mini over the Chinese (dpo_zh_500.jsonl) and English (dpo_en_demo.json)
pairs (MedicalGPT / LLaMA-Factory, Apache-2.0; read in place, never copied): held-out accuracy beside the length
baseline. overhead: wall time of `foundry train` (data handling, run directory, evaluation without generation) over
a plain TRL script's on the same data and settings, best of `--repeat`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPES = REPO / "recipes" / "alignment"
SHARED = REPO.parent / "shared" / "data" / "preference"
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def metrics(run) -> dict:
    return json.loads((Path(run.path) / "metrics.json").read_text(encoding="utf-8"))


def train(recipe: str, work: Path, overrides: list[str] | None = None):
    from modelfoundry.api import load_config, train

    t = time.perf_counter()
    run = train(load_config(RECIPES / f"{recipe}.yaml", [f"output_dir={work}", *(overrides or [])]))
    return run, time.perf_counter() - t


def tang(work: Path, grpo_steps: int | None) -> dict:
    if not (RECIPES / "data" / "tang_pairs.jsonl").exists():
        subprocess.run([sys.executable, str(RECIPES / "build_tang.py")], check=True)
    out: dict = {}
    sft, wall = train("tang_sft", work)
    out["sft"] = {"wall_s": round(wall, 1), **metrics(sft)["test"]}
    reward, wall = train("tang_reward", work)
    m = metrics(reward)
    out["reward_model"] = {"wall_s": round(wall, 1), "reward_accuracy": m["test"]["reward_accuracy"],
                           "longer_reply_wins": m["baselines"]["longer reply wins"]["reward_accuracy"]}
    dpo, wall = train("tang_dpo", work)
    m = metrics(dpo)
    out["dpo"] = {"wall_s": round(wall, 1), "reward_accuracy": m["test"]["reward_accuracy"],
                  "win_rate_vs_sft": m["test"]["win_rate"], "judge_score": m["generation"]["judge_score"],
                  "distinct_2": m["generation"]["diversity"]}
    grpo, wall = train("tang_grpo", work, [f"train.max_steps={grpo_steps}"] if grpo_steps else [])
    m = metrics(grpo)
    g = m["generation"]
    form = g["rewards"]["0_function"]["full_marks"]
    div = g["diversity"]
    out["grpo"] = {"wall_s": round(wall, 1), "fit_s": m["cost"]["fit_s"], "steps": m["cost"]["steps"],
                   "prompts": g["prompts"], "form_compliance": {"sft": form["reference"], "grpo": form["aligned"]},
                   "distinct_2": {"sft": div["reference"]["distinct_2"], "grpo": div["aligned"]["distinct_2"]},
                   "distinct_2_ratio": round(div["aligned"]["distinct_2"] / max(div["reference"]["distinct_2"], 1e-9), 3),
                   "decoding": g["decoding"], "guard": m.get("guard"), "samples": g["samples"][:3]}
    if "greedy" in g:  # align.eval_temperature > 0: the greedy replies beside
        out["grpo"]["greedy"] = _form(g)["greedy"]
    out["targets"] = {"grpo_compliance_>=_0.9": form["aligned"] >= 0.9,
                      "grpo_distinct_2_ratio_>=_0.8": out["grpo"]["distinct_2_ratio"] >= 0.8,
                      "grpo_<=_30_min": out["grpo"]["wall_s"] <= 1800,
                      "dpo_reward_accuracy_>=_0.65": out["dpo"]["reward_accuracy"] >= 0.65,
                      "dpo_win_rate_>=_0.6": out["dpo"]["win_rate_vs_sft"] >= 0.6}
    return out


def _form(g: dict) -> dict:
    """Form compliance and distinct-2 of a GRPO run's held-out replies as decoded (g itself: sampled, or greedy when
    align.eval_temperature is 0) and greedy beside (g["greedy"], when sampled)."""
    out = {}
    first = "greedy" if g["decoding"] == "greedy" else "sampled"
    for decoding, d in ((first, g), ("greedy", g.get("greedy"))):
        if d is None:
            continue
        marks = d["rewards"]["0_function"]["full_marks"] if d is g else d["full_marks"]["0_function"]
        div = d["diversity"]
        out[decoding] = {"form_compliance": {"sft": marks["reference"], "grpo": marks["aligned"]},
                         "distinct_2": {"sft": div["reference"]["distinct_2"], "grpo": div["aligned"]["distinct_2"]},
                         "distinct_2_ratio": round(div["aligned"]["distinct_2"] / max(div["reference"]["distinct_2"], 1e-9), 3)}
    return out


def tang_char(work: Path) -> dict:
    """The character-level chain: tang_char.yaml (pretraining, one token per character) -> tang_sft.yaml from it ->
    tang_grpo.yaml from that; held-out replies sampled at the recipe's eval_temperature, greedy beside."""
    if not (RECIPES / "data" / "tang_corpus.jsonl").exists():
        subprocess.run([sys.executable, str(RECIPES / "build_tang.py")], check=True)
    out: dict = {}
    base, wall = train("tang_char", work)
    out["pretrain"] = {"wall_s": round(wall, 1), **metrics(base)["test"]}
    sft, wall = train("tang_sft", work, ["name=tang-char-sft", "model.path=run:tang-char"])
    out["sft"] = {"wall_s": round(wall, 1), **metrics(sft)["test"]}
    grpo, wall = train("tang_grpo", work, ["name=tang-char-grpo", "model.path=run:tang-char-sft"])
    m = metrics(grpo)
    g = m["generation"]
    out["grpo"] = {"wall_s": round(wall, 1), "fit_s": m["cost"]["fit_s"], "steps": m["cost"]["steps"],
                   "prompts": g["prompts"], "decoding": g["decoding"], **_form(g), "guard": m.get("guard"),
                   "samples": g["samples"][:3]}
    out["targets"] = {f"{d}_{k}": v for d in ("sampled", "greedy") for k, v in (
        ("compliance_>=_0.9", out["grpo"][d]["form_compliance"]["grpo"] >= 0.9),
        ("distinct_2_ratio_>=_0.8", out["grpo"][d]["distinct_2_ratio"] >= 0.8))}
    out["targets"]["grpo_<=_30_min"] = out["grpo"]["wall_s"] <= 1800
    return out


def preference(work: Path, steps: int) -> dict:
    from modelfoundry.api import load_config, train

    sets = {"zh": (SHARED / "dpo_zh_500.jsonl", "conversations"), "en": (SHARED / "dpo_en_demo.json", "conversations")}
    out = {}
    for lang, (path, prompt) in sets.items():
        row = {}
        for method, lr in (("reward", 1e-4), ("dpo", 5e-5)):
            cfg = {"name": f"pref-{lang}-{method}", "output_dir": str(work),
                   "data": {"path": str(path), "split": {"test": 0.2, "val": 0.0}},
                   "model": {"type": "pretrained", "path": "gpt-mini", "finetune": "full"},
                   "train": {"lr": lr, "epochs": 2, "max_steps": steps, "batch_size": 8, "seed": 0},
                   "align": {"method": method, "prompt": prompt, "eval_prompts": 0}}
            t = time.perf_counter()
            run = train(load_config(cfg))
            m = metrics(run)
            row[method] = {"wall_s": round(time.perf_counter() - t, 1), **m["test"],
                           **{k: v for k, v in m.get("baselines", {}).items()}, "rows": m["rows"],
                           "dropped": m["dropped"]}
        out[lang] = row
    return out


def _plain_trl(method: str, data: list[dict], steps: int) -> float:
    """The same run as a user would write it with TRL alone: load, Dataset, trainer, train, save."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from modelfoundry.core.paths import resolve_model_path

    t = time.perf_counter()
    path = resolve_model_path("gpt-mini")
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    common = dict(output_dir="/tmp/plain-trl", use_cpu=True, bf16=_bf16(), learning_rate=5e-5, max_steps=steps,
                  per_device_train_batch_size=8, report_to=[], logging_steps=1, save_strategy="no", seed=0,
                  disable_tqdm=True, max_grad_norm=1.0)
    torch.manual_seed(0)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        ds = Dataset.from_list([{"prompt": r["prompt"] + "\n", "chosen": r["chosen"], "rejected": r["rejected"]}
                                for r in data])
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, max_length=256, beta=0.1), train_dataset=ds,
                             processing_class=tok)
    else:
        from trl import GRPOConfig, GRPOTrainer

        sys.path.insert(0, str(RECIPES))
        from tang_form import form

        ds = Dataset.from_list([{"prompt": r["prompt"] + "\n", "chars": r["chars"]} for r in data])
        trainer = GRPOTrainer(model=model, reward_funcs=[form], train_dataset=ds, processing_class=tok,
                              args=GRPOConfig(**common, max_completion_length=40, num_generations=8, beta=0.04))
    trainer.train()
    trainer.save_model("/tmp/plain-trl/model")
    return time.perf_counter() - t


def _bf16() -> bool:
    from modelfoundry.core.hardware import resolve_precision

    return resolve_precision("auto") == "bf16"


def overhead(work: Path, steps: int, repeat: int) -> dict:
    from modelfoundry.api import load_config, train

    if not (RECIPES / "data" / "tang_pairs.jsonl").exists():
        subprocess.run([sys.executable, str(RECIPES / "build_tang.py")], check=True)
    out = {}
    for method, file in (("dpo", "tang_pairs.jsonl"), ("grpo", "tang_prompts.jsonl")):
        rows = [json.loads(x) for x in (RECIPES / "data" / file).read_text(encoding="utf-8").splitlines()]
        recipe = "tang_dpo" if method == "dpo" else "tang_grpo"
        overrides = [f"output_dir={work}", "model.path=gpt-mini", f"train.max_steps={steps}", "train.batch_size=8",
                     "train.lr=5e-5", "train.schedule=linear", "train.warmup_ratio=0", "align.eval_prompts=0",
                     "align.judge=null" if method == "dpo" else "align.options.beta=0.04", "data.split.test=0.01",
                     f"data.test_path={RECIPES / 'data' / file.replace('.jsonl', '_test.jsonl')}"]
        plain, through = [], []
        for _ in range(repeat):
            plain.append(_plain_trl(method, rows, steps))
            t = time.perf_counter()
            run = train(load_config(RECIPES / f"{recipe}.yaml", overrides))
            through.append(time.perf_counter() - t)
            fit = metrics(run)["cost"]["fit_s"]
        out[method] = {"steps": steps, "plain_trl_s": [round(x, 2) for x in plain], "ours_s": [round(x, 2) for x in through],
                       "ours_fit_s": fit, "ratio_best": round(min(through) / min(plain), 3)}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["tang", "tang-char", "preference", "overhead"])
    p.add_argument("--work", default="/tmp/align-bench")
    p.add_argument("--grpo-steps", type=int)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    result = {"part": a.part, "machine": machine()}
    if a.part == "tang":
        result.update(tang(work, a.grpo_steps))
    elif a.part == "tang-char":
        result.update(tang_char(work))
    elif a.part == "preference":
        result.update(preference(work, a.steps))
    else:
        result.update(overhead(work, a.steps, a.repeat))
    result["total_s"] = round(time.perf_counter() - t, 1)
    out = HERE / "results" / f"align_{a.part.replace('-', '_')}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
