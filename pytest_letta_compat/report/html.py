"""The one HTML page skeleton of every report this tool writes (the compatibility grid, the
upgrade rehearsal, and the grid with a run's rehearsals joined to it): self-contained, one
stylesheet, cells coloured by outcome. Callers escape what they put in; ``cell`` does it for them."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

esc = html.escape

# the grid's outcomes, and the rehearsal's verdicts in the same colours
COLOUR = {"failed": "#f8b4b4", "error": "#f8b4b4", "xpassed": "#fcd9a8", "passed": "#b7e4c7",
          "xfailed": "#fff3b0", "skipped": "#e5e7eb",
          "intact": "#b7e4c7", "works": "#b7e4c7", "changed": "#fcd9a8", "hidden": "#e5e7eb",
          "lost": "#f8b4b4", "fails": "#f8b4b4"}

STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;color:#111}
table{border-collapse:collapse;margin:.6rem 0} th,td{border:1px solid #999;padding:.4rem .8rem;text-align:center}
tbody th{text-align:left;font-family:monospace} td.text{text-align:left}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:30rem}
section{margin-top:2rem;border-top:2px solid #ddd}"""


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body`` (already HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
{STYLE}
</style></head><body>
<h1>{esc(title)}</h1>
{body}
</body></html>
"""


def cell(text: str, outcome: str | None = None, *, href: str | None = None, text_cell: bool = False) -> str:
    """One ``<td>``: ``text`` escaped, coloured by ``outcome`` (a grid outcome or a rehearsal verdict)."""
    label = esc(text)
    if href:
        label = f'<a href="{esc(href)}">{label}</a>'
    attrs = f' style="background:{COLOUR[outcome]}"' if outcome in COLOUR else ""
    if text_cell:
        attrs += ' class="text"'
    return f"<td{attrs}>{label}</td>"


def table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], *, table_id: str | None = None) -> str:
    """A table: ``headers`` (text), then rows of (row header text, cells made by ``cell``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>" for name, cells in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
