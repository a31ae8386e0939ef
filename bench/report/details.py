"""The report's detail sections: per-case tables (with ratios to native), equal-load cases,
sweeps, interpreters, C10K, the trials with figures left out, failures, and every trial."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import significance
from bench.analysis.frames import C10K_GROUP, Run, case_table
from bench.analysis.sweeps import SweepResult
from bench.analysis.validity import MARK_FAILED, MARK_NOTES, ok_column, reason_counts
from bench.analysis.verdicts import equal_load_cases
from bench.report.blocks import (
    Pre,
    Section,
    Table,
    fmt_bytes,
    fmt_num,
    fmt_rate,
    fmt_ratio,
    fmt_spread,
    fmt_us,
)

STDERR_LINES = 20


def marker_notes(marks: str) -> list[str]:
    """The footnotes for the validity markers that appear in ``marks``."""
    return [f"{m} {MARK_NOTES[m]}." for m in MARK_NOTES if m in marks]


CASE_COLUMNS = [  # heading, metric, format; a ratio to native follows the NATIVE_RATIOS
    ("throughput (req/s)", "throughput_rps", fmt_rate),
    ("p50", "p50_us", fmt_us),
    ("p99", "p99_us", fmt_us),
    ("p99.9", "p99_9_us", fmt_us),
    ("server CPU / req", "cpu_us_per_request", fmt_us),
    ("RSS / conn", "rss_per_connection_bytes", fmt_bytes),
    ("ctx sw / req", "ctx_switches_per_request", fmt_num),
    ("server CPU %", "server_cpu_percent", lambda v: fmt_num(v, 3)),
    ("threads", "threads_max", fmt_rate),
]


# ---------------------------------------------------------------- interpreters


def interpreter_sections(run: Run, margin: float) -> list[Section]:
    """When the run has several interpreters: what each is, and each model's figures under
    each, with the throughput ratio to the first interpreter and whether it is noise."""
    frame = run.frame
    if frame.empty or frame["interpreter_tag"].dropna().nunique() < 2:
        return []
    tags = list(dict.fromkeys(frame["interpreter_tag"].dropna()))
    described = {str(d.get("tag")): d for d in
                 (run.meta.get("environment") or {}).get("interpreters") or []}
    about = Table(["interpreter", "version", "implementation", "GIL", "free-threaded build",
                   "environment", "path"],
                  [[tag, str(d.get("version", "—")), str(d.get("implementation", "—")),
                    _gil(d.get("gil_enabled")), _yes_no(d.get("free_threaded_build")),
                    " ".join(f"{k}={v}" for k, v in (d.get("env") or {}).items()) or "—",
                    str(d.get("path", "—"))]
                   for tag, d in ((t, described.get(t, {})) for t in tags)])
    first = tags[0]
    twins = _gil_twins(tags, described)
    rows, marks = [], ""
    cases = case_table(frame)
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    for case in closed.itertuples():
        here = frame[frame["case"] == case.case]
        for model, trials in here.groupby("server_model", sort=False):
            marks += "".join(trials["flags"])
            valid = {tag: _valid(trials[trials["interpreter_tag"] == tag], "throughput_rps")
                     for tag in tags}
            for tag in tags:
                mine = trials[trials["interpreter_tag"] == tag]
                if mine.empty:
                    continue
                row = [case.case, str(model), tag, _gil(_gil_of(mine, described.get(tag, {}))),
                       _median_cell(mine, "throughput_rps", fmt_rate),
                       "1×" if tag == first else _ratio(valid[first], valid[tag], margin)]
                if twins:
                    twin = twins.get(tag)
                    row.append(_ratio(valid[twin], valid[tag], margin) if twin else "")
                rows.append([*row, _median_cell(mine, "p99_us", fmt_us),
                             _median_cell(mine, "server_cpu_percent", fmt_num)])
    columns = ["case", "model", "interpreter", "GIL", "req/s", f"vs {first}",
               *(["vs same build, GIL on"] if twins else []), "p99", "server CPU %"]
    table = Table(columns, rows, numeric=set(range(4, len(columns))))
    table.footnotes = marker_notes(marks) + [
        "Cells: median [min–max] of the valid repetitions. 'vs' is the ratio of median "
        "throughputs; 'noise' when they cannot be told apart (the bootstrap interval of the "
        "ratio holds 1), 'no interval' with a single repetition on a side.",
        "Interpreters can differ in single-thread speed as well as in the GIL: a "
        "single-threaded model (epoll) run under each is the control for that."]
    if twins:
        table.footnotes.append("vs same build, GIL on: the same executable with its GIL "
                               "enabled (PYTHON_GIL=1), so the ratio is the GIL's cost alone.")
    return [Section("Interpreters", [
        "The same models under each interpreter the scenario listed (series are labelled "
        "model@interpreter in every table and chart).", about, table])]


def _gil_twins(tags: list[str], described: dict[str, dict[str, Any]]) -> dict[str, str]:
    """GIL-off interpreter tag -> the tag of the same executable run with its GIL on (a
    free-threaded build under PYTHON_GIL=1): the ratio between them is the GIL's alone."""
    twins = {}
    for tag in tags:
        mine = described.get(tag, {})
        if mine.get("gil_enabled") is not False:
            continue
        for other in tags:
            theirs = described.get(other, {})
            if theirs.get("gil_enabled") and theirs.get("path") == mine.get("path"):
                twins[tag] = other
                break
    return twins


