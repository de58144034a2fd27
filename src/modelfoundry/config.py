"""The config: one YAML file describes a model's whole life.

The root composes each stage's section (data/config.py, models/config.py, train/config.py, evaluate/config.py,
compress/config.py, tune/config.py, serve/config.py), loads YAML, applies `--set`, and reports every problem at once
with its dotted path, what is allowed, what was given and how to fix it (core/schema.py). Validated once, at the edge;
stage code reads typed fields and never `cfg.get(key, default)`. Stage code imports its own section, never this
module (only for type annotations): a stage that must change a config calls `cfg.override(...)`.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .align.config import AlignConfig
from .compress.config import CompressConfig
from .core.runs import complete_runs
from .core.schema import (
    ConfigError,
    Section,
    apply_overrides,
    describe,
    dotted_paths,
    parse_override,
    yaml_floats,
)
from .core.schema import reference_markdown as _reference
from .data.config import DataConfig
from .evaluate.config import CostConfig, EvaluateConfig
from .federated.config import FederatedConfig
from .models.config import MODEL_TYPES, ModelConfig
from .models.mlp import MLPConfig
from .schedule.config import ScheduleConfig
from .serve.config import ServeConfig
from .train.config import TrackConfig, TrainConfig
from .tune.config import TuneConfig

__all__ = ["Config", "ConfigError", "load_config", "validate_config", "run_config", "parse_override",
           "json_schema", "reference_markdown"]

EMBEDDED_MODELS = ("minilm", "gpt-mini")


def newest_run_model(output_dir: Path, name: str) -> Path:
    """`model.path: run:NAME`: <output_dir>/NAME/<newest complete run>/model (a pretraining run's is a plain HF
    directory)."""
    folder = output_dir / name
    complete = [run for run in complete_runs(folder) if (run / "model" / "config.json").is_file()
                or (run / "model" / "architecture.json").is_file() and _causal_lm(run)]
    if not complete:
        raise ValueError(f"model.path 'run:{name}': no complete run with a Hugging Face model directory under "
                         f"{folder.resolve()} (output_dir is {output_dir}); train one first, or give the directory")
    return (complete[-1] / "model").resolve()


OWN_TASKS = {"recommend": (("mf", "two_tower"), "ranks items for users", "each user's own latest interactions"),
             "knowledge_tracing": (("dkt",), "traces students' knowledge", "whole students")}
"""data.task -> (its model families, what they do, what its split holds out)."""


def _causal_lm(run: Path) -> bool:
    """A causal-LM fine-tune of ours (alignment starts from it: align/model.py exports it)."""
    try:
        return json.loads((run / "model" / "preprocessor.json").read_text(encoding="utf-8")).get("task") == "causal_lm"
    except (OSError, ValueError):
        return False


FREE_FORM = ("model.adapter", "align.options", "federated.options", "data.types", "data.clean.columns")  # mappings whose keys are the user's


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The run's name: runs go to `<output_dir>/<name>/<run-id>/`."""
    output_dir: str = "runs"
    """Where runs go, relative to the current directory (data paths are relative to the config file)."""
    data: DataConfig
    model: ModelConfig = MLPConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    cost: CostConfig = CostConfig()
    """Prices and the verdict threshold for the cost report (manifest.json `cost`)."""
    tune: TuneConfig | None = None
    """Hyperparameter search (`foundry tune`)."""
    track: TrackConfig = TrackConfig()
    """Experiment tracking beyond the Run directory."""
    compress: CompressConfig | None = None
    """Compression (`foundry compress RUN`): distill, prune, quantize, export to ONNX."""
    serve: ServeConfig = ServeConfig()
    """How `foundry serve RUN` serves this run (flags override it)."""
    align: AlignConfig | None = None
    """Alignment from feedback on TRL (`foundry train` runs it instead of the supervised loop): sft, reward, dpo, ipo,
    orpo, kto, grpo on a decoder (model.type pretrained, model.path gpt-mini, a causal-LM run or an HF directory)."""
    federated: FederatedConfig | None = None
    """Federated learning on Flower (`foundry train` runs it instead of the one-machine loop): the model trains across
    sites that keep their rows; their updates are aggregated round by round."""
    schedule: ScheduleConfig | None = None
    """Job-shop scheduling with reinforcement learning (`foundry train` runs it): a dispatching policy trained with
    MaskablePPO on random instances, scored on the held-out instances of data.path beside the dispatching rules and
    the optima. Of the other sections only train.seed applies."""

    @field_validator("track", mode="before")
    @classmethod
    def _track_shorthand(cls, v: Any) -> Any:
        return {"backend": v} if isinstance(v, str) else v
    base_dir: str = Field(".", exclude=True)
    """(set by load_config) the config file's folder; relative paths resolve against it."""

    @model_validator(mode="after")
    def _model_path_from_config_dir(self) -> Config:
        if self.model.type != "pretrained" or self.model.path in EMBEDDED_MODELS:
            return self
        if self.model.path.startswith("run:"):  # the newest complete run of that name: its model directory
            self.model.path = str(newest_run_model(Path(self.output_dir), self.model.path[4:]))
        elif not Path(self.model.path).is_absolute():
            self.model.path = str((Path(self.base_dir) / self.model.path).resolve())
        return self

    @model_validator(mode="after")
    def _tune_paths_exist(self) -> Config:
        if self.tune is None:
            return self
        flat = dotted_paths(self.model_dump(mode="json", exclude={"tune", "base_dir"}))
        for key in self.tune.space:
            if key.split(".")[0] in ("tune", "name", "output_dir"):
                raise ValueError(f"tune.space.{key}: cannot search over {key}")
            if key in flat or any(key.startswith(p + ".") for p in FREE_FORM):
                continue
            close = difflib.get_close_matches(key, list(flat), n=1, cutoff=0.6)
            raise ValueError(f"tune.space: '{key}' is not a field of this config"
                             + (f"; did you mean '{close[0]}'?" if close else ""))
        if self.tune.metric.startswith("cv_") and self.evaluate.cv is None:
            raise ValueError(f"tune.metric '{self.tune.metric}' is a k-fold mean; set evaluate.cv (e.g. {{folds: 5}})")
        return self

    @model_validator(mode="after")
    def _corpus_task_fits(self) -> Config:
        task, kind = self.data.task, self.model.type
        if task not in ("clm", "mlm"):
            if kind in ("gpt", "bert"):
                raise ValueError(f"model.type {kind} pretrains a language model on a raw corpus: set data.task clm "
                                 "(gpt) or mlm (bert); to fine-tune its result, give its run's model directory as "
                                 "model.path with model.type pretrained")
            return self
        if kind not in ("gpt", "bert", "pretrained"):
            raise ValueError(f"data.task {task} pretrains a language model: model.type gpt (next-token), bert "
                             f"(masked), or pretrained (continued pretraining of model.path), not {kind!r}")
        if kind == "gpt" and task == "mlm" or kind == "bert" and task == "clm":
            arch = "a decoder (GPT-2)" if kind == "gpt" else "an encoder (BERT)"
            fits = "clm" if kind == "gpt" else "mlm"
            raise ValueError(f"data.task {task} cannot train model.type {kind}, {arch}; use data.task {fits}, or "
                             f"model.type {'bert' if task == 'mlm' else 'gpt'}")
        if self.evaluate.cv is not None or self.evaluate.metrics is not None:
            raise ValueError(f"data.task {task} reports loss, perplexity and bits per byte; evaluate.cv and "
                             "evaluate.metrics do not apply")
        if self.data.augment.model_dump() != type(self.data.augment)().model_dump():
            raise ValueError(f"data.augment does not apply to data.task {task} (the text is the target)")
        return self

    @model_validator(mode="after")
    def _own_tasks_fit(self) -> Config:
        """Recommendation and knowledge tracing: their own families, and what their per-user / per-student split
        rules out."""
        for task, (families, what, held) in OWN_TASKS.items():
            kind = self.model.type
            if self.data.task != task:
                if kind in families:
                    raise ValueError(f"model.type {kind} {what}: set data.task {task}")
                continue
            if kind not in families:
                raise ValueError(f"data.task {task}: model.type {' or '.join(families)}, not {kind!r}")
            if self.evaluate.cv is not None:
                raise ValueError(f"evaluate.cv: a {task} run holds out {held}; k-fold over rows would split them")
            if self.federated is not None or self.evaluate.fairness is not None:
                raise ValueError(f"data.task {task}: federated: and evaluate.fairness do not apply")
            if self.data.augment.model_dump() != type(self.data.augment)().model_dump():
                raise ValueError(f"data.augment does not apply to data.task {task} (no feature rows to augment)")
        return self

    @model_validator(mode="after")
    def _align_fits(self) -> Config:
        if self.align is None:
            return self
        if self.model.type != "pretrained":
            raise ValueError(f"align: aligns a pretrained model: model.type pretrained with model.path (gpt-mini, a "
                             f"causal-LM or aligned run, a Hugging Face directory), not {self.model.type!r}")
        if self.data.task != "auto":
            raise ValueError(f"align: reads its own columns (align.prompt, align.chosen, ...); data.task "
                             f"{self.data.task} does not apply")
        if self.evaluate.cv is not None or self.evaluate.metrics is not None:
            raise ValueError("align: reports held-out pairwise accuracy, win rates and rewards; evaluate.cv and "
                             "evaluate.metrics do not apply")
        return self

    @model_validator(mode="after")
    def _federated_fits(self) -> Config:
        if self.federated is None:
            return self
        if self.align is not None:
            raise ValueError("federated: and align: cannot be combined in one config (align runs on TRL)")
        if self.data.task in ("clm", "mlm", "causal_lm"):
            raise ValueError(f"federated: trains classifiers and regressors; data.task {self.data.task} does not apply")
        if self.evaluate.cv is not None:
            raise ValueError("federated: evaluate.cv does not apply (the federation is one run; compare it with a "
                             "centralized run of the same config without federated:)")
        if getattr(self.model, "backend", "torch") == "keras":
            raise ValueError("federated: the sites train torch models (Flower carries their tensors); model.backend: "
                             "keras is not federated here: set model.backend: torch")
        return self

    @model_validator(mode="after")
    def _schedule_fits(self) -> Config:
        if self.schedule is None:
            return self
        if self.data.path is None:
            raise ValueError("schedule: data.path is the instance file (job-shop-lib JSON or the OR-Library/Taillard "
                             "text format) or a folder of them; give it")
        other = [k for k in ("align", "federated", "tune", "compress") if getattr(self, k) is not None]
        if other:
            raise ValueError(f"schedule: cannot be combined with {', '.join(other)}: (the schedule stage trains a "
                             "dispatching policy, not a model of rows)")
        if self.data.task != "auto" or self.evaluate.cv is not None:
            raise ValueError("schedule: reads instances, not rows; data.task and evaluate.cv do not apply")
        return self

    @model_validator(mode="after")
    def _fairness_fits(self) -> Config:
        f = self.evaluate.fairness
        if f is None:
            return self
        if self.data.task in ("clm", "mlm", "causal_lm") or self.align is not None:
            raise ValueError("evaluate.fairness: applies to classifiers and regressors, not to language models or align")
        if self.data.target in f.sensitive:
            raise ValueError(f"evaluate.fairness.sensitive: '{self.data.target}' is the target (data.target)")
        unknown = sorted(set(f.bins) - set(f.sensitive)) + sorted(set(f.groups) - set(f.sensitive))
        if unknown:
            raise ValueError(f"evaluate.fairness: bins/groups name {', '.join(unknown)}, not in sensitive {f.sensitive}")
        if f.mitigate == "reweigh" and self.data.augment.oversample is not None:
            raise ValueError("evaluate.fairness.mitigate: reweigh weights the training rows; data.augment.oversample "
                             "adds synthetic rows that have no group: use one of the two")
        if f.mitigate == "reweigh" and self.federated is not None:
            raise ValueError("evaluate.fairness.mitigate: reweigh needs every site's group counts in one place; a "
                             "federation keeps them at the sites (threshold_optimizer works on the server's scores)")
        if not f.use_as_feature:  # audited, never an input: the data stage leaves them out like any ignored column
            used = [c for c in f.sensitive if self.data.types.get(c, "ignore") != "ignore"]
            if used:
                raise ValueError(f"evaluate.fairness.use_as_feature is false but data.types makes {', '.join(used)} an "
                                 "input; drop one of the two")
            self.data.types = {**self.data.types, **dict.fromkeys(f.sensitive, "ignore")}
        return self

    @model_validator(mode="after")
    def _causal_lm_fits(self) -> Config:
        d = self.data
        if d.task != "causal_lm":
            if d.prompt is not None:
                raise ValueError("data.prompt applies to data.task: causal_lm")
            return self
        if d.prompt is None:
            raise ValueError("data.task causal_lm needs data.prompt (the instruction column); data.target is the response")
        if self.model.type != "pretrained":
            raise ValueError(f"data.task causal_lm needs model.type: pretrained (a local decoder), not {self.model.type!r}")
        if self.evaluate.cv is not None or self.evaluate.metrics is not None:
            raise ValueError("data.task causal_lm reports loss and perplexity; evaluate.cv and evaluate.metrics do not apply")
        return self

    def resolve_path(self, path: str | None) -> Path | None:
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)

    # -- what stages call instead of importing this module
    def to_dict(self) -> dict:
        """The resolved config with every default filled in (data paths made absolute)."""
        d = self.model_dump(mode="json")
        for key in ("path", "test_path"):
            if d["data"].get(key):
                d["data"][key] = str(self.resolve_path(d["data"][key]).resolve())
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def override(self, changes: dict[str, Any], source: str = "config") -> Config:
        """A new config: this one with each dotted path in `changes` set (`{"train.lr": 3e-4}`, or whole sections),
        validated again (every problem reported, from `source`)."""
        return validate_config(self.to_dict(), self.base_dir, source, changes)


