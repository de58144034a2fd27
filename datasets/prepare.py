"""Re-creates the derived files under datasets/ from their public sources (../shared/data and scikit-learn).

- cmapss/{train,test}_FD001_rul.csv: the raw space-separated files with named columns and a `rul`
  column (train: last cycle of the unit minus this cycle; test: RUL_FD001.txt plus the cycles left).
- digits/<class>/<n>.png: scikit-learn's 8x8 digits as an image folder.
- heart_disease_sites/heart_sites.csv: the four UCI hospitals' processed files as one table with named columns,
  a `site` column and `disease` (1 when `num` > 0); `?` and NaN stay missing.

Run: .venv/bin/python datasets/prepare.py [PATH_TO_SHARED_DATA]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
COLUMNS = ["unit", "cycle", "setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]


def cmapss(src: Path) -> None:
    train = pd.read_csv(src / "train_FD001.txt", sep=r"\s+", header=None, names=COLUMNS)
    train["rul"] = train.groupby("unit")["cycle"].transform("max") - train["cycle"]
    test = pd.read_csv(src / "test_FD001.txt", sep=r"\s+", header=None, names=COLUMNS)
    final = pd.read_csv(src / "RUL_FD001.txt", header=None, names=["final"])["final"].to_numpy()
    last = test.groupby("unit")["cycle"].transform("max")
    test["rul"] = final[test["unit"].to_numpy() - 1] + (last - test["cycle"])
    out = HERE / "cmapss"
    out.mkdir(exist_ok=True)
    train.to_csv(out / "train_FD001_rul.csv", index=False)
    test.to_csv(out / "test_FD001_rul.csv", index=False)


HEART = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca",
         "thal", "num"]
SITES = {"cleveland": "cleveland", "hungarian": "hungary", "switzerland": "switzerland", "va": "va_long_beach"}


def heart_sites() -> None:
    out = HERE / "heart_disease_sites"
    frames = []
    for stem, site in SITES.items():
        f = pd.read_csv(out / f"processed.{stem}.data", header=None, names=HEART, na_values=["?"])
        frames.append(f.assign(site=site))
    df = pd.concat(frames, ignore_index=True)
    df["disease"] = (df.pop("num") > 0).astype(int)
    df.to_csv(out / "heart_sites.csv", index=False)


def digits() -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        folder = HERE / "digits" / str(y)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img / 16.0 * 255).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")


if __name__ == "__main__":
    cmapss(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data") / "cmapss")
    digits()
    heart_sites()
