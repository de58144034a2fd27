"""MODEL_CARD.md for every complete run, in the Hugging Face model-card format: YAML metadata (task, datasets with
their sha256, metrics in model-index form) and then the sections a reviewer reads: intended use, training data,
evaluation beside the baselines, fairness, explanations, limitations, cost, how to use it. MODEL_CARD.zh.md too when
evaluate.language is zh. Everything is read from what the run wrote (manifest, profile, metrics): a later stage
reads the Run directory."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..core.runs import Run, atomic_write_text

PIPELINE = {"classification": {"text": "text-classification", "image": "image-classification",
                               "audio": "audio-classification", "table": "tabular-classification"},
            "regression": {"text": "text-classification", "image": "image-classification", "audio": "audio-classification",
                           "table": "tabular-regression"},
            "clm": "text-generation", "causal_lm": "text-generation", "mlm": "fill-mask",
            "forecast": "time-series-forecasting", "anomaly": "tabular-classification"}

T = {
    "en": {
        "intended": "Intended use", "data": "Training data", "evaluation": "Evaluation", "fairness": "Fairness",
        "explanations": "Explanations", "limitations": "Limitations", "cost": "Cost", "use": "How to use",
        "intended_text": "Predicts `{target}` ({task}) from {inputs}. Trained by ModelFoundry from `{config}`. Meant "
                         "for the population the training data describes; check a new population against the data "
                         "profile (drift) before relying on it. Decisions about people need a human review.",
        "intended_anomaly": "Scores how unusual a row of {inputs} is (higher = stranger) and flags the rows above the "
                            "alert threshold; `{target}` holds evaluation labels only, never a training signal. Trained "
                            "by ModelFoundry from `{config}`. Flags are for a human review, not a verdict.",
        "intended_recommend": "Ranks items for a user from {inputs} interactions (top-K recommendations). Trained by "
                              "ModelFoundry from `{config}`. A user never seen in training gets the most popular "
                              "items, and an item never seen in training is never recommended; a recommender shapes "
                              "what people see: watch what it narrows.",
        "interactions": "{users} users, {items} items, {feedback} feedback; interactions per split: {splits}; "
                        "file sha256 `{sha}`.",
        "intended_forecast": "Forecasts the next values of `{target}` per series from {inputs}. Trained by ModelFoundry "
                             "from `{config}`; the backtest below is its record on past data, not a promise about the "
                             "future.",
        "rows": "{rows} rows ({splits}); file sha256 `{sha}`.",
        "columns": "Inputs by type: {kinds}.", "balance": "Class balance: {balance}.",
        "pii": "Personal data found in model inputs: {cols}.", "no_pii": "No personal data found in the inputs.",
        "quality": "{dup} exact duplicates, {near} near duplicates, {leak} held-out rows repeating a training row.",
        "metrics_on": "On the held-out {split} split ({rows} rows), beside baselines trained on the same split:",
        "model": "model", "metric": "metric", "group": "group", "before": "before", "after": "after",
        "fair_intro": "Per group of {cols} on the {split} split (groups under {min} rows are left out of the "
                      "differences: {small}).",
        "mitigated": "Mitigation: {method} ({constraint}), fitted on the {fit} split and applied by Predictor and serve.",
        "importance": "Permutation importance on {rows} held-out rows (drop in {metric} when a column is shuffled):",
        "column": "column", "importance_col": "importance",
        "lim_small": "The test split has {rows} rows: scores move by several points between splits.",
        "lim_imbalance": "Classes are imbalanced ({ratio}:1); read per-class recall, not accuracy alone.",
        "lim_leak": "{n} held-out rows repeat training rows: test scores are optimistic.",
        "lim_pii": "Personal data is a model input ({cols}); the model may learn and repeat it.",
        "lim_gap": "Demographic parity difference {dp} across {cols}: outcomes differ between groups.",
        "lim_baseline": "{line}.",
        "lim_none": "No automatic finding; the usual limits of a model trained on {rows} rows apply.",
        "cost_rows": [("training FLOPs (counted)", "train_flops"), ("inference FLOPs per example", "inference_flops_per_example"),
                      ("wall time (s)", "wall_s"), ("peak memory (bytes)", "peak_rss_bytes"),
                      ("parameters (trainable / total)", "params"), ("energy (kWh)", "energy_kwh"),
                      ("$ per training run", "usd_per_run"), ("$ per 1,000 predictions", "usd_per_1000_predictions")],
        "cost_basis": "Basis: {basis}.", "value": "value", "verdict": "Verdict: {line}.",
        "use_text": "Predict with the command line or Python:",
    },
    "zh": {
        "intended": "预期用途", "data": "训练数据", "evaluation": "评估", "fairness": "公平性", "explanations": "可解释性",
        "limitations": "局限", "cost": "成本", "use": "使用方法",
        "intended_text": "根据 {inputs} 预测 `{target}`（{task}）。由 ModelFoundry 按 `{config}` 训练。适用于训练数据所描述的"
                         "人群；用于新人群前，请先对照数据画像检查分布漂移。涉及个人的决定需要人工复核。",
        "intended_anomaly": "根据 {inputs} 给每一行打异常分（越高越异常），并标记超过告警阈值的行；`{target}` 仅作评估标签，"
                            "从不用于训练。由 ModelFoundry 按 `{config}` 训练。告警用于人工复核，而非定论。",
        "intended_recommend": "根据 {inputs} 的交互记录为用户排序推荐物品（Top-K）。由 ModelFoundry 按 `{config}` 训练。"
                              "训练中未出现的用户得到最热门的物品；训练中未出现的物品不会被推荐。推荐会影响人们看到的内容："
                              "请留意它是否让选择变窄。",
        "interactions": "{users} 个用户、{items} 个物品，{feedback} 反馈；各划分的交互数：{splits}；文件 sha256 `{sha}`。",
        "intended_forecast": "根据 {inputs} 预测每条序列 `{target}` 的后续取值。由 ModelFoundry 按 `{config}` 训练；下方回测是"
                             "它在历史数据上的表现，不代表对未来的承诺。",
        "rows": "共 {rows} 行（{splits}）；文件 sha256 `{sha}`。",
        "columns": "各类型输入列：{kinds}。", "balance": "类别分布：{balance}。",
        "pii": "模型输入中发现个人信息：{cols}。", "no_pii": "输入中未发现个人信息。",
        "quality": "完全重复 {dup} 行，近似重复 {near} 行，{leak} 个留出行与训练行重复。",
        "metrics_on": "在留出的 {split} 集（{rows} 行）上，与在同一划分上训练的基线模型并列：",
        "model": "模型", "metric": "指标", "group": "群组", "before": "缓解前", "after": "缓解后",
        "fair_intro": "按 {cols} 分组，在 {split} 集上计算（少于 {min} 行的群组不计入差值：{small}）。",
        "mitigated": "缓解措施：{method}（{constraint}），在 {fit} 集上拟合，Predictor 与服务接口会自动应用。",
        "importance": "置换重要性（{rows} 个留出行；打乱某列后 {metric} 的下降）：",
        "column": "列", "importance_col": "重要性",
        "lim_small": "测试集只有 {rows} 行：不同划分之间分数会相差数个百分点。",
        "lim_imbalance": "类别不平衡（{ratio}:1）；请看各类召回率，不要只看准确率。",
        "lim_leak": "{n} 个留出行与训练行重复：测试分数偏乐观。",
        "lim_pii": "个人信息是模型输入（{cols}）；模型可能记住并复述这些信息。",
        "lim_gap": "{cols} 各群组之间的人口均等差为 {dp}：不同群组的结果存在差异。",
        "lim_baseline": "{line}。",
        "lim_none": "未自动发现问题；在 {rows} 行数据上训练的模型的一般局限仍然适用。",
        "cost_rows": [("训练计算量 FLOPs（实测计数）", "train_flops"), ("每个样本推理 FLOPs", "inference_flops_per_example"),
                      ("运行时间（秒）", "wall_s"), ("内存峰值（字节）", "peak_rss_bytes"),
                      ("参数量（可训练 / 总数）", "params"), ("能耗（千瓦时）", "energy_kwh"),
                      ("每次训练费用（美元）", "usd_per_run"), ("每千次预测费用（美元）", "usd_per_1000_predictions")],
        "cost_basis": "计算依据：{basis}。", "value": "数值", "verdict": "结论：{line}。",
        "use_text": "用命令行或 Python 预测：",
    },
}


def _table(head: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def _input_kind(schema: dict, target: str) -> str:
    kinds = {k for c, k in schema.items() if c != target and k not in ("ignore", "target")}
    return next((k for k in ("text", "image", "audio") if kinds == {k}), "table")


def schema_of(profile: dict) -> dict[str, str]:
    """Column -> type: the audit's schema, or the training profile's per-column types."""
    return profile.get("schema") or {c: e.get("type", "ignore") for c, e in profile.get("columns", {}).items()}


def metadata(run: Run, cfg, profile: dict, metrics: dict) -> dict:
    m = run.manifest()
    task = profile.get("task") or cfg.data.task
    pipeline = PIPELINE.get(task, "other")
    if isinstance(pipeline, dict):
        pipeline = pipeline[_input_kind(schema_of(profile), cfg.data.target)]
    files = [{"split": k, "file": Path(v["path"]).name, "sha256": v["sha256"]} for k, v in m.get("data", {}).items()]
    dataset = files[0]["file"] if files else "in-memory"
    split = metrics.get("split", "test")
    scores = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    framework = (["keras", cfg.model.keras_backend] if getattr(cfg.model, "backend", "torch") == "keras"
                 else ["pytorch"])
    meta = {"library_name": "modelfoundry", "pipeline_tag": pipeline, "tags": ["modelfoundry", task, *framework],
            "datasets": [f["file"] for f in files] or [dataset],
            "dataset_files": files,
            "model-index": [{"name": cfg.name, "results": [{
                "task": {"type": pipeline},
                "dataset": {"name": dataset, "type": dataset, "split": split},
                "metrics": [{"type": k, "value": round(float(v), 4), "name": f"{split} {k}"} for k, v in scores.items()]}]}]}
    if cfg.evaluate.language == "zh":
        meta["language"] = ["zh", "en"]
    return meta


def card_text(run: Run, cfg, profile: dict, metrics: dict, lang: str) -> str:
    t = T[lang]
    m = run.manifest()
    meta = metadata(run, cfg, profile, metrics)
    schema = schema_of(profile)
    target = cfg.data.target
    inputs = [c for c, k in schema.items() if k not in ("ignore", "target") and c != target]
    task = profile.get("task") or cfg.data.task
    out = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", f"# {cfg.name}", ""]
    shown = ", ".join(f"`{c}`" for c in inputs[:12]) + (f" (+{len(inputs) - 12})" if len(inputs) > 12 else "")
    if task == "forecast":  # what a forecast reads: the target's past and the exogenous columns
        shown = ", ".join(f"`{c}`" for c in [target, *cfg.data.forecast.exogenous])
    if task == "recommend":
        shown = " × ".join(f"`{c}`" for c in (cfg.data.recommend.user, cfg.data.recommend.item))
    intended = t.get(f"intended_{task}", t["intended_text"])
    out += [f"## {t['intended']}", "", intended.format(target=target, task=task, inputs=shown or "text",
                                                       config=m.get("name", cfg.name)), ""]
    out += [f"## {t['data']}", ""]
    sha = next(iter(m.get("data", {}).values()), {}).get("sha256", "-")
    if task == "recommend":
        splits = ", ".join(f"{k} {v}" for k, v in (profile.get("splits") or {}).items())
        out.append(t["interactions"].format(users=profile["users"], items=profile["items"], feedback=profile["feedback"],
                                            splits=splits, sha=sha))
    if profile.get("rows") is not None:
        splits = ", ".join(f"{k} {v}" for k, v in (profile.get("splits") or {}).items())
        out.append(t["rows"].format(rows=profile["rows"], splits=splits, sha=sha))
    kinds: dict[str, list[str]] = {}
    for c in inputs:
        kinds.setdefault(schema[c], []).append(c)
    if kinds:
        out.append(t["columns"].format(kinds="; ".join(f"{k} {len(v)}" for k, v in kinds.items())))
    if profile.get("class_balance"):
        out.append(t["balance"].format(balance=", ".join(f"{k}: {v}" for k, v in profile["class_balance"].items())))
    if "pii_in_features" in profile:
        out.append(t["pii"].format(cols=", ".join(profile["pii_in_features"])) if profile["pii_in_features"] else t["no_pii"])
    if "duplicates" in profile:
        out.append(t["quality"].format(dup=profile["duplicates"]["count"], near=profile["near_duplicates"]["count"],
                                       leak=profile["leakage"]["held_out_rows"]))
    out += ["", f"## {t['evaluation']}", ""]
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    out.append(t["metrics_on"].format(split=metrics.get("split", "test"), rows=metrics.get("rows", "-")))
    out.append("")
    names = list(test)[:8]
    rows = [[t["model"]] + [round(test[k], 4) for k in names]]
    rows += [[b] + [round(v[k], 4) if isinstance(v.get(k), (int, float)) else None for k in names]
             for b, v in metrics.get("baselines", {}).items()]
    out += [_table([t["model"]] + names, rows), ""]
    fair = metrics.get("fairness")
    if fair:
        out += [f"## {t['fairness']}", "", t["fair_intro"].format(cols=", ".join(fair["sensitive"]), split=fair["split"],
                                                                    min=fair["min_group_size"],
                                                                    small=", ".join(fair["small_groups"]) or "-"), ""]
        keys = [k for k in fair["groups"][0] if k != "group"]
        out += [_table([t["group"]] + keys, [[g["group"]] + [g[k] for k in keys] for g in fair["groups"]]), ""]
        gaps = [(k, fair[k]) for k in ("demographic_parity_difference", "demographic_parity_ratio",
                                      "equalized_odds_difference", "equalized_odds_ratio") if k in fair]
        if gaps:
            out += [_table([t["metric"], t["value"]], [list(g) for g in gaps]), ""]
        mit = fair.get("mitigation")
        if mit and mit["method"] == "reweigh":
            out += ["Mitigation: reweighing in training (P(group) P(label) / P(group, label)); the scores above are the "
                    "reweighed model's.", "", _table(["group", "label", "rows", "weight"],
                                                     [[w["group"], w["label"], w["rows"], w["weight"]]
                                                      for w in mit["weights"]]), ""]
        elif mit:
            out += [t["mitigated"].format(method=mit["method"], constraint=mit["constraint"], fit=mit["fit_on"]), "",
                    _table([t["metric"], t["before"], t["after"]], [[r["metric"], r["before"], r["after"]]
                                                                   for r in mit["table"]]), ""]
            if mit.get("note"):
                out += [f"> {mit['note']}.", ""]
    ex = metrics.get("explanations", {})
    if ex.get("importance"):
        out += [f"## {t['explanations']}", "", t["importance"].format(rows=ex["importance_rows"],
                                                                      metric=ex["importance_metric"]), "",
                _table([t["column"], t["importance_col"]], [[r["column"], r["importance"]] for r in ex["importance"][:10]]),
                ""]
    out += [f"## {t['limitations']}", ""] + [f"- {x}" for x in limitations(t, profile, metrics)] + [""]
    cost = metrics.get("cost")
    if cost and "train_flops" not in cost:  # an aligned run's own cost record (steps, tokens, seconds)
        out += [f"## {t['cost']}", "", _table(["", t["value"]], [[k, v] for k, v in cost.items()]), ""]
    elif cost:
        vals = {**cost, "params": f"{cost['trainable_parameters']:,} / {cost['parameters']:,}"}
        out += [f"## {t['cost']}", "", _table(["", t["value"]], [[name, vals[k]] for name, k in t["cost_rows"]]), "",
                t["cost_basis"].format(basis=cost["basis"])]
        if cost.get("verdict"):
            out.append(t["verdict"].format(line=cost["verdict"]["line"]))
        out.append("")
    out += [f"## {t['use']}", "", t["use_text"], "", "```bash", f"foundry predict {run.path} rows.csv -o predictions.csv",
            "```", "", "```python", "from modelfoundry import Predictor", f"pred = Predictor.load({str(run.path)!r})",
            "pred.predict(rows)", "```", ""]
    return "\n".join(out)


def limitations(t: dict, profile: dict, metrics: dict) -> list[str]:
    found = []
    rows = metrics.get("rows") or 0
    if rows and rows < 300:
        found.append(t["lim_small"].format(rows=rows))
    if (profile.get("imbalance_ratio") or 0) >= 3:
        found.append(t["lim_imbalance"].format(ratio=round(profile["imbalance_ratio"], 1)))
    leak = (profile.get("leakage") or {}).get("held_out_rows", 0)
    if leak:
        found.append(t["lim_leak"].format(n=leak))
    if profile.get("pii_in_features"):
        found.append(t["lim_pii"].format(cols=", ".join(profile["pii_in_features"])))
    fair = metrics.get("fairness") or {}
    if (fair.get("demographic_parity_difference") or 0) >= 0.1:
        found.append(t["lim_gap"].format(dp=fair["demographic_parity_difference"], cols=", ".join(fair["sensitive"])))
    verdict = (metrics.get("cost") or {}).get("verdict")
    if verdict:
        found.append(t["lim_baseline"].format(line=verdict["line"]))
    return found or [t["lim_none"].format(rows=profile.get("rows", "?"))]


def write_card(run: Run, cfg, profile: dict, metrics: dict) -> list[Path]:
    """MODEL_CARD.md (and MODEL_CARD.zh.md when evaluate.language is zh) in the run directory."""
    paths = [run.path / "MODEL_CARD.md"]
    atomic_write_text(paths[0], card_text(run, cfg, profile, metrics, "en"))
    if cfg.evaluate.language == "zh":
        paths.append(run.path / "MODEL_CARD.zh.md")
        atomic_write_text(paths[1], card_text(run, cfg, profile, metrics, "zh"))
    return paths
