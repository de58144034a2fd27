"""What an alignment run measured, on held-out data, beside the model it started from (the reference):

- preference methods: pairwise accuracy of the implicit reward (log pi - log pi_ref, chosen vs rejected);
- reward models: pairwise accuracy beside a length-only baseline ("the longer reply wins");
- sft: loss and perplexity on the held-out completions;
- every generating method: replies of both models on held-out prompts (greedy, or sampled at align.eval_temperature
  with the greedy ones' diversity beside), the judge's win rate, the rule rewards before and after, distinct-n and
  repetition (collapse shows here), fixed samples side by side;
- the cost: wall time, tokens per second, peak memory.
metrics.json carries it all; report.html draws the curves from history.jsonl."""

from __future__ import annotations

import html
import json
import math

import torch

from ..core.html import page, table
from ..core.plots import pyplot, save_figure
from ..core.runs import Run, atomic_write_text, write_json
from ..models.lm import LanguageModel
from .config import PAIRED
from .data import Formatter
from .rewards import RewardModel, distinct_n, repetition_rate, resolve_run

SAMPLES = 5
CURVES = ("loss", "eval_loss", "reward", "kl", "train_distinct_2", "greedy_distinct_2", "rewards/margins", "rewards/accuracies", "accuracy", "eval_accuracy",
          "eval_rewards/accuracies", "entropy")