def _valid(trials: pd.DataFrame, metric: str) -> list[float]:
    return trials.loc[trials[ok_column(metric)], metric].dropna().tolist()


def _gil_of(trials: pd.DataFrame, described: dict[str, Any]) -> Any:
    """Whether the GIL was enabled: as the run described the interpreter, else its trials."""
    if described.get("gil_enabled") is not None:
        return described["gil_enabled"]
    values = trials["gil_enabled"].dropna() if "gil_enabled" in trials else pd.Series([])
    return bool(values.iloc[0]) if not values.empty else None


def _gil(value: Any) -> str:
    return "—" if value is None else ("enabled" if value else "disabled")


def _yes_no(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _median_cell(trials: pd.DataFrame, metric: str, fmt: Any) -> str:
    values = trials.loc[trials[ok_column(metric)], metric].dropna()
    if values.empty:
        return "—" + "".join(sorted(set("".join(trials["flags"]))))
    if len(values) > 1 and values.min() != values.max():
        return f"{fmt(values.median())} [{fmt(values.min())}–{fmt(values.max())}]"
    return fmt(values.median())


def _ratio(base: list[float], other: list[float], margin: float) -> str:
    """'1.85× (clear)', '0.98× (noise)' or '1.02× (no test)': the other's median throughput
    over the base's, and whether the two-sided exact signed-rank test of their round-paired
    ratios rejects at ALPHA (repetitions pair by their order: both run in the same rounds)."""
    if not base or not other or not np.median(base):
        return "—"
    ratio = float(np.median(other) / np.median(base))
    logs = significance.paired_log_ratios(other[:len(base)], base[:len(other)])
    if len(logs) < 2:
        return f"{ratio:.2f}× (no test)"
    clear = significance.signed_rank_p(logs) <= significance.ALPHA and abs(ratio - 1) >= margin
    return f"{ratio:.2f}× ({'clear' if clear else 'noise'})"


# ---------------------------------------------------------------- C10K


def c10k_sections(run: Run) -> list[Section]:
    """Per C10K case: each model's busy-connection latency, server CPU and memory per
    connection, the connections it really held, and its errors by kind (ERROR 4 included:
    turning connections away is a result here, not a failed run)."""
    frame = run.frame
    rows = frame[frame["group"] == C10K_GROUP] if not frame.empty else frame
    if rows.empty:
        return []
    sections = [Section("C10K", [
        "Many connections on one server: every trial is shown, errors included (a model that "
        "turns connections away with ERROR 4 counts them as over_capacity). Latency is the "
        "busy connections' only, from the open-loop schedule. Held: the most connections "
        "the server had open at once (its descriptors over those it had before the load). "
        "RSS per connection: the growth of its resident memory under load over the "
        "connections the swarm held (busy and idle), and over those the server held (the "
        "two differ where it turned connections away)."])]
    for case, trials in rows.groupby("case", sort=False):
        first = trials.iloc[0]
        idle = int(first["idle_connections"]) if first["idle_connections"] == \
            first["idle_connections"] and first["idle_connections"] else 0
        body = [_c10k_row(str(variant), group)
                for variant, group in trials.groupby("variant", sort=False)]
        body.sort(key=lambda row: (row[0] == "failed", row[1]))
        columns = ["model", "trials ok/n", "established", "held", "req/s", "p50", "p99",
                   "server CPU %", "RSS / conn", "RSS / held conn", "RSS (max)",
                   "threads (max)", "over_capacity", "errors", "slowest connect"]
        table = Table(columns, [row[2:] for row in body], numeric={*range(1, 13), 14})
        table.footnotes = [
            "Cells: median over the trials that ran (errors included); established: the busy "
            "+ idle connections the swarm got (and how many idle ones were still open when "
            "the window ended).",
            "errors: every kind the swarm counted, over_capacity included; a slowest connect "
            "of a second or more is a SYN retransmission (the accept queue overflowed)."]
        load = f"{int(first['connections']):,} busy connections"
        if idle:
            load += f" + {idle:,} idle ones"
        rate = first["rate"]
        if rate == rate and rate:
            load += f", open loop at {rate:,.0f} req/s in all"
        sections.append(Section(f"{case} ({load})", [table], level=3))
    return sections


def hosts_sections(run: Run) -> list[Section]:
    """A run across hosts (``--hosts``): which host served which role, and each load host's
    share of every trial, so that a saturated or failing load host is named."""
    hosts = run.meta.get("hosts")
    if not hosts:
        return []
    described = [hosts["server"], *hosts.get("load", [])]
    roles = Table(["role", "name", "gateway", "python", "code", "CPUs", "clock offset",
                   "round trip"], [[
                       h["role"], h["name"], h["gateway"], str(h.get("python_version") or "—"),
                       str(h.get("code") or "—"),
                       ", ".join(str(c) for c in (h.get("cpus") or h.get("host_cpus") or [])),
                       fmt_us(h.get("clock_offset_us")), fmt_us(h.get("clock_rtt_us"))]
                       for h in described])
    roles.footnotes = [f"The server binds {hosts.get('address')} on {hosts['server']['name']}; "
                       "clock offsets are each host's CLOCK_MONOTONIC minus the coordinator's "
                       "(the round trip with the least delay of 16), used to give every load "
                       "host the same measured window.", *hosts.get("notes", [])]
    rows = []
    for trial_id, record in run.trials.items():
        for host in ((record.get("hosts") or {}).get("load") or []):
            latency = host.get("latency_us") or {}
            rows.append([trial_id, host["name"], str(host.get("workers", "—")),
                         str(host.get("connections", "—")), f"{host.get('requests') or 0:,}",
                         fmt_rate(host.get("throughput_rps")), fmt_us(latency.get("p50")),
                         fmt_us(latency.get("p99")), fmt_num(host.get("errors_total")),
                         "; ".join(host.get("client_reasons") or []) or "no"])
    shares = Table(["trial", "load host", "workers", "connections", "requests", "req/s",
                    "p50", "p99", "errors", "client saturated"], rows,
                   numeric={2, 3, 4, 5, 6, 7, 8})
    shares.footnotes = ["Each load host's own figures; the trial's are their merge (counts "
                        "added, histograms added without loss)."]
    return [Section("Hosts", [roles, shares])]


def _c10k_row(variant: str, trials: pd.DataFrame) -> list[Any]:
    """[sort keys..., cells...] for one model in a C10K case."""
    ran = trials[~trials["failed"]]
    ok = f"{len(ran)}/{len(trials)}"
    if ran.empty:
        why = "; ".join(str(f) for f in trials["failure"].dropna().unique()) or "failed"
        return ["failed", 0.0, variant + MARK_FAILED, ok, *["—"] * 11, f"failed: {why}", "—"]

    def med(name: str) -> float:
        values = pd.to_numeric(ran[name], errors="coerce").dropna()
        return float(values.median()) if not values.empty else math.nan

    established = med("connections_established")
    idle, alive = med("idle_established"), med("idle_alive")
    held = fmt_rate(established)
    if idle == idle and idle:
        held = f"{fmt_rate(established + idle)} ({fmt_rate(alive)} idle left)"
    kinds = "; ".join(sorted({k for k in ran["error_kinds"] if k}))
    errors = fmt_rate(med("errors")) + (f" ({kinds})" if kinds and med("errors") else "")
    per_held = med("rss_per_held_connection_bytes")
    p99 = med("p99_us")
    return ["ok", p99 if p99 == p99 else math.inf, variant + "".join(sorted(set(
        "".join(ran["flags"])))), ok, held, fmt_rate(med("held_max")), fmt_rate(med(
            "throughput_rps")), fmt_us(med("p50_us")), fmt_us(p99),
        fmt_num(med("server_cpu_percent")), fmt_bytes(med("rss_per_connection_bytes")),
        fmt_bytes(per_held), fmt_bytes(med("rss_max")), fmt_rate(med("threads_max")),
        fmt_rate(med("over_capacity")), errors, fmt_us(med("connect_max_us"))]



# ---------------------------------------------------------------- per case


def _case_table(agg: pd.DataFrame, case: str, sort_by: str, ascending: bool) -> Table:
    """Every model's medians [min–max] of valid figures, with ratios to native beside
    throughput and CPU per request; a left-out figure shows the trial's markers."""
    rows = agg[agg["case"] == case]
    rows = rows.sort_values(f"{sort_by}_median", ascending=ascending, na_position="last")
    columns, body, marks = ["model", "valid/trials"], [], ""
    for heading, metric, _ in CASE_COLUMNS:
        columns.append(heading)
        if metric in ("throughput_rps", "cpu_us_per_request"):
            columns.append("× native")
    for _, row in rows.iterrows():
        marks += row["flags"]
        cells = [f"{row['variant']}{row['flags']}", f"{row['n_valid']}/{row['n_total']}"]
        for _, metric, fmt in CASE_COLUMNS:
            text = fmt_spread(row, metric, fmt) if f"{metric}_median" in row else "—"
            cells.append(text + (row["flags"] if text == "—" and row["flags"] else ""))
            if metric in ("throughput_rps", "cpu_us_per_request"):
                cells.append(fmt_ratio(row.get(f"{metric}_x_native"),
                                       row.get(f"{metric}_x_native_bound") or ""))
        body.append(cells)
    table = Table(columns, body, numeric=set(range(1, len(columns))))
    table.footnotes = marker_notes(marks) + [
        "Cells: median [min–max] of the valid figures (a saturated client's trial still "
        "counts for CPU per request, memory, threads); '—' with a marker: left out.",
        "× native: the median over native's in the same case and run; '≤' where native's "
        "throughput is known only from trials whose client saturated (it was at least that "
        "fast)."]
    return table


def case_sections(agg: pd.DataFrame, cases: pd.DataFrame) -> list[Section]:
    """One table per closed-loop case, then one per equal-load case (open loop, one rate)."""
    sections = []
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    for case in closed.itertuples():
        heading = (f"{case.case} ({case.group}: {case.mix}, {case.connections} connections, "
                   f"pipeline {case.pipeline})")
        sections.append(Section(heading, [_case_table(agg, case.case, "throughput_rps",
                                                      False)], level=3))
    if sections:
        sections.insert(0, Section("Closed-loop cases", []))
    equal = equal_load_cases(cases)
    if not equal.empty:
        sections.append(Section("Equal-load cases", [
            "Open loop, every model offered the same absolute rate: latency, CPU per request "
            "and context switches per request side by side at the same load (ranked by p99)."]))
    for case in equal.itertuples():
        rates = agg.loc[agg["case"] == case.case]
        rate = f", {case.rate_median:,.0f} req/s" if case.rate_median == case.rate_median \
            else ""
        heading = f"{case.case} ({case.group}: {case.mix}, {case.connections} connections{rate})"
        sections.append(Section(heading, [_case_table(rates, case.case, "p99_us", True)],
                                level=3))
    return sections


def sweep_sections(sweeps: list[SweepResult]) -> list[Section]:
    """Per sweep: each model's p99 at every point, its rate within the run's one SLO, and
    where its walk stopped."""
    sections = []
    for sweep in sweeps:
        points = sweep.points
        order = points.groupby("case")["rate"].median().sort_values().index.tolist()
        body, marks = [], ""
        ranked = sorted(sweep.within_slo, key=lambda v: -np.median(sweep.within_slo[v] or [0]))
        for variant in ranked:
            by_case = {r["case"]: r for _, r in points[points["variant"] == variant].iterrows()}
            cells = []
            for case in order:
                row = by_case.get(case)
                if row is None:
                    cells.append("")
                    continue
                marks += row["flags"]
                over = " ✱" if row["p99_us_median"] > sweep.slo_us else ""
                cells.append(fmt_us(row["p99_us_median"]) + over + row["flags"])
            rates = sweep.within_slo.get(variant) or []
            floor = "≥ " if sweep.ceiling_not_found.get(variant) else ""
            body.append([variant, *cells, floor + fmt_rate(np.median(rates) if rates else None),
                         sweep.stopped.get(variant, "")])
        columns = ["model", *[_point_heading(points, case) for case in order],
                   "rate within SLO", "walk stopped"]
        table = Table(columns, body, numeric=set(range(1, len(columns) - 1)))
        table.footnotes = [
            f"✱ p99 above the SLO ({sweep.describe_target()}, the same for every model).",
            *marker_notes(marks),
            "The rate within the SLO is interpolated between the last point that met it and "
            "the first that missed (log-linear in p99); ≥ every offered rate met the SLO: the "
            "limit lies higher."]
        sections.append(Section(f"Open-loop sweep {sweep.label}", [
            "Offered load, open loop; cells are the median p99 (corrected for coordinated "
            "omission) of the valid repetitions.", table,
        ]))
    return sections


def _point_heading(points: pd.DataFrame, case: str) -> str:
    """A sweep point's column: its share of each model's maximum, or its absolute rate."""
    row = points[points["case"] == case].iloc[0]
    fraction = row["offered_fraction"]
    return f"p99 at {fraction:.0%}" if fraction == fraction else f"p99 at {fmt_rate(row['rate'])}"


# ---------------------------------------------------------------- flagged, failed, every trial


def flagged_sections(run: Run) -> list[Section]:
    """The trials with figures left out (and which), and the failed ones with their stderr."""
    frame = run.frame
    sections = []
    flagged = frame[~frame["failed"] & (frame["exclusion_reason"] != "")] \
        if not frame.empty else frame
    if not flagged.empty:
        rows = [[r.trial_id, r.flags, r.exclusion_reason, fmt_rate(r.throughput_rps),
                 fmt_us(r.p99_us), fmt_us(r.cpu_us_per_request),
                 fmt_num(r.client_cpu_percent_max)] for r in flagged.itertuples()]
        table = Table(["trial", "flags", "left out: why", "throughput (req/s)", "p99",
                       "CPU / req", "client CPU % (max worker)"], rows, numeric={3, 4, 5, 6})
        table.footnotes = marker_notes("".join(flagged["flags"]))
        sections.append(Section("Trials with figures left out", [
            "Validity is decided per figure: each trial below keeps every figure its condition "
            "does not touch (a saturated client's trial keeps its CPU per request and memory). "
            "The figures shown are as measured; the left-out ones are in no median, chart or "
            "verdict.", table]))
    failed = frame[frame["failed"]] if not frame.empty else frame
    if not failed.empty:
        rows = [[r.trial_id, str(r.failure or "no reason recorded")] for r in failed.itertuples()]
        blocks: list[Any] = [Table(["trial", "failure"], rows)]
        for trial_id in failed["trial_id"]:
            tail = _tail(run.trials[trial_id].get("stderr_tail"))
            if tail:
                blocks.append(Pre(f"{trial_id}: stderr tail", tail))
        sections.append(Section(f"Failed trials {MARK_FAILED}", blocks))
    notes = [[tid, str(note)] for tid, record in run.trials.items()
             for note in record.get("notes") or []]
    if notes:
        sections.append(Section("Runner notes", [Table(["trial", "note"], notes)]))
    return sections


def _tail(text: Any) -> str:
    if not text:
        return ""
    return "\n".join(str(text).rstrip().splitlines()[-STDERR_LINES:])


def trials_section(frame: pd.DataFrame) -> Section:
    rows = [[r.trial_id, r.flags, str(r.status), fmt_rate(r.throughput_rps), fmt_us(r.p99_us),
             fmt_us(r.cpu_us_per_request), fmt_num(r.client_cpu_percent_max),
             r.exclusion_reason] for r in frame.itertuples()]
    table = Table(["trial", "flags", "status", "throughput (req/s)", "p99", "CPU / req",
                   "client CPU % (max worker)", "left out"], rows, numeric={3, 4, 5, 6})
    table.footnotes = marker_notes("".join(frame["flags"])) if not frame.empty else []
    return Section("Every trial", ["Every figure is also in summary.csv.", table],
                   collapsed=True)


def exclusion_sentence(frame: pd.DataFrame) -> str:
    """How many trials have figures left out, and for which reasons."""
    if frame.empty:
        return "No trial records yet."
    counts = reason_counts(frame)
    kinds = frame["reason_kinds"].astype(str).str.split()
    flagged = int(sum(bool(set(row) - {"samples"}) for row in kinds))
    parts = [f"{count} {REASON_WORDS[kind]}" for kind, count in counts.items()
             if count and kind != "samples"]
    text = (f"{flagged} of {len(frame)} trials have figures left out (a trial may have several "
            "reasons): " + ", ".join(parts) + "." if flagged else
            "No trial has a figure left out.")
    if counts["samples"]:
        text += (f" {counts['samples']} show a p99 on fewer than 100 samples beyond it: shown "
                 "with their count, not ranked.")
    return text


# what each validity.REASON_KINDS counts, in words (after its count)
REASON_WORDS = {
    "failed": f"failed {MARK_FAILED} (no figures)",
    "saturated": "with a saturated client (throughput and latency out, server figures kept)",
    "errors": "with request errors",
    "queues": "queueing by design",
    "little": "breaking Little's law",
    "lag": "with the client's own lag over its share of the SLO (latency out)",
    "unsteady": "never steady (client-side, per-request and per-connection figures out)",
    "starved": "with starved connections",
    "rate": "with the achieved rate over 2 % off the offered one",
}


