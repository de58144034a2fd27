"""MovieLens "latest-small" (GroupLens): 100,836 ratings (0.5-5 stars) of 9,742 movies by 610 users, with timestamps.
GroupLens allows research use and redistribution only under its own terms, with citation: it is not shipped. This
script brings it into datasets/movielens_small/ (ignored by git), where recipes/education/movie_recommend.yaml reads it:

    datasets/movielens_small/ratings.csv    userId, movieId, rating, timestamp
    datasets/movielens_small/movies.csv     movieId, title, genres

Run (from the repository root):
    .venv/bin/python datasets/fetch_movielens.py              # download ml-latest-small.zip from GroupLens
    .venv/bin/python datasets/fetch_movielens.py --from DIR   # or copy from a folder holding ratings.csv (movies.csv)

Every row is checked (user and movie ids, a rating between 0.5 and 5, a timestamp) and counted; a copy whose movie
column is named `Id` gets the official name `movieId`. Cite: F. Maxwell Harper and Joseph A. Konstan, "The MovieLens
Datasets: History and Context", ACM TiiS 5(4), 2015.
"""

from __future__ import annotations

import argparse
import io
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"


def check(ratings: pd.DataFrame) -> pd.DataFrame:
    ratings = ratings.rename(columns={"Id": "movieId"})
    need = ["userId", "movieId", "rating", "timestamp"]
    missing = [c for c in need if c not in ratings.columns]
    if missing:
        raise SystemExit(f"ratings.csv: columns {missing} missing (it has {list(ratings.columns)})")
    bad = ~pd.to_numeric(ratings["rating"], errors="coerce").between(0.5, 5)
    if bad.any():
        raise SystemExit(f"ratings.csv: row {int(bad.to_numpy().nonzero()[0][0]) + 2}: rating outside 0.5-5")
    return ratings[need]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, help="a folder holding ratings.csv (and movies.csv)")
    ap.add_argument("--out", type=Path, default=HERE / "movielens_small")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.source is not None:
        ratings = pd.read_csv(args.source / "ratings.csv")
        movies = pd.read_csv(args.source / "movies.csv") if (args.source / "movies.csv").exists() else None
    else:
        print(f"downloading {URL} ...")
        with urllib.request.urlopen(URL, timeout=120) as response:  # noqa: S310 (a fixed https URL)
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        ratings = pd.read_csv(archive.open("ml-latest-small/ratings.csv"))
        movies = pd.read_csv(archive.open("ml-latest-small/movies.csv"))
    ratings = check(ratings)
    ratings.to_csv(args.out / "ratings.csv", index=False)
    if movies is not None:
        movies.rename(columns={"Id": "movieId"}).to_csv(args.out / "movies.csv", index=False)
    print(f"{len(ratings)} ratings, {ratings['userId'].nunique()} users, {ratings['movieId'].nunique()} movies "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
