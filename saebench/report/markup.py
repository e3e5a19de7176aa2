"""HTML building blocks. Every piece of text that reaches the page goes through `h` (or is
JSON inside a data <script> whose `<`, `>` and `&` are \\u-escaped): metric names, reasons and
the contexts' tokens are arbitrary text."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd

VERDICT_CLASSES = {"better": "good", "worse": "bad", "mixed": "mixed", "within noise": "noise"}


def h(value: Any) -> str:
    """Text escaped for HTML content and attribute values."""
    return escape(str(value), quote=True)


def number(value: Any) -> str:
    """A cell's text: floats at 4 significant digits, NaN as an empty cell."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def table(
    frame: pd.DataFrame,
    *,
    caption: str | None = None,
    css: str = "",
    verdicts: bool = False,
) -> str:
    """A DataFrame as a static <table> (readable without JS). `verdicts`: colour cells whose
    text ends with a calibration verdict (better / worse / mixed / within noise)."""
    if frame.empty:
        return '<p class="muted">(no rows)</p>'
    head = "".join(f'<th scope="col">{h(c)}</th>' for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = number(value)
            klass = ""
            if verdicts:
                for verdict, name in VERDICT_CLASSES.items():
                    if text.endswith(verdict):
                        klass = f' class="{name}"'
            cells.append(f"<td{klass}>{h(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{h(caption)}</caption>" if caption else ""
    return (
        f'<div class="tw"><table class="{h(css)}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def key_values(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (name, value) pairs."""
    body = "".join(f'<tr><th scope="row">{h(k)}</th><td>{h(v)}</td></tr>' for k, v in rows)
    return f'<div class="tw"><table class="kv"><tbody>{body}</tbody></table></div>'


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """One line of results.md's Markdown (**bold**, `code`) as escaped HTML."""
    escaped = h(text)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def markdown_lines(lines: Sequence[str]) -> str:
    """The small Markdown subset results.md's summary functions write: `- ` list items,
    `> ` notes and paragraphs ("## " headings are left to the page's own sections)."""
    out: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in lines:
        if line.startswith("- "):
            items.append(inline(line[2:]))
            continue
        flush()
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("> "):
            out.append(f'<p class="note">{inline(line[2:])}</p>')
        else:
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "".join(out)


def section(anchor: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{h(intro)}</p>' if intro else ""
    return f'<section id="{h(anchor)}" class="rs"><h2>{h(title)}</h2>{intro_html}{body}</section>'


def details(summary: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{h(summary)}</summary>{body}</details>"


def json_text(obj: Any) -> str:
    """Compact JSON safe inside a <script> element: no `</script>`, `<!--` or `&` survives."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except ValueError:  # NaN or infinity somewhere: JSON has no such number, null it is
        text = json.dumps(finite(obj), separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def json_script(element_id: str, obj: Any) -> str:
    """Data for the page's script, never executed: <script type="application/json">."""
    return f'<script type="application/json" id="{h(element_id)}">{json_text(obj)}</script>'


def image(data: bytes, mime: str, alt: str) -> str:
    """An inline image (a data: URI, so the page needs no file beside it)."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{h(alt)}" src="data:{h(mime)};base64,{encoded}">'


def link_list(entries: Mapping[str, str]) -> str:
    """In-page navigation: {anchor: label} (fragment links only)."""
    return (
        '<nav aria-label="sections"><ul>'
        + "".join(f'<li><a href="#{h(a)}">{h(t)}</a></li>' for a, t in entries.items())
        + "</ul></nav>"
    )
