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
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import REPO_ROOT
from bench.hosts import netns
from bench.launch import child_env
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
    return [json.loads(path.read_text()) for path in sorted((folder / "trials").glob("*.json"))]


def summarize(runs: dict[str, list[Path]]) -> list[dict[str, Any]]:
    """Per (case, model): each placement's median throughput and p99 over the rounds, the
    ratio hosts/embedded, and the load hosts' median requests."""
    cells: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for placement, folders in runs.items():
        for folder in folders:
            for record in _records(folder):
                if record.get("status") != "ok" or not record.get("swarm"):
                    continue
                cell = cells.setdefault((record["case"], record["model"]), {})
                swarm = record["swarm"]
                cell.setdefault(f"{placement}_rps", []).append(swarm["throughput_rps"])
                cell.setdefault(f"{placement}_p99_us", []).append(swarm["latency_us"]["p99"])
                cell.setdefault(f"{placement}_saturated", []).append(
                    bool(swarm["client"]["saturated"]))
                for host in (record.get("hosts") or {}).get("load") or []:
                    cell.setdefault(f"requests_{host['name']}", []).append(host["requests"])
    rows = []
    for (case, model), cell in sorted(cells.items()):
        row: dict[str, Any] = {"case": case, "model": model}
        for key, values in cell.items():
            row[key] = (sum(values) if key.endswith("saturated")
                        else statistics.median(values))
            row[f"{key}_n"] = len(values)
        if row.get("embedded_rps") and row.get("hosts_rps"):
            row["ratio_rps"] = row["hosts_rps"] / row["embedded_rps"]
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="embedded (one machine) vs across namespace hosts: medians over rounds")
    for column in ("case", "model", "embedded req/s", "hosts req/s", "hosts/embedded",
                   "embedded p99", "hosts p99", "load1 requests", "load2 requests",
                   "saturated (emb/hosts)"):
        table.add_column(column, justify="left" if column in ("case", "model") else "right")
    for row in rows:
        table.add_row(row["case"], row["model"], f"{row.get('embedded_rps', 0):,.0f}",
                      f"{row.get('hosts_rps', 0):,.0f}", f"{row.get('ratio_rps', 0):.2f}",
                      f"{row.get('embedded_p99_us', 0):,.0f} µs",
                      f"{row.get('hosts_p99_us', 0):,.0f} µs",
                      f"{row.get('requests_load1', 0):,.0f}",
                      f"{row.get('requests_load2', 0):,.0f}",
                      f"{row.get('embedded_saturated', 0)}/{row.get('hosts_saturated', 0)} of "
                      f"{row.get('embedded_rps_n', 0)}/{row.get('hosts_rps_n', 0)}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="quick")
    parser.add_argument("--servers", default="epoll,threaded")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "results" / f"hosts-{time.strftime('%Y%m%d-%H%M%S')}")
    options = parser.parse_args(argv)
    console = Console()
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
    console.print(_table(rows))
    atomic_write_json(options.out / "compare.json", {
        "scenario": options.scenario, "servers": options.servers, "rounds": options.rounds,
        "runs": {k: [str(p) for p in v] for k, v in runs.items()}, "rows": rows})
    console.print(f"runs and compare.json in {options.out}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
