"""Training state saved after every finished phase, so `--resume` continues where a run stopped.

The state holds only tensors, numbers, strings and containers of them, so it loads with
`weights_only=True`. A fingerprint of the input and the resolved config guards against resuming
a different run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import EngineError
from ..io import atomic_path, load_torch

STATE_VERSION = 3  # 2: banks carry their sampled views; 3: and lights


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able run identity (input hashes, resolved config, seed)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def state_path_for(out_dir: str | Path) -> Path:
    """The state file lives next to the bundle directory (never inside it: the bundle is renamed in)."""
    out = Path(out_dir)
    return out.with_name(f".{out.name}.state.pt")


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)


def load_state(path: Path, expected_fingerprint: str) -> dict[str, Any]:
    """Load a saved state; EngineError if it is unreadable or belongs to another run."""
    state = load_torch(path, "saved training state", "delete it to start over")
    if state.get("version") != STATE_VERSION:
        raise EngineError("saved training state has an unknown version; delete it to start over", path)
    if state.get("fingerprint") != expected_fingerprint:
        raise EngineError("saved training state belongs to a different input, config or seed; "
                          "run without --resume to start over", path)
    return state
