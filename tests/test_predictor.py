"""Text end to end (English and Chinese), and Predictor on raw strings and records."""

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.config import load_config
from modelfoundry.data.sources import DataError
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from .conftest import REPO, tiny_config

FIXTURES = REPO / "tests" / "fixtures"


@pytest.mark.parametrize("model", [
    {"type": "transformer", "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 1},
    {"type": "rnn", "cell": "gru", "hidden_size": 32, "embedding_dim": 32},
    {"type": "cnn", "channels": [32], "hidden": []},
    {"type": "mlp", "hidden": [32]},
], ids=lambda m: m["type"])
def test_chinese_text_classification(tmp_path, model):
    data = {"path": str(FIXTURES / "zh_medical_sample.csv"), "target": "department",
            "text": {"vocab_size": 800, "min_frequency": 1, "max_length": 32}, "split": {"test": 0.25, "val": 0.1}}
    run = train(load_config(tiny_config(tmp_path, data, model=model, train={"epochs": 12, "lr": 3e-3, "early_stopping": None})))
    metrics = json.loads((run.path / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] > 0.6  # 3 departments: chance is 1/3
    pred = Predictor.load(run.path)
    out = pred.predict(["我想咨询肝硬化的前期症状是什么？", "癫痫发作怎么办"])
    assert list(out.columns[:1]) == ["prediction"] and len(out) == 2
    assert set(out["prediction"]) <= set(pred.classes)


def test_english_text_with_a_bpe_tokenizer_and_records(tmp_path):
    data = {"path": str(FIXTURES / "banking77_sample.csv"), "target": "category",
            "text": {"tokenizer": "bpe", "vocab_size": 600, "min_frequency": 1}}
    run = train(load_config(tiny_config(tmp_path, data, train={"epochs": 15, "lr": 5e-3, "early_stopping": None})))
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.7
    pred = Predictor.load(run.path)
    by_string = pred.predict(["my card has not arrived yet"])
    by_record = pred.predict([{"text": "my card has not arrived yet"}])
    pd.testing.assert_frame_equal(by_string, by_record)


def test_numpy_images_through_the_python_api(tmp_path):
    from sklearn.datasets import load_digits

    from modelfoundry.data import from_arrays

    d = load_digits()
    frame = from_arrays(d.images[:400], d.target[:400])
    cfg = tiny_config(tmp_path, {"target": "label", "image": {"size": [8, 8], "channels": 1}},
                      model={"type": "cnn", "channels": [16, 32], "hidden": [32]}, train={"epochs": 20, "early_stopping": None})
    run = train(load_config(cfg), frame=frame)
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.7
    out = Predictor.load(run.path).predict(from_arrays(d.images[400:410]))
    assert len(out) == 10 and {f"prob_{i}" for i in range(10)} <= set(out.columns)


def test_datetime_and_list_sequence_columns(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    series = [list(rng.normal(loc=(i % 2) * 2, size=rng.integers(3, 9)).round(3)) for i in range(n)]
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=n, freq="D").astype(str), "series": series,
                          "label": [i % 2 for i in range(n)]})
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "d.jsonl")}, model={"type": "rnn", "hidden_size": 16},
                      train={"epochs": 10, "early_stopping": None})
    run = train(load_config(cfg))
    pre = json.loads((run.path / "model" / "preprocessor.json").read_text())
    assert pre["schema"] == {"when": "datetime", "series": "sequence"}
    assert {"when.year", "when.month", "when.day_of_week"} <= set(pre["numeric"])
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.8
    pred = Predictor.load(run.path)
    assert len(pred.predict([{"when": "2024-03-01", "series": [0.1, 2.0]}, {"when": None, "series": [1.0]}])) == 2
    with pytest.raises(DataError, match=r"row 1, column 'when': 'next tuesday' is not a date"):
        pred.predict([{"when": "next tuesday", "series": [0.1, 2.0]}])


def test_tokenizer_directory(tmp_path):
    from modelfoundry.data.text import train_tokenizer

    texts = pd.read_csv(FIXTURES / "banking77_sample.csv")["text"].tolist()
    (tmp_path / "tok").mkdir()
    train_tokenizer(texts, "wordpiece", 300, 1, True).save(str(tmp_path / "tok" / "tokenizer.json"))
    data = {"path": str(FIXTURES / "banking77_sample.csv"), "target": "category", "text": {"tokenizer": str(tmp_path / "tok")}}
    run = train(load_config(tiny_config(tmp_path, data, train={"epochs": 2})))
    assert json.loads((run.path / "model" / "architecture.json").read_text())["spec"]["text"] == {"text": 300}
    bad = {**data, "text": {"tokenizer": str(tmp_path)}}
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        train(load_config(tiny_config(tmp_path, bad)))


