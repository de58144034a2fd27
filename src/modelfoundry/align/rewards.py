"""Rewards for GRPO (TRL's reward-function protocol: f(completions, prompts, **columns) -> list of floats), the reward
model a `method: reward` run saved, and the diversity numbers that show reward hacking (distinct-n, repetition)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import torch

from ..core.runs import Run, complete_runs
from ..predictor import Predictor
from .config import RewardSpec

UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")


def units(text: str) -> list[str]:
    """Words, with each CJK character a word of its own (Chinese has no spaces)."""
    return UNIT.findall(text)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the replies (Li et al. 2016); 0 when there are none."""
    grams = [tuple(u[i:i + n]) for t in texts for u in [units(t)] for i in range(len(u) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str], n: int = 2) -> float:
    """The mean share of a reply's n-grams that repeat one earlier in the same reply ("eeeee" -> near 1)."""
    rates = []
    for t in texts:
        u = units(t)
        grams = [tuple(u[i:i + n]) for i in range(len(u) - n + 1)]
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def resolve_run(path: str, output_dir: str, base_dir: str) -> Path:
    """A run directory, or run:NAME = the newest complete run of that name under output_dir."""
    if path.startswith("run:"):
        folder = Path(output_dir) / path[4:]
        done = complete_runs(folder)
        if not done:
            raise ValueError(f"{path}: no complete run under {folder.resolve()}")
        return done[-1]
    p = Path(path)
    return p if p.is_absolute() else (Path(base_dir) / p)


class RewardModel:
    """A reward model (a `method: reward` run, or one just trained): scores prompt + reply, the prompt formatted with
    the run's template as in training. `RewardModel.load(run_dir)` reads a run."""

    def __init__(self, model, tok, template: str, max_length: int, path: Path | None = None):
        self.model, self.tok, self.path = model.eval(), tok, path
        self.state = {"template": template, "max_length": max_length}

    @classmethod
    def load(cls, run_dir: Path) -> RewardModel:
        from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

        run = Run.open(run_dir)
        if run.status != "complete":
            raise ValueError(f"{run.path}: run status is {run.status!r}, not complete")
        run.verify_files()
        state = json.loads((run.model_dir / "preprocessor.json").read_text(encoding="utf-8"))
        if state.get("task") != "reward":
            raise ValueError(f"{run.path}: a {state.get('task')} run, not a reward model (align.method reward)")
        model = AutoModelForSequenceClassification.from_pretrained(run.model_dir, use_safetensors=True)
        return cls(model, PreTrainedTokenizerFast.from_pretrained(run.model_dir), state["template"],
                   state["max_length"], run.path)

    @torch.no_grad()
    def score(self, prompts: list[str], replies: list[str], formatted: bool = True) -> list[float]:
        """One score per (prompt, reply). `formatted`: the prompts already carry the template (align's data)."""
        out = []
        for p, r in zip(prompts, replies):
            text = (p if formatted else self.state["template"].format(prompt=p)) + r + (self.tok.eos_token or "")
            ids = self.tok(text, truncation=True, max_length=self.state["max_length"], return_tensors="pt")
            out.append(float(self.model(**ids).logits[0, 0]))
        return out


