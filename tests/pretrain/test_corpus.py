"""Reading raw corpora: documents per line / paragraph / file, folders with undecodable files, JSONL, tables, and the
seeded document-level split."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from modelfoundry.data.config import CorpusConfig
from modelfoundry.data.sources import DataError
from modelfoundry.pretrain.corpus import CorpusStats, assign_splits, documents


def test_text_file_documents_per_line_paragraph_and_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("a b\nc d\n\n\ne f\n", encoding="utf-8")
    assert list(documents(f, CorpusConfig(documents="line"))) == ["a b", "c d", "e f"]
    assert list(documents(f, CorpusConfig(documents="blank_line"))) == ["a b\nc d", "e f"]
    assert list(documents(f, CorpusConfig(documents="file"))) == ["a b\nc d\n\n\ne f\n"]


def test_folder_skips_and_counts_binary_and_non_utf8_files_or_refuses_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("第一行\n", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("second\n", encoding="utf-8")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "gbk.txt").write_bytes("中文".encode("gbk"))
    stats = CorpusStats()
    assert list(documents(tmp_path, CorpusConfig(), stats=stats)) == ["第一行", "second"]
    assert stats.files == 2
    assert sorted(s["reason"].split(" ")[0] for s in stats.skipped) == ["binary", "not"]
    with pytest.raises(DataError, match="gbk.txt: not UTF-8"):
        list(documents(tmp_path, CorpusConfig(undecodable="error")))


def test_jsonl_reads_the_crawler_field_and_lists_fields_when_it_is_missing(tmp_path):
    f = tmp_path / "crawl.jsonl"
    f.write_text("\n".join(json.dumps({"url": f"u{i}", "text": f"page {i}"}) for i in range(3)), encoding="utf-8")
    assert list(documents(f, CorpusConfig())) == ["page 0", "page 1", "page 2"]
    with pytest.raises(DataError, match=r"line 1 has no field 'body'.*url, text"):
        list(documents(f, CorpusConfig(field="body")))


def test_jsonl_value_that_is_not_text_is_refused_naming_the_line(tmp_path):
    # found as a user: pandas wrote an empty review as NaN, and the document vanished without a word
    f = tmp_path / "reviews.jsonl"
    f.write_text('{"text": "好评"}\n{"text": null}\n{"text": ""}\n{"text": NaN}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"reviews.jsonl: line 4: field 'text' .* float 'nan', expected text"):
        list(documents(f, CorpusConfig()))
    f.write_text('{"text": "好评"}\n{"text": null}\n{"text": ""}\n', encoding="utf-8")
    assert list(documents(f, CorpusConfig())) == ["好评"]  # null and "" hold no text


def test_table_text_column(tmp_path):
    f = tmp_path / "t.csv"
    pd.DataFrame({"id": [1, 2, 3], "review": ["好", None, "bad"]}).to_csv(f, index=False)
    assert list(documents(f, CorpusConfig(field="review"))) == ["好", "bad"]
    with pytest.raises(DataError, match="no column 'text'.*id, review"):
        list(documents(f, CorpusConfig()))


def test_split_is_seeded_per_document_and_disjoint():
    docs = [f"doc {i}" for i in range(2000)]
    a = list(assign_splits(iter(docs), 0.1, 0.2, seed=1))
    assert a == list(assign_splits(iter(docs), 0.1, 0.2, seed=1))
    assert a != list(assign_splits(iter(docs), 0.1, 0.2, seed=2))
    counts = pd.Series([s for s, _ in a]).value_counts(normalize=True)
    assert abs(counts["val"] - 0.1) < 0.03 and abs(counts["test"] - 0.2) < 0.03
    assert [d for _, d in a] == docs  # every document once, in order
