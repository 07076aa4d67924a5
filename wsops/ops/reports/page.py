"""The page every report shares (pure): one self-contained HTML file, readable offline.

No script runs and nothing is fetched: styles are inline, charts are inline SVG
(``charts``), and a Content-Security-Policy forbids every other source, so the
file can be attached to an incident ticket and opened anywhere. The command's ``--json``
output is embedded as ``<script type="application/json" id="report-data">`` (data, never run);
each figure shown carries ``data-key`` (its JSON Pointer there) and ``data-value`` (the number it
shows), which is how the tests hold the page to the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from wsops.ops.reports.charts import data_attrs, pointer

__all__ = ["Cell", "charts", "command_section", "data_attrs", "document", "figure", "figures",
           "note", "pointer", "pre", "section", "table"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
DATA_ID = "report-data"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;margin:0;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#d0d7de}
main{padding:8px 24px 32px;max-width:1360px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:14px 0;
padding:10px 16px;overflow-x:auto}
section h2{font-size:16px;margin:4px 0 10px}
.figs{display:flex;flex-wrap:wrap;gap:10px}
.fig{border:1px solid #d0d7de;border-radius:6px;padding:6px 12px;min-width:110px}
.fig b{display:block;font-size:20px}.fig span{color:#57606a;font-size:12px}
.fig.bad{border-color:#d1242f;background:#fff5f5}.fig.good{border-color:#1a7f37}
.charts{display:flex;flex-wrap:wrap;gap:8px 24px}
figure.chart{margin:4px 0}figcaption{font-weight:600;margin-bottom:2px}
figure.small svg{width:300px;height:auto}
.key{font-weight:400;margin-left:12px;color:#57606a;font-size:12px}
.key i{display:inline-block;width:16px;border-top:2px solid;margin:0 4px 3px 0}
.key i.dash{border-top-style:dashed}
svg text{font-size:11px;fill:#57606a}svg .ytick{text-anchor:end;dominant-baseline:middle}
svg .xtick{text-anchor:middle}svg .xlabel{text-anchor:end}
svg .plot{fill:#fff;stroke:#d0d7de}svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}
svg polyline{fill:none;stroke-width:1.8}svg .mark line{stroke-dasharray:4 3}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #eaeef2;padding:3px 10px;text-align:left;vertical-align:top}
th{color:#57606a;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#d1242f;font-weight:600}.good{color:#1a7f37;font-weight:600}
.note{color:#57606a}.warn{color:#9a6700}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px;
white-space:pre-wrap;word-break:break-all}
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, and where its number comes from in the data."""

    text: str
    key: str = ""
    value: Any = None
    number: bool = False
    cls: str = ""


def figure(label: str, text: str, key: str = "", value: Any = None, tone: str = "") -> str:
    """A headline figure: big ``text`` over a small ``label``; ``tone`` "bad" or "good"."""
    cls = f"fig {tone}".strip()
    return (f'<div class="{cls}"><b{data_attrs(key, value)}>{escape(text)}</b>'
            f"<span>{escape(label)}</span></div>")


def figures(*figs: str) -> str:
    return f'<div class="figs">{"".join(figs)}</div>'


def charts(*parts: str) -> str:
    return f'<div class="charts">{"".join(parts)}</div>'


def _cell(c: Cell | str, tag: str = "td") -> str:
    if isinstance(c, str):
        return f"<{tag}>{escape(c)}</{tag}>"
    cls = " ".join(x for x in ("n" if c.number else "", c.cls) if x)
    attr = f' class="{cls}"' if cls else ""
    return f"<{tag}{attr}{data_attrs(c.key, c.value)}>{escape(c.text)}</{tag}>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | str]],
          caption: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(_cell(c) for c in row)}</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str, tone: str = "note") -> str:
    """A line of prose: ``tone`` "note", "warn", "bad" or "good"."""
    return f'<p class="{escape(tone)}">{escape(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def section(title: str, *parts: str, id_: str = "") -> str:
    ident = f' id="{escape(id_)}"' if id_ else ""
    return f"<section{ident}><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def document(title: str, subtitle: str, sections: Sequence[str],
             data: Mapping[str, Any]) -> str:
    """The whole file: header, ``sections`` in order, ``data`` embedded as JSON."""
    # No "<" inside the script element: nothing in the data can end it or open a comment.
    blob = json.dumps(data, sort_keys=True).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<main>{''.join(sections)}</main>"
        f'<script type="application/json" id="{DATA_ID}">{blob}</script>'
        "</body></html>\n")


def command_section(command: str | None, versions: Mapping[str, Any] | None = None,
                    extra: Sequence[str] = ()) -> str:
    """How the report was made: the exact command (tokens hidden) and the versions."""
    parts = [pre(command or "(the command line was not recorded)")]
    if versions:
        parts.append(table(["component", "version"], [
            (k, Cell(str(v), pointer("versions", k), v)) for k, v in versions.items()]))
    parts.extend(extra)
    return section("How this report was made", *parts, id_="command")