def _import(spec: str, base_dir: str):
    """`module:function` or `file.py:function` (relative to the config file) -> the function, or an error naming it."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"align.rewards function {spec!r}: expected module:function or file.py:function")
    try:
        if target.endswith(".py"):
            path = Path(target) if Path(target).is_absolute() else Path(base_dir) / target
            if not path.is_file():
                raise FileNotFoundError(f"no such file {path}")
            mod_spec = importlib.util.spec_from_file_location(f"foundry_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        fn = getattr(module, name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the user's to see, named
        raise ValueError(f"align.rewards function {spec!r} does not import: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"align.rewards function {spec!r}: {name} is not callable")
    return fn


def _length(lo: int, hi: int):
    half = max(1, (hi - lo) // 2 or lo // 2 or 1)

    def f(text: str) -> float:
        n = len(text.strip())
        gap = lo - n if n < lo else n - hi if n > hi else 0
        return max(0.0, 1 - gap / half)
    return f


class Rule:
    """One configured reward as a TRL reward function (named for TRL's per-reward logs)."""

    def __init__(self, spec: RewardSpec, i: int, output_dir: str, base_dir: str):
        self.spec, self.kind = spec, spec.kind
        self.__name__ = f"{i}_{self.kind}"
        self.scorer = self.classifier = None
        if spec.kind == "run":
            run_dir = resolve_run(spec.run, output_dir, base_dir)
            state = json.loads((Run.open(run_dir).model_dir / "preprocessor.json").read_text(encoding="utf-8"))
            if state.get("task") == "reward":
                if spec.label is not None:
                    raise ValueError(f"align.rewards run {spec.run}: a reward model gives one score; label does not apply")
                self.scorer = RewardModel.load(run_dir)
            else:
                pred = Predictor.load(run_dir)
                if pred.task == "classification":
                    classes = [str(c) for c in pred.classes]
                    if spec.label is None or str(spec.label) not in classes:
                        raise ValueError(f"align.rewards run {spec.run}: a classifier; give label, one of {classes}"
                                         + (f" (got {spec.label!r})" if spec.label is not None else ""))
                elif pred.task == "regression":
                    if spec.label is not None:
                        raise ValueError(f"align.rewards run {spec.run}: a regressor predicts one value; label "
                                         "applies to classifiers")
                else:
                    raise ValueError(f"align.rewards run {spec.run}: a {pred.task} run does not score replies; give a "
                                     "reward model, a classifier or a regressor run")
                inputs = [c for c, k in pred.preprocessor.schema.items() if k != "ignore"]
                if len(inputs) != 1 or len(pred.preprocessor.tokenizers_) != 1:
                    raise ValueError(f"align.rewards run {spec.run}: a reward run reads the reply as its one text "
                                     f"input; this run's inputs are {inputs}")
                self.classifier = pred
        elif spec.kind == "regex":
            try:
                pattern = re.compile(spec.regex, re.S)
            except re.error as exc:
                raise ValueError(f"align.rewards regex {spec.regex!r}: {exc}") from None
            hit = pattern.fullmatch if spec.match == "full" else pattern.search
            self.text_fn = lambda t: float(hit(t.strip()) is not None)
        elif spec.kind == "length":
            self.text_fn = _length(*spec.length)
        elif spec.kind == "contains":
            self.text_fn = lambda t: sum(w in t for w in spec.contains) / len(spec.contains)
        elif spec.kind == "omits":
            self.text_fn = lambda t: float(not any(w in t for w in spec.omits))
        elif spec.kind == "function":
            self.fn = _import(spec.function, base_dir)

    @property
    def model_based(self) -> bool:
        return self.scorer is not None

    def __call__(self, completions, prompts=None, **columns) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        if self.scorer is not None:
            return self.scorer.score([p if isinstance(p, str) else "" for p in prompts], texts)
        if self.classifier is not None:
            out = self.classifier.predict(texts)
            col = f"prob_{self.spec.label}" if self.spec.label is not None else "prediction"
            return [float(v) for v in out[col]]
        if self.kind == "function":
            values = self.fn(completions=texts, prompts=prompts, **columns)
            values = list(values)
            if len(values) != len(texts):
                raise ValueError(f"align.rewards function {self.spec.function}: returned {len(values)} rewards for "
                                 f"{len(texts)} completions")
            return [float(v) for v in values]
        return [self.text_fn(t) for t in texts]


class Watch:
    """Every reply GRPO trains on, in order of its reward calls: what the guard reads."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def wrap(self, rule: Rule):
        watch = self

        def observed(completions, prompts=None, **columns):
            watch.batches.append([c if isinstance(c, str) else c[-1]["content"] for c in completions])
            return rule(completions, prompts=prompts, **columns)
        observed.__name__ = rule.__name__
        return observed
