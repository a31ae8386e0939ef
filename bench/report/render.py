"""The document model written out: report.md (charts referenced) and report.html (one
self-contained file: inline CSS, charts as data URIs, no script, no external reference)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from bench.report import plotting
from bench.report.blocks import Bullets, Pre, Section, Table

# ---------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(table: Table) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if i in table.numeric else "---"
                          for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    notes = ["", *[f"{n}  " for n in table.footnotes]] if table.footnotes else []
    return "\n".join([head, rule, *body, *notes])


def to_markdown(title: str, sections: list[Section], run_dir: Path) -> str:
    """report.md: the same content as the HTML, charts referenced relatively."""
    out = [f"# {title}", ""]
    for section in sections:
        out += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(md_table(block))
            elif isinstance(block, plotting.Chart):
                rel = block.path.relative_to(run_dir).as_posix()
                out += [f"![{block.title}]({rel})", "", f"*{block.caption}*"]
            elif isinstance(block, Pre):
                out += [f"**{block.heading}**", "", "```", block.text, "```"]
            elif isinstance(block, Bullets):
                out += [f"- {_md_cell(item)}" for item in block.items]
            else:
                out.append(str(block))
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- HTML

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1280px; padding: 0 1.5em; color: #1d1d1f; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; } h2 { margin-top: 1.8em;
border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right;
white-space: nowrap; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
table.scorecard { font-size: 0.8em; width: 100%; }
table.scorecard th { font-weight: 600; font-size: 0.95em; vertical-align: bottom; }
table.scorecard td:first-child { font-weight: 600; white-space: nowrap; }
table.scorecard td { padding: 0.1em 0.4em; line-height: 1.2; }
ul.answers li { margin: 0.25em 0; }
.wide { overflow-x: auto; max-width: 100%; }
.foot { font-size: 0.85em; color: #555; margin: 0.1em 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; font-weight: 600; }
"""


def html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    rows = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, text in enumerate(row):
            attrs = ' class="num"' if c in table.numeric else ""
            if (r, c) in table.styles:
                attrs += f' style="{esc(table.styles[(r, c)])}"'
            if (r, c) in table.titles:
                attrs += f' title="{esc(table.titles[(r, c)])}"'
            cells.append(f"<td{attrs}>{esc(str(text)).replace(chr(10), '<br>')}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f'<p class="foot">{esc(n)}</p>' for n in table.footnotes)
    css = f' class="{esc(table.css_class)}"' if table.css_class else ""
    # a wide table scrolls inside its own box, never the page
    return (f'<div class="wide"><table{css}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{notes}")


def html_chart(chart: plotting.Chart) -> str:
    data = base64.b64encode(chart.path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(chart.title)}. {html.escape(chart.caption)}"
            "</figcaption></figure>")


def html_block(block: Any) -> str:
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, plotting.Chart):
        return html_chart(block)
    if isinstance(block, Pre):
        return f"<p><b>{html.escape(block.heading)}</b></p><pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        return f'<ul class="answers">{items}</ul>'
    return f"<p>{html.escape(str(block))}</p>"


def to_html(title: str, sections: list[Section]) -> str:
    """report.html: self-contained (inline CSS, images as data URIs, no external reference)."""
    parts = []
    for section in sections:
        heading = html.escape(section.title)
        body = "\n".join(html_block(b) for b in section.blocks)
        if section.collapsed:
            parts.append(f"<h{section.level}>{heading}</h{section.level}>"
                         f"<details><summary>show</summary>{body}</details>")
        else:
            parts.append(f"<h{section.level}>{heading}</h{section.level}>\n{body}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
