"""foundry data profile / clean: duplicates, near duplicates, leakage across splits (with pairs), likely label
errors (cleanlab), drift, the report, and a cleaned copy with one change-log line per touched row or cell."""

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.cli import main
from modelfoundry.config import load_config
from modelfoundry.data.audit import _one_word_apart, audit, normalize_text, psi
from modelfoundry.data.repair import clean_data

from ..conftest import SAMPLE, tabular_frame


@pytest.fixture
def texts(tmp_path):
    """The 240-row sample (4 intents) with planted problems; a separate test file with leaked rows."""
    df = pd.read_csv(SAMPLE)
    df["id"] = [f"q{i}" for i in range(len(df))]
    test = df.iloc[200:].copy()
    train = df.iloc[:200].copy().reset_index(drop=True)
    train.loc[len(train)] = {**train.iloc[3].to_dict(), "id": "dup"}                     # row 200: exact duplicate of 3
    train.loc[len(train)] = {"text": train.text[5].upper() + "!!", "category": train.category[5], "id": "near"}  # 201
    words = test.text.iloc[0].split()
    assert len(words) >= 5
    train.loc[len(train)] = {"text": " ".join(words[:-1] + ["please"]), "category": test.category.iloc[0], "id": "leak1"}  # 202
    train.loc[len(train)] = {"text": test.text.iloc[1].lower(), "category": test.category.iloc[1], "id": "leak2"}  # 203
    classes = sorted(df.category.unique())
    flipped = [10, 40, 70, 100, 130, 160]
    for r in flipped:
        train.loc[r, "category"] = classes[(classes.index(train.category[r]) + 2) % 4]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = {"name": "intents", "data": {"path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv"),
                                       "target": "category", "id_column": "id", "split": {"val": 0.0}}}
    return cfg, flipped


def report_text(cfg: dict, row: int) -> str:
    text = pd.read_csv(cfg["data"]["path"])["text"][row]
    return text if len(text) <= 100 else text[:97] + "..."


@pytest.mark.slow
def test_text_profile_finds_duplicates_leakage_and_label_errors(texts):
    cfg, flipped = texts
    report = audit(load_config(cfg))
    dup = next(r for r in report["duplicates"]["rows"] if r["row"] == 200)
    assert {k: dup[k] for k in ("file", "row", "id", "duplicate_of")} == {"file": "data", "row": 200, "id": "dup",
                                                                        "duplicate_of": 3}
    assert dup["value"] == report_text(texts[0], 3)  # the text itself, beside the row number
    near = {r["row"]: r["near_duplicate_of"] for r in report["near_duplicates"]["rows"]}
    assert near[201] == 5 and near[200] == 3
    pairs = {(p["held_out"]["row"], p["train"]["row"]) for p in report["leakage"]["pairs"]}
    assert {(0, 202), (1, 203)} <= pairs
    assert all(p["held_out"]["file"] == "test" and "id" in p["held_out"] for p in report["leakage"]["pairs"])
    pair = next(p for p in report["leakage"]["pairs"] if p["train"]["row"] == 203)
    assert pair["train"]["value"] == report_text(texts[0], 203) and pair["held_out"]["value"]  # side by side
    li = report["label_issues"]
    assert li["model"].startswith("MiniLM") and li["folds"] == 5
    found = {it["row"] for it in li["issues"]}
    assert len(found & set(flipped)) >= 4, li["issues"][:10]
    hit = next(it for it in li["issues"] if it["row"] == flipped[0] or it["row"] in flipped)
    assert {"given", "suggested", "confidence", "id"} <= set(hit)


