"""The Free Spoken Digit Dataset (FSDD, CC BY-SA 4.0): 3,000 recordings (8 kHz mono WAV) of the digits 0-9, six
speakers x 50 each, named `{digit}_{speaker}_{index}.wav`. Not shipped (27 MB); this script brings it and writes the
recipe's manifests, one speaker held out for testing (the recipe trains on five speakers and tests on the sixth):

    datasets/fsdd/train.csv, datasets/fsdd/test.csv     columns: audio (absolute path), digit, speaker

Run (from the repository root):
    .venv/bin/python datasets/fetch_fsdd.py                       # download the pinned commit from GitHub
    .venv/bin/python datasets/fetch_fsdd.py --from DIR            # or copy from a folder of its recordings
    .venv/bin/python datasets/fetch_fsdd.py --test-speaker theo   # hold out another speaker (default: george)

The download is Jakobovski/free-spoken-digit-dataset at commit 26eb9aa, an archive of ~17 MB; every recording it
brings is checked (file name pattern, 8 kHz WAV) and counted. Cite: Zohar Jackson et al., "Jakobovski/free-spoken-
digit-dataset: v1.0.8" (Zenodo, 2018), CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import tarfile
import urllib.request
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
COMMIT = "26eb9aa"  # the commit ../shared/data/fsdd was taken from
URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{COMMIT}.tar.gz"
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.(wav|flac)$")


def download(dest: Path) -> None:
    print(f"downloading {URL} ...")
    with urllib.request.urlopen(URL, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and "/recordings/" in member.name and NAME.match(name):
                with tar.extractfile(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)


def manifests(recordings: Path, out: Path, test_speaker: str) -> tuple[int, int]:
    rows = []
    for f in sorted(recordings.iterdir()):
        m = NAME.match(f.name)
        if m:
            rows.append({"audio": str(f.resolve()), "digit": int(m.group(1)), "speaker": m.group(2)})
    if not rows:
        raise SystemExit(f"{recordings}: no recordings named {{digit}}_{{speaker}}_{{index}}.wav")
    df = pd.DataFrame(rows)
    if test_speaker not in set(df["speaker"]):
        raise SystemExit(f"--test-speaker {test_speaker!r}: the speakers are {sorted(set(df['speaker']))}")
    test = df["speaker"] == test_speaker
    out.mkdir(parents=True, exist_ok=True)
    df[~test].to_csv(out / "train.csv", index=False)
    df[test].to_csv(out / "test.csv", index=False)
    return int((~test).sum()), int(test.sum())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", type=Path, help="a folder holding FSDD's recordings (no download)")
    ap.add_argument("--out", type=Path, default=HERE / "fsdd", help="where the manifests (and downloaded files) go")
    ap.add_argument("--test-speaker", default="george")
    args = ap.parse_args(argv)
    if args.source is not None:
        recordings = args.source
    else:
        recordings = args.out / "recordings"
        recordings.mkdir(parents=True, exist_ok=True)
        download(recordings)
    n_train, n_test = manifests(recordings, args.out, args.test_speaker)
    print(f"{args.out}/train.csv: {n_train} recordings; {args.out}/test.csv: {n_test} ({args.test_speaker})")


if __name__ == "__main__":
    main()
