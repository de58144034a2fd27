"""Build the gpt-mini pretraining corpus (JSONL, one document per line, fields `text` and `source`) from the licensed
public-domain / MIT / CC BY text shipped in datasets/ and this repository's own documentation.

    .venv/bin/python recipes/pretraining/build_corpus.py [OUT.jsonl]     # default: recipes/pretraining/data/gpt_mini.jsonl

| source | documents | licence |
|---|---|---|
| Tiny Shakespeare (karpathy/char-rnn) | one speech (blank-line separated) each | public domain |
| Tang poems (chinese-poetry/chinese-poetry: tang300 + poet.tang.0-4000) | one poem each: 《title》author + lines | MIT; the poems are public domain |
| Chinese medical dialogues (Toyhom/Chinese-medical-dialogue-data, internal-medicine sample) | 问：title ask / 答：answer | MIT |
| BANKING77 training queries (PolyAI) | one customer query each | CC BY 4.0 (Casanueva et al. 2020) |
| ModelFoundry's docs/ (English and Chinese) | one page each | this project's licence |

Prints each source's sha256, document count and characters; the training recipe records them beside the model."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "datasets"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shakespeare():
    f = DATA / "tinyshakespeare" / "input.txt"
    for block in f.read_text(encoding="utf-8").split("\n\n"):
        if block.strip():
            yield block.strip()


def tang():
    files = [DATA / "tang_poems" / "tang300.json"] + sorted((DATA / "tang_poems").glob("poet.tang.*.json"))
    for f in files:
        for poem in json.loads(f.read_text(encoding="utf-8")):
            lines = [p for p in poem.get("paragraphs", []) if p.strip()]
            if lines:
                yield f"《{poem.get('title', '')}》{poem.get('author', '')}\n" + "\n".join(lines)


def medical():
    with open(DATA / "zh_medical_dialogue" / "internal_medicine_sample.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ask = " ".join(x for x in (row["title"], row["ask"]) if x and x.strip())
            if ask and row["answer"].strip():
                yield f"问：{ask.strip()}\n答：{row['answer'].strip()}"


def banking():
    with open(DATA / "banking77" / "train.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["text"].strip():
                yield row["text"].strip()


def docs():
    for f in sorted((REPO / "docs").rglob("*.md")):
        if f.name != "config.md":  # generated from the schema; the reference tables add little language
            yield f.read_text(encoding="utf-8").strip()


SOURCES = {
    "tinyshakespeare": (shakespeare, [DATA / "tinyshakespeare" / "input.txt"], "public domain"),
    "tang_poems": (tang, sorted((DATA / "tang_poems").glob("*.json")), "MIT (poems public domain)"),
    "zh_medical_dialogue": (medical, [DATA / "zh_medical_dialogue" / "internal_medicine_sample.csv"], "MIT"),
    "banking77": (banking, [DATA / "banking77" / "train.csv"], "CC BY 4.0"),
    "modelfoundry_docs": (docs, [f for f in sorted((REPO / "docs").rglob("*.md")) if f.name != "config.md"],
                          "this project's licence (Apache-2.0)"),
}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "data" / "gpt_mini.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    listing = []
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for name, (read, files, licence) in SOURCES.items():
            n = chars = 0
            for text in read():
                fh.write(json.dumps({"text": text, "source": name}, ensure_ascii=False) + "\n")
                n += 1
                chars += len(text)
            listing.append({"source": name, "documents": n, "characters": chars, "licence": licence,
                            "files": {str(f.relative_to(REPO)): sha256(f) for f in files}})
    tmp.replace(out)
    (out.with_suffix(".sources.json")).write_text(json.dumps(listing, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")
    for s in listing:
        print(f"{s['source']:20s} {s['documents']:>7,} documents {s['characters']:>10,} characters  {s['licence']}")
    print(f"-> {out} ({out.stat().st_size / 1e6:.1f} MB), sha256 {sha256(out)[:16]}...")


if __name__ == "__main__":
    main()
