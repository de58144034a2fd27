"""Build the Tang-quatrain alignment data (JSONL) from the Tang poems shipped in datasets/tang_poems (MIT; the poems
are public domain):

    .venv/bin/python recipes/alignment/build_tang.py      # writes recipes/alignment/data/*.jsonl

A quatrain (絕句) is 4 verses of 5 (五言) or 7 (七言) characters; the source stores it as two couplets,
"床前明月光，疑是地上霜。". Every quatrain is drawn once (seeded) into train or test (200 held out), so a held-out title
was never a training prompt (held-out titles are ones no other poem carries):

| file | rows | columns | for |
|---|---|---|---|
| tang_sft.jsonl / tang_sft_test.jsonl | quatrains (train: also the first two couplets of the 4-couplet regular poems, 律詩, the same verse form) | prompt ("五言絕句《title》"), completion (the poem, one couplet per line) | align.method sft |
| tang_prompts.jsonl / tang_prompts_test.jsonl | the same prompts | prompt, chars (5 or 7) | align.method grpo (chars reaches the reward function) |
| tang_pairs.jsonl / tang_pairs_test.jsonl | quatrains | prompt, chosen (the real poem), rejected (the same poem with its form broken) | dpo, reward |
| tang_corpus.jsonl | every Tang poem but the held-out quatrains (and any poem sharing a couplet with one) | text ("《title》" and the poem's lines) | tang_char.yaml: pretraining a character-level base |

The pairs are constructed, not human judgements: the rejected reply is the real poem broken in one of four ways
(a verse loses its last character, two verses run together without their comma, a fifth verse repeats the
first, or the couplets lose their line break and punctuation), so a preference for the chosen reply is a preference
for the form."""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
POEMS = HERE.parents[1] / "datasets" / "tang_poems"
HAN = re.compile(r"^[\u3400-\u9fff]+$")
HELD_OUT = 200


def all_poems():
    for f in [POEMS / "tang300.json"] + sorted(POEMS.glob("poet.tang.*.json")):
        yield from json.loads(f.read_text(encoding="utf-8"))


def quatrains(couplets: int = 2):
    """(title, verse length, [couplet, couplet]) of each quatrain; couplets=4 and more: the first two couplets of the
    regular (律詩-shaped) poems of that many couplets, whose verses have the same form."""
    seen = set()
    for poem in all_poems():
        lines = [p.strip() for p in poem.get("paragraphs", [])]
        if len(lines) != couplets or not poem.get("title"):
            continue
        if not all(re.fullmatch(r"[^，。]+，[^，。]+。", x) for x in lines):
            continue
        lines = lines[:2]
        verses = [v for line in lines for v in re.split(r"[，。]", line) if v]
        if (len(verses) != 4 or not all(HAN.match(v) for v in verses) or len({len(v) for v in verses}) != 1
                or len(verses[0]) not in (5, 7) or not all(re.fullmatch(r"[^，。]+，[^，。]+。", x) for x in lines)):
            continue
        key = "".join(lines)
        if key in seen:
            continue
        seen.add(key)
        yield poem["title"].split(" ")[-1], len(verses[0]), lines


def broken(lines: list[str], rng: random.Random) -> str:
    verses = [v for line in lines for v in re.split(r"[，。]", line) if v]
    way = rng.randrange(4)
    if way == 0:  # a verse loses its last character
        i = rng.randrange(4)
        verses[i] = verses[i][:-1]
        return f"{verses[0]}，{verses[1]}。\n{verses[2]}，{verses[3]}。"
    if way == 1:  # two verses run together
        return f"{verses[0]}{verses[1]}。\n{verses[2]}，{verses[3]}。"
    if way == 2:  # a fifth verse
        return f"{verses[0]}，{verses[1]}。\n{verses[2]}，{verses[3]}。\n{verses[0]}。"
    return "".join(verses)  # no breaks, no punctuation


def main(out: Path = HERE / "data") -> None:
    rng = random.Random(0)
    poems = list(quatrains())
    rng.shuffle(poems)
    # held out: 200 quatrains whose title no other poem (quatrain or excerpt) carries, so 200 distinct test prompts
    count = Counter(p[0] for p in poems + list(quatrains(4)))
    unique = [p for p in poems if count[p[0]] == 1]
    test = unique[:HELD_OUT]
    poems = test + [p for p in poems if p not in test]
    held_out = {p[0] for p in test}
    # the first two couplets of the 4-couplet regular poems (律詩) teach the same form to the SFT step (train only;
    # a title held out stays out)
    excerpts = [p for p in quatrains(4) if p[0] not in held_out]
    splits = {"_test": poems[:HELD_OUT], "": poems[HELD_OUT:]}
    out.mkdir(parents=True, exist_ok=True)
    for suffix, rows in splits.items():
        sft, prompts, pairs = [], [], []
        for title, n, lines in rows:
            prompt = f"{'五' if n == 5 else '七'}言絕句《{title}》"
            poem = "\n".join(lines)
            sft.append({"prompt": prompt, "completion": poem})
            prompts.append({"prompt": prompt, "chars": n})
            pairs.append({"prompt": prompt, "chosen": poem, "rejected": broken(lines, rng)})
        if not suffix:
            sft += [{"prompt": f"{'五' if n == 5 else '七'}言絕句《{title}》", "completion": "\n".join(lines)}
                    for title, n, lines in excerpts]
        for name, data in (("tang_sft", sft), ("tang_prompts", prompts), ("tang_pairs", pairs)):
            path = out / f"{name}{suffix}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
            print(f"{path}: {len(data)} rows")
    # the corpus of the character-level base (tang_char.yaml): every shipped Tang poem as a document, "《title》" and
    # its lines; the held-out quatrains, and any poem sharing a couplet with one, left out
    held_couplets = {c for _, _, lines in test for c in lines}
    docs, seen = [], set()
    for poem in all_poems():
        lines = [p.strip() for p in poem.get("paragraphs", []) if p.strip()]
        text = f"《{poem.get('title', '').split(' ')[-1]}》\n" + "\n".join(lines)
        if lines and not held_couplets.intersection(lines) and text not in seen:
            seen.add(text)
            docs.append({"text": text})
    path = out / "tang_corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in docs), encoding="utf-8")
    print(f"{path}: {len(docs)} poems")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "data")
