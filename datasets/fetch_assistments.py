"""ASSISTments 2009-2010 skill-builder, as prepared for DKVMN (Zhang et al. 2017): per student three lines (the number
of answers; the skill ids; 0/1 answers), 110 skills, 2,921 training and 1,230 test students. The ASSISTments data is
free for research with citation and may not be redistributed: it is not shipped. This script brings it into
datasets/assistments2009/ (ignored by git), where recipes/education/knowledge_tracing.yaml reads it:

    datasets/assistments2009/assist2009_updated_train.csv, _test.csv, assist2009_updated_skill_mapping.txt

Run (from the repository root):
    .venv/bin/python datasets/fetch_assistments.py              # download from jennyzhang0215/DKVMN @96c2834
    .venv/bin/python datasets/fetch_assistments.py --from DIR   # or copy from a folder holding those files

Each file is read with the toolkit's own reader (data.format answer_lines), so a damaged copy is refused here, naming
the student. Cite: Mingyu Feng, Neil Heffernan and Kenneth Koedinger, "Addressing the assessment challenge with an
online system that tutors as it assesses", UMUAI 19(3), 2009.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
COMMIT = "96c2834"
BASE = f"https://raw.githubusercontent.com/jennyzhang0215/DKVMN/{COMMIT}/data/assist2009_updated/"
FILES = ["assist2009_updated_train.csv", "assist2009_updated_test.csv", "assist2009_updated_skill_mapping.txt"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, help="a folder holding the files")
    ap.add_argument("--out", type=Path, default=HERE / "assistments2009")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if args.source is not None:
            shutil.copyfile(args.source / name, args.out / name)
        else:
            print(f"downloading {BASE}{name} ...")
            with urllib.request.urlopen(BASE + name, timeout=120) as response:  # noqa: S310 (a fixed https URL)
                (args.out / name).write_bytes(response.read())
    sys.path.insert(0, str(HERE.parent / "src"))
    from modelfoundry.data.tracing import read_answer_lines

    for name in FILES[:2]:
        df = read_answer_lines(args.out / name)
        print(f"{name}: {df['student'].nunique()} students, {len(df)} answers, {df['skill'].nunique()} skills")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
