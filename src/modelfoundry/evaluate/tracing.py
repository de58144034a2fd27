"""Evaluating knowledge tracing: ROC-AUC and accuracy over every scored answer of the held-out students, beside two
baselines fitted on the training students' answers:

- skill_mean: each skill's share of right answers in training (what a teacher's gradebook knows);
- pfa: Performance Factors Analysis (Pavlik, Cen & Koedinger 2009), the classic logistic knowledge-tracing model: per
  skill an easiness, and weights on the student's earlier right and wrong answers on that skill (log-counts).

The report shows one held-out student's knowledge state: the model's chance of a right answer on each of the skills
they practised, after each answer, with the answers marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..core.infer import TensorData, inference_batches
from ..core.runs import Run, atomic_write_text, write_json
from ..data import Prepared


def _answers(data: Prepared, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(skill, answer, scored) of every answer of a split, flattened in chunk order; scored = the model predicts it."""
    f, y = data.encoded[split].features, data.targets[split]
    skill, answer, scored = f["skill"].numpy().ravel(), f["answer"].numpy().ravel(), (y.numpy() >= 0).ravel()
    return skill, answer, scored


def _prior_counts(data: Prepared, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Per answer: the student's earlier right and wrong answers on the same skill (within the chunk, as the model
    sees it)."""
    f = data.encoded[split].features
    skill, answer = f["skill"].numpy(), f["answer"].numpy()
    wins, fails = np.zeros(skill.shape), np.zeros(skill.shape)
    for k in range(len(skill)):
        seen_w: dict[int, int] = {}
        seen_f: dict[int, int] = {}
        for t in range(skill.shape[1]):
            s = int(skill[k, t])
            if s == 0:
                break
            wins[k, t], fails[k, t] = seen_w.get(s, 0), seen_f.get(s, 0)
            if answer[k, t]:
                seen_w[s] = seen_w.get(s, 0) + 1
            else:
                seen_f[s] = seen_f.get(s, 0) + 1
    return wins.ravel(), fails.ravel()


def _pfa_features(skill: np.ndarray, wins: np.ndarray, fails: np.ndarray, n_skills: int):
    from scipy import sparse

    rows = np.arange(len(skill))
    one = sparse.csr_matrix((np.ones(len(skill)), (rows, skill)), shape=(len(skill), n_skills))
    w = sparse.csr_matrix((np.log1p(wins), (rows, skill)), shape=(len(skill), n_skills))
    f = sparse.csr_matrix((np.log1p(fails), (rows, skill)), shape=(len(skill), n_skills))
    return sparse.hstack([one, w, f]).tocsr()


def _scores(truth: np.ndarray, prob: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    return {"roc_auc": round(float(roc_auc_score(truth, prob)), 6) if len(np.unique(truth)) > 1 else None,
            "accuracy": round(float(((prob > 0.5) == (truth > 0.5)).mean()), 6)}


def baselines(data: Prepared, split: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    n = data.preprocessor.spec().skills
    out = {}
    tr_skill, tr_answer, tr_scored = _answers(data, "train")
    te_skill, te_answer, te_scored = _answers(data, split)
    right = np.bincount(tr_skill[tr_skill > 0], weights=tr_answer[tr_skill > 0], minlength=n)
    count = np.bincount(tr_skill[tr_skill > 0], minlength=n)
    rate = (right + 1) / (count + 2)  # Laplace: a skill seen once is not certain
    out["skill_mean"] = _scores(te_answer[te_scored], rate[te_skill[te_scored]])
    tr_w, tr_f = _prior_counts(data, "train")
    te_w, te_f = _prior_counts(data, split)
    keep = tr_skill > 0
    pfa = LogisticRegression(max_iter=500, C=1.0).fit(_pfa_features(tr_skill[keep], tr_w[keep], tr_f[keep], n),
                                                      tr_answer[keep])
    prob = pfa.predict_proba(_pfa_features(te_skill[te_scored], te_w[te_scored], te_f[te_scored], n))[:, 1]
    out["pfa"] = _scores(te_answer[te_scored], prob)
    return out


@torch.no_grad()
def tracing_scores(model, data: TensorData, batch_size: int, accelerator=None) -> dict:
    """Loss (binary cross-entropy), ROC-AUC and accuracy over every scored answer of `data`."""
    p, t = [], []
    for _, batch in inference_batches(data.features, data.y, batch_size):
        device = accelerator.device if accelerator is not None else "cpu"
        batch = {k: v.to(device) for k, v in batch.items()}
        y = batch.pop("y")
        logits = model(batch).float()
        mask = y >= 0
        p.append(logits[mask].cpu().numpy())
        t.append(y[mask].cpu().numpy())
    logit, truth = np.concatenate(p), np.concatenate(t)
    prob = 1 / (1 + np.exp(-logit))
    loss = float(-np.mean(truth * np.log(np.clip(prob, 1e-7, 1)) + (1 - truth) * np.log(np.clip(1 - prob, 1e-7, 1))))
    return {"loss": round(loss, 6), **_scores(truth, prob), "answers": int(len(truth))}


def evaluate_tracing(run: Run, cfg, data: Prepared, model) -> dict:
    split = "test" if "test" in data.encoded else "val"
    scores = tracing_scores(model, TensorData(data.encoded[split].features, data.targets[split]), 64)
    result = {"split": split, "students": data.profile["students"].get(split), "rows": scores.pop("answers"),
              "test": {"roc_auc": scores["roc_auc"], "accuracy": scores["accuracy"], "loss": scores["loss"]}}
    if cfg.evaluate.baselines:
        result["baselines"] = baselines(data, split)
    if cfg.evaluate.report:
        write_tracing_report(run, cfg, data, result, model, split)
    write_json(run.path / "metrics.json", result)
    return result


@torch.no_grad()
def knowledge_state(model, skill: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """[answers, skills] chance of a right answer on each skill after each answer."""
    model.eval()
    logits = model.states(torch.as_tensor(skill)[None], torch.as_tensor(answer)[None])[0]
    return torch.sigmoid(logits.float()).numpy()


def write_tracing_report(run: Run, cfg, data: Prepared, result: dict, model, split: str) -> None:
    from ..core.html import page, table
    from ..core.plots import pyplot, save_figure

    plt = pyplot()
    f = data.encoded[split].features
    lengths = (f["skill"] > 0).sum(1).numpy()
    k = int(np.argmax(np.where(lengths <= 60, lengths, 0)))  # a held-out student with a screen's worth of answers
    n = int(lengths[k])
    skill, answer = f["skill"][k, :n].numpy(), f["answer"][k, :n].numpy()
    state = knowledge_state(model, skill, answer)
    practised = list(dict.fromkeys(skill.tolist()))[:12]
    names = [str(data.preprocessor.skills_[s - 1]) for s in practised]
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.22 * n), 1.2 + 0.35 * len(practised)))
    im = ax.imshow(state[:, practised].T, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
    for t, (s, a) in enumerate(zip(skill, answer)):
        if s in practised:
            ax.text(t, practised.index(s), "✓" if a else "✗", ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(practised)), [f"skill {nm}"[:18] for nm in names])
    ax.set(xlabel="answer (in order)", title="Knowledge state of one held-out student: chance of a right answer per "
           "skill, after each answer (✓ right, ✗ wrong)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    save_figure(fig, run.path / "plots" / "knowledge_state.png")
    history = run.history()
    if history:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.plot([h["epoch"] for h in history], [h.get("val_roc_auc") for h in history], label="validation ROC-AUC")
        ax.set(xlabel="epoch", ylabel="ROC-AUC", title="Validation ROC-AUC")
        save_figure(fig, run.path / "plots" / "learning_curves.png")
    rows = [{"": "model (dkt)", **result["test"]}] + [{"": b, **v} for b, v in result.get("baselines", {}).items()]
    body = (f"<p>{data.profile['skills']} skills; students per split {data.profile['students']}; answers per split "
            f"{data.profile['answers']}; {data.profile['correct_share']:.1%} of training answers right. Scored: every "
            f"answer after a student's first, {result['rows']} on the {split} students.</p>" + table(rows)
            + '<h2>Knowledge state</h2><img src="plots/knowledge_state.png">'
            + ('<h2>Learning curve</h2><img src="plots/learning_curves.png">' if history else ""))
    atomic_write_text(run.path / "report.html", page(cfg.name, f"{cfg.name}: knowledge tracing", body))


def trace_frame(model, pre, df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Per answer of each student in `df`: the model's chance that it is right given the earlier ones (none for a
    student's first answer), and the chance of a right answer on that skill after it; in the input's row order."""
    tc = pre.tc
    seqs = pre.sequences(df, where)
    enc, _, starts = pre.encode(seqs)
    model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(enc.features).float()).numpy()
        skill = enc.features["skill"]
        after = torch.sigmoid(model.states(skill, enc.features["answer"]).float().gather(2, skill[..., None])[..., 0])
    out = pd.Series(np.nan, index=df.index)
    mastery = pd.Series(np.nan, index=df.index)
    ordered = df.sort_values(tc.order, kind="stable") if tc.order else df
    index = {st: g.index.to_numpy() for st, g in ordered.groupby(tc.student, sort=False)}
    for k, (student, start) in enumerate(starts):
        rows = index[student][start: start + pre.tc.max_length]
        p = prob[k, : len(rows)].copy()
        p[0] = np.nan  # a chunk's first answer has no history
        out.loc[rows] = p
        mastery.loc[rows] = after[k, : len(rows)].numpy()
    return pd.DataFrame({"p_correct": out.to_numpy(), "mastery": mastery.to_numpy()})
