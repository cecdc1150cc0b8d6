"""One exception type for every user-facing failure, so the CLI can print one line and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class EngineError(Exception):
    """A problem the user can fix (bad file, bad option). Its message is one line naming the cause."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        text = f"{self.path}: {message}" if self.path else message
        super().__init__(" ".join(text.split()))
