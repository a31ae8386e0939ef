"""A probe record as rows and columns, for a report section (the X-ray) and the terminal.

``xray_rows(record)`` is the report's entry point: one row per model and case, with
instructions and system calls per request, the calls by name in one readable cell, and one
``sys_<name>`` column per system call seen anywhere (for CSV), most frequent first.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

Row = dict[str, Any]
BASE_COLUMNS = ["model", "case", "instructions_per_request", "syscalls_per_request",
                "syscalls_by_name", "note"]


def by_name(calls: dict[str, float]) -> str:
    """``epoll_wait 1 · recvfrom 1 · sendto 1``: the calls per request, most first."""
    named = sorted(((v, k) for k, v in calls.items() if k != "total"), key=lambda p: (-p[0], p[1]))
    return " · ".join(f"{name} {value:g}" for value, name in named)


def xray_rows(record: dict[str, Any]) -> tuple[list[str], list[Row]]:
    """(columns, rows) of a probe record (``python -m bench cost --json``)."""
    rows: list[Row] = []
    frequency: Counter[str] = Counter()
    for model, entry in record.get("models", {}).items():
        for case in record.get("cases", {}):
            figures = entry.get("cases", {}).get(case, {})
            calls = figures.get("syscalls_per_request", {})
            note = entry.get("skipped", {}).get(case) or ("" if figures else entry.get("error")
                                                           or "not measured")
            row: Row = {"model": model, "case": case,
                        "instructions_per_request": figures.get("instructions_per_request"),
                        "syscalls_per_request": calls.get("total"),
                        "syscalls_by_name": by_name(calls), "note": note or ""}
            for name, value in calls.items():
                if name != "total":
                    row[f"sys_{name}"] = value
                    frequency[name] += 1
            rows.append(row)
    extra = [f"sys_{name}" for name, _ in frequency.most_common()]
    return BASE_COLUMNS + extra, rows


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table_rows(record: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The terminal table's columns and rows (strings, short headings)."""
    _columns, rows = xray_rows(record)
    shown = []
    for row in rows:
        shown.append({"model": row["model"], "case": row["case"],
                      "instructions": _number(row["instructions_per_request"], 0),
                      "syscalls": _number(row["syscalls_per_request"], 2),
                      "system calls by name, per request": row["syscalls_by_name"]
                      or row["note"]})
    return ["model", "case", "instructions", "syscalls", "system calls by name, per request"], shown
