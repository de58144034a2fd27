"""Long verbs show progress (tqdm.auto) when asked or on a terminal, and stay quiet in logs and pipes."""

import pytest

from modelfoundry.config import load_config
from modelfoundry.core.progress import enabled

from ..conftest import tabular_frame, tiny_config


def test_enabled_follows_the_environment_and_the_terminal(monkeypatch):
    monkeypatch.setenv("FOUNDRY_PROGRESS", "1")
    assert enabled()
    monkeypatch.setenv("FOUNDRY_PROGRESS", "0")
    assert not enabled()
    monkeypatch.delenv("FOUNDRY_PROGRESS")
    assert not enabled()  # pytest's captured stderr is not a terminal


def _kfold(tmp_path):
    from modelfoundry.train import train

    cfg = tiny_config(tmp_path, {"target": "label"}, train={"epochs": 2}, evaluate={"cv": {"folds": 2}})
    train(load_config(cfg), frame=tabular_frame(120))


def _profile(tmp_path):
    from modelfoundry.data.audit import audit

    audit(load_config(tiny_config(tmp_path, {"target": "label"})), with_label_issues=True, frame=tabular_frame(120))


def _tune(tmp_path):
    from modelfoundry.tune import tune

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "t.csv"
    tabular_frame(120).to_csv(path, index=False)
    raw = tiny_config(tmp_path, {"path": str(path), "target": "label"}, train={"epochs": 1})
    raw["tune"] = {"sampler": "random", "trials": 2, "space": {"train.lr": {"choice": [0.01, 0.1]}}}
    tune(load_config(raw))


@pytest.mark.slow
@pytest.mark.parametrize("verb, desc", [(_kfold, "k-fold"), (_kfold, "epoch 1/2"), (_profile, "profile"),
                                        (_tune, "study t")])
def test_long_verbs_show_progress_when_asked_and_are_quiet_otherwise(tmp_path, capsys, monkeypatch, verb, desc):
    import re

    drawn = re.compile(re.escape(desc) + r":\s+\d+%\|")  # tqdm's "desc:  50%|█████     | 1/2"
    monkeypatch.setenv("FOUNDRY_PROGRESS", "1")
    verb(tmp_path / "on")
    shown = capsys.readouterr().err
    assert drawn.search(shown), shown[-2000:]
    monkeypatch.delenv("FOUNDRY_PROGRESS")
    verb(tmp_path / "off")
    assert not drawn.search(capsys.readouterr().err)  # no bar in a log
