"""Figures: matplotlib on the Agg backend, saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

# fonts that draw Chinese, tried in this order when installed (matplotlib's default DejaVu Sans draws none of it)
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (deferred: matplotlib is slow to import and only reports need it),
    with an installed CJK font first in line, so that Chinese labels are drawn rather than boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = [f for f in CJK_FONTS if f in installed]
    if found and matplotlib.rcParams["font.sans-serif"][0] != found[0]:
        matplotlib.rcParams["font.sans-serif"] = [*found, *matplotlib.rcParams["font.sans-serif"]]
    return plt


def tick_labels(labels: list[str]) -> tuple[list[str], str | None]:
    """Labels the figure's font can draw, as they are; otherwise (Chinese class names with no CJK font installed)
    numbers, and the key that says which is which ("0 = 心血管科, 1 = ..."), for the caption beside the image."""
    import matplotlib
    from matplotlib import font_manager, ft2font

    font = ft2font.FT2Font(font_manager.findfont(matplotlib.rcParams["font.sans-serif"][0]))
    if all(font.get_char_index(ord(ch)) for label in labels for ch in label if not ch.isspace()):
        return labels, None
    return [str(i) for i in range(len(labels))], ", ".join(f"{i} = {label}" for i, label in enumerate(labels))


def save_figure(fig, path: Path, dpi: int = 90) -> None:
    """A matplotlib figure as PNG, written atomically (temporary name, then rename), then closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")  # two tune workers may plot at once
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
