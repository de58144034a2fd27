"""Personal data: found in Chinese and English text with checksums (decoys that fail them are not), in the profile and
the data report, warned about before training, and redacted, hashed or dropped by foundry data clean without
touching a held-out row or copying the data into the change log."""

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import load_config
from modelfoundry.data.audit import audit
from modelfoundry.data.pii import card_valid, cn_id_valid, find, mask, rewrite, scan_frame
from modelfoundry.data.repair import clean_data
from modelfoundry.data.report import write_data_report

from ..conftest import tabular_frame, tiny_config

ID = "11010519491231002X"  # the GB 11643 standard's own example
CARD = "4111 1111 1111 1111"


def kinds(text: str) -> list[tuple[str, str]]:
    return [(k, text[a:b]) for k, a, b in find(text)]


@pytest.mark.parametrize("text, want", [
    ("联系我：13812345678，谢谢", [("phone", "13812345678")]),
    ("手机+86 138 1234 5678。", [("phone", "+86 138 1234 5678")]),
    ("请发到zhang.san@example.com.cn联系", [("email", "zhang.san@example.com.cn")]),
    (f"身份证号{ID}。", [("cn_id", ID)]),
    (f"card {CARD} ok", [("bank_card", CARD)]),
    ("Call (555) 123-4567 x89 today", [("phone", "(555) 123-4567 x89")]),
    ("from 192.168.1.20.", [("ip", "192.168.1.20")]),
    ("host fe80::1ff:fe23:4567:890a up", [("ip", "fe80::1ff:fe23:4567:890a")]),
    ("call 5551234567 now", [("phone", "5551234567")]),
    ("卡号6222 0202 0000 0000 006 待确认", [("bank_card", "6222 0202 0000 0000 006")]),  # UnionPay, 19 digits
    ("amex 3782 822463 10005.", [("bank_card", "3782 822463 10005")]),
    ("paid 5413 2787 4858 2030 146.85.123.123 used", [("bank_card", "5413 2787 4858 2030"),
                                                     ("ip", "146.85.123.123")]),
])
def test_each_kind_is_found_in_chinese_and_english(text, want):
    assert kinds(text) == want


@pytest.mark.parametrize("decoy", [
    "身份证号11010519491231002Y", "id 110105194913310021",       # wrong check character; month 13
    "card 4111 1111 1111 1112", "order 56368388433180",            # fail Luhn
    "ip 300.1.2.3", "version 1.2.3", "at 12:30:45", "order 5551234567",  # a bare 10-digit run with no phone word
    "price 1299.00 and 20231105", "合同编号HT-2023-0456",
])
def test_decoys_are_not_flagged(decoy):
    assert kinds(decoy) == []


def test_checksums_and_masking():
    assert cn_id_valid(ID) and not cn_id_valid(ID[:17] + "1")
    assert card_valid("4111111111111111") and not card_valid("4111111111111112")
    assert not card_valid("9111111111111119") or not card_valid("9111111111111119")  # no issuer starts with 9
    assert mask("13812345678") == "138******78" and mask("zhang@x.com") == "z***@x.com"
    assert rewrite(f"a {ID} b 13812345678", "redact")[0] == "a [ID] b [PHONE]"
    h1, h2 = rewrite("x 13812345678", "hash")[0], rewrite("y 13812345678", "hash")[0]
    assert h1[2:] == h2[2:] and h1.startswith("x phone_")


def test_scan_frame_names_columns_rows_and_reads_integer_columns():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"姓名": ["张三", "李四", None, "王五"],
                       "note": ["ok", "mail me: a@b.io", "fine", "ip 10.0.0.1"],
                       "mobile": [13812345678, 13912345678, 15012345678, 18612345678],
                       "order_id": rng.integers(10**15, 10**16, size=4),
                       "amount": [1.5, 2.0, 3.25, 4.0]})
    pii = scan_frame(df)
    assert set(pii) == {"姓名", "note", "mobile"}
    assert pii["姓名"]["name"]["rows"] == [0, 1, 3] and pii["姓名"]["name"]["examples"][0] == "张*"
    assert pii["note"]["email"]["rows"] == [1] and pii["note"]["ip"]["rows"] == [3]
    assert pii["mobile"]["phone"]["count"] == 4


