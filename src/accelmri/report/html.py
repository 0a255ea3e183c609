"""One self-contained HTML page: the result tables and the example figures embedded as base64 ``data:`` URIs.

The page loads nothing: no scripts, fonts, style sheets or images from elsewhere (the CSS is inline), so it can be
mailed, archived or opened offline. Every text from the inputs is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from accelmri import __version__
from accelmri.report.tables import ResultsTable, describe, difference_rows, summary_rows, volume_rows

__all__ = ["html_table", "png_data_uri", "render_html", "render_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: 0.9em; }
"""


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """An HTML table, every cell escaped: the first ``text_columns`` columns as text, the others right-aligned."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td{'' if i < text_columns else ' class=num'}>{html.escape(cell)}</td>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(title: str, table: ResultsTable | None, figures: Sequence[Path], sources: Sequence[Path]) -> str:
    """The report page.

    Args:
        title: page title.
        table: the results (``None``: figures only).
        figures: PNG files, embedded in this order under their file names.
        sources: the evaluation folders the report was made from (listed on the page).
    """
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=note>accelmri {html.escape(__version__)}; from "
             + ", ".join(f"<code>{html.escape(str(s))}</code>" for s in sources) + "</p>"]
    if table is not None:
        parts += ["<h2>Summary</h2>", f"<p>{html.escape(describe(table))}</p>", html_table(*summary_rows(table), 2)]
        if table.comparisons:
            parts += [f"<p>Mean differences against {html.escape(table.baseline)} (method − baseline, common "
                      "volumes):</p>", html_table(*difference_rows(table), 1)]
        parts += ["<details><summary>Per-volume scores</summary>", html_table(*volume_rows(table), 2), "</details>"]
    if figures:
        parts.append("<h2>Examples</h2>")
        parts.append("<p class=note>Columns: input, each method (PSNR on the slice), ground truth. Rows: the slice "
                     "(crop outlined), the zoomed crop, |method − ground truth| on one colour scale.</p>")
        for path in figures:
            name = html.escape(path.name)
            parts.append(f"<figure><img alt=\"{name}\" src=\"{png_data_uri(path.read_bytes())}\">"
                         f"<figcaption>{name}</figcaption></figure>")
    return render_page(title, parts)


def render_page(title: str, parts: Sequence[str]) -> str:
    """A self-contained page (inline CSS, nothing loaded from elsewhere) of HTML ``parts``, already escaped,
    under ``<title>`` ``title`` (escaped here)."""
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>{html.escape(title)}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
