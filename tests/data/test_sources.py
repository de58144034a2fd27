from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modelfoundry.data.sources import DataError, from_arrays, read_source


def test_csv_tsv_semicolon_detected(tmp_path: Path):
    for name, sep in [("a.csv", ","), ("b.tsv", "\t"), ("c.csv", ";"), ("d.txt", "|")]:
        p = tmp_path / name
        p.write_text(sep.join(["x", "y", "label"]) + "\n" + "\n".join(sep.join([str(i), str(i * 2), "a"]) for i in range(5)))
        df = read_source(p)
        assert list(df.columns) == ["x", "y", "label"], name
        assert df["y"].tolist() == [0, 2, 4, 6, 8]


def test_space_separated_without_header(tmp_path: Path):
    p = tmp_path / "train.txt"
    p.write_text("1 1 0.5 7  \n1 2 0.6 8  \n2 1 0.1 9  \n")
    df = read_source(p, columns=["unit", "cycle", "s1", "rul"])
    assert df.shape == (3, 4) and df["rul"].tolist() == [7, 8, 9]


def test_utf8_bom_is_stripped(tmp_path: Path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffUDI,value\n1,2\n".encode())
    assert list(read_source(p).columns) == ["UDI", "value"]


def test_gb18030_refused_with_a_hint_then_read_with_encoding(tmp_path: Path):
    p = tmp_path / "zh.csv"
    p.write_bytes("科室,问题\n内科,头痛发热怎么办\n外科,手臂骨折需要手术吗\n".encode("gb18030"))
    with pytest.raises(DataError, match=r"not UTF-8.*data\.encoding: gb18030"):
        read_source(p)
    df = read_source(p, encoding="gb18030")
    assert df["科室"].tolist() == ["内科", "外科"]


def test_mixed_encodings_are_named_line_by_line(tmp_path: Path):
    p = tmp_path / "mixed.csv"
    p.write_bytes("text,label\ncafé au lait,a\n".encode() + "thé vert,b\n".encode("latin-1")
                  + "crème,a\n".encode() + "brûlé,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"mixed encodings: 2 line\(s\) are UTF-8 .* line\(s\) 3, 5 are not"):
        read_source(p)
    p.write_bytes("text,label\nthé vert,b\n".encode("latin-1"))  # one encoding throughout: the plain hint
    with pytest.raises(DataError, match=r"not UTF-8 \(bad byte at line 2\)"):
        read_source(p)


def test_missing_empty_and_header_only(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        read_source(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_source(tmp_path / "empty.csv")
    (tmp_path / "head.csv").write_text("a,b,label\n")
    with pytest.raises(DataError, match="header .* but no data rows"):
        read_source(tmp_path / "head.csv")


def test_parquet_and_not_parquet(tmp_path: Path):
    df = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})
    df.to_parquet(tmp_path / "t.parquet")
    assert read_source(tmp_path / "t.parquet").equals(df)
    (tmp_path / "fake.parquet").write_text("x,label\n1,a\n")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_source(tmp_path / "fake.parquet")


def test_jsonl_and_bad_line(tmp_path: Path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "hi", "label": 1}\n\n{"text": "yo", "label": 0}\n')
    assert read_source(p).shape == (2, 2)
    p.write_text('{"text": "hi", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_source(p)


def test_text_folder(tmp_path: Path):
    for cls, texts in {"pos": ["good", "great"], "neg": ["bad"]}.items():
        (tmp_path / cls).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / cls / f"{i}.txt").write_text(t)
    df = read_source(tmp_path)
    assert sorted(df["label"]) == ["neg", "pos", "pos"] and set(df["text"]) == {"good", "great", "bad"}


def test_image_folder_and_empty_folder(tmp_path: Path):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "imgs" / cls / "1.png")
    df = read_source(tmp_path / "imgs")
    assert list(df.columns) == ["image", "label"] and len(df) == 2
    (tmp_path / "none" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no files"):
        read_source(tmp_path / "none")


def test_arrays():
    df = from_arrays(np.ones((5, 3)), np.arange(5))
    assert list(df.columns) == ["f0", "f1", "f2", "label"]
    imgs = from_arrays(np.zeros((4, 8, 8)), [0, 1, 0, 1])
    assert imgs["image"].iloc[0].shape == (8, 8)
    with pytest.raises(DataError, match="4 rows but y has 3"):
        from_arrays(np.zeros((4, 2)), [1, 2, 3])


def test_declared_delimiter_wins_over_detection(tmp_path: Path):
    p = tmp_path / "names.csv"  # a comma in every line, header included: detection takes the comma
    p.write_text("last, first;score\nsmith, john;1\ndoe, jane;2\nroe, rich;3\n")
    df = read_source(p, delimiter=";")
    assert list(df.columns) == ["last, first", "score"] and df["score"].tolist() == [1, 2, 3]


def test_declared_format_reads_a_file_whose_extension_says_otherwise(tmp_path: Path):
    from modelfoundry.config import load_config
    from modelfoundry.data import read_frame

    p = tmp_path / "export.txt"  # JSON lines under a .txt name: by extension it would be read as delimited text
    p.write_text('{"text": "card lost", "label": "lost"}\n{"text": "top up", "label": "top_up"}\n')
    cfg = load_config({"name": "f", "data": {"path": str(p), "format": "jsonl", "target": "label"}})
    df = read_frame(cfg, cfg.data.path)
    assert list(df.columns) == ["text", "label"] and df["label"].tolist() == ["lost", "top_up"]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:  # what Python's csv module writes: quotes where needed
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _real_texts() -> dict[str, tuple[list[str], list[list]]]:
    """Text sets as other tools write them: intent queries (BANKING77), review phrases, SMS, Chinese questions."""
    from ..conftest import SAMPLE

    fixtures = SAMPLE.parent
    bank = pd.read_csv(SAMPLE)
    zh = pd.read_csv(fixtures / "zh_medical_sample.csv")
    reviews = ["a gorgeous , witty , seductive movie .", "it 's a charming and often affecting journey .",
               "the plot is nothing but boilerplate clichés from start to finish ,", "\"the best\" film i've seen ; truly",
               "an   utterly   incompetent , ugly   mess", "who knew ? a , b , c and d ... all bad"]
    sms = ["Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 to receive entry",
           "Ok lar... Joking wif u oni...", "U dun say so early hor... U c already then say...",
           "Nah I don't think he goes to usf, he lives around here though", "WINNER!! As a valued network customer"
           " you have been selected to receivea £900 prize reward! To claim call 09061701461. Claim code KL341.",
           "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today."]
    quoted = pd.read_csv(fixtures / "banking77_quoted.csv")  # rows csv.Sniffer took for space-separated
    return {"intents": (["text", "intent"], bank[["text", "category"]].values.tolist()),
            "quoted_intents": (["text", "intent"], quoted.values.tolist()),
            "reviews": (["sentence", "label"], [[t, i % 2] for i, t in enumerate(reviews * 40)]),
            "sms": (["label", "message"], [["spam" if "!" in t or "Free" in t else "ham", t] for t in sms * 40]),
            "chinese": (["department", "title"], zh[["department", "title"]].values.tolist())}


@pytest.mark.parametrize("name", ["intents", "quoted_intents", "reviews", "sms", "chinese"])
@pytest.mark.parametrize("n", [20, 100, 240])
def test_real_text_csvs_are_read_without_a_delimiter(tmp_path: Path, name: str, n: int):
    header, rows = _real_texts()[name]
    p = _write_csv(tmp_path / f"{name}.csv", header, rows[:n])
    df = read_source(p)
    assert list(df.columns) == header
    assert len(df) == min(n, len(rows))
    assert df[header[0]].astype(str).tolist()[:5] == [str(r[0]) for r in rows[:5]]  # quotes undone, commas kept


def test_text_with_many_spaces_and_quoted_commas_is_not_whitespace_separated(tmp_path: Path):
    rows = [[f"why   is   my   card   {i}   still   not   here", "card_arrival"] for i in range(150)]
    rows += [["hello, I'd like \"a refund\", please", "refund"]] * 60
    p = _write_csv(tmp_path / "spaces.csv", ["text", "intent"], rows)
    df = read_source(p)
    assert list(df.columns) == ["text", "intent"] and len(df) == 210
    assert df["text"].iloc[-1] == 'hello, I\'d like "a refund", please'


def test_a_record_with_more_fields_than_the_header_is_refused_naming_its_line(tmp_path: Path):
    p = tmp_path / "queries.csv"  # one text column, the first row's commas unquoted
    p.write_text("text\nwhy, oh why, was i charged twice\nmy card is lost\ntop up failed\n")
    with pytest.raises(DataError, match=r"queries\.csv: line 2 has 3 fields but the header has 1.*why, oh why"):
        read_source(p)
    p.write_text("text,label\nmy card,a\nlost, stolen and gone,b\n")  # a later row
    with pytest.raises(DataError, match=r"line 3 has 3 fields but the header has 2"):
        read_source(p)
    p.write_text("text,label\nmy card,a\nlost,\n")  # fewer fields: a missing value, as every reader reads it
    assert read_source(p)["label"].isna().tolist() == [False, True]


def test_sources_are_a_registry_the_config_reads(tmp_path):
    """`data.format` offers exactly the registered readers, `auto` picks one by suffix, and a name or suffix is
    registered once."""
    from modelfoundry.data.config import DataConfig
    from modelfoundry.data.sources import SOURCES, detect_format, register_source

    assert set(DataConfig.model_fields["format"].annotation.__args__) == {"auto", *SOURCES}
    for name, src in SOURCES.items():
        for suffix in src.suffixes:
            assert detect_format(tmp_path / f"x{suffix}") == name
    with pytest.raises(ValueError, match="already registered"):
        register_source("csv2", (".csv",), lambda p, o: None)