def test_table_profile_rounds_rows_and_measures_drift(tmp_path):
    df = tabular_frame(300)
    df.loc[300] = {**df.iloc[7].to_dict(), "x1": df.x1[7] + 1e-7}  # equal after rounding to 4 significant digits
    df.loc[301] = {**df.iloc[9].to_dict(), "colour": df.colour[9].upper()}
    df.loc[302, "x2"] = np.nan
    df.loc[302, ["x1", "colour", "label"]] = [0.1, "red", "yes"]
    df["empty"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    other = tabular_frame(300, seed=1)
    other["x1"] += 1.5
    cfg = load_config({"name": "t", "data": {"path": str(tmp_path / "t.csv"), "target": "label", "split": {"test": 0.0, "val": 0.0}}})
    report = audit(cfg, against=other)
    near = {r["row"]: r["near_duplicate_of"] for r in report["near_duplicates"]["rows"]}
    assert near[300] == 7 and near[301] == 9
    assert report["all_missing_columns"] == ["empty"]
    assert report["label_issues"]["model"].startswith("gradient boosting")
    assert report["drift"]["flagged"] == ["x1"] and report["drift"]["columns"]["x1"]["psi"] > 0.2
    assert report["drift"]["columns"]["x2"]["ks_pvalue"] > 0.01


def test_helpers():
    assert normalize_text("Where is my CARD?!  ") == "where is my card"
    assert normalize_text("我的卡，在哪里？") == "我的卡 在哪里"
    assert _one_word_apart("how do i top up my card", "how do i top up my account")
    assert _one_word_apart("how do i top up my card", "how do i top up my card now")
    assert not _one_word_apart("top up card", "top up account")  # too short: one word is the meaning
    assert psi(np.arange(1000.0), np.arange(1000.0), False) == pytest.approx(0.0, abs=1e-6)


def test_single_class_target_skips_label_search(tmp_path):
    df = tabular_frame(60)
    df["label"] = "yes"
    df.to_csv(tmp_path / "one.csv", index=False)
    cfg = load_config({"name": "o", "data": {"path": str(tmp_path / "one.csv"), "target": "label", "task": "classification",
                                             "split": {"test": 0.0, "val": 0.0}}})
    assert "skipped" in audit(cfg)["label_issues"]


@pytest.mark.slow
def test_clean_writes_a_copy_and_logs_every_change(texts, tmp_path):
    cfg, flipped = texts
    raw = {**cfg, "data": {**cfg["data"], "fixes": {"near_duplicates": "drop", "label_errors": "relabel",
                                                    "label_error_confidence": 0.5}}}
    before = (tmp_path / "train.csv").read_bytes()
    out, log, _ = clean_data(load_config(raw), tmp_path / "clean")
    assert (tmp_path / "train.csv").read_bytes() == before
    actions = {(r.row, r.action) for r in log.itertuples()}
    assert (200, "drop_duplicate") in actions and (201, "drop_near_duplicate") in actions
    assert {(202, "drop_leaked"), (203, "drop_leaked")} <= actions
    relabelled = log[log.action == "relabel"]
    assert len(set(relabelled.row) & set(flipped)) >= 3 and (relabelled.column == "category").all()
    cleaned = pd.read_csv(out)
    assert len(cleaned) == 204 - len(log[log.action.str.startswith("drop")])
    assert "leak1" not in set(cleaned.id) and (tmp_path / "clean" / "changes.csv").exists()
    with pytest.raises(Exception, match="would overwrite the original"):
        clean_data(load_config(raw), tmp_path)


def test_clean_imputes_and_clips_with_training_statistics(tmp_path):
    df = tabular_frame(100)
    df.loc[3, "x1"] = np.nan
    df.loc[4, "colour"] = np.nan
    df.loc[5, "x2"] = 50.0
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = load_config({"name": "t", "data": {"path": str(tmp_path / "t.csv"), "target": "label",
                                             "split": {"test": 0.0, "val": 0.0}, "clean": {"columns": {"colour": "mode"}},
                                             "fixes": {"missing": "impute", "outliers": "clip", "duplicates": "keep",
                                                       "leakage": "keep"}}})
    out, log, _ = clean_data(cfg, tmp_path / "c")
    by = {(r.row, r.column): r for r in log.itertuples()}
    assert by[(3, "x1")].action == "impute" and "median" in by[(3, "x1")].reason
    assert by[(4, "colour")].action == "impute" and "mode" in by[(4, "colour")].reason  # the per-column rule
    assert by[(5, "x2")].action == "clip" and by[(5, "x2")].old == 50.0
    cleaned = pd.read_csv(out)
    assert cleaned.x1.notna().all() and cleaned.x2.max() < 50


def test_cli_profile_of_a_bare_file_and_clean(texts, tmp_path, capsys):
    cfg, _ = texts
    assert main(["data", "profile", str(tmp_path / "train.csv"), "--target", "category", "-o", str(tmp_path / "p"),
                 "--no-label-issues", "--set", "data.id_column=id"]) == 0
    out = capsys.readouterr()
    assert out.out.strip().endswith("data_report.html") and "duplicates" in out.err
    report = json.loads((tmp_path / "p" / "data_profile.json").read_text())
    assert "label_issues" not in report and report["duplicates"]["count"] == 1
    page = (tmp_path / "p" / "data_report.html").read_text()
    assert "Exact duplicates: 1" in page and (tmp_path / "p" / "plots" / "data_class_balance.png").exists()
    assert main(["data", "clean", str(tmp_path / "train.csv")]) == 2
    assert "give -o OUT_DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_near_threshold_and_dropping_label_errors(texts, tmp_path):
    cfg, flipped = texts
    strict = {**cfg, "data": {**cfg["data"], "audit": {"near_threshold": 1.0, "label_issues": False}}}
    loose = audit(load_config({**cfg, "data": {**cfg["data"], "audit": {"label_issues": False}}}))
    assert audit(load_config(strict))["near_duplicates"]["count"] < loose["near_duplicates"]["count"]
    drop = {**cfg, "data": {**cfg["data"], "audit": {"label_folds": 3},
                            "fixes": {"label_errors": "drop", "label_error_confidence": 0.5}}}
    out, log, report = clean_data(load_config(drop), tmp_path / "d")
    assert report["label_issues"]["folds"] == 3
    dropped = set(log[log.action == "drop_label_error"].row)
    assert len(dropped & set(flipped)) >= 3 and not set(pd.read_csv(out).id) & {f"q{r}" for r in dropped}


@pytest.mark.parametrize("numeric_missing", ["median", "drop"])
def test_clean_never_changes_a_held_out_row(tmp_path, numeric_missing):
    """Imputation, clipping and numeric drop touch training rows only; each held-out row is its source line."""
    from modelfoundry.data.split import split_frame

    rng = np.random.default_rng(1)
    n = 120
    lines = ["age,score,note,label"]
    for i in range(n):
        age = "" if i % 9 == 0 else str(500 if i % 11 == 0 else int(rng.integers(20, 70)))  # missing and outliers
        score = "" if i % 7 == 0 else f"{rng.normal():.2f}0"  # a trailing zero pandas would not write back
        note = '"late, again"' if i % 5 == 0 else "ok\u2028see note" if i % 5 == 1 else "ok"  # U+2028: not a line break to csv
        lines.append(f"{age},{score},{note},{'yes' if i % 2 else 'no'}")
    src = tmp_path / "t.csv"
    src.write_text("\n".join(lines) + "\n")
    cfg = load_config({"name": "t", "data": {"path": str(src), "target": "label", "split": {"test": 0.2, "val": 0.1},
                                             "clean": {"numeric_missing": numeric_missing},
                                             "fixes": {"missing": "impute", "outliers": "clip", "duplicates": "keep",
                                                       "leakage": "keep"}}})
    out, log, report = clean_data(cfg, tmp_path / "c")
    split = split_frame(pd.read_csv(src), cfg.data.split, "classification", "label", cfg.train.seed, False)
    held = set(split["val"].tolist()) | set(split["test"].tolist())
    dropped = set(log.loc[log.action.str.startswith("drop"), "row"])
    assert not held & set(log["row"])  # no change logged on a held-out row
    assert {"impute", "clip"} <= set(log.action) or {"drop_missing", "clip"} <= set(log.action)
    out_lines = out.read_text().split("\n")[:-1]  # csv lines: U+2028 inside a field is no line break
    assert out_lines[0] == lines[0]
    kept = [r for r in range(n) if r not in dropped]
    assert len(out_lines) == len(kept) + 1
    for pos, r in enumerate(kept, start=1):
        if r in held or r not in set(log["row"]):
            assert out_lines[pos] == lines[r + 1], (r, out_lines[pos], lines[r + 1])
    held_with_gaps = [r for r in held if lines[r + 1].startswith(",") or ",," in lines[r + 1]]
    assert held_with_gaps  # the test really has held-out rows with missing values, and they stay missing
    cleaned = pd.read_csv(out)
    assert cleaned["age"].max() < 500 or any(lines[r + 1].startswith("500") for r in held)


def test_training_and_data_clean_impute_the_same_value_for_the_same_column(tmp_path):
    """One rule: data.clean's per-column strategies drive both training's imputation and `foundry data clean`."""
    from modelfoundry.data import prepare

    df = tabular_frame(100)
    df.loc[[3, 7], "x1"] = np.nan
    df.loc[[4, 9], "colour"] = np.nan
    df.loc[[5], "x2"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    raw = {"name": "t", "data": {"path": str(tmp_path / "t.csv"), "target": "label", "split": {"test": 0.0, "val": 0.0},
                                 "clean": {"columns": {"x1": "mean", "colour": "mode"}},  # x2: the default, median
                                 "fixes": {"missing": "impute", "duplicates": "keep", "leakage": "keep"}}}
    cfg = load_config(raw)
    pre = prepare(cfg).preprocessor
    _, log, _ = clean_data(cfg, tmp_path / "c")
    imputed = {(r.column): r.new for r in log.itertuples() if r.action == "impute"}
    assert imputed["x1"] == pytest.approx(pre.numeric_["x1"]["fill"]) and "mean" in log.reason[log.column == "x1"].iloc[0]
    assert imputed["x2"] == pytest.approx(pre.numeric_["x2"]["fill"])
    assert imputed["colour"] == pre.cat_fill_["colour"]
    unknown = load_config({**raw, "data": {**raw["data"], "clean": {}}})  # colour's default: its own bucket
    _, log, _ = clean_data(unknown, tmp_path / "u")
    assert "colour" not in set(log.column)


@pytest.mark.parametrize("method", ["iqr", "zscore"])
def test_training_and_data_clean_clip_to_the_same_bounds(tmp_path, method):
    from modelfoundry.data import prepare

    df = tabular_frame(100)
    df.loc[5, "x2"] = 50.0
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = load_config({"name": "t", "data": {"path": str(tmp_path / "t.csv"), "target": "label",
                                             "split": {"test": 0.0, "val": 0.0}, "clean": {"outliers": method},
                                             "fixes": {"outliers": "clip", "duplicates": "keep", "leakage": "keep"}}})
    st = prepare(cfg).preprocessor.numeric_["x2"]
    _, log, _ = clean_data(cfg, tmp_path / "c")
    clipped = log[(log.column == "x2") & (log.action == "clip")]
    assert clipped.new.iloc[0] == pytest.approx(st["hi"], abs=1e-6)  # 50 clipped to training's own upper bound


def test_training_and_data_clean_impute_the_same_value_for_a_column(tmp_path):
    """One missing-value rule: the fill `foundry data clean` writes is the one training's preprocessor learned, for a
    numeric column (median) and for a categorical one with a per-column rule (mode)."""
    from modelfoundry.data import prepare

    df = tabular_frame(100)
    df.loc[3, "x1"] = np.nan
    df.loc[4, "colour"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = load_config({"name": "t", "data": {"path": str(tmp_path / "t.csv"), "target": "label",
                                             "split": {"test": 0.0, "val": 0.0}, "clean": {"columns": {"colour": "mode"}},
                                             "fixes": {"missing": "impute", "outliers": "keep", "duplicates": "keep",
                                                       "leakage": "keep"}}})
    pre = prepare(cfg).preprocessor
    out, _, _ = clean_data(cfg, tmp_path / "c")
    cleaned = pd.read_csv(out)
    assert cleaned.loc[3, "x1"] == pytest.approx(pre.numeric_["x1"]["fill"])
    assert cleaned.loc[4, "colour"] == pre.cat_fill_["colour"]
