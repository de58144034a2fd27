"""Knowledge tracing (data.task knowledge_tracing): each student's answers in order (the skill an exercise trains,
and whether the answer was right) become one sequence; the model predicts, before each answer, the chance that it
is right, from every earlier answer of that student (Deep Knowledge Tracing, Piech et al. 2015).

Input: a long table (one row per answer: student, skill, correct 0/1, and an order column), or the three-line format
DKT and DKVMN publish ASSISTments in (`data.format: answer_lines`: per student, the number of answers, the skill ids,
the 0/1 answers; read here into the long table). Students, not answers, split into training, validation and test, so a
test student is never seen in training. Sequences longer than `max_length` are cut into chunks (each starts afresh)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.runs import atomic_write_text
from ..core.spec import InputSpec
from .config import DataConfig
from .features import Encoded, category_key, value_kind
from .features import _to_py as _py
from .prepared import Prepared
from .sources import DataError


def read_answer_lines(path: Path) -> pd.DataFrame:
    """The three-line format: per student, a line with the number of answers, a line of skill ids, a line of 0/1
    answers (commas; a trailing comma is fine). A student whose lines disagree is refused, naming the lines."""
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines()) if ln.strip()]
    if len(lines) % 3:
        raise DataError(f"{path}: {len(lines)} non-empty lines; the answer-lines format has three per student "
                        "(count, skill ids, 0/1 answers)")
    rows = []
    for k in range(0, len(lines), 3):
        (n_at, n), (s_at, skills), (c_at, answers) = lines[k: k + 3]
        skills = [s for s in skills.split(",") if s.strip()]
        answers = [a.strip() for a in answers.split(",") if a.strip()]
        try:
            count = int(n)
        except ValueError:
            raise DataError(f"{path}: line {n_at}: {n[:40]!r} should be a student's number of answers") from None
        if not count == len(skills) == len(answers):
            raise DataError(f"{path}: student {k // 3 + 1} (lines {n_at}-{c_at}): {count} answers announced, "
                            f"{len(skills)} skill ids and {len(answers)} answers given")
        bad = [a for a in answers if a not in ("0", "1")]
        if bad:
            raise DataError(f"{path}: line {c_at}: answers must be 0 or 1, found {bad[0]!r}")
        student = k // 3 + 1
        rows += [(student, step, s.strip(), int(a)) for step, (s, a) in enumerate(zip(skills, answers))]
    return pd.DataFrame(rows, columns=["student", "step", "skill", "correct"])


class TracingPreprocessor:
    """Skill ids -> indices (0 = padding); students' answers -> chunks of [skill, answer] sequences. JSON beside the
    model."""

    task = "knowledge_tracing"

    def __init__(self, data: DataConfig):
        self.data = data
        self.tc = data.tracing
        self.target = self.tc.correct
        self.schema = {self.tc.skill: "skill", self.tc.correct: "answer"}

    def fit(self, train: pd.DataFrame) -> TracingPreprocessor:
        col = train[self.tc.skill]
        self.skill_kind_ = value_kind(col)
        self.skills_ = sorted(col.astype(str).unique().tolist(), key=lambda s: (len(s), s))
        self.skill_index_ = {s: i + 1 for i, s in enumerate(self.skills_)}
        return self

    def skill(self, value: Any) -> int:
        return self.skill_index_.get(category_key(value, self.skill_kind_), 0)

    def sequences(self, df: pd.DataFrame, where: str) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """(student, skill indices, answers) per student, in order; an unknown skill or a bad answer is refused,
        naming the student and the position."""
        tc = self.tc
        missing = [c for c in (tc.student, tc.skill, tc.correct, tc.order) if c and c not in df.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} not found (data.tracing); it has: "
                            f"{', '.join(map(str, df.columns[:20]))}")
        ordered = df.sort_values(tc.order, kind="stable") if tc.order else df
        out = []
        for student, g in ordered.groupby(tc.student, sort=False):
            skills = np.fromiter((self.skill(v) for v in g[tc.skill].tolist()), np.int64, len(g))
            if (skills == 0).any():
                j = int(np.flatnonzero(skills == 0)[0])
                raise DataError(f"{where}: student {_py(student)!r}, answer {j + 1}: skill {_py(g[tc.skill].iloc[j])!r} was never "
                                f"seen in training ({int((skills == 0).sum())} such answer(s)); the model has no "
                                "knowledge state for it. Drop those answers or retrain with them")
            answers = pd.to_numeric(g[tc.correct], errors="coerce")
            bad = ~answers.isin([0, 1])
            if bad.any():
                j = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{where}: student {_py(student)!r}, answer {j + 1}, column '{tc.correct}': "
                                f"{_py(g[tc.correct].iloc[j])!r} is not 0 or 1")
            out.append((student, skills, answers.to_numpy(np.int64)))
        return out

    def encode(self, seqs: list) -> tuple[Encoded, torch.Tensor, list[tuple[Any, int]]]:
        """Chunks of at most max_length answers: features `skill`, `answer` [N, T] (0 = padding) and targets [N, T]
        (the answer, -1 where nothing is predicted: padding and each chunk's first answer); and (student, first
        position) per chunk."""
        T = self.tc.max_length
        chunks = [(st, s[i: i + T], a[i: i + T], i) for st, s, a in seqs for i in range(0, len(s), T)]
        width = max((len(c[1]) for c in chunks), default=1)
        skill = np.zeros((len(chunks), width), np.int64)
        answer = np.zeros((len(chunks), width), np.int64)
        y = np.full((len(chunks), width), -1.0, np.float32)
        for k, (_, s, a, _) in enumerate(chunks):
            skill[k, : len(s)], answer[k, : len(a)] = s, a
            y[k, 1: len(a)] = a[1:]
        feats = {"skill": torch.from_numpy(skill), "answer": torch.from_numpy(answer)}
        return Encoded(feats, np.arange(len(chunks))), torch.from_numpy(y), [(c[0], c[3]) for c in chunks]

    def spec(self) -> InputSpec:
        return InputSpec(task="knowledge_tracing", n_outputs=len(self.skills_) + 1, skills=len(self.skills_) + 1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": "knowledge_tracing", "task": "knowledge_tracing", "data": self.data.model_dump(mode="json"),
                 "skills": self.skills_, "skill_kind": self.skill_kind_}
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, state: dict | None = None) -> TracingPreprocessor:
        s = state or json.loads((directory / "preprocessor.json").read_text(encoding="utf-8"))
        self = cls(DataConfig.model_validate(s["data"]))
        self.skills_, self.skill_kind_ = s["skills"], s["skill_kind"]
        self.skill_index_ = {v: i + 1 for i, v in enumerate(self.skills_)}
        return self


def split_students(students: list, tc, has_test: bool, seed: int) -> dict[str, set]:
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(students)))
    n = len(students)
    n_test = 0 if has_test else int(round(n * tc.test))
    n_val = int(round(n * tc.val))
    picks = {"test": order[:n_test], "val": order[n_test: n_test + n_val], "train": order[n_test + n_val:]}
    return {s: {students[i] for i in idx} for s, idx in picks.items()}


def prepare_tracing(cfg, df: pd.DataFrame, where: str, test_frame: pd.DataFrame | None) -> Prepared:
    d = cfg.data
    tc = d.tracing
    for c in (tc.student, tc.skill, tc.correct):
        if c not in df.columns:
            raise DataError(f"{where}: column '{c}' not found (data.tracing); it has: {', '.join(map(str, df.columns[:20]))}")
    students = list(dict.fromkeys(df[tc.student].tolist()))
    groups = split_students(students, tc, test_frame is not None, cfg.train.seed)
    frames = {s: df[df[tc.student].isin(g)] for s, g in groups.items()}
    if test_frame is not None:
        frames["test"] = test_frame
    if not len(frames["train"]):
        raise DataError(f"{where}: no training students left after the split")
    pre = TracingPreprocessor(d).fit(frames["train"])
    encoded, targets, chunks = {}, {}, {}
    for split, f in frames.items():
        if len(f):
            here = str(cfg.resolve_path(d.test_path)) if split == "test" and test_frame is not None else where
            encoded[split], targets[split], chunks[split] = pre.encode(pre.sequences(f, here))
    profile = {"source": where, "task": "knowledge_tracing", "skills": len(pre.skills_),
               "students": {s: len(set(f[tc.student])) for s, f in frames.items() if len(f)},
               "answers": {s: len(f) for s, f in frames.items() if len(f)},
               "correct_share": round(float(pd.to_numeric(frames["train"][tc.correct]).mean()), 4),
               "splits": {s: len(e) for s, e in encoded.items()}, "max_length": tc.max_length}
    return Prepared(frames, encoded, targets, pre, profile, raw={"data": df}, windows={
        s: pd.DataFrame(c, columns=["student", "start"]) for s, c in chunks.items()})
