"""The result bundle (docs/bundle.md): a directory holding `result.json` and the files it names.

Why a module of its own: the pipeline writes bundles, export extends them and the add-on reads
them; all three must agree on one schema, validated here, without importing torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import EngineError
from .io import atomic_path, write_json

SCHEMA = "gan2shape.bundle"
SCHEMA_VERSION = 1
RESULT_FILE = "result.json"

# Keys every result.json of this schema version has, and the files every bundle holds.
REQUIRED_KEYS = ("schema", "schema_version", "created", "input", "preset", "config", "image_size", "camera",
                 "view", "light", "perceptual", "metrics", "timings", "versions", "files")
REQUIRED_FILES = ("input", "depth", "depth_view", "normal", "normal_png", "albedo", "shading", "canonical",
                  "reconstruction", "mask")


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] (H×W or H×W×C) → uint8 with rounding."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class BundleWriter:
    """Collects files in a temporary directory; `result.json` is written last by `finish`.

    Use through `open_bundle(out_dir)`: the directory appears at `out_dir` only if the block ends
    without an exception, so an existing bundle is always complete.
    """

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, Any] = {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def save_npy(self, key: str, rel: str, array: np.ndarray) -> str:
        np.save(self.path(rel), np.ascontiguousarray(array, dtype=np.float32))
        self.files[key] = rel
        return rel

    def save_png(self, key: str | None, rel: str, image01: np.ndarray) -> str:
        """Save a float image in [0, 1]: H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA)."""
        Image.fromarray(to_uint8(image01)).save(self.path(rel))
        if key is not None:
            self.files[key] = rel
        return rel

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": utc_now(), **result,
                "files": {**self.files, **result.get("files", {})}}
        validate(data, self.root)
        (self.root / RESULT_FILE).write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def open_bundle(out_dir: str | Path) -> Iterator[BundleWriter]:
    """Write a bundle atomically: files go to a temporary sibling renamed onto `out_dir` at the end."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        yield BundleWriter(tmp)


def _file_paths(files: dict[str, Any]) -> Iterator[str]:
    """Every relative path named in `files` (values may be strings, lists or nested dicts)."""
    for value in files.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for v in value:
                yield from _file_paths({"": v})
        elif isinstance(value, dict):
            yield from _file_paths(value)


def validate(data: dict[str, Any], root: str | Path) -> None:
    """Raise EngineError unless `data` is a result.json of this schema whose files exist under `root`."""
    root = Path(root)
    if not isinstance(data, dict):
        raise EngineError("result.json does not hold a JSON object", root)
    if data.get("schema") != SCHEMA:
        raise EngineError(f"not a {SCHEMA} result (schema = {data.get('schema')!r})", root)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EngineError(f"bundle schema version {version} is not supported (this engine reads {SCHEMA_VERSION})",
                          root)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise EngineError(f"result.json lacks {', '.join(missing)}", root)
    files = data["files"]
    absent = [k for k in REQUIRED_FILES if k not in files]
    if absent:
        raise EngineError(f"result.json names no file for {', '.join(absent)}", root)
    for rel in _file_paths(files):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise EngineError(f"bundle file path must be relative and inside the bundle: {rel}", root)
        if not (root / rel).is_file():
            raise EngineError(f"bundle file is missing: {rel}", root)
    size = data["image_size"]
    try:
        depth = np.load(root / files["depth"], mmap_mode="r")
    except (OSError, ValueError) as exc:  # truncated or not an .npy file
        raise EngineError(f"bundle file {files['depth']} is not a readable .npy array ({exc})", root) from exc
    if depth.shape != (size, size) or depth.dtype != np.float32:
        raise EngineError(f"depth must be float32 {size}×{size}, got {depth.dtype} {depth.shape}", root)
    light = data["light"]
    if len(light.get("direction", ())) != 3 or "ambient" not in light or "diffuse" not in light:
        raise EngineError("light needs ambient, diffuse and a 3-vector direction", root)


def read(bundle_dir: str | Path) -> dict[str, Any]:
    """Load and validate a bundle's result.json."""
    root = Path(bundle_dir)
    path = root / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EngineError("not a bundle (no result.json)", root) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"unreadable result.json: {exc}", path) from exc
    validate(data, root)
    return data


def add_files(bundle_dir: str | Path, files: dict[str, Any]) -> dict[str, Any]:
    """Record extra files (already written inside the bundle, e.g. by export) in result.json, atomically."""
    root = Path(bundle_dir)
    data = read(root)
    data["files"] = {**data["files"], **files}
    validate(data, root)
    write_json(root / RESULT_FILE, data)
    return data
