"""Progress reporting: a tqdm bar for people, JSON lines for programs (the add-on, batch runners).

Event contract (one JSON object per stdout line with --json; logs go to stderr):
  {"event": "start", ...}
  {"event": "progress", "stage": int, "step": str, "iter": int, "total": int, "fraction": 0..1, "eta_s": float}
  {"event": "warning", "message": str}
  {"event": "result", ...}            # e.g. "bundle": path
  {"event": "error", "message": str}  # one line
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """Tracks work done out of a known total and reports it as events or as a progress bar."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None, min_interval: float = 0.25):
        self.json_mode = json_mode
        self.out = out if out is not None else sys.stdout
        self.min_interval = min_interval
        self.total_work = 1.0
        self.done = 0.0
        self._t0 = time.monotonic()
        self._last_emit = -1e9
        self._bar: tqdm | None = None

    def emit(self, event: str, **fields: Any) -> None:
        """Write one JSON event line (json mode only) and flush it immediately."""
        if self.json_mode:
            self.out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
            self.out.flush()

    def start(self, total_work: float, **fields: Any) -> None:
        """Begin a run of `total_work` units (any unit: iterations, images, weighted seconds)."""
        self.total_work = max(float(total_work), 1e-9)
        self.done = 0.0
        self._t0 = time.monotonic()
        self.emit("start", **fields)
        if not self.json_mode:
            self._bar = tqdm(total=round(self.total_work, 3), file=sys.stderr, dynamic_ncols=True, mininterval=0.1,
                             bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total_work)

    def eta(self) -> float | None:
        f = self.fraction
        if f <= 0:
            return None
        return (time.monotonic() - self._t0) * (1 - f) / f

    def advance(self, work: float = 1.0, **fields: Any) -> None:
        """Record `work` more units done; fields (stage, step, iter, total, ...) describe where we are."""
        self.done += work
        now = time.monotonic()
        finished = self.done >= self.total_work
        if self._bar is not None:
            desc = " ".join(f"{k}={v}" for k, v in fields.items() if k in ("stage", "step", "item"))
            self._bar.set_description_str(desc, refresh=False)
            self._bar.update(round(min(self.done, self.total_work), 3) - self._bar.n)  # redraws at most 10×/s
        if self.json_mode and (finished or now - self._last_emit >= self.min_interval):
            self._last_emit = now
            eta = self.eta()
            self.emit("progress", fraction=round(self.fraction, 5),
                      eta_s=None if eta is None else round(eta, 1), **fields)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)
        if not self.json_mode:
            (tqdm.write if self._bar is not None else print)(f"warning: {message}", file=sys.stderr)

    def result(self, **fields: Any) -> None:
        self.close()
        self.emit("result", **fields)

    def error(self, message: str) -> None:
        self.close()
        self.emit("error", message=message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