@torch.no_grad()
def reply_logps(model, tok, prompts: list[str], replies: list[str], eos_id: int, context: int,
                batch_size: int = 16) -> list[tuple[float, int]]:
    """(sum of log-probabilities of the reply's tokens and its end-of-text, their count) per pair; batched by
    length (right-padded, masked)."""
    model.eval()
    seqs = []
    for p, r in zip(prompts, replies):
        pi = tok(p, add_special_tokens=False, verbose=False)["input_ids"]
        ri = tok(r, add_special_tokens=False, verbose=False)["input_ids"] + [eos_id]
        ids = (pi + ri)[-context:]
        seqs.append((ids, min(len(ri), len(ids) - 1)))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(seqs[i][0]) for i in chunk)
        x = torch.full((len(chunk), width), eos_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for row, i in enumerate(chunk):
            x[row, : len(seqs[i][0])] = torch.tensor(seqs[i][0])
            mask[row, : len(seqs[i][0])] = 1
        logp = model(input_ids=x, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
        picked = logp.gather(2, x[:, 1:, None])[..., 0]
        for row, i in enumerate(chunk):
            length, n = len(seqs[i][0]), seqs[i][1]
            out[i] = (float(picked[row, length - 1 - n: length - 1].sum()), n)
    return out


def _accuracy(margins: list[float]) -> float:
    """Share of pairs won, ties counting half."""
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)


def generate_replies(model, tok, prompts: list[str], eos_id: int, max_new_tokens: int, temperature: float = 0.0,
                     seed: int = 0) -> list[str]:
    lm = LanguageModel(model, "clm")
    ids = [tok(p, add_special_tokens=False)["input_ids"] or [eos_id] for p in prompts]
    return [tok.decode(o) for o in lm.generate(ids, eos_id, max_new_tokens=max_new_tokens, temperature=temperature,
                                               seed=seed)]


def _full_marks(scores: list[float]) -> float:
    """The share of replies a rule reward gives full marks (>= 1)."""
    return round(sum(v >= 1 for v in scores) / len(scores), 4)


def _diversity(texts: list[str]) -> dict:
    return {"distinct_1": round(distinct_n(texts, 1), 4), "distinct_2": round(distinct_n(texts, 2), 4),
            "repetition_rate": round(repetition_rate(texts), 4), "mean_chars": round(sum(map(len, texts)) / len(texts), 1)}


def evaluate_align(cfg, run: Run, base, tok, data, model, rules: list, template: str, cost: dict,
                   guard: dict | None) -> dict:
    from transformers import AutoModelForCausalLM

    a = cfg.align
    test = data.frames["test"]
    if hasattr(model, "peft_config"):
        model = model.merge_and_unload()
    model.eval()
    result: dict = {"method": a.method, "split": "test", "rows": len(test), "template": data.profile["template"],
                    "base_model": str(base.path), "test": {}}
    if a.method == "reward":
        scorer = RewardModel(model, tok, template, data.profile["max_length"])
        prompts = test["prompt"].tolist()
        margins = [c - r for c, r in zip(scorer.score(prompts, test["chosen"].tolist()),
                                         scorer.score(prompts, test["rejected"].tolist()))]
        result["test"]["reward_accuracy"] = round(_accuracy(margins), 4)
        result["test"]["mean_margin"] = round(sum(margins) / len(margins), 4)
        length = [len(c) - len(r) for c, r in zip(test["chosen"], test["rejected"])]
        result["baselines"] = {"longer reply wins": {"reward_accuracy": round(_accuracy(length), 4)}}
    else:
        ref = AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True).eval()
        ctx = base.context
        if a.method in PAIRED:
            prompts = test["prompt"].tolist()
            lp = {(who, side): reply_logps(m, tok, prompts, test[side].tolist(), base.eos_id, ctx)
                  for who, m in (("policy", model), ("reference", ref)) for side in ("chosen", "rejected")}
            implicit = [(pc[0] - rc[0]) - (pr[0] - rr[0]) for pc, rc, pr, rr in
                        zip(lp["policy", "chosen"], lp["reference", "chosen"], lp["policy", "rejected"],
                            lp["reference", "rejected"])]
            result["test"]["reward_accuracy"] = round(_accuracy(implicit), 4)
            result["test"]["logp_accuracy"] = round(_accuracy(
                [c[0] - r[0] for c, r in zip(lp["policy", "chosen"], lp["policy", "rejected"])]), 4)
            result["baselines"] = {"reference": {"logp_accuracy": round(_accuracy(
                [c[0] - r[0] for c, r in zip(lp["reference", "chosen"], lp["reference", "rejected"])]), 4)}}
        elif a.method == "sft":
            prompts, replies = test["prompt"].tolist(), test["completion"].tolist()
            for who, m in (("policy", model), ("reference", ref)):
                lp = reply_logps(m, tok, prompts, replies, base.eos_id, ctx)
                loss = -sum(x[0] for x in lp) / sum(x[1] for x in lp)
                scores = {"loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3)}
                if who == "policy":
                    result["test"].update(scores)
                else:
                    result["baselines"] = {"reference (before sft)": scores}
        if a.eval_prompts:
            _generations(cfg, result, base, tok, test, model, ref, rules, template)
    result["cost"] = cost
    if guard:
        result["guard"] = guard
    result["dropped"] = data.profile["dropped"]
    write_json(run.path / "metrics.json", result)
    if cfg.evaluate.report:
        write_align_report(run, cfg, result)
    return result


def _generations(cfg, result: dict, base, tok, test, model, ref, rules: list, template: str) -> None:
    a = cfg.align
    prompts = list(dict.fromkeys(test["prompt"].tolist()))[: a.eval_prompts]
    rows = test.drop_duplicates("prompt").set_index("prompt").loc[prompts].reset_index()
    columns = {c: rows[c].tolist() for c in rows.columns if c not in ("prompt", "chosen", "rejected", "completion")}
    t, seed = a.eval_temperature, cfg.train.seed
    after = generate_replies(model, tok, prompts, base.eos_id, a.max_new_tokens, t, seed)
    before = generate_replies(ref, tok, prompts, base.eos_id, a.max_new_tokens, t, seed)
    gen = {"prompts": len(prompts), "max_new_tokens": a.max_new_tokens,
           "decoding": f"sampled, temperature {t}, seed {seed}" if t else "greedy",
           "diversity": {"reference": _diversity(before), "aligned": _diversity(after)}}
    if t:  # greedy beside: collapse shows first in the argmax path (the Tang recipe's history)
        g_after = generate_replies(model, tok, prompts, base.eos_id, a.max_new_tokens)
        g_before = generate_replies(ref, tok, prompts, base.eos_id, a.max_new_tokens)
        gen["greedy"] = {"diversity": {"reference": _diversity(g_before), "aligned": _diversity(g_after)},
                         "full_marks": {r.__name__: {"reference": _full_marks(r(g_before, prompts=prompts, **columns)),
                                                     "aligned": _full_marks(r(g_after, prompts=prompts, **columns))}
                                        for r in rules}}
    judge = None
    if a.judge is not None:
        judge = RewardModel.load(resolve_run(a.judge, cfg.output_dir, cfg.base_dir))
    else:
        judge = next((r.scorer for r in rules if r.model_based), None)
    if judge is not None:
        s_after, s_before = judge.score(prompts, after), judge.score(prompts, before)
        gen["judge"] = str(judge.path)
        gen["win_rate"] = round(_accuracy([x - y for x, y in zip(s_after, s_before)]), 4)
        gen["judge_score"] = {"reference": round(sum(s_before) / len(prompts), 4),
                              "aligned": round(sum(s_after) / len(prompts), 4)}
        result["test"]["win_rate"] = gen["win_rate"]
    if rules:
        per, tot_a, tot_b = {}, [0.0] * len(prompts), [0.0] * len(prompts)
        for r in rules:
            ra = r(after, prompts=prompts, **columns)
            rb = r(before, prompts=prompts, **columns)
            per[r.__name__] = {"weight": r.spec.weight, "reference": round(sum(rb) / len(rb), 4),
                               "aligned": round(sum(ra) / len(ra), 4),
                               "full_marks": {"reference": _full_marks(rb), "aligned": _full_marks(ra)}}
            tot_a = [t + r.spec.weight * v for t, v in zip(tot_a, ra)]
            tot_b = [t + r.spec.weight * v for t, v in zip(tot_b, rb)]
        gen["rewards"] = per
        gen["reward"] = {"reference": round(sum(tot_b) / len(prompts), 4), "aligned": round(sum(tot_a) / len(prompts), 4)}
        gen["rule_win_rate"] = round(_accuracy([x - y for x, y in zip(tot_a, tot_b)]), 4)
        result["test"]["reward"] = gen["reward"]["aligned"]
        result["test"]["rule_win_rate"] = gen["rule_win_rate"]
    result["test"]["distinct_2"] = gen["diversity"]["aligned"]["distinct_2"]
    fixed = a.samples or prompts[:SAMPLES]
    if a.samples:
        fixed_in = [Formatter(tok, template).prompt(p) for p in fixed]
        s_after = generate_replies(model, tok, fixed_in, base.eos_id, a.max_new_tokens, t, seed)
        s_before = generate_replies(ref, tok, fixed_in, base.eos_id, a.max_new_tokens, t, seed)
    else:
        s_after, s_before = after[:SAMPLES], before[:SAMPLES]
    gen["samples"] = [{"prompt": p, "reference": b, "aligned": x} for p, b, x in zip(fixed, s_before, s_after)]
    result["generation"] = gen


def write_align_report(run: Run, cfg, result: dict) -> None:
    m = run.manifest()
    history = run.history()
    curves = [k for k in CURVES if any(k in h for h in history)]
    img = ""
    if curves:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(curves), figsize=(3.3 * len(curves), 3), squeeze=False)
        for ax, key in zip(axes[0], curves):
            pts = [(h["step"], h[key]) for h in history if key in h and h.get("step") is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 40 else None)
            ax.set(xlabel="step", title=key)
        fig.tight_layout()
        save_figure(fig, run.path / "plots" / "align_curves.png")
        img = "<h2>Training curves</h2><img src='plots/align_curves.png' alt='training curves'>"
    test = [{"metric": k, "value": json.dumps(v) if isinstance(v, dict) else v} for k, v in result["test"].items()]
    base = [{"baseline": k, **v} for k, v in result.get("baselines", {}).items()]
    gen = result.get("generation")
    gen_html = ""
    if gen:
        div = [{"model": k, **v} for k, v in gen["diversity"].items()]
        rules = [{"reward": k, "weight": v["weight"], "reference": v["reference"], "aligned": v["aligned"],
                  "full marks (reference)": v["full_marks"]["reference"], "full marks (aligned)": v["full_marks"]["aligned"]}
                 for k, v in gen.get("rewards", {}).items()]
        judge = (f"<p>Win rate of the aligned model against the reference, judged by {html.escape(gen['judge'])}: "
                 f"<b>{gen['win_rate']:.3f}</b> (ties count half).</p>") if "win_rate" in gen else ""
        greedy = ""
        if "greedy" in gen:
            g = gen["greedy"]
            greedy = (f"<h3>Greedy replies beside</h3>{table([{'model': k, **v} for k, v in g['diversity'].items()])}"
                      + table([{"reward": k, "full marks (reference)": v["reference"], "full marks (aligned)": v["aligned"]}
                               for k, v in g["full_marks"].items()]))
        gen_html = (f"<h2>Replies on {gen['prompts']} held-out prompts ({html.escape(gen['decoding'])}, up to "
                    f"{gen['max_new_tokens']} tokens)</h2>{judge}{table(rules)}<h3>Diversity (collapse shows here)</h3>"
                    f"{table(div)}{greedy}"
                    f"<h3>Before and after</h3>{table(gen['samples'])}")
    guard = ""
    if result.get("guard"):
        g = result["guard"]
        guard = (f"<p><b>Guard:</b> distinct-2 of the {g.get('replies', 'sampled')} training replies fell from "
                 f"{g['distinct_2_first']} to "
                 f"{g['distinct_2_now']} at step {g['step']} ({g['action']}).</p>")
    body = f"""<p>Method: <b>{html.escape(result['method'])}</b> (TRL) on {html.escape(result['base_model'])};
prompt template {html.escape(result['template'])}; {result['rows']} held-out rows; rows dropped or shortened:
{html.escape(json.dumps(result['dropped']))}.</p>{guard}
<h2>Held-out results</h2>{table(test)}{table(base)}{gen_html}{img}
<h2>Cost</h2>{table([result['cost']])}"""
    name = m.get("name", "run")
    atomic_write_text(run.path / "report.html", page(f"{name} report", name, body, subtitle=run.path.name,
                                                     align="left", wrap=True))
