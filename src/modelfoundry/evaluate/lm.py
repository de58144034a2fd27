"""Evaluation of a causal-LM fine-tune: held-out loss and perplexity on response tokens, the untuned base model
beside it (the baseline), sample generations, and the HTML report."""

from __future__ import annotations

import html
import json

from ..core.html import page
from ..core.infer import lm_scores
from ..core.runs import Run, atomic_write_text, write_json
from ..data import Prepared
from ..models.causal_lm import CausalLM
from .report import _fig, _save, _table

SAMPLES = 5
SAMPLE_TOKENS = 48


def evaluate_lm(run: Run, cfg, data: Prepared, model) -> dict:
    split = "test" if "test" in data.encoded else "val"
    pre = data.preprocessor
    result = {"split": split, "rows": len(data.frames[split]), split: lm_scores(model, data.encoded[split].features)}
    result["test"] = result[split]
    truncated = {s: c for s, c in data.profile.get("truncated_texts", {}).items() if any(c.values())}
    if truncated:
        result["truncated_texts"] = {"max_length": pre.max_length, "rows": data.profile["splits"], **truncated}
    if cfg.evaluate.baselines:  # the base model as it came, on the same tokens: what fine-tuning bought
        base = CausalLM(cfg.model.model_copy(update={"finetune": "full", "freeze_layers": 0}))
        result["baselines"] = {"base model (not fine-tuned)": lm_scores(base, data.encoded[split].features)}
        del base
    frame = data.frames[split].head(SAMPLES)
    prompts = [pre.prompt_ids(str(p)) for p in frame[pre.prompt]]
    outs = model.generate(prompts, pre.eos_id, max_new_tokens=SAMPLE_TOKENS)
    result["samples"] = [{"prompt": str(p), "reference": str(r), "generated": pre.tokenizer.decode(o)}
                         for p, r, o in zip(frame[pre.prompt], frame[pre.response], outs)]
    write_json(run.path / "metrics.json", result)
    if cfg.evaluate.report:
        write_lm_report(run, data, result)
    return result


def write_lm_report(run: Run, data: Prepared, result: dict) -> None:
    m = run.manifest()
    img = loss_curves(run, "loss per response token")
    rows = [{"model": "fine-tuned", **result["test"]}]
    rows += [{"model": k, **v} for k, v in result.get("baselines", {}).items()]
    samples = _table(result["samples"])
    trunc = ""
    if result.get("truncated_texts"):
        t = result["truncated_texts"]
        trunc = ("<h2>Truncated examples</h2><p>" + html.escape(json.dumps({k: v for k, v in t.items()}))
                 + f" (longer than max_length = {t['max_length']} tokens)</p>")
    body = f"""<p>Task: causal-LM fine-tuning (loss on response tokens only); rows per split:
{html.escape(json.dumps(data.profile.get('splits')))}; best epoch: {m.get('best_epoch', '-')}.</p>
<h2>Loss and perplexity on the {result['split']} split, beside the base model</h2>{_table(rows)}
{trunc}<h2>Samples (greedy, up to {SAMPLE_TOKENS} new tokens)</h2>{samples}{img}"""
    name = m.get("name", "run")
    atomic_write_text(run.path / "report.html", page(f"{name} report", name, body, subtitle=run.path.name,
                                                     align="left", wrap=True))


def loss_curves(run: Run, ylabel: str) -> str:
    """The report's learning-curve section (train and validation loss per epoch) for a language-model run, or ''."""
    history = run.history()
    if not history:
        return ""
    plt = _fig()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], marker="o", label="train")
    if "val_loss" in history[0]:
        ax.plot(ep, [h["val_loss"] for h in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel=ylabel, title="Learning curves")
    ax.legend()
    return f"<h2>Learning curves</h2><img src='{_save(plt, fig, run, 'learning_curves.png')}' alt='learning curves'>"
