"""Which trials' figures may stand for their model: the one rule every median, chart and verdict
follows, and the markers the report shows it with.

A failed trial has no figures. A trial whose client saturated (its figures describe the load
generator) or that had request errors has figures, shown in the flagged tables (and in the
C10K section, where turning connections away is the result), but left out of every median,
chart and verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MARK_SATURATED = "†"
MARK_ERRORS = "‡"
MARK_FAILED = "✗"
MARK_NOTES = {
    MARK_SATURATED: "client saturated: the figures describe the load generator, not the server",
    MARK_ERRORS: "the trial had request errors",
    MARK_FAILED: "the trial failed (no figures)",
}
COLUMNS = ["failed", "client_saturated", "has_errors", "excluded", "flags", "exclusion_reason"]


@dataclass(frozen=True)
class Validity:
    """What ``judge`` decided about one trial."""

    failed: bool
    client_saturated: bool
    has_errors: bool
    reason: str  # why it is excluded ('' when it is not)

    @property
    def excluded(self) -> bool:
        """Left out of medians, charts and verdicts."""
        return self.failed or self.client_saturated or self.has_errors

    @property
    def flags(self) -> str:
        """The trial's markers: ✗ alone when it failed, else † and/or ‡."""
        if self.failed:
            return MARK_FAILED
        return (MARK_SATURATED if self.client_saturated else "") + (
            MARK_ERRORS if self.has_errors else "")

    def columns(self) -> dict[str, Any]:
        """The summary frame's validity columns (``COLUMNS``)."""
        return {"failed": self.failed, "client_saturated": self.client_saturated,
                "has_errors": self.has_errors, "excluded": self.excluded, "flags": self.flags,
                "exclusion_reason": self.reason}


def judge(record: Mapping[str, Any]) -> Validity:
    """Decide whether a trial record's figures are valid (docs/results-format.md: ``status``,
    ``derived.client_saturated`` and ``derived.errors``, a count)."""
    derived = record.get("derived") or {}
    failed = record.get("status") != "ok"
    saturated = not failed and bool(derived.get("client_saturated"))
    errors = _count(derived.get("errors"))
    has_errors = not failed and errors > 0
    reasons = []
    if failed:
        reasons.append(f"failed: {record.get('failure') or 'no reason recorded'}")
    if saturated:
        why = saturation_reasons(record)
        reasons.append("client saturated" + (f" ({why})" if why else ""))
    if has_errors:
        kinds = error_kinds(record)
        reasons.append(f"{int(errors)} errors" + (f" ({kinds})" if kinds else ""))
    return Validity(failed, saturated, has_errors, "; ".join(reasons))


def _count(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return 0.0


def error_kinds(record: Mapping[str, Any]) -> str:
    """The swarm's errors by kind, as 'kind=n; ...' (empty when none)."""
    errors = (record.get("swarm") or {}).get("errors") or {}
    return "; ".join(f"{kind}={count}" for kind, count in errors.items() if count)


def saturation_reasons(record: Mapping[str, Any]) -> str:
    """Why the swarm said it was saturated, joined ('' when it gave no reason)."""
    reasons = ((record.get("swarm") or {}).get("client") or {}).get("reasons") or []
    return "; ".join(map(str, reasons))
