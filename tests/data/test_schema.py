import numpy as np
import pandas as pd
import pytest

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
