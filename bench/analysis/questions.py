"""What a case asks, in words: the workload it stands for ("small requests", "many
connections", "a CPU-heavy handler"...), read from what the case is (its group, mix, mode and
connections), never from its name; and the special workloads judged by a figure of their own
(churn, slowloris, head-of-line blocking).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.analysis.frames import C10K_GROUP
from clients.mix import MixError, parse_mix

MANY_CONNECTIONS = 500  # echo at this many connections or more is "many connections"
SMALL_PAYLOAD = 1024  # bytes: an echo this size or smaller is a "small request"


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def requests_words(mix: str) -> str:
    """What a mix's requests are, in words: 'small requests', 'CPU-heavy handler (WORK 2,000)'."""
    try:
        entries = parse_mix(str(mix))
    except MixError:
        return f"requests {mix}"
    ops = {e.op for e in entries}
    if ops == {"echo"}:
        size = max(e.arg for e in entries)
        return "small requests" if size <= SMALL_PAYLOAD else f"{size:,}-byte requests"
    if ops == {"work"}:
        return f"CPU-heavy handler (WORK {max(e.arg for e in entries):,})"
    if ops == {"sleep"}:
        return f"slow downstream I/O ({max(e.arg for e in entries) / 1000:g} ms)"
    return f"mixed requests ({mix})"


def _count_of(row: Any, name: str) -> int:
    """A whole-number field of a case row (0 when absent or NaN)."""
    try:
        value = float(getattr(row, name, 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(value) if value == value else 0


def case_words(row: Any) -> str:
    """A case as a workload name, from its fields: group, mix, connections, pipeline."""
    connections, idle = _count_of(row, "connections"), _count_of(row, "idle_connections")
    what = requests_words(row.mix)
    pipeline = _count_of(row, "pipeline")
    extra = f", pipeline {pipeline}" if pipeline > 1 else ""
    if str(row.group) == C10K_GROUP:
        return f"C10K ({connections + idle:,} connections, {connections:,} busy)"
    if what == "small requests" and connections >= MANY_CONNECTIONS:
        return f"many connections ({connections:,}, small requests{extra})"
    return f"{what}, {plural(connections, 'connection')}{extra}"


CHURN, SLOWLORIS, HOL = "churn", "slowloris", "hol"
# a workload case's figure, which way is better, and its name
SPECIAL = {CHURN: ("cpu_us_per_connection", "connection churn"),
           SLOWLORIS: ("p99_us", "slow clients holding connections"),
           HOL: ("reference_kind_p99_us", "head-of-line blocking")}


def workload_kind(row: Any) -> str | None:
    """'churn' (requests per connection), 'slowloris' (slow connections held) or 'hol' (a
    mix of several kinds with a reference case), from a case's fields; None otherwise."""
    if _count_of(row, "requests_per_connection") > 0:
        return CHURN
    if _count_of(row, "slowloris_connections") > 0:
        return SLOWLORIS
    reference = getattr(row, "reference_case", None)
    if isinstance(reference, str) and reference and len(_entries(row.mix)) > 1:
        return HOL
    return None


def _entries(mix: Any) -> list[Any]:
    try:
        return list(parse_mix(str(mix)))
    except MixError:
        return []


def special_words(kind: str, row: Any) -> str:
    """A workload case's name: 'connection churn (1 request per connection, 16 connections)'."""
    connections = plural(_count_of(row, "connections"), "connection")
    if kind == CHURN:
        per = plural(_count_of(row, "requests_per_connection"), "request")
        return f"{SPECIAL[kind][1]} ({per} per connection, {connections})"
    if kind == SLOWLORIS:
        held = _count_of(row, "slowloris_connections")
        return f"{SPECIAL[kind][1]} ({held:,} held, {connections} measured)"
    return f"{SPECIAL[kind][1]} ({row.mix}, {connections})"


def cheap_requests(row: Any, cases: pd.DataFrame) -> str:
    """The requests a head-of-line case's reference makes, by name ('ECHO')."""
    reference = getattr(row, "reference_case", None)
    mix = cases.loc[reference, "mix"] if reference in cases.index else row.mix
    ops = sorted({e.op.upper() for e in _entries(mix)})
    return "/".join(ops) or "cheap"
