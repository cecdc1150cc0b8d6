"""Read a result bundle's `result.json` (docs/bundle.md) without the engine (no torch, no PIL in Blender).

Only what the add-on needs is checked: the schema, its version, and that the files it names exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "gan2shape.bundle"
SCHEMA_VERSION = 1
RESULT_FILE = "result.json"


class BundleError(ValueError):
    """The directory is not a bundle this add-on can import; the message names the cause."""


@dataclass
class Bundle:
    """A bundle directory and its parsed result.json."""

    root: Path
    data: dict[str, Any]

    def file(self, key: str) -> Path | None:
        """Absolute path of the file recorded under `key`, or None if the bundle has none."""
        rel = self.data.get("files", {}).get(key)
        if not isinstance(rel, str):
            return None
        path = (self.root / rel).resolve()
        return path if path.is_file() else None

    def require(self, key: str, hint: str = "") -> Path:
        path = self.file(key)
        if path is None:
            raise BundleError(f"{self.root}: the bundle has no '{key}' file{hint}")
        return path

    @property
    def name(self) -> str:
        """A short name for objects: the input image's stem, else the bundle folder's name."""
        image = (self.data.get("input") or {}).get("image")
        return Path(image).stem if image else self.root.name

    @property
    def image_size(self) -> int:
        return int(self.data["image_size"])


def read_bundle(path: str | Path) -> Bundle:
    """Parse `<path>/result.json` (a path to result.json itself is accepted too)."""
    root = Path(path).expanduser().resolve()
    if root.name == RESULT_FILE:
        root = root.parent
    try:
        data = json.loads((root / RESULT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root}: not a bundle (no {RESULT_FILE})") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root / RESULT_FILE}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BundleError(f"{root}: not a {SCHEMA} result")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{root}: bundle schema version {data.get('schema_version')} is not supported "
                          f"(this add-on reads {SCHEMA_VERSION})")
    for key in ("image_size", "camera", "view", "light", "files"):
        if key not in data:
            raise BundleError(f"{root}: result.json lacks '{key}'")
    return Bundle(root=root, data=data)
