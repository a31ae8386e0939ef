"""MagicStack's echo table: gevent, tornado, twisted, asyncio and uvloop at 1, 10 and 100 KiB.

The uvloop announcement (2016) measured echo servers with vmbench: 10 connections, 30 s runs
after a 10 s warm-up, on CPython 3.5. Absolute figures do not travel between machines; the
ordering and the ratios may. Each ratio here is a model's throughput over tornado's, paired
within a round; an ordering between two models counts as shown when the exact two-sided
signed-rank test over the rounds rejects "the same" at 0.05 (six rounds: the smallest p is
2/64), and as measured (but not shown) otherwise.
"""

from __future__ import annotations

from typing import Any

from bench.analysis.frames import Run
from bench.classics.common import (
    ALPHA,
    NOT_MEASURABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    Published,
    by_round,
    group_trials,
    interpreters,
    left_out,
    missing,
    paired,
    ratio_test,
    summary,
)

NAME = "echo-table"
GROUP = "echo-table"
SIZES = {1024: "1 KiB", 10240: "10 KiB", 102400: "100 KiB"}
# requests per second, from the announcement's chart (10 connections)
PUBLISHED_RPS = {
    "gevent": {1024: 30500, 10240: 27600, 102400: 13500},
    "tornado": {1024: 19900, 10240: 18600, 102400: 6800},
    "twisted": {1024: 23700, 10240: 21200, 102400: 11600},
}
PUBLISHED = Published(
    title="MagicStack's echo table: uvloop at least 2x asyncio; gevent > twisted > tornado",
    source="Yury Selivanov, \"uvloop: Blazing fast Python networking\", MagicStack blog, "
           "2016-05-04, and github.com/MagicStack/vmbench (uvloop's README: 2-4x asyncio)",
    expectation="At 1, 10 and 100 KiB over 10 connections: gevent 30.5k/27.6k/13.5k, tornado "
                "19.9k/18.6k/6.8k, twisted 23.7k/21.2k/11.6k requests/s; uvloop at least 2x "
                "asyncio.",
    numbers={"requests_per_s": {m: {SIZES[s]: v for s, v in sizes.items()}
                                for m, sizes in PUBLISHED_RPS.items()},
             "uvloop_over_asyncio_at_least": 2.0},
)
BASE = "tornado"  # the ratios' denominator, as the published table allows
ORDER = ("gevent", "twisted", "tornado")  # published, fastest first, at every size
UVLOOP_AT_LEAST = 2.0


def analyse(run: Run) -> Finding:
    rows = group_trials(run, GROUP)
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    table: dict[str, dict[str, Any]] = {}
    orders: dict[str, Any] = {}
    uvloop: dict[str, Any] = {}
    for size, label in SIZES.items():
        own = rows[rows["payload_bytes"] == size]
        rounds = {str(m): by_round(g, "throughput_rps") for m, g in own.groupby("variant")}
        if BASE not in rounds:
            continue
        table[label] = {m: {"throughput": summary(list(r.values()), 0),
                            "over_tornado": summary(paired(r, rounds[BASE]), 2),
                            "published_over_tornado": (round(PUBLISHED_RPS[m][size]
                                                             / PUBLISHED_RPS[BASE][size], 2)
                                                       if m in PUBLISHED_RPS else None)}
                        for m, r in rounds.items()}
        orders[label] = _orders(rounds)
        if "uvloop" in rounds and "asyncio" in rounds:
            ratios = paired(rounds["uvloop"], rounds["asyncio"])
            pair = own[own["variant"].isin(["uvloop", "asyncio"])]
            uvloop[label] = {**summary(ratios, 2), "p": round(ratio_test(ratios), 4),
                             "left_out": left_out(pair)}
    if not table:
        return Finding(NAME, PUBLISHED, NOT_MEASURABLE,
                       f"no valid {BASE} trial at any size: no ratio can be formed",
                       left_out=left_out(rows))
    verdict, reason = _verdict(orders, uvloop, _interpreter(run))
    chart = {"kind": "ratio_table", "y": "throughput ÷ tornado's (same round)",
             "sizes": list(table), "measured": {label: {m: c["over_tornado"]["median"]
                                                        for m, c in cells.items()}
                                                for label, cells in table.items()},
             "published": {label: {m: c["published_over_tornado"] for m, c in cells.items()
                                   if c["published_over_tornado"] is not None}
                           for label, cells in table.items()}}
    return Finding(NAME, PUBLISHED, verdict, reason,
                   measured={"table": table, "orders": orders, "uvloop_over_asyncio": uvloop},
                   chart=chart, left_out=left_out(rows))


def _orders(rounds: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    """Each published neighbour pair (faster, slower): the measured median ratio and the
    test's p."""
    pairs = []
    for faster, slower in zip(ORDER, ORDER[1:], strict=False):
        if faster not in rounds or slower not in rounds:
            continue
        ratios = paired(rounds[faster], rounds[slower])
        pairs.append({"faster": faster, "slower": slower, **summary(ratios, 2),
                      "p": round(ratio_test(ratios), 4) if ratios else None})
    return pairs


def _shown(pair: dict[str, Any]) -> str:
    """"shown", "reversed" (the test rejects, the other way), "unclear" or "unmeasured"."""
    if not pair["n"]:
        return "unmeasured"
    if pair["p"] is None or pair["p"] > ALPHA:
        return "unclear"
    return "shown" if pair["median"] > 1 else "reversed"


def _interpreter(run: Run) -> str:
    found = (interpreters(run) or [{}])[0]
    return f"{found.get('implementation', 'Python')} {found.get('version', '?')}"


def _verdict(orders: dict[str, Any], uvloop: dict[str, Any],
             interpreter: str) -> tuple[str, str]:
    outcomes = {f"{label}: {p['faster']} > {p['slower']}": (_shown(p), p)
                for label, pairs in orders.items() for p in pairs}
    words = "; ".join(f"{name} {outcome}" + (f" ({p['median']:.2f}x, p={p['p']})" if p["n"]
                                             else "") for name, (outcome, p) in outcomes.items())
    uv_words = "; ".join(
        f"{label} uvloop/asyncio {v['median']:.2f}x (n={v['n']})" if v.get("median") else
        f"{label} uvloop/asyncio: no round with both valid (left out: "
        + ", ".join(f"{kind} {count}" for kind, count in v.get("left_out", {}).items()) + ")"
        for label, v in uvloop.items())
    reversed_ = [name for name, (outcome, _p) in outcomes.items() if outcome == "reversed"]
    low_uvloop = [label for label, v in uvloop.items()
                  if isinstance(v, dict) and v.get("median") and v["median"] < UVLOOP_AT_LEAST]
    unclear = [name for name, (outcome, _p) in outcomes.items()
               if outcome in ("unclear", "unmeasured")]
    text = f"{words}. {uv_words}"
    if reversed_ or low_uvloop:
        why = []
        if reversed_:
            why.append("order reversed: " + ", ".join(reversed_))
        if low_uvloop:
            why.append(f"uvloop below {UVLOOP_AT_LEAST:g}x asyncio at " + ", ".join(low_uvloop)
                       + f" (published on CPython 3.5 in 2016; measured on {interpreter}, "
                         "uvloop and asyncio both changed since)")
        return NOT_REPRODUCED, text + ". " + "; ".join(why)
    if unclear:
        return NOT_REPRODUCED, text + ". Not shown at alpha 0.05: " + ", ".join(unclear)
    return REPRODUCED, text
