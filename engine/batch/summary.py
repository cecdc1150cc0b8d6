"""The batch summary (JSON + CSV): one row per image, rewritten atomically whenever an item finishes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..bundle import utc_now
from ..io import atomic_path, write_json

SCHEMA = "gan2shape.batch-summary"
SUMMARY_NAME = "batch-summary"
STATUSES = ("pending", "done", "skipped", "failed")  # skipped = complete from an earlier run, reused
CSV_FIELDS = ("name", "image", "status", "seconds", "bundle", "glb", "error")


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"loss": {"stage0_step1": x}, "side": y} → {"loss.stage0_step1": x, "side": y} (numbers only)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def pending_record(name: str, image: Path) -> dict[str, Any]:
    return {"name": name, "image": str(image), "status": "pending", "seconds": None, "bundle": None, "glb": None,
            "error": None, "metrics": {}, "warnings": []}


class Summary:
    """Records keyed by item name, kept in item order, written to `<stem>.json` and `<stem>.csv`."""

    def __init__(self, out_dir: Path, records: list[dict[str, Any]], info: dict[str, Any],
                 stem: str = SUMMARY_NAME):
        self.json_path = out_dir / f"{stem}.json"
        self.csv_path = out_dir / f"{stem}.csv"
        self.records = {r["name"]: r for r in records}
        self.info = info

    def update(self, record: dict[str, Any], write: bool = True) -> None:
        self.records[record["name"]] = record
        if write:
            self.write()

    def counts(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.records.values()) for s in STATUSES}

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r["status"] == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": 1, "updated": utc_now(), **self.info, "counts": self.counts(),
                "items": list(self.records.values())}

    def write(self) -> None:
        """Both files atomically: a reader (or a crash) never sees a half-written summary."""
        write_json(self.json_path, self.to_json())
        metric_keys = sorted({k for r in self.records.values() for k in r["metrics"]})
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*CSV_FIELDS, *metric_keys])
            for r in self.records.values():
                writer.writerow([*("" if r[f] is None else r[f] for f in CSV_FIELDS),
                                 *(r["metrics"].get(k, "") for k in metric_keys)])
