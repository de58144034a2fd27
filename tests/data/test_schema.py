import numpy as np
import pandas as pd
import pytest

from modelfoundry.config import load_config
from modelfoundry.data.schema import DataError, check_target, infer_schema, infer_task


def test_types_are_inferred_and_overridable():
    df = pd.DataFrame({
        "age": [30, 40, 50, 60] * 5, "smoker": ["y", "n"] * 10, "city": ["a", "b", "c", "d", "e"] * 4,
        "when": pd.date_range("2024-01-01", periods=20).astype(str),
        "note": [f"patient number {i} says the pain is worse at night" for i in range(20)],
        "症状": [f"头痛发热持续了{i}天，夜间咳嗽加重" for i in range(20)],
        "series": [[1.0, 2.0, 3.0]] * 20, "id": range(20), "label": [0, 1] * 10})
    schema = infer_schema(df, "label", {"age": "categorical"}, "id")
    assert schema == {"age": "categorical", "smoker": "binary", "city": "categorical", "when": "datetime",
                      "note": "text", "症状": "text", "series": "sequence", "id": "ignore"}


def test_override_of_unknown_column_suggests():
    df = pd.DataFrame({"colour": ["a"], "label": [1]})
    with pytest.raises(DataError, match="did you mean 'colour'"):
        infer_schema(df, "label", {"color": "categorical"}, None)


def test_text_in_a_numeric_column_names_the_row():
    df = pd.DataFrame({"x": ["1", "2", "three", "4"], "label": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="'x' is declared numeric but row 2 holds 'three'"):
        infer_schema(df, "label", {"x": "numeric"}, None)


def test_target_missing_lists_columns_and_suggests():
    df = pd.DataFrame({"Machine failure": [0, 1], "x": [1, 2]})
    with pytest.raises(DataError, match="did you mean 'Machine failure'"):
        check_target(df, "machine_failure", "f.csv")


def test_nan_in_target_names_rows():
    df = pd.DataFrame({"y": [1.0, np.nan, 0.0, np.nan], "x": [1, 2, 3, 4]})
    with pytest.raises(DataError, match="missing .* in 2 row.*rows 1, 3"):
        check_target(df, "y", "f.csv")


def test_task_inference():
    assert infer_task(pd.Series(["a", "b"]), "auto") == "classification"
    assert infer_task(pd.Series([0, 1, 2, 1]), "auto") == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 50)), "auto") == "regression"
    assert infer_task(pd.Series(range(100)), "auto") == "regression"
    assert infer_task(pd.Series([0, 1]), "regression") == "regression"


def test_row_identifiers_are_left_out_unless_declared(tmp_path, capsys):
    """An id column (unique per row: a row counter, a customer key, a UUID) is profiled and trained on as a feature
    by default elsewhere; here it is left out and said so, unless data.types declares it."""
    import json

    from modelfoundry.api import train

    from ..conftest import tabular_frame, tiny_config

    df = tabular_frame(120)
    df.insert(0, "row_id", range(1000, 1120))
    df["customerID"] = np.random.default_rng(0).permutation(120) + 5000   # unique, not sorted: caught by its name
    df["ticket"] = [f"T-{i:05d}-{i * 7 % 13}" for i in range(120)]         # a different string in every row
    df["visits"] = np.random.default_rng(1).permutation(120)              # unique integers, but a real count
    df.to_csv(tmp_path / "d.csv", index=False)
    run = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "d.csv"), "target": "label"})))
    schema = json.loads((run.path / "model" / "preprocessor.json").read_text())["schema"]
    assert schema["row_id"] == schema["customerID"] == schema["ticket"] == "ignore"
    assert schema["visits"] == "numeric" and schema["x1"] == "numeric"
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert set(profile["cleaning"]["id_like_columns"]) == {"row_id", "customerID", "ticket"}
    assert "left out of the features as row identifiers: 'row_id' (unique, increasing integers)" in capsys.readouterr().err
    run = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "d.csv"), "target": "label",
                                                   "types": {"row_id": "numeric"}})))
    assert json.loads((run.path / "model" / "preprocessor.json").read_text())["schema"]["row_id"] == "numeric"


def test_an_only_column_is_never_dropped_as_an_identifier():
    schema = infer_schema(pd.DataFrame({"x": range(30), "y": [0, 1] * 15}), "y", {}, None)
    assert schema == {"x": "numeric"}
