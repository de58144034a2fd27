"""Figures with Chinese labels: drawn with an installed CJK font, or numbered with the key in the caption; never
the boxes DejaVu Sans draws for characters it lacks."""

import json

import matplotlib
import pandas as pd
from matplotlib import font_manager, ft2font

from modelfoundry.config import load_config
from modelfoundry.core.plots import pyplot, tick_labels
from modelfoundry.train import train

from ..conftest import tiny_config

ZH = ["心血管科", "内分泌科", "消化科"]


def _drawable(labels) -> bool:
    pyplot()
    font = ft2font.FT2Font(font_manager.findfont(matplotlib.rcParams["font.sans-serif"][0]))
    return all(font.get_char_index(ord(c)) for label in labels for c in label)


def test_labels_the_font_cannot_draw_become_numbers_with_a_key():
    assert tick_labels(["cat", "dog"]) == (["cat", "dog"], None)
    names, key = tick_labels(ZH)
    if _drawable(ZH):  # a CJK font is installed: the names are drawn as they are
        assert names == ZH and key is None
    else:
        assert names == ["0", "1", "2"] and key == "0 = 心血管科, 1 = 内分泌科, 2 = 消化科"


def test_a_run_with_chinese_classes_keys_its_confusion_matrix(tmp_path):
    rows = [{"text": t, "label": lab} for lab, words in zip(ZH, (["血压", "心脏", "胸闷"], ["血糖", "甲状腺", "胰岛素"],
                                                                  ["胃痛", "腹泻", "消化"]))
            for i in range(20) for t in [f"{words[i % 3]}{words[(i + 1) % 3]}怎么办"]]
    pd.DataFrame(rows).to_csv(tmp_path / "zh.csv", index=False)
    run = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "zh.csv"), "target": "label",
                                                   "text": {"vocab_size": 60, "min_frequency": 1}},
                                        train={"epochs": 2}, evaluate={"report": True})))
    report = (run.path / "report.html").read_text(encoding="utf-8")
    assert json.loads((run.path / "metrics.json").read_text())["test"]
    assert ("0 = 内分泌科" in report) != _drawable(ZH)  # classes sort: 内分泌科, 心血管科, 消化科
