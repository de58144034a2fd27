"""The one HTML page the reports share (the run report, the causal-LM report, the data report, the compression
report): a plain self-contained document, no scripts, every value escaped by the caller."""

from __future__ import annotations

import html


def page(title: str, heading: str, body: str, *, subtitle: str = "", width: int = 1000, align: str = "right",
         compact: bool = False, wrap: bool = False) -> str:
    """A whole HTML document. title and heading are escaped here; subtitle (after the heading, smaller) too; body
    is HTML the caller built and escaped. align: table cells' text alignment; compact: smaller tables (wide data
    reports); wrap: keep line breaks inside cells (generated text)."""
    cell = "3px 7px" if compact else "4px 8px"
    cell_css = f"border:1px solid #ccc;padding:{cell}" + (f";text-align:{align}" if align else "") + \
               (";white-space:pre-wrap" if wrap else "")
    small = f" <small>{html.escape(subtitle)}</small>" if subtitle else ""
    return (f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:{width}px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0{';font-size:90%' if compact else ''}}}td,th{{{cell_css}}}
.scroll{{overflow-x:auto;max-width:100%}}img{{max-width:100%}}summary h2{{display:inline}}summary{{cursor:pointer;margin:1em 0}}
.headline{{background:#f4f6f8;border-left:4px solid #2563eb;padding:0.4em 1em;margin:1em 0}}
.flags li{{color:#9a3412}}p,li{{overflow-wrap:anywhere}}
@media print{{body{{max-width:none;margin:0}}details::details-content{{content-visibility:visible;display:contents}}
img,table{{break-inside:avoid}}}}</style></head><body>
<h1>{html.escape(heading)}{small}</h1>
{body}
</body></html>""")


def table(rows: list[dict]) -> str:
    """Rows of {column: value} as an HTML table (floats to 4 decimals), every value escaped; '' for no rows."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
