"""Run directory helpers: atomic writes and report CSVs."""

import pandas as pd

from modelfoundry.runs import csv_text


def test_report_csvs_defuse_formulas_unless_raw():
    df = pd.DataFrame({"text": ["=HYPERLINK(\"http://x\",\"y\")", "+1 555", "@SUM(A1)", "-cmd", "plain", None],
                       "score": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0]})
    safe = pd.read_csv(pd.io.common.StringIO(csv_text(df)))
    assert safe["text"].tolist()[:5] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1 555", "'@SUM(A1)", "'-cmd", "plain"]
    assert safe["score"].tolist() == df["score"].tolist()  # numbers stay numbers, negative ones too
    raw = pd.read_csv(pd.io.common.StringIO(csv_text(df, raw=True)))
    assert raw["text"].tolist()[:5] == df["text"].tolist()[:5]