def test_a_bare_name_header_over_ticker_codes_is_not_personal_data():
    """Stock data names its ticker column "Name": AAPL is not a person. A qualified header still counts."""
    tickers = pd.DataFrame({"Name": ["AAPL", "XOM", "BRK.B", "AAPL"], "customer_name": ["AAPL", "XOM", "KO", "PG"]})
    assert set(scan_frame(tickers)) == {"customer_name"}
    assert set(scan_frame(pd.DataFrame({"Name": ["Ada Lovelace", "Alan Turing"]}))) == {"Name"}


@pytest.fixture
def people(tmp_path):
    df = tabular_frame(120)
    df["contact"] = [f"reach me at user{i}@mail.com" if i % 3 == 0 else "no contact given" for i in range(len(df))]
    df.to_csv(tmp_path / "people.csv", index=False)
    return tmp_path / "people.csv"


def test_profile_and_report_show_personal_data(people, tmp_path):
    cfg = load_config(tiny_config(tmp_path, {"path": str(people), "target": "label", "split": {"test": 0.25}}))
    report = audit(cfg, with_label_issues=False)
    assert report["pii"]["contact"]["email"]["rows"] == list(range(0, 120, 3))
    page = write_data_report(report, tmp_path, "t").read_text(encoding="utf-8")
    assert "Personal data in the data file" in page and "u***@mail.com" in page and "user0@mail.com" not in page


@pytest.mark.parametrize("how", ["redact", "hash", "drop_column"])
def test_clean_fixes_personal_data_in_training_rows_only(people, tmp_path, how):
    cfg = load_config(tiny_config(tmp_path, {"path": str(people), "target": "label", "split": {"test": 0.25},
                                             "fixes": {"pii": how, "leakage": "keep"}}))
    out, log, report = clean_data(cfg, tmp_path / "clean")
    cleaned = pd.read_csv(out, keep_default_na=False)
    original = pd.read_csv(people, keep_default_na=False)
    raw_log = (tmp_path / "clean" / "changes.csv").read_text(encoding="utf-8")
    assert "@mail.com" not in raw_log.replace("u***@mail.com", "")  # the log masks what it removed
    if how == "drop_column":
        assert "contact" not in cleaned.columns and len(cleaned) == len(original)
        assert log["action"].iloc[0] == "drop_column" and log["column"].iloc[0] == "contact"
        return
    flagged = report["pii"]["contact"]["email"]["rows"]
    changed = set(log[log["action"] == f"pii_{how}"]["row"])
    assert changed and changed < set(flagged)  # training rows only: some flagged rows are held out
    for r in flagged:
        if r in changed:
            assert "@" not in cleaned.at[r, "contact"]
            assert cleaned.at[r, "contact"] == ("reach me at [EMAIL]" if how == "redact" else
                                                rewrite(original.at[r, "contact"], "hash")[0])
        else:
            assert cleaned.at[r, "contact"] == original.at[r, "contact"]  # a held-out row, as it came


def test_training_warns_when_personal_data_is_a_model_input(people, tmp_path, capsys):
    run = train(load_config(tiny_config(tmp_path, {"path": str(people), "target": "label"}, train={"epochs": 1})))
    err = capsys.readouterr().err
    assert "warning: personal data in model inputs: 'contact' email: 40 rows" in err
    profile = json.loads((run.path / "data_profile.json").read_text(encoding="utf-8"))
    assert profile["pii_in_features"] == ["contact"]
    background = (run.path / "explain_background.json").read_text(encoding="utf-8")
    assert "@mail.com" not in background and "[EMAIL]" in background  # rows kept for explanations are redacted
    run = train(load_config(tiny_config(tmp_path, {"path": str(people), "target": "label",
                                                   "types": {"contact": "ignore"}}, train={"epochs": 1})))
    assert "personal data in model inputs" not in capsys.readouterr().err
    assert json.loads((run.path / "data_profile.json").read_text(encoding="utf-8"))["pii_in_features"] == []
