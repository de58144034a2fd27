"""Alignment data: preference pairs, prompt/completion pairs or prompts, read with the data stage's sources, turned
into plain texts TRL takes (prompt formatted, replies extracted from chat messages), split, cleaned and fitted to
the model's context. Every row dropped or shortened is counted in the run's data_profile.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.sources import DataError, read_source
from ..data.split import split_frame
from .config import PAIRED

ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
DEFAULT_TEMPLATE = "{prompt}\n"


def _messages(value: Any) -> list[dict] | None:
    """[{role, content}] from chat messages ({role, content} or ShareGPT {from, value}), or None for plain text."""
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            value = json.loads(value)  # a CSV cell holding JSON messages
        except ValueError:
            return None
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(m, dict) for m in value) and len(value):
        out = []
        for m in value:
            role = m.get("role", m.get("from"))
            content = m.get("content", m.get("value"))
            if role is None or content is None:
                raise DataError(f"a chat message needs role/content (or ShareGPT from/value), got keys {sorted(m)}")
            out.append({"role": ROLES.get(str(role), str(role)), "content": str(content)})
        return out
    return None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class Formatter:
    """A prompt as the model sees it: the tokenizer's chat template where it has one, else `template` around the last
    message, earlier turns as "role: content" lines above it."""

    def __init__(self, tokenizer, template: str):
        self.tokenizer, self.template = tokenizer, template
        self.chat = bool(getattr(tokenizer, "chat_template", None))

    def prompt(self, value: Any) -> str:
        msgs = _messages(value)
        if msgs is None:
            return self.template.format(prompt=str(value))
        if self.chat:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        *history, last = msgs
        lines = "".join(f"{m['role']}: {m['content']}\n" for m in history)
        return lines + self.template.format(prompt=last["content"])

    @staticmethod
    def reply(value: Any) -> str:
        msgs = _messages(value)
        return str(value) if msgs is None else msgs[-1]["content"]

    def describe(self) -> str:
        return "the tokenizer's chat template" if self.chat else repr(self.template)


@dataclass
class AlignData:
    frames: dict[str, pd.DataFrame]
    """train / val / test: columns prompt (formatted), and chosen + rejected, or completion, as plain text."""
    profile: dict = field(default_factory=dict)


def _fit(tokenizer, prompt: str, reply: str, max_length: int, room: int) -> tuple[str, str, bool]:
    """Prompt and reply cut to max_length tokens (less `room` for what TRL adds): the prompt loses its start first."""
    p = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    r = tokenizer(reply, add_special_tokens=False, verbose=False)["input_ids"] if reply else []
    budget = max_length - room
    if len(p) + len(r) <= budget:
        return prompt, reply, False
    r = r[: max(budget // 2, budget - len(p))]
    p = p[len(p) - (budget - len(r)):] if budget > len(r) else []
    return tokenizer.decode(p), tokenizer.decode(r), True


def read_align(cfg, tokenizer, template: str, max_length: int) -> AlignData:
    """Read data.path (and data.test_path), keep the columns the method needs, format and fit each row, split."""
    a, d = cfg.align, cfg.data
    if d.path is None:
        raise DataError("data.path: alignment needs a file of preference pairs, prompt/completion pairs or prompts")
    need = ([a.prompt, a.chosen, a.rejected] if a.method in PAIRED else
            [a.prompt, a.completion] if a.method == "sft" else [a.prompt])
    fmt = Formatter(tokenizer, template)
    room = a.max_new_tokens if a.method == "grpo" else 2  # grpo: the reply is generated; else TRL's EOS (and BOS)
    if a.method == "grpo" and a.max_new_tokens >= max_length:
        raise DataError(f"align.max_new_tokens ({a.max_new_tokens}) leaves no room for a prompt in {max_length} tokens")
    counts = {"rows": 0, "missing": 0, "chosen_equals_rejected": 0, "truncated": 0}

    def load(path) -> pd.DataFrame:
        raw = read_source(cfg.resolve_path(path), d.format, columns=d.columns, delimiter=d.delimiter, encoding=d.encoding)
        absent = [c for c in need if c not in raw.columns]
        if absent:
            raise DataError(f"{cfg.resolve_path(path)}: missing column(s) {absent} for align.method {a.method}; it has: "
                            f"{', '.join(map(str, raw.columns[:20]))} (name them with align.prompt / align.chosen / "
                            "align.rejected / align.completion)")
        extra = [c for c in raw.columns if c not in need]  # passed on to reward functions as TRL does
        rows = []
        for i, row in enumerate(raw[need + extra].to_dict("records")):
            counts["rows"] += 1
            if any(_missing(row[c]) for c in need):
                counts["missing"] += 1
                continue
            try:
                prompt = fmt.prompt(row[a.prompt])
                replies = [fmt.reply(row[c]) for c in need[1:]]
            except DataError as exc:
                raise DataError(f"{cfg.resolve_path(path)}: row {i + 1}: {exc}") from None
            if a.method in PAIRED and replies[0].strip() == replies[1].strip():
                counts["chosen_equals_rejected"] += 1
                continue
            fitted = [_fit(tokenizer, prompt, r, max_length, room) for r in (replies or [""])]
            if any(f[2] for f in fitted):
                if a.too_long == "error":
                    raise DataError(f"{cfg.resolve_path(path)}: row {i + 1}: prompt and reply exceed "
                                    f"{max_length - room} tokens (align.max_length {max_length}"
                                    + (f" less align.max_new_tokens {room}" if a.method == "grpo" else "")
                                    + "); shorten it, raise align.max_length, or set align.too_long: truncate")
                counts["truncated"] += 1
            prompt = min((f[0] for f in fitted), key=len)
            out = {"prompt": prompt, **dict(zip(need[1:], (f[1] for f in fitted)))}
            out.update({c: row[c] for c in extra if c not in out})
            rows.append(out)
        if not rows:
            raise DataError(f"{cfg.resolve_path(path)}: no usable rows ({json.dumps(counts)})")
        frame = pd.DataFrame(rows).rename(columns={a.chosen: "chosen", a.rejected: "rejected", a.completion: "completion"})
        return frame

    data = load(d.path)
    test = load(d.test_path) if d.test_path else None
    split = d.split.model_copy(update={"method": "random"}) if d.split.method == "stratified" else d.split
    idx = split_frame(data, split, "regression", "prompt", cfg.train.seed, test is not None, "prompt")
    frames = {s: data.iloc[i].reset_index(drop=True) for s, i in idx.items()}
    if test is not None:
        frames["test"] = test
    if "test" not in frames or not len(frames["test"]):
        raise DataError("alignment reports held-out numbers: give data.test_path or a data.split with a test share")
    profile = {"source": str(cfg.resolve_path(d.path)), "method": a.method, "template": fmt.describe(),
               "max_length": max_length, "splits": {s: len(f) for s, f in frames.items()}, "dropped": counts}
    return AlignData(frames, profile)
