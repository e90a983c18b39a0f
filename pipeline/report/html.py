"""HTML building blocks of the reports: escaping, tables, data URIs, and the page around them.

A report is one file a person can mail or archive: the CSS is inline, every image is a data URI, and the only
script is a few lines that sort a table when its header is clicked. Nothing is fetched when the page opens.
Every text that comes from outside (file names, error messages, config values) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
from collections.abc import Iterable, Sequence

_CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde1e8; --bad: #c0392b; --accent: #2b6cb0; --warn: #a05a00;
        --warn-bg: #fff4dc; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 24px 28px 48px; color: var(--ink); background: #fff;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; }
p.meta, .note { color: var(--muted); margin: 2px 0; }
code, pre { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
pre { background: #f6f7f9; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 420px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
.card span { color: var(--muted); font-size: 12px; }
.card.bad b { color: var(--bad); }
.card.warn b, b.warn { color: var(--warn); }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.row > * { flex: 0 1 auto; max-width: 100%; }
img.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 8px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { background: #f3f5f8; font-weight: 600; white-space: nowrap; position: sticky; top: 0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable { font-size: 13px; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #a0a7b4; }
table.sortable th[data-dir=asc]::after { content: " \\2191"; color: var(--ink); }
table.sortable th[data-dir=desc]::after { content: " \\2193"; color: var(--ink); }
tr.failed td { color: var(--bad); }
tr.unfamiliar td { background: var(--warn-bg); }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px; font-weight: 600;
         white-space: nowrap; color: var(--warn); background: var(--warn-bg); border: 1px solid #f0c36d; }
.badge.plain { color: var(--muted); background: #f3f5f8; border-color: var(--line); }
td.name { max-width: 380px; overflow-wrap: break-word; }
td.error { max-width: 420px; overflow-wrap: break-word; font-size: 12px; }
td.range { white-space: nowrap; }
svg.spark { display: block; width: 160px; height: 28px; }
svg.spark path { fill: none; stroke: var(--accent); stroke-width: 1.2; vector-effect: non-scaling-stroke; }
svg.spark path.band { fill: var(--accent); fill-opacity: 0.22; stroke: none; }
svg.spark circle { fill: var(--bad); }
svg.ci { display: inline-block; width: 64px; height: 12px; margin-left: 6px; vertical-align: middle; }
svg.ci path { stroke: var(--ink); stroke-width: 1.2; vector-effect: non-scaling-stroke; }
svg.ci circle { fill: var(--accent); }
.worsts { display: flex; flex-wrap: wrap; gap: 6px 36px; }
.worst { margin: 6px 0 12px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; }
figure img { display: block; height: 96px; width: auto; border-radius: 3px; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; text-align: center; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
"""

# Click a header of a table.sortable: sort its rows by that column's data-v (else the cell text); numeric
# columns (th.n) compare as numbers with empty cells last either way. A row whose last cell spans the columns
# after it (a failed video's error) has no cell of those columns: it sorts as empty there.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, i) => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0], up = th.dataset.dir !== "asc";
  table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = up ? "asc" : "desc";
  const num = th.classList.contains("n"), sign = up ? 1 : -1;
  const key = row => { const c = row.cells[i], v = c ? c.dataset.v ?? c.textContent : "";
                       return num ? (v === "" ? NaN : Number(v)) : v.toLowerCase(); };
  const rows = Array.from(body.rows, row => [key(row), row]);
  rows.sort(([a], [b]) => num ? (isNaN(a) ? 1 : isNaN(b) ? -1 : sign * (a - b)) : sign * a.localeCompare(b));
  const sorted = document.createDocumentFragment();
  rows.forEach(([, row]) => sorted.appendChild(row));
  body.appendChild(sorted);
}));
"""


def esc(value: object) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    """``data`` embedded as a ``data:`` URI, so an image travels inside the page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def number(value: object, digits: int = 4) -> str:
    """A number for a table cell: ``digits`` significant digits, integers as they are, empty when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    return str(int(value)) if isinstance(value, float) else esc(value)


def cell(content: str, *, sort: object = None, cls: str = "", span: int = 1) -> str:
    """One ``<td>`` of already-escaped ``content``; ``sort`` is the value the sort script compares; ``span``
    columns wide (only a row's last cell may span: the sort script reads cells by position)."""
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' colspan="{span}"' if span > 1 else ""
    attrs += f' data-v="{esc(sort)}"' if sort is not None else ""
    return f"<td{attrs}>{content}</td>"


def data_table(header: Sequence[str], rows: Iterable[str], *, numeric: Sequence[bool] = (), sortable: bool = False,
          row_classes: Iterable[str] | None = None) -> str:
    """A table of ``rows`` (each the joined ``<td>`` cells of one row); ``numeric`` right-aligns columns."""
    numeric = list(numeric) + [False] * (len(header) - len(numeric))
    head = "".join(f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in zip(header, numeric))
    classes = row_classes if row_classes is not None else itertools.repeat("")
    body = "\n".join(f'<tr class="{c}">{r}</tr>' if c else f"<tr>{r}</tr>" for r, c in zip(rows, classes))
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def plain_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small table of plain values (numbers formatted by :func:`number`, right-aligned)."""
    rows = [list(r) for r in rows]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)
               for i in range(len(header))]
    cells = ("".join(cell(number(v), cls="n") if n else cell(esc(v)) for v, n in zip(r, numeric)) for r in rows)
    return data_table(header, cells, numeric=numeric)


def image(uri: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{esc(alt)}">'


def page(title: str, body: str, *, sortable: bool = False) -> str:
    """The whole HTML document: ``body`` (already HTML) under ``title``, with the sort script when asked."""
    script = f"<script>{_SORT_SCRIPT}</script>" if sortable else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n{script}</body></html>\n")
