"""The swarm's readable terminal summary of a result record (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

LATENCY_COLUMNS = ("p50", "p90", "p99", "p99_9", "p99_99", "max", "mean")
MAX_INTERVAL_ROWS = 30


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _latency_table(record: dict[str, Any]) -> Table:
    table = Table(title="latency (µs)", title_justify="left")
    table.add_column("")
    for name in LATENCY_COLUMNS:
        table.add_column(name.replace("_", "."), justify="right")
    rows = [("replies", record["latency_us"])]
    if record["latency_corrected"]:
        rows = [("from schedule (corrected)", record["latency_us"]),
                ("from actual send", record["latency_uncorrected_us"])]
        if record["schedule_lag_us"]:
            rows.append(("send lag behind schedule", record["schedule_lag_us"]))
    rows.append(("connect", record["connect_us"]))
    for kind in record.get("latency_by_kind") or []:
        rows.append((f"  {kind['kind']} ({kind['requests']:,})", kind["latency_us"]))
    churn = record.get("churn")
    if churn:
        rows += [("churn: connect", churn["connect_us"]),
                 ("churn: connect to last reply", churn["cycle_us"])]
    for label, figures in rows:
        table.add_row(label, *(_number(figures[name], 1 if name == "mean" else 0)
                               for name in LATENCY_COLUMNS))
    return table


def _interval_table(intervals: list[dict[str, Any]], open_loop: bool) -> Table:
    table = Table(title="per interval", title_justify="left")
    columns = ["t (s)", "req/s", "p50 µs", "p99 µs", "errors"]
    if open_loop:
        columns.append("send lag p99 µs")
    for column in columns:
        table.add_column(column, justify="right")
    shown = intervals
    if len(intervals) > MAX_INTERVAL_ROWS:
        step = -(-len(intervals) // MAX_INTERVAL_ROWS)
        shown = intervals[::step]
    for item in shown:
        row = [f"{item['t_s']:.0f}", _number(item["throughput_rps"]), _number(item["p50_us"]),
               _number(item["p99_us"]), str(item["errors"])]
        if open_loop:
            row.append(_number(item.get("client_lag_p99_us")))
        table.add_row(*row)
    return table


def _busy(busy: float | None, wait: float | None, spin: float | None) -> str:
    if busy is None:
        return "-"
    extra = [f"+{wait:.0f}% waiting for a CPU"] if wait else []
    if spin:
        extra.append(f"+{spin:.0f}% spinning until sends were due")
    return f"{busy:.0f}%" + (f" ({', '.join(extra)})" if extra else "")


def _print_workloads(record: dict[str, Any], console: Console) -> None:
    """Churn's connection rate; the slow connections' fate."""
    churn = record.get("churn")
    if churn:
        console.print(f"churn: {churn['connections_completed']:,} connections of "
                      f"{churn['requests_per_connection']} request(s) each, "
                      f"[bold]{churn['connections_per_s']:,.1f}[/] connections/s")
    slow = record.get("slowloris")
    if slow:
        console.print(f"slowloris: {slow['connections']:,} slow connections, {_held(slow)}, "
                      f"{slow['bytes_sent']:,} bytes sent{_their_errors(slow)}")


def _held(part: dict[str, Any]) -> str:
    """Idle or slow connections: how many were established and still open at the end."""
    alive = part.get("alive_at_end")
    return (f"{part['established']:,} established, {'-' if alive is None else f'{alive:,}'} "
            "still open when the window ended")


def _their_errors(part: dict[str, Any]) -> str:
    errors = ", ".join(f"{kind} {count:,}" for kind, count
                       in sorted((part.get("errors") or {}).items()))
    return f"; their errors: {errors}" if errors else ""


def print_summary(record: dict[str, Any], console: Console) -> None:
    """Print a run's figures; a saturated client or a cut-short run is said loudly."""
    mode = f"{record['mode']} loop"
    if record["mode"] == "open":
        mode += f" at {record['rate']:,.0f} req/s ({record['arrivals']})"
    console.print(
        f"[bold]swarm[/] → {record['target']}: {mode}, {record['connections']} connections "
        f"({record['connections_established']} established), {record['workers']} worker(s), "
        f"pipeline {record['pipeline']}, mix {record['mix']}"
        + (f" ({record['protocol']})" if record.get("protocol", "concbench") != "concbench"
           else ""))
    console.print(
        f"window {record['duration_s']:.2f} s (warm-up {record['warmup_s']:g} s excluded): "
        f"[bold]{record['requests']:,}[/] replies, [bold]{record['throughput_rps']:,.1f}[/] req/s")
    console.print(_latency_table(record))
    if record["intervals"]:
        console.print(_interval_table(record["intervals"], record["mode"] == "open"))
    fairness = record["fairness"]
    if fairness["connections"]:
        console.print(
            f"fairness: Jain {_number(fairness['jain'], 4)}, per connection "
            f"{_number(fairness['min_rps'], 1)}–{_number(fairness['max_rps'], 1)} req/s "
            f"(mean {_number(fairness['mean_rps'], 1)}), starved {fairness['starved']}")
    idle = record.get("idle") or {}
    if idle.get("connections"):
        console.print(f"idle connections: {idle['connections']:,} opened and held, "
                      f"{_held(idle)}{_their_errors(idle)}")
    _print_workloads(record, console)
    if record["errors"]:
        errors = ", ".join(f"{kind} {count:,}" for kind, count in sorted(record["errors"].items()))
        console.print(f"[bold red]errors[/]: {errors}")
    else:
        console.print("errors: none")
    client = record["client"]
    spins = client.get("cpu_spin_percent") or [None] * len(client["cpu_percent"])
    cpu = ", ".join(_busy(p, w, s) for p, w, s in zip(client["cpu_percent"],
                                                      client["cpu_wait_percent"], spins,
                                                      strict=True))
    per_reply = client["cpu_us_per_reply"]
    console.print(f"client CPU per worker: {cpu}"
                  + (f" ({per_reply:.2f} µs of client CPU per reply)" if per_reply else ""))
    lag = client.get("lag_us")
    if lag and lag["mean"] is not None:
        console.print(f"client's own send lateness (open loop): mean {lag['mean']:,.0f} µs, "
                      f"p99 {_number(lag.get('p99'))} µs, p99.9 {_number(lag.get('p99_9'))} µs, "
                      f"max {lag['max']:,.0f} µs")
    tail = client.get("lag_tail")
    if client.get("lag_is_tail") and tail:
        console.print(Panel(tail["reason"] + ".\nThe corrected percentiles there describe the "
                            "client: give the swarm its own core, add --workers or lower "
                            "--rate.", title="CLIENT LATENESS IS THE TAIL", style="bold red"))
    if client["saturated"]:
        console.print(Panel("\n".join(client["reasons"]) + "\nThese figures describe the "
                            "client, not the server: add --workers or lower the load.",
                            title="CLIENT SATURATED", style="bold red"))
    for worker, why in client["worker_failures"].items():
        console.print(f"[bold red]worker {worker} failed[/]: {why}")
    if record["stopped"]:
        console.print(f"[bold red]run cut short[/]: {record['stopped']} (partial figures)")
