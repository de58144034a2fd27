"""datasets/fetch_chnsenticorp.py: the split is fixed, a corpus line that is a hotel review (train or test) never
reaches the pretraining corpus, the training split's reviews do, and a file that is not the pinned one is refused.
Synthetic reviews: the real files are not shipped."""

import importlib.util
import json

import pandas as pd
import pytest

from ..conftest import REPO

spec = importlib.util.spec_from_file_location("fetch_chnsenticorp", REPO / "datasets" / "fetch_chnsenticorp.py")
fetch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch)


def _hotel(n: int = 20) -> bytes:
    rows = [{"label": i % 2, "review": f"房间{'干净' if i % 2 else '很脏'}，第{i}次入住"} for i in range(n)]
    rows.append({"label": 1, "review": None})  # upstream has one empty review
    return pd.DataFrame(rows).to_csv(index=False).encode("utf-8")


def test_split_and_corpus_keep_test_text_out(tmp_path):
    hotel = _hotel()
    lines = ["这本书很好看", "房间干净，第3次入住", "房间很脏，第4次入住", "这本书很好看", "手机电池不耐用"]
    counts = fetch.build(hotel, lines, tmp_path)
    train, test = pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv")
    assert (len(train), len(test), counts["empty"]) == (16, 4, 1)
    assert not set(train["review"]) & set(test["review"])
    corpus = [json.loads(line)["text"] for line in (tmp_path / "reviews.jsonl").read_text(encoding="utf-8").splitlines()]
    assert corpus[:2] == ["这本书很好看", "手机电池不耐用"]  # hotel reviews out, duplicates once
    assert corpus[2:] == list(train["review"])  # then the training split, never the test split
    assert not set(corpus) & set(test["review"])
    assert counts["overlap"] == 2
    again = tmp_path / "again"
    fetch.build(hotel, lines, again)  # the same files give the same split
    assert (again / "test.csv").read_bytes() == (tmp_path / "test.csv").read_bytes()


def test_a_file_that_is_not_the_pinned_one_is_refused(tmp_path):
    f = tmp_path / "ChnSentiCorp_htl_all.csv"
    f.write_bytes(_hotel())
    with pytest.raises(SystemExit, match="sha256 .* expected 1d414b9c"):
        fetch.hotel_reviews(f)
