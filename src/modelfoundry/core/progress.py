"""Progress bars for long work (training epochs, k-fold, tune trials, compress stages, profile, crawl, export):
tqdm.auto, so a widget in Jupyter and a text bar in a terminal. Quiet when stderr is a file or a pipe (logs, CI)
unless asked: FOUNDRY_PROGRESS=1 shows bars anywhere, FOUNDRY_PROGRESS=0 hides them everywhere."""

from __future__ import annotations

import os
import sys

ENV = "FOUNDRY_PROGRESS"


def enabled() -> bool:
    asked = os.environ.get(ENV, "").strip().lower()
    if asked in ("1", "true", "yes", "on"):
        return True
    if asked in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules  # a terminal, or a notebook


def bar(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = False, show: bool = True):
    """A tqdm.auto bar, disabled (every call a no-op) when progress is off or `show` is False (another rank)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr,
                disable=not (show and enabled()))
