"""Causal-LM data: instruction/response pairs -> token ids with a loss mask on the response only.

A row becomes `template.format(prompt=<prompt column>) + <response column> + EOS`, tokenized with the pretrained
model's own tokenizer. `segment:lm` marks the tokens the loss is computed on (the response and its EOS), so
the model learns to answer, not to repeat the instruction. Truncation keeps the start of the prompt and as
much of the response as fits, and is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ..core.paths import resolve_model_path
from ..core.runs import atomic_write_text
from ..core.spec import InputSpec
from .features import Encoded
from .prepared import Prepared
from .sources import DataError
from .split import split_frame
from .text import load_tokenizer

KEY = "lm"


class LMPreprocessor:
    task = "causal_lm"

    def __init__(self, prompt: str, response: str, template: str, max_length: int, eos_id: int, tokenizer, data=None):
        self.prompt, self.response, self.template, self.max_length = prompt, response, template, max_length
        self.eos_id, self.tokenizer, self.data = eos_id, tokenizer, data
        self.tokenizer.no_truncation()
        self.truncated_: dict[str, int] = {}

    @classmethod
    def from_model(cls, cfg, model_dir: Path) -> LMPreprocessor:
        d = cfg.data
        if d.prompt is None:
            raise DataError("data.prompt: a causal_lm task needs the instruction column (data.prompt) and the "
                            "response column (data.target)")
        if "{prompt}" not in d.prompt_template:
            raise DataError(f"data.prompt_template: must contain '{{prompt}}', got {d.prompt_template!r}")
        tok = load_tokenizer(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        eos = config.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None or eos >= tok.get_vocab_size(with_added_tokens=True):
            raise DataError(f"{model_dir / 'config.json'}: eos_token_id is {eos!r}; a causal-LM fine-tune needs an "
                            f"end-of-text token id inside the tokenizer's vocabulary ({tok.get_vocab_size()} tokens)")
        return cls(d.prompt, d.target, d.prompt_template, d.text.max_length, int(eos), tok, d)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(self.template.format(prompt=prompt), add_special_tokens=False).ids

    def transform(self, df: pd.DataFrame, with_response: bool = True) -> Encoded:
        need = [self.prompt] + ([self.response] if with_response else [])
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DataError(f"input is missing column(s) {missing} (it has: {', '.join(map(str, df.columns[:20]))})")
        prompts = [self.template.format(prompt=str(p)) for p in df[self.prompt].fillna("")]
        p_enc = self.tokenizer.encode_batch(prompts, add_special_tokens=False)
        r_enc = (self.tokenizer.encode_batch(df[self.response].fillna("").astype(str).tolist(), add_special_tokens=False)
                 if with_response else [None] * len(df))
        rows, truncated = [], 0
        for p, r in zip(p_enc, r_enc):
            ids, mask = list(p.ids), [0] * len(p.ids)
            if r is not None:
                ids += r.ids + [self.eos_id]
                mask += [1] * (len(r.ids) + 1)
            if len(ids) > self.max_length:
                truncated += 1
                ids, mask = ids[: self.max_length], mask[: self.max_length]
            rows.append((ids, mask))
        self.truncated_ = {KEY: truncated}
        lengths = [max(1, len(ids)) for ids, _ in rows]
        ids_t = torch.zeros(len(rows), max(lengths, default=1), dtype=torch.long)
        seg_t = torch.zeros_like(ids_t)
        for i, (ids, mask) in enumerate(rows):
            ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            seg_t[i, : len(mask)] = torch.tensor(mask, dtype=torch.long)
        feats = {f"text:{KEY}": ids_t, f"len:{KEY}": torch.tensor(lengths), f"segment:{KEY}": seg_t}
        return Encoded(feats, list(range(len(df))), [])

    def spec(self) -> InputSpec:
        return InputSpec(task=self.task, n_outputs=0, text={KEY: self.tokenizer.get_vocab_size(with_added_tokens=True)},
                         max_length=self.max_length, eos_id=self.eos_id)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "tokenizer_0.json", self.tokenizer.to_str())
        state = {"task": self.task, "prompt": self.prompt, "response": self.response, "template": self.template,
                 "max_length": self.max_length, "eos_id": self.eos_id}
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, state: dict) -> LMPreprocessor:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(directory / "tokenizer_0.json"))
        return cls(state["prompt"], state["response"], state["template"], state["max_length"], state["eos_id"], tok)


def prepare_lm(cfg, df: pd.DataFrame, test_frame: pd.DataFrame | None, cleaning: dict):
    """Split, tokenize and profile instruction/response pairs (a Prepared whose targets are unused)."""
    d = cfg.data
    if cfg.model.type != "pretrained":
        raise DataError(f"data.task 'causal_lm' needs model.type 'pretrained' (a local decoder such as GPT-2), "
                        f"got '{cfg.model.type}'")
    pre = LMPreprocessor.from_model(cfg, resolve_model_path(cfg.model.path))
    split = d.split.model_copy(update={"method": "random"}) if d.split.method == "stratified" else d.split
    idx = split_frame(df, split, "regression", d.target, cfg.train.seed, test_frame is not None, None)
    frames = {s: df.iloc[i].reset_index(drop=True) for s, i in idx.items()}
    if test_frame is not None:
        frames["test"] = test_frame.reset_index(drop=True)
    encoded, targets, truncated = {}, {}, {}
    for s, f in frames.items():
        if len(f):
            encoded[s] = pre.transform(f)
            targets[s] = torch.zeros(len(f))
            truncated[s] = dict(pre.truncated_)
    tokens = {s: {"response_tokens": int(e.features[f"segment:{KEY}"].sum()),
                  "mean_length": round(float(e.features[f"len:{KEY}"].float().mean()), 1)} for s, e in encoded.items()}
    profile = {"rows": len(df), "splits": {s: len(e) for s, e in encoded.items()}, "cleaning": cleaning,
               "truncated_texts": truncated, "tokens": tokens, "template": d.prompt_template,
               "source": str(cfg.resolve_path(d.path)) if d.path else "DataFrame"}
    return Prepared(frames, encoded, targets, pre, profile)