def test_predict_refuses_a_word_in_a_numeric_column_naming_row_and_column(tmp_path, table_csv):
    from modelfoundry.cli import main

    run = train(load_config(tiny_config(tmp_path, {"path": str(table_csv), "target": "label"}, train={"epochs": 1})))
    rows = [{"x1": 0.5, "x2": 1.0, "colour": "red"}, {"x1": "high", "x2": 1.0, "colour": "red"}]
    with pytest.raises(DataError, match=r"row 2, column 'x1': 'high' is not a number"):
        Predictor.load(run.path).predict(rows)
    bad = tmp_path / "new.csv"
    bad.write_text("x1,x2,colour\n0.5,1.0,red\nhigh,1.0,red\n")
    assert main(["predict", str(run.path), str(bad)]) == 2


def test_a_missing_text_at_prediction_time_is_refused_naming_row_and_column(tmp_path):
    data = {"path": str(FIXTURES / "banking77_sample.csv"), "target": "category",
            "text": {"vocab_size": 400, "min_frequency": 1}}
    run = train(load_config(tiny_config(tmp_path, data, train={"epochs": 1})))
    pred = Predictor.load(run.path)
    rows = pd.DataFrame({"text": ["my card is lost", None, "top up failed"]})
    with pytest.raises(DataError, match=r"row 2, column 'text': the text is missing \(1 row\(s\)\)"):
        pred.predict(rows)
    assert len(pred.predict(rows.dropna())) == 2
    # a model trained with missing texts in that column takes them (as an empty text)
    frame = pd.read_csv(FIXTURES / "banking77_sample.csv")
    frame.loc[:9, "text"] = None
    run2 = train(load_config(tiny_config(tmp_path, {"target": "category", "text": {"vocab_size": 400, "min_frequency": 1},
                                                    "clean": {"categorical_missing": "unknown"}}, train={"epochs": 1})),
                 frame=frame)
    assert len(Predictor.load(run2.path).predict(rows)) == 3


def test_one_output_row_per_input_row_with_a_per_row_error_for_an_unreadable_image(tmp_path):
    from sklearn.datasets import load_digits

    from modelfoundry.data import from_arrays

    d = load_digits()
    cfg = tiny_config(tmp_path, {"target": "label", "image": {"size": [8, 8], "channels": 1}},
                      model={"type": "cnn", "channels": [8], "hidden": [16]}, train={"epochs": 2})
    run = train(load_config(cfg), frame=from_arrays(d.images[:200], d.target[:200]))
    pred = Predictor.load(run.path)
    rows = from_arrays(d.images[200:204])
    rows.loc[1, "image"] = str(tmp_path / "missing.png")  # unreadable: data.bad_images is skip by default
    out = pred.predict(rows)
    assert len(out) == 4 and out["prediction"].isna().tolist() == [False, True, False, False]
    assert out["error"].notna().tolist() == [False, True, False, False] and "missing.png" in out["error"][1]
    alone = pred.predict(rows.iloc[[0, 2, 3]])  # each readable row keeps its own answer, not a neighbour's
    assert out.drop(index=1)["prediction"].tolist() == alone["prediction"].tolist()
    assert "error" not in alone.columns
    everything_bad = pred.predict(rows.iloc[[1, 1]])
    assert len(everything_bad) == 2 and everything_bad["error"].notna().all()


def test_a_rows_answer_does_not_depend_on_its_batch_mates_types(tmp_path):
    """pandas infers a column's dtype across the rows: a neighbour's 2.5 or null turned a categorical 1 into '1.0',
    a category the model never saw."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"grade": rng.integers(1, 4, 300), "x": rng.normal(size=300)})
    frame["label"] = np.where((frame.grade == 1) | (frame.x > 1), "yes", "no")
    cfg = tiny_config(tmp_path, {"target": "label", "types": {"grade": "categorical"}}, train={"epochs": 30})
    pred = Predictor.load(train(load_config(cfg), frame=frame).path)
    alone = pred.predict([{"grade": 1, "x": 0.0}])
    for mates in ([{"grade": 2.5, "x": 0.0}], [{"grade": None, "x": None}], [{"grade": "2", "x": 1.0}]):
        mixed = pred.predict([{"grade": 1, "x": 0.0}, *mates])
        assert mixed["prob_yes"][0] == alone["prob_yes"][0], mates
    assert pred.predict([{"grade": "1", "x": 0.0}])["prob_yes"][0] == alone["prob_yes"][0]  # JSON text "1"
    assert alone["prediction"][0] == "yes"


def test_a_flipped_byte_in_the_weights_is_refused_at_load(tmp_path):
    from modelfoundry.core.runs import Run

    from .conftest import tabular_frame

    run = train(load_config(tiny_config(tmp_path, {"target": "label"}, train={"epochs": 1})), frame=tabular_frame())
    files = Run.open(run.path).manifest()["files"]
    assert "model/weights.safetensors" in files and "model/preprocessor.json" in files
    weights = run.path / "model" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"weights\.safetensors: sha256 .* differs from .* recorded when the run completed"):
        Predictor.load(run.path)
