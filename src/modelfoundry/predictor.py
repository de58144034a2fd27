"""Predictor: a complete run's model plus its fitted preprocessor, turning raw rows or texts into predictions
with exactly the transforms used in training. `predict`, `evaluate` and (later) `serve` use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .core.infer import predict_tensors
from .core.onnxrt import OnnxModel
from .core.runs import Run
from .core.spec import CORPUS_TASKS, LM_TASKS
from .data import DataError, Preprocessor
from .data.features import unreadable
from .data.forecast import ForecastPreprocessor, future_times
from .data.lm import LMPreprocessor
from .data.recommend import RecommendPreprocessor
from .data.tracing import TracingPreprocessor
from .evaluate.anomaly import ANOMALY_FILE
from .evaluate.explain import (
    BACKGROUND_FILE,
    Scorer,
    image_column,
    input_columns,
    integrated_gradients,
    pixel_attributions,
    shap_values,
)
from .evaluate.fairness import FAIRNESS_FILE, decide
from .evaluate.forecast import INTERVAL_FILE
from .finetune import merge_adapters
from .models import load_model
from .models.lm import load_hf_decoder
from .pretrain import CorpusPreprocessor


class Predictor:
    def __init__(self, model, preprocessor: Preprocessor, run: Run, backend: str = "torch"):
        self.model, self.preprocessor, self.run, self.backend = model, preprocessor, run, backend
        rule = run.model_dir / FAIRNESS_FILE
        self.fairness: dict | None = json.loads(rule.read_text(encoding="utf-8")) if rule.is_file() else None
        """A fairness mitigation rule (evaluate.fairness.mitigate): predict applies it."""
        alerts = run.model_dir / ANOMALY_FILE
        self.alerts: dict | None = json.loads(alerts.read_text(encoding="utf-8")) if alerts.is_file() else None
        """An anomaly run's alert threshold (evaluate.alert_budget): `prediction` is true above it."""

    @classmethod
    def load(cls, run_dir: str | Path, backend: str = "auto", merge: bool = True) -> Predictor:
        """backend: torch (model/weights.safetensors), onnx (model/model.onnx, run by ONNX Runtime; written by
        `foundry compress`), or auto = torch where the run has torch weights, else onnx.

        merge: fold a LoRA, AdaLoRA or IA3 adapter into its base weights once, here, so that inference runs
        plain Linear layers instead of base + adapter on every call (a third of MiniLM's batch-1 latency).
        Predictions agree with the unmerged model to float rounding. merge=False keeps the PEFT model, for
        exporting the adapter itself."""
        run = Run.open(run_dir)
        if run.status != "complete":
            error = run.manifest().get("error")
            raise ValueError(f"{run.path}: run status is '{run.status}', not 'complete'"
                             + (f" ({error})" if error else "") + "; "
                             + ("start a new run, or fix the cause and resume it: " if run.status == "failed"
                                else "finish it first: ") + f"`foundry train --resume {run.path}`")
        run.verify_files()  # a flipped byte in the weights is refused here, naming the file
        if (run.model_dir / "policy.json").exists():
            raise ValueError(f"{run.path}: a schedule run (a dispatching policy, not a model of rows): schedule "
                             f"instances with `foundry predict {run.path} INSTANCES.json` or "
                             "modelfoundry.schedule.schedule_instances")
        if backend not in ("auto", "torch", "onnx"):
            raise ValueError(f"backend must be one of auto, torch, onnx, got {backend!r}")
        onnx_file, weights = run.model_dir / "model.onnx", run.model_dir / "weights.safetensors"
        if not weights.exists() and (run.model_dir / "model.keras").exists():  # model.backend: keras
            weights = run.model_dir / "model.keras"
        if backend == "auto":
            backend = "torch" if weights.exists() or not onnx_file.exists() else "onnx"
        if backend == "onnx":
            if not onnx_file.exists():
                raise ValueError(f"{run.path}: no model/model.onnx; export one with `foundry compress {run.path} --onnx`")

            model = OnnxModel(onnx_file)
        elif not weights.exists() and onnx_file.exists():
            raise ValueError(f"{run.path}: this run holds an ONNX model only (model/model.onnx); use backend onnx "
                             "(foundry serve --backend onnx)")
        state = json.loads((run.model_dir / "preprocessor.json").read_text(encoding="utf-8"))
        if state.get("task") == "reward":
            raise ValueError(f"{run.path}: a reward model (align.method reward) scores a prompt and a reply; use it as "
                             "align.judge or an align.rewards run, or modelfoundry.align.RewardModel")
        if backend == "torch" and not (run.model_dir / "architecture.json").exists():
            model = load_hf_decoder(run.model_dir)  # an aligned run: a plain Hugging Face decoder directory
        elif backend == "torch":
            model, _, _ = load_model(run.model_dir)
            if merge:
                merge_adapters(model)
        if state.get("task") == "causal_lm":
            return cls(model, LMPreprocessor.load(run.model_dir, state), run)
        if state.get("task") in CORPUS_TASKS:
            return cls(model, CorpusPreprocessor.load(run.model_dir, state), run)
        if state.get("kind") == "forecast":
            return cls(model, ForecastPreprocessor.load(run.model_dir, state), run, backend)
        if state.get("kind") == "knowledge_tracing":
            return cls(model, TracingPreprocessor.load(run.model_dir, state), run, backend)
        if state.get("kind") == "recommend":
            if backend != "torch":
                raise ValueError(f"{run.path}: a recommend run ranks its catalogue with the torch model (no ONNX export)")
            return cls(model, RecommendPreprocessor.load(run.model_dir, state), run, backend)
        return cls(model, Preprocessor.load(run.model_dir), run, backend)

    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of formatted prompts; a prompt that leaves no room for a response is refused."""
        if self.task == "mlm":
            raise ValueError(f"{self.run.path}: a masked-LM (mlm) run fills in masked tokens and does not generate "
                             "text; fine-tune it (model.path: <run>/model) or pretrain a gpt with data.task clm")
        if self.task not in ("causal_lm", "clm"):
            raise ValueError(f"{self.run.path}: a {self.task} model does not generate text; use predict")
        pre = self.preprocessor
        ids = [pre.prompt_ids(p) for p in prompts]
        if self.task == "clm":  # raw continuation: an empty prompt starts after end-of-text, a long one slides
            return [x or [pre.eos_id] for x in ids]
        too_long = [i for i, x in enumerate(ids) if len(x) >= pre.max_length]
        if too_long:
            where = "data.corpus.block_size" if self.task == "clm" else "data.text.max_length"
            raise DataError(f"prompt {too_long[0]} is {len(ids[too_long[0]])} tokens; this model was trained on "
                            f"at most {pre.max_length} tokens ({where}) for prompt and continuation together")
        return ids

    def generate(self, prompts: str | list[str], max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, top_k: int = 0, repetition_penalty: float = 1.0) -> list[str]:
        """Continuations: a causal-LM fine-tune's responses to instructions (formatted with the run's prompt
        template), or a pretrained (clm) model's continuation of raw text. Greedy when temperature is 0; else sampled
        with top-k (0 = off) and top-p; repetition_penalty > 1 discourages repeated tokens (CTRL)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = self.prompt_ids(prompts)
        out = self.model.generate(ids, self.preprocessor.eos_id, max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, seed=seed, top_k=top_k,
                                  repetition_penalty=repetition_penalty)
        return [self.preprocessor.tokenizer.decode(o) for o in out]

    def generate_stream(self, prompt: str, on_text, max_new_tokens: int = 64, temperature: float = 0.0,
                        top_p: float = 1.0, seed: int = 0, top_k: int = 0, repetition_penalty: float = 1.0) -> str:
        """generate() for one prompt, calling on_text(piece) as the response grows (pieces joined = the response;
        a piece is sent once it decodes to whole characters). Returns the whole response."""
        ids = self.prompt_ids([prompt])
        pre, new, sent = self.preprocessor, [], [""]

        def on_token(token: int) -> None:
            if token == pre.eos_id:
                return
            new.append(token)
            text = pre.tokenizer.decode(new)
            if not text.endswith("\ufffd") and len(text) > len(sent[0]):  # wait for a character's last byte
                on_text(text[len(sent[0]):])
                sent[0] = text

        self.model.generate(ids, pre.eos_id, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                            seed=seed, on_token=on_token, top_k=top_k, repetition_penalty=repetition_penalty)
        text = pre.tokenizer.decode(new)
        if len(text) > len(sent[0]):
            on_text(text[len(sent[0]):])
        return text

    def forecast(self, history) -> pd.DataFrame:
        """A forecast run: the next `horizon` values of every series in `history` (a table like the training data:
        time, series and target columns, exogenous columns), from its last `context` steps; one row per series and
        step ahead, with the interval the validation residuals gave (`lower`, `upper`) when the run kept one. Gaps
        are filled by the run's rule. A series shorter than the context has its first step repeated."""
        if self.task != "forecast":
            raise ValueError(f"{self.run.path}: a {self.task} run predicts rows; use predict")
        pre = self.preprocessor
        fc = pre.fc
        series, _ = pre.series(self._frame(history), "history")
        unknown = sorted(set(series) - set(pre.scale_))
        if unknown:
            raise DataError(f"history: series {unknown[:5]} were not in training (it knew {sorted(pre.scale_)[:10]}); "
                            "their scale and exogenous statistics are unknown")
        interval_file = self.run.model_dir / INTERVAL_FILE
        interval = json.loads(interval_file.read_text(encoding="utf-8")) if interval_file.is_file() else None
        rows = []
        for key, s in series.items():
            w = pre.windows(key, s, [len(s) - 1], with_targets=False)
            rel = predict_tensors(self.model, {"sequence": torch.from_numpy(w["context"])}, "forecast")[0]
            times = future_times(s.index[-1], pre.freq_, fc.horizon)
            for h in range(fc.horizon):
                row = {"series": key, "step": h + 1, "time": times[h], "prediction": w["level"][0] + w["scale"] * rel[h]}
                if interval is not None:
                    row["lower"] = w["level"][0] + w["scale"] * (rel[h] + interval["lower"][h])
                    row["upper"] = w["level"][0] + w["scale"] * (rel[h] + interval["upper"][h])
                rows.append(row)
        out = pd.DataFrame(rows)
        return out.rename(columns={"series": fc.series_column}) if fc.series_column else out.drop(columns="series")

    def recommend(self, user, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """A recommend run: the top `k` items for `user`, best first (`rank`, `item`, `score`), leaving out what the user
        interacted with in training (exclude_seen). A user never seen in training gets the most popular items
        (`cold_start` True, `score` = the item's training interaction count): stated, never a silent guess."""
        if self.task != "recommend":
            raise ValueError(f"{self.run.path}: a {self.task} run predicts rows; recommend needs a data.task recommend run")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        pre = self.preprocessor
        index = pre.user(user)
        skip = pre.seen(user) if exclude_seen else []
        if index == 0:
            order = [i for i in pre.popular() if i not in set(skip)][:k]
            scores = [float(pre.popularity_[i - 1]) for i in order]
        else:
            with torch.no_grad():
                s = self.model.scores(torch.tensor([index])).float()[0]
            s[skip] = float("-inf")
            top = s.topk(min(k, len(s) - 1 - len(skip)))
            order, scores = top.indices.tolist(), top.values.tolist()
        return pd.DataFrame({"rank": range(1, len(order) + 1), "item": [pre.item_id(i) for i in order],
                             "score": scores, "cold_start": index == 0})

    def trace(self, answers) -> pd.DataFrame:
        """A knowledge-tracing run: for each answer of each student (a table like the training data: student, skill,
        correct, order), `p_correct`, the chance the model gave it before seeing it (none for a student's first
        answer, nothing known yet), in the input's row order; and `mastery`, the chance of a right answer on that
        skill after it."""
        if self.task != "knowledge_tracing":
            raise ValueError(f"{self.run.path}: a {self.task} run; trace needs a data.task knowledge_tracing run")
        from .evaluate.tracing import trace_frame

        return trace_frame(self.model, self.preprocessor, self._frame(answers), "answers")

    def recommend_many(self, users: list, k: int = 10) -> pd.DataFrame:
        """recommend() for each user, one row per user in order: `items` and `scores` as lists, `cold_start`."""
        rows = []
        for u in users:
            r = self.recommend(u, k)
            rows.append({"items": r["item"].tolist(), "scores": [round(float(s), 6) for s in r["score"]],
                         "cold_start": bool(r["cold_start"].iloc[0]) if len(r) else self.preprocessor.user(u) == 0})
        return pd.DataFrame(rows)

    def _pair_scores(self, df: pd.DataFrame) -> pd.DataFrame:
        """A recommend run's score of each (user, item) row (explicit feedback: the predicted rating); a pair whose
        user or item training never saw has none, and says which in `error`."""
        rc = self.preprocessor.rc
        missing = [c for c in (rc.user, rc.item) if c not in df.columns]
        if missing:
            raise DataError(f"input is missing column(s) {missing}; a recommend run scores (user, item) pairs "
                            "(or use recommend(user, k) for a user's top items)")
        enc, _ = self.preprocessor.transform(df.assign(**{rc.rating: 0.0}) if rc.rating else df)
        users, items = enc.features["user"], enc.features["item"]
        with torch.no_grad():
            self.model.eval()
            s = self.model.pair_scores(users, items).float().numpy()
        if rc.feedback == "explicit":
            s = self.preprocessor.decode_rating(s)
        known = ((users > 0) & (items > 0)).numpy()
        result = pd.DataFrame({"prediction": np.where(known, s, np.nan)})
        if not known.all():
            result["error"] = [None if ok else f"{'user' if u == 0 else 'item'} {df[rc.user if u == 0 else rc.item].iloc[j]!r} "
                               "was not in training" for j, (ok, u) in enumerate(zip(known, users.tolist()))]
        return result

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def classes(self) -> list | None:
        return getattr(self.preprocessor, "classes_", None)

    def _frame(self, rows) -> pd.DataFrame:
        if isinstance(rows, pd.DataFrame):
            return rows.reset_index(drop=True)
        if isinstance(rows, (list, tuple)) and rows and isinstance(rows[0], str):
            text_cols = list(self.preprocessor.tokenizers_)
            if len(text_cols) != 1 or len([c for c, k in self.preprocessor.schema.items() if k != "ignore"]) != 1:
                raise DataError("plain strings can only be given to a model with a single text input; pass records")
            return pd.DataFrame({text_cols[0]: list(rows)})
        if isinstance(rows, dict):
            rows = [rows]
        return pd.DataFrame(list(rows))

    def predict_raw(self, rows) -> tuple[pd.DataFrame, np.ndarray, dict[int, str]]:
        """(the input rows, outputs, errors). One output per input row, in order: probabilities [N, K] or values
        [N], NaN where a row could not be predicted (an unreadable image under data.bad_images: skip), with its
        reason in errors {row position: message}. Sequence-window runs answer per window instead: the rows are
        each window's last row."""
        if self.task in LM_TASKS:
            raise ValueError(f"{self.run.path}: a {self.task} language-model run has no predictions per row: "
                             + ("it generates text; use generate (foundry generate)" if self.task != "mlm" else
                                "fine-tune it (model.path: <run>/model)"))
        df = self._frame(rows)
        enc = self.preprocessor.transform(df, strict=True)
        out = predict_tensors(self.model, enc.features, self.task) if len(enc.rows) else None
        if out is not None and self.task == "regression":
            out = self.preprocessor.decode_regression(out)
        if self.preprocessor.data.sequence is not None:
            return df.iloc[enc.rows].reset_index(drop=True), out, {}
        width = len(self.classes) if self.task == "classification" else None
        full = np.full((len(df), width) if width else (len(df),), np.nan)
        if out is not None:
            full[enc.rows] = out
        return df, full, {s["row"]: unreadable(s) for s in enc.skipped}

    def _mitigated(self, df: pd.DataFrame, out: np.ndarray, ok: np.ndarray, result: pd.DataFrame) -> pd.DataFrame:
        """`prediction` becomes the fairness rule's decision (`model_prediction` keeps the model's own, and
        `fair_positive_probability` the rule's chance of the positive class); a row of a group the rule never saw
        keeps the model's decision."""
        rule = self.fairness
        missing = [c for c in rule["sensitive"] if c not in df.columns]
        if missing:
            raise DataError(f"this run applies a fairness rule (model/{FAIRNESS_FILE}, {rule['method']}) by group: "
                            f"every row needs {', '.join(rule['sensitive'])}; missing {', '.join(missing)}")
        classes = self.classes
        pos = rule["positive_code"]
        prob, decision = decide(rule, df, np.nan_to_num(out))
        fair = [None if not k else classes[pos] if d == 1 else classes[1 - pos] if d == 0 else m
                for k, d, m in zip(ok, decision, result["prediction"])]
        result["model_prediction"] = result["prediction"]
        result["prediction"] = fair
        result["fair_positive_probability"] = np.where(ok, prob, np.nan).round(6)
        return result

    def predict(self, rows) -> pd.DataFrame:
        """A DataFrame with `prediction` (and `prob_<class>` per class; for anomaly detection, `prediction` is whether the
        row is flagged and `anomaly_score` its score), plus the id column when declared: one row
        per input row, in order. A row that could not be predicted has no prediction and its reason in an `error`
        column (present only then), never a neighbour's answer."""
        if self.task == "recommend":
            return self._pair_scores(self._frame(rows))
        if self.task == "knowledge_tracing":
            return self.trace(rows)
        df, out, errors = self.predict_raw(rows)
        result = pd.DataFrame(index=range(len(df)))
        id_col = self.preprocessor.data.id_column
        if id_col and id_col in df.columns:
            result[id_col] = df[id_col].to_numpy()
        if self.task == "classification":
            classes = self.classes
            ok = ~np.isnan(out).any(1)
            labels = np.where(ok, out.argmax(1) if len(out) else 0, -1)
            result["prediction"] = [classes[i] if i >= 0 else None for i in labels]
            if self.fairness is not None:
                result = self._mitigated(df, out, ok, result)
            probs = pd.DataFrame(out.round(6), columns=[f"prob_{c}" for c in classes])
            result = pd.concat([result, probs], axis=1)  # one block, not a column insert per class
        elif self.task == "anomaly":  # flagged above the alert threshold training fitted (model/anomaly.json)
            ok = ~np.isnan(out)
            result["prediction"] = [bool(s > self.alerts["threshold"]) if k else None for s, k in zip(out, ok)]
            result["anomaly_score"] = out
        else:
            result["prediction"] = out
        if errors:
            result["error"] = [errors.get(i) for i in range(len(result))]
        return result

    def explain(self, rows, background=None, steps: int = 32) -> list[dict]:
        """Per-row attributions, one per input row, in order. A model whose one input is text: Integrated Gradients
        per token ({prediction, explained, tokens, attributions, special}); one image: per pixel ({prediction,
        explained, attributions: [height][width]}). Otherwise SHAP per input column
        ({prediction, explained, base_value, output, attributions: {column: value}}; base_value + the attributions
        = output, the explained class's probability or the predicted value). `background`: the rows a removed
        column takes its values from (default: the run's explain_background.json)."""
        if self.task in LM_TASKS:
            raise ValueError(f"{self.run.path}: a {self.task} run generates text; explanations are for classifiers and "
                             "regressors")
        if self.backend != "torch":
            source = self.run.manifest().get("source")
            raise ValueError(f"{self.run.path}: explanations need the run's torch weights (gradients, thousands of "
                             "masked predictions); this is an ONNX model" + (f". Explain its source run: `foundry "
                                                                            f"explain {source} ...`" if source else ""))
        if self.preprocessor.data.sequence is not None:
            raise ValueError(f"{self.run.path}: sequence-window runs are not explained per row (a row is one time step)")
        df = self._frame(rows)
        scorer = Scorer(self.model, self.preprocessor, self.task)
        cols = input_columns(self.preprocessor)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"input is missing column(s) the model needs: {', '.join(missing)}")
        label = (lambda k: str(self.classes[k])) if self.task == "classification" else (lambda k: None)
        gradients = (len(cols) == 1 and self.preprocessor.schema[cols[0]] == "text") or image_column(self.preprocessor)
        if gradients and getattr(self.model, "keras_model", None) is not None:
            raise ValueError(f"{self.run.path}: per-token and per-pixel attributions are Integrated Gradients through "
                             "torch (captum); this is a model.backend keras run. SHAP per column explains keras runs "
                             "with several input columns; or train the same config with model.backend: torch")
        if len(cols) == 1 and self.preprocessor.schema[cols[0]] == "text":
            items = integrated_gradients(scorer, df, steps=steps)
            out = scorer(df)
            for it, o in zip(items, out):
                it["prediction"] = label(int(o.argmax())) if out.ndim == 2 else float(o)
                it["explained"] = label(it.pop("target")) if it["target"] is not None else it.pop("target")
            return items
        if image_column(self.preprocessor):
            items = pixel_attributions(scorer, df, steps=steps)
            for it in items:
                if "error" not in it:
                    it["explained"] = label(it.pop("target")) if it["target"] is not None else it.pop("target")
            out = self.predict(df)
            for it, p in zip(items, out["prediction"]):
                it["prediction"] = p
            return items
        if background is None:
            path = self.run.path / BACKGROUND_FILE
            if not path.is_file():
                raise ValueError(f"{self.run.path}: this run keeps no background rows (evaluate.explain.background_rows: "
                                 "0); give some training rows: background=DataFrame, or `foundry explain --background FILE`")
            background = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        background = self._frame(background)
        sv = shap_values(scorer, df, background)
        result = []
        for i in range(len(df)):
            t = sv["targets"][i] if sv["targets"] is not None else None
            result.append({"prediction": label(t) if t is not None else float(sv["output"][i]),
                           "explained": label(t) if t is not None else "value",
                           "base_value": round(float(sv["base"][i]), 6), "output": round(float(sv["output"][i]), 6),
                           "attributions": {c: round(float(v), 6) for c, v in zip(sv["columns"], sv["values"][i])}})
        return result
