"""Run directory helpers: atomic writes and report CSVs."""

import pandas as pd

from modelfoundry.core.runs import csv_text


def test_report_csvs_defuse_formulas_unless_raw():
    df = pd.DataFrame({"text": ["=HYPERLINK(\"http://x\",\"y\")", "+1 555", "@SUM(A1)", "-cmd", "plain", None],
                       "score": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0]})
    safe = pd.read_csv(pd.io.common.StringIO(csv_text(df)))
    assert safe["text"].tolist()[:5] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1 555", "'@SUM(A1)", "'-cmd", "plain"]
    assert safe["score"].tolist() == df["score"].tolist()  # numbers stay numbers, negative ones too
    raw = pd.read_csv(pd.io.common.StringIO(csv_text(df, raw=True)))
    assert raw["text"].tolist()[:5] == df["text"].tolist()[:5]


def test_run_ids_never_collide_and_the_lock_names_its_holder(tmp_path):
    import os

    import pytest

    from modelfoundry.core.runs import Run

    runs = {Run.create(tmp_path, "same").path for _ in range(300)}  # one second, 65,536 ids: collisions are drawn again
    assert len(runs) == 300
    run = Run(next(iter(runs)))
    with run.lock():
        with pytest.raises(ValueError, match=f"another process \\(PID {os.getpid()}\\) is writing this run"):
            run.lock().acquire()
    run.lock().acquire().release()  # free again


def test_checkpoint_resave_keeps_the_pointed_folder_until_the_new_one_is_in_place(tmp_path):
    import json

    import torch

    from modelfoundry.train.loop import Checkpointer

    ckpt = Checkpointer(tmp_path)
    model = torch.nn.Linear(2, 2)
    ckpt.save("best", 3, model)
    first = ckpt.folder("best")
    ckpt.save("best", 3, model)  # the same epoch again, as after a resume
    second = ckpt.folder("best")
    assert first != second and second.is_dir() and not first.exists()
    assert json.loads((tmp_path / "best.json").read_text())["folder"] == second.name
