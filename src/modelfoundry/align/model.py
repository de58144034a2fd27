"""The model alignment starts from: `model.path` as a plain Hugging Face directory (gpt-mini, a pretraining or an
aligned run's model/) or one of our causal-LM fine-tunes (its weights, merged, written once as an HF directory in the
run's cache), with the tokenizer TRL needs and the prompt template the model was tuned with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.paths import resolve_model_path
from ..data.sources import DataError
from ..models import load_model
from ..models.lm import ENCODER_TYPES, export_hf


@dataclass
class Base:
    path: Path
    """A plain Hugging Face directory (config.json, model.safetensors, tokenizer.json)."""
    template: str | None
    """The prompt template the model was fine-tuned with (a causal-LM or aligned run), else None."""
    eos_id: int
    context: int
    decoder: bool


def _run_model_dir(path: str) -> Path | None:
    p = Path(path)
    if (p / "manifest.json").is_file() and (p / "model").is_dir():
        return p / "model"
    if (p / "architecture.json").is_file() or (p / "preprocessor.json").is_file():
        return p
    return None


def resolve_base(model_path: str, cache: Path) -> Base:
    """`model.path` -> a Hugging Face directory and what the run recorded about it (see the module docstring)."""
    run_dir = _run_model_dir(model_path)
    template = None
    state = {}
    if run_dir is not None and (run_dir / "architecture.json").is_file():
        state = json.loads((run_dir / "preprocessor.json").read_text(encoding="utf-8"))
    if state.get("task") in ("clm", "mlm") and (run_dir / "config.json").is_file():
        path = run_dir  # a pretraining run's model/ is a Hugging Face directory as it is (an mlm one is refused below)
    elif state:  # our own causal-LM fine-tune
        if state.get("task") != "causal_lm":
            raise ValueError(f"model.path {model_path}: a {state.get('task')} run; alignment starts from a decoder: a "
                             "causal-LM fine-tune, a pretraining (clm) or aligned run, or a Hugging Face decoder directory")
        from tokenizers import Tokenizer

        hf = cache / "base-model"
        if not (hf / "config.json").is_file():
            model, _, _ = load_model(run_dir)
            tok = Tokenizer.from_file(str(run_dir / "tokenizer_0.json"))
            context = getattr(model.model.config, "n_positions", None) or model.model.config.max_position_embeddings
            export_hf(model.model, hf, tok, state["eos_id"], int(context))
        path, template = hf, state["template"]
    else:
        path = resolve_model_path(model_path)
        if (path / "preprocessor.json").is_file():  # an aligned run's model/: it keeps its template
            template = json.loads((path / "preprocessor.json").read_text(encoding="utf-8")).get("template")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    kind = config.get("model_type", "?")
    decoder = kind not in ENCODER_TYPES or bool(config.get("is_decoder"))
    eos = config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    context = config.get("n_positions") or config.get("max_position_embeddings") or 512
    return Base(path, template, -1 if eos is None else int(eos), int(context), decoder)


def load_tokenizer(base: Base):
    """transformers' fast tokenizer over the directory's tokenizer.json, with end-of-text and padding set."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(base.path)
    if tok.eos_token is None:
        if base.eos_id < 0:
            raise DataError(f"{base.path}: neither config.json nor tokenizer_config.json names an end-of-text token")
        tok.eos_token = tok.convert_ids_to_tokens(base.eos_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
