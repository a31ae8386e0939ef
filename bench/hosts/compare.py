"""One scenario on this machine and across namespace hosts, side by side, interleaved.

    python -m bench.hosts.compare [--scenario quick] [--servers epoll,threaded] [--rounds 2]
                                  [--out DIR]

Needs root (``make bench-hosts``). It makes a network-namespace testbed (``bench.hosts.netns``:
a server namespace and two load namespaces on a private subnet), writes its hosts file, then
runs ``python -m bench run`` round after round, once on the embedded default (this machine,
split placement) and once with ``--hosts`` (the server in its namespace on CPU 0, both load
hosts on CPU 1), the order alternating between rounds so that a drift of the machine's speed
falls on both. It prints, per model and case, the medians of both placements, their ratio and
each load host's share, and writes ``compare.json``; the runs stay in the output folder.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench import REPO_ROOT
from bench.hosts import netns
from bench.launch import child_env
from bench.store import RESULTS_ROOT, load_run_folder
from protocol.launch import atomic_write_json

RUN_TIMEOUT_S = 1800.0


def _run(scenario: str, servers: str, out: Path, hosts: Path | None, console: Console) -> None:
    command = [sys.executable, "-m", "bench", "run", "--scenario", scenario, "--servers",
               servers, "--out", str(out), "--no-report"]
    if hosts is not None:
        command += ["--hosts", str(hosts)]
    console.print(f"[bold]{'across hosts' if hosts else 'embedded'}[/bold]: {' '.join(command)}",
                  highlight=False, soft_wrap=True)
    subprocess.run(command, cwd=REPO_ROOT, env=child_env(REPO_ROOT), check=True,
                   timeout=RUN_TIMEOUT_S)


def _records(folder: Path) -> list[dict[str, Any]]:
    """The run's trial records, through the one run-folder loader (bench/store.py)."""
    return list(load_run_folder(folder).trials.values())


def _cell(record: dict[str, Any]) -> dict[str, Any] | None:
    if record.get("status") != "ok" or not record.get("swarm"):
        return None
    swarm = record["swarm"]
    return {"rps": swarm["throughput_rps"], "p99_us": swarm["latency_us"]["p99"],
            "saturated": bool(swarm["client"]["saturated"]),
            "hosts": {h["name"]: h["requests"] for h in
                      (record.get("hosts") or {}).get("load") or []}}


def summarize(runs: dict[str, list[Path]]) -> list[dict[str, Any]]:
    """Per (case, model): each placement's median throughput and p99 over the rounds, the
    ratio hosts/embedded of each round (the two ran minutes apart) with its median and range,
    and each load host's median requests."""
    cells: dict[tuple[str, str], dict[str, list[dict[str, Any] | None]]] = {}
    for placement, folders in runs.items():
        for round_index, folder in enumerate(folders):
            for record in _records(folder):
                key = (record["case"], record["model"])
                slots = cells.setdefault(key, {"embedded": [None] * len(folders),
                                               "hosts": [None] * len(folders)})
                slots[placement][round_index] = _cell(record)
    rows = []
    for (case, model), slots in sorted(cells.items()):
        row: dict[str, Any] = {"case": case, "model": model}
        for placement, found in slots.items():
            ok = [cell for cell in found if cell is not None]
            row[f"{placement}_n"] = len(ok)
            row[f"{placement}_saturated"] = sum(cell["saturated"] for cell in ok)
            if ok:
                row[f"{placement}_rps"] = statistics.median(cell["rps"] for cell in ok)
                row[f"{placement}_p99_us"] = statistics.median(cell["p99_us"] for cell in ok)
        ratios = [h["rps"] / e["rps"] for e, h in zip(slots["embedded"], slots["hosts"],
                                                      strict=True) if e and h and e["rps"]]
        if ratios:
            row.update(ratio_rps=statistics.median(ratios), ratio_min=min(ratios),
                       ratio_max=max(ratios), ratios=ratios)
        names = sorted({name for cell in slots["hosts"] if cell for name in cell["hosts"]})
        row["host_requests"] = {name: statistics.median(
            cell["hosts"][name] for cell in slots["hosts"] if cell and name in cell["hosts"])
            for name in names}
        rows.append(row)
    return rows


def _tables(rows: list[dict[str, Any]], rounds: int) -> list[Table]:
    """One table per case: each model on one machine (emb) and across namespace hosts."""
    tables = []
    for case in dict.fromkeys(row["case"] for row in rows):
        table = Table(title=f"{case}: medians of {rounds} rounds", title_justify="left",
                      box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        for column in ("model", "emb/s", "hosts/s", "hosts÷emb", "p99 emb",
                       "p99 hosts", "load1 / load2", "sat."):
            table.add_column(column, justify="left" if column == "model" else "right")
        for row in (r for r in rows if r["case"] == case):
            ratio = (f"{row['ratio_rps']:.2f} [{row['ratio_min']:.2f}–{row['ratio_max']:.2f}]"
                     if "ratio_rps" in row else "—")
            table.add_row(row["model"], _num(row.get("embedded_rps")),
                          _num(row.get("hosts_rps")), ratio, _us(row.get("embedded_p99_us")),
                          _us(row.get("hosts_p99_us")),
                          " / ".join(_num(v) for v in row["host_requests"].values()) or "—",
                          f"{row['embedded_saturated']}/{row['embedded_n']} "
                          f"{row['hosts_saturated']}/{row['hosts_n']}")
        tables.append(table)
    return tables


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:,.1f}k" if value >= 10_000 else f"{value:,.0f}"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} µs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="quick")
    parser.add_argument("--servers", default="epoll,threaded")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=RESULTS_ROOT / f"hosts-{time.strftime('%Y%m%d-%H%M%S')}")
    options = parser.parse_args(argv)
    console = Console(width=max(100, Console().width))
    reason = netns.available()
    if reason is not None:
        console.print(f"bench-hosts: {reason}", highlight=False)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Path]] = {"embedded": [], "hosts": []}
    with netns.Testbed(load_hosts=2) as bed:
        hosts_file = options.out / "hosts.toml"
        hosts_file.write_text(bed.hosts_toml(sys.executable, server_cpus=[0],
                                             load_cpus=[[1], [1]]))
        console.print(f"testbed {bed.subnet}: server {bed.server_ns} at {bed.server_address}, "
                      f"load {', '.join(bed.load_ns)}", highlight=False)
        for round_index in range(options.rounds):
            order = ("embedded", "hosts") if round_index % 2 == 0 else ("hosts", "embedded")
            for placement in order:
                folder = options.out / f"round{round_index + 1}-{placement}"
                _run(options.scenario, options.servers, folder,
                     hosts_file if placement == "hosts" else None, console)
                runs[placement].append(folder)
    rows = summarize(runs)
    for table in _tables(rows, options.rounds):
        console.print(table)
    console.print("emb: one machine (split placement); hosts: the server and two load hosts in "
                  "network namespaces; load1 / load2: each load host's median requests in the "
                  "window; sat.: trials whose client saturated (emb, hosts)", highlight=False)
    atomic_write_json(options.out / "compare.json", {
        "scenario": options.scenario, "servers": options.servers, "rounds": options.rounds,
        "runs": {k: [str(p) for p in v] for k, v in runs.items()}, "rows": rows})
    console.print(f"runs and compare.json in {options.out}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