def validate_config(raw: dict, base_dir: str | Path = ".", source: str = "config",
                    overrides: dict[str, Any] | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): expected a mapping of sections, got {type(raw).__name__}"], source)
    raw = yaml_floats(apply_overrides(raw, overrides or {}))
    raw = {**raw, "base_dir": str(base_dir)}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([describe(e, Config, MODEL_TYPES) for e in exc.errors()], source) from None


def load_config(path: str | Path | dict, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Read, override and validate a config; raise ConfigError listing every problem."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    if isinstance(path, dict):
        return validate_config(path, ".", "config", overrides)
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: no such config file"], str(p))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(p)) from None
    return validate_config(raw or {}, p.resolve().parent, str(p), overrides)


def run_config(run: Any) -> Config:
    """The resolved config a run recorded (`<run>/config.yaml`, every default filled in, paths absolute); `run` is a
    Run or its directory."""
    path = Path(getattr(run, "path", run)) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: not a run directory (no config.yaml)")
    return load_config(yaml.safe_load(path.read_text(encoding="utf-8")))


def json_schema() -> dict:
    schema = Config.model_json_schema()
    schema.get("properties", {}).pop("base_dir", None)
    return schema


def reference_markdown() -> str:
    """The config reference (docs/config.md), generated from the schema's field docstrings."""
    return _reference(Config, MODEL_TYPES, "model")
