"""Build a small bilingual instruction set (JSONL: prompt, response, task) from data shipped in datasets/, for
instruction-tuning gpt-mini (recipes/pretraining/gpt_mini_instruct.yaml):

    .venv/bin/python recipes/pretraining/build_instructions.py   # writes recipes/pretraining/data/instructions*.jsonl

(it runs recipes/alignment/build_tang.py first when the Tang data is not built yet).

Four tasks, each an instruction the model must read to know what to answer (the FLAN recipe at gpt-mini's scale):

| task | instruction (prompt) | response | source (licence) | train / test |
|---|---|---|---|---|
| intent | "Which banking request is this? Name its intent.\\n<query>" | the intent, e.g. "card arrival" | BANKING77 train.csv / test.csv (CC BY 4.0) | 3,000 / 200 |
| department | "这位患者应该看哪个科室？\\n<question>" | the department, e.g. "心血管科" | zh_medical_dialogue (MIT), rows drawn seeded | 2,500 / 200 |
| poem | "写一首五言绝句，题目是《<title>》。" (or 七言) | the quatrain, a couplet per line | recipes/alignment/data/tang_sft*.jsonl (Tang poems, MIT; the poems are public domain) | 1,500 / 100 |
| answer | "请以医生的身份回答：<question>" | the doctor's answer, cut after its first sentences (<= 80 characters) | zh_medical_dialogue (MIT) | 1,500 / 50 |

Held out: BANKING77's own test split; the medical rows and Tang quatrains drawn once (seed 0) into train or test, so a
held-out question or title was never an instruction in training. gpt-mini's pretraining corpus holds the BANKING77
training queries and the medical questions and answers as raw text (never the intents or departments), so the
`answer` task's held-out answers are text it has read: its samples show the form, not new knowledge.
"""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[1] / "datasets"
TANG = HERE.parent / "alignment" / "data"
OUT = HERE / "data"
SIZES = {"intent": (3000, 200), "department": (2500, 200), "poem": (1500, 100), "answer": (1500, 50)}


def intent(rng: random.Random) -> tuple[list[dict], list[dict]]:
    def read(name: str) -> list[dict]:
        with open(DATASETS / "banking77" / name, encoding="utf-8", newline="") as fh:
            return [{"prompt": f"Which banking request is this? Name its intent.\n{r['text'].strip()}",
                     "response": r["category"].replace("_", " "), "task": "intent"} for r in csv.DictReader(fh)]

    train, test = read("train.csv"), read("test.csv")
    n_train, n_test = SIZES["intent"]
    return rng.sample(train, n_train), rng.sample(test, n_test)


def first_sentences(text: str, limit: int = 80) -> str:
    """The answer's first sentences, whole, up to `limit` characters (at least the first one, cut at `limit`)."""
    parts = [p for p in re.split(r"(?<=[。！？])", text.strip()) if p]
    out = ""
    for p in parts:
        if out and len(out) + len(p) > limit:
            break
        out += p
    return out[:limit]


def medical(rng: random.Random) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    with open(DATASETS / "zh_medical_dialogue" / "internal_medicine_sample.csv", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["ask"].strip() and r["answer"].strip() and r["department"].strip()]
    seen, unique = set(), []
    for r in rows:  # one row per question: a question asked twice is never on both sides
        if r["ask"].strip() not in seen:
            seen.add(r["ask"].strip())
            unique.append(r)
    rng.shuffle(unique)
    (d_train, d_test), (a_train, a_test) = SIZES["department"], SIZES["answer"]
    test_rows, train_rows = unique[: max(d_test, a_test)], unique[max(d_test, a_test):]

    def dept(r):
        return {"prompt": f"这位患者应该看哪个科室？\n{r['ask'].strip()}", "response": r["department"].strip(),
                "task": "department"}

    def answer(r):
        return {"prompt": f"请以医生的身份回答：{r['ask'].strip()}", "response": first_sentences(r["answer"]),
                "task": "answer"}

    return ([dept(r) for r in train_rows[:d_train]], [dept(r) for r in test_rows[:d_test]],
            [answer(r) for r in train_rows[d_train:d_train + a_train]], [answer(r) for r in test_rows[:a_test]])


def poem(rng: random.Random) -> tuple[list[dict], list[dict]]:
    def read(name: str) -> list[dict]:
        out = []
        for line in (TANG / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            m = re.match(r"^(五言|七言)絕句《(.+)》$", r["prompt"])
            if m:
                out.append({"prompt": f"写一首{m.group(1)}绝句，题目是《{m.group(2)}》。", "response": r["completion"],
                            "task": "poem"})
        return out

    n_train, n_test = SIZES["poem"]
    return rng.sample(read("tang_sft.jsonl"), n_train), rng.sample(read("tang_sft_test.jsonl"), n_test)


def main() -> None:
    if not (TANG / "tang_sft_test.jsonl").exists():  # the quatrains and their held-out split come from the Tang recipe
        subprocess.run([sys.executable, str(HERE.parent / "alignment" / "build_tang.py")], check=True)
    rng = random.Random(0)
    i_train, i_test = intent(rng)
    d_train, d_test, a_train, a_test = medical(rng)
    p_train, p_test = poem(rng)
    train = i_train + d_train + p_train + a_train
    test = i_test + d_test + p_test + a_test
    rng.shuffle(train)
    OUT.mkdir(exist_ok=True)
    for name, rows in (("instructions.jsonl", train), ("instructions_test.jsonl", test)):
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{OUT / name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
