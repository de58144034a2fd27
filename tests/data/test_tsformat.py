"""The UEA/UCR `.ts` reader, and per-row multichannel series (one list column per channel)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.data.config import DataConfig
from modelfoundry.data.features import Preprocessor
from modelfoundry.data.sources import DataError, read_source
from modelfoundry.predictor import Predictor

from ..conftest import tiny_config

HEADER = "#comment\n@problemName Toy\n@timeStamps false\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"


def write_ts(path, rows, header=HEADER):
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_reads_channels_labels_and_missing_steps(tmp_path):
    df = read_source(write_ts(tmp_path / "x.ts", ["1,2,3:4,5,6:a", "1,?,3:0,0,0:b"]), target="activity")
    assert list(df.columns) == ["dim_0", "dim_1", "activity"]
    assert df["dim_1"][0] == [4.0, 5.0, 6.0] and df["activity"].tolist() == ["a", "b"]
    assert math.isnan(df["dim_0"][1][1])


@pytest.mark.parametrize("rows,header,message", [
    (["1,2:3,4:a", "1,2:a"], HEADER, "line 9 has 1 channel(s), the lines before it 2"),
    (["1,2:3,4:5,6:a"], HEADER, "3 channel(s) but the header says @dimensions 2"),
    (["1,x:3,4:a"], HEADER, "channel 0: 'x' is not a number"),
    (["(0,1),(1,2):a"], HEADER.replace("false\n@uni", "true\n@uni"), "@timeStamps true"),
    ([], "@problemName Toy\n", "no @data line"),
])
def test_bad_files_name_line_and_problem(tmp_path, rows, header, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_source(write_ts(tmp_path / "bad.ts", rows, header))


def test_list_columns_are_standardised_channels_of_one_series():
    df = pd.DataFrame({"a": [[0.0, 10.0, 20.0], [10.0, 10.0]], "b": [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], "y": ["p", "q"]})
    pre = Preprocessor({"a": "sequence", "b": "sequence", "y": "categorical"}, "y", "classification",
                       DataConfig(target="y")).fit(df)
    x = pre.transform(df).features["sequence"]
    assert x.shape == (2, 3, 2) and pre.spec().sequence == (3, 2)
    assert x[0, :, 1].tolist() == pytest.approx(((np.array([1, 2, 3]) - 2) / np.sqrt(2 / 3)).tolist(), rel=1e-5)
    assert x[1, 2, 0] == 0.0  # the shorter series is padded at the end


def test_a_class_told_by_the_first_channel_alone_is_learnt_from_a_ts_file(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(120):
        label = "up" if i % 2 else "down"
        noise = rng.normal(size=20)
        level = (1 if label == "up" else -1) + 0.5 * rng.normal(size=20)
        lines.append(",".join(f"{v:.3f}" for v in level) + ":" + ",".join(f"{v:.3f}" for v in noise) + f":{label}")
    path = write_ts(tmp_path / "toy.ts", lines, HEADER.replace("a b", "up down"))
    cfg = Config.model_validate(tiny_config(tmp_path, {"path": str(path), "target": "label"},
                                            model={"type": "cnn", "channels": [16], "hidden": [16]},
                                            train={"epochs": 15, "batch_size": 16, "lr": 3e-3}))
    run = train(cfg)
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] >= 0.9
    pred = Predictor.load(run.path).predict(read_source(path).head(4).drop(columns=["label"]))
    assert pred["prediction"].tolist() == ["down", "up", "down", "up"]
