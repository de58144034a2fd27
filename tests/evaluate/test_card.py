"""MODEL_CARD.md: Hugging Face metadata (task, datasets with sha256, model-index metrics equal to metrics.json), then
the sections, with fairness, explanations, limitations and cost filled from the run; Chinese beside it on request."""

import json

import numpy as np
import pytest
import yaml

from modelfoundry.api import train
from modelfoundry.config import load_config

from ..conftest import tabular_frame, tiny_config


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    d = tmp_path_factory.mktemp("card")
    df = tabular_frame(300)
    df["region"] = np.where(np.arange(300) % 3 == 0, "north", "south")
    df.to_csv(d / "t.csv", index=False)
    cfg = tiny_config(d, {"path": str(d / "t.csv"), "target": "label"},
                      evaluate={"baselines": True, "language": "zh",
                                "fairness": {"sensitive": ["region"], "min_group_size": 5}})
    return train(load_config(cfg))


def test_card_metadata_is_hugging_face_model_index(carded):
    meta, body = front_matter((carded.path / "MODEL_CARD.md").read_text(encoding="utf-8"))
    metrics = json.loads((carded.path / "metrics.json").read_text())
    manifest = json.loads((carded.path / "manifest.json").read_text())
    assert meta["library_name"] == "modelfoundry" and meta["pipeline_tag"] == "tabular-classification"
    assert "pytorch" in meta["tags"]
    assert meta["dataset_files"][0]["sha256"] == manifest["data"]["train"]["sha256"] and meta["datasets"] == ["t.csv"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {k: round(v, 4) for k, v in metrics["test"].items()}
    for section in ("## Intended use", "## Training data", "## Evaluation", "## Fairness", "## Explanations",
                    "## Limitations", "## Cost", "## How to use"):
        assert section in body
    assert "| logistic_regression |" in body and "| north |" in body and "| x1 |" in body
    assert f"| $ per training run | {manifest['cost']['usd_per_run']} |" in body
    assert "The test split has 60 rows" in body  # a limitation found from the run, not boilerplate


def test_chinese_card_on_request(carded, tmp_path):
    zh = (carded.path / "MODEL_CARD.zh.md").read_text(encoding="utf-8")
    meta, body = front_matter(zh)
    assert meta["language"] == ["zh", "en"] and "## 预期用途" in body and "## 公平性" in body and "## 成本" in body
    tabular_frame(100).to_csv(tmp_path / "t.csv", index=False)
    run = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "t.csv"), "target": "label"})))
    assert (run.path / "MODEL_CARD.md").is_file() and not (run.path / "MODEL_CARD.zh.md").exists()
    assert "## Fairness" not in (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")
