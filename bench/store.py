"""The run folder (docs/results-format.md): run.json, one atomic JSON record per finished trial."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from protocol.launch import atomic_write_json

__all__ = ["RESULTS_ROOT", "RunStore", "atomic_write_json", "read_json", "utc_now"]

RESULTS_ROOT = REPO_ROOT / "results"


def utc_now() -> str:
    """An ISO 8601 UTC timestamp, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


class RunStore:
    """One run folder: ``run.json``, ``trials/<trial_id>.json`` and ``logs/``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.trials_dir = self.run_dir / "trials"
        self.logs_dir = self.run_dir / "logs"

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def run_json(self) -> Path:
        return self.run_dir / "run.json"

    @classmethod
    def default_dir(cls, scenario: str, root: Path = RESULTS_ROOT) -> Path:
        """results/<UTC timestamp>-<scenario>/"""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return root / f"{stamp}-{scenario}"

    @classmethod
    def create(cls, run_dir: Path) -> RunStore:
        """A new, empty run folder (refusing one that already holds a run)."""
        store = cls(run_dir)
        if store.run_json.exists():
            raise FileExistsError(f"{run_dir} already holds a run; use --resume {run_dir}")
        store.trials_dir.mkdir(parents=True, exist_ok=True)
        store.logs_dir.mkdir(parents=True, exist_ok=True)
        return store

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        """An existing run folder."""
        store = cls(run_dir)
        if not store.run_json.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no run.json)")
        store.trials_dir.mkdir(exist_ok=True)
        store.logs_dir.mkdir(exist_ok=True)
        return store

    def read_run(self) -> dict[str, Any]:
        return read_json(self.run_json)

    def write_run(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, data)

    def update_run(self, **changes: Any) -> dict[str, Any]:
        """Read run.json, change some keys, write it back atomically."""
        data = self.read_run()
        data.update(changes)
        self.write_run(data)
        return data

    def trial_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.json"

    def has_trial(self, trial_id: str) -> bool:
        return self.trial_path(trial_id).is_file()

    def write_trial(self, record: dict[str, Any]) -> Path:
        path = self.trial_path(record["trial_id"])
        atomic_write_json(path, record)
        return path

    def load_trials(self) -> dict[str, dict[str, Any]]:
        """Every finished trial's record, by trial id (unreadable files are skipped)."""
        records = {}
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                record = read_json(path)
            except (OSError, json.JSONDecodeError):
                continue
            records[record.get("trial_id", path.stem)] = record
        return records
