"""Atomic file and directory writes (readers never see a half-written result) and safe torch loads."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import EngineError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `target` only if the block succeeds.

    Works for files and directories alike (the block creates whatever it wants at the path).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the block decides whether this becomes a file or a directory
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = tmp.with_name(tmp.name + ".old")  # unique, like tmp
            target.rename(old)
            try:
                tmp.rename(target)
            except OSError:
                old.rename(target)  # put the previous result back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (sorted keys, indented) so a crash never leaves a truncated file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_torch(path: str | Path, what: str = "weights-only torch file", advice: str = "") -> Any:
    """torch.load(weights_only=True) onto the CPU; any failure is one EngineError line naming the file.

    Never unpickles code: files holding anything but tensors and plain containers are refused.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise EngineError("file does not exist", path) from exc
    except Exception as exc:  # torch raises many types for corrupt, truncated or unsafe files
        tail = f"; {advice}" if advice else ""
        raise EngineError(f"not a readable {what} ({type(exc).__name__}){tail}", path) from exc
