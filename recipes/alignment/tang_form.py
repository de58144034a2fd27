"""The Tang-quatrain form reward (align.rewards `function: tang_form.py:form`): 1.0 for a reply that is exactly four
verses of the asked length (5 or 7 Chinese characters, the prompt's `chars` column), each ending in a comma or full
stop; partial credit otherwise, so that the policy has a slope to climb. gpt-mini's tokenizer normalises text with
NFKC, which turns the full-width comma "，" into ",": both count.

`variety` (a second reward beside it) is the share of distinct characters among a reply's Chinese characters: a real
quatrain scores about 0.9, the reward hack "江江江江江江江，..." about 0.1. Form alone is hacked exactly so."""

from __future__ import annotations

import re

VERSE_END = re.compile(r"[，,。.！!？?；;]")
HAN = re.compile(r"^[\u3400-\u9fff]+$")


def score(reply: str, chars: int) -> float:
    text = reply.strip()
    if not text:
        return 0.0
    verses = [v.strip() for v in VERSE_END.split(text.replace("\n", ""))]
    ends_clean = verses[-1] == ""  # the reply ends with a punctuation mark
    verses = [v for v in verses if v]
    good = sum(bool(HAN.match(v)) and len(v) == chars for v in verses[:4])
    exact = len(verses) == 4 and good == 4 and ends_clean
    return 1.0 if exact else 0.2 * good - 0.1 * max(0, len(verses) - 4) + (0.1 if len(verses) == 4 else 0.0)


def form(completions, chars=None, **_) -> list[float]:
    chars = chars or [5] * len(completions)
    return [score(c, int(n)) for c, n in zip(completions, chars)]


def variety(completions, **_) -> list[float]:
    out = []
    for c in completions:
        han = [ch for ch in c if "\u3400" <= ch <= "\u9fff"]
        out.append(len(set(han)) / len(han) if han else 0.0)
    return out
