"""Where checkpoints live and which of the known ones are present (weights/manifest.toml)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EngineError

REPO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def weights_dirs() -> list[Path]:
    """Folders searched for checkpoints, first match wins: $GAN2SHAPE_WEIGHTS, then the repo's weights/."""
    dirs = [Path(p) for p in os.environ.get("GAN2SHAPE_WEIGHTS", "").split(os.pathsep) if p]
    return [*dirs, REPO_WEIGHTS]


@dataclass(frozen=True)
class WeightsEntry:
    """One known checkpoint from the manifest."""

    name: str
    file: str
    kind: str
    size: int | None = None
    channel_multiplier: int | None = None
    presets: tuple[str, ...] = field(default_factory=tuple)
    shipped: bool = False
    note: str = ""

    def find(self) -> Path | None:
        for d in weights_dirs():
            if (d / self.file).is_file():
                return d / self.file
        return None


def manifest() -> dict[str, WeightsEntry]:
    """Known checkpoints by name, read from weights/manifest.toml."""
    path = REPO_WEIGHTS / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EngineError(f"cannot read the weights manifest: {exc}", path) from exc
    return {name: WeightsEntry(name=name, **{**v, "presets": tuple(v.get("presets", ()))})
            for name, v in data.items()}


def resolve(name_or_path: str) -> Path:
    """A manifest name or a file path → an existing file, or an EngineError saying what is missing."""
    entries = manifest()
    if name_or_path in entries:
        entry = entries[name_or_path]
        found = entry.find()
        if found is None:
            where = ", ".join(str(d) for d in weights_dirs())
            raise EngineError(f"weights '{name_or_path}' not found: put {entry.file} in one of: {where}")
        return found
    path = Path(name_or_path)
    if not path.is_file():
        raise EngineError("weights file does not exist", path)
    return path


# kind → ("module:function(path, **expected) -> description", manifest fields passed as `expected`);
# the function raises EngineError when the file is not valid.
VALIDATORS = {
    "mvn": ("engine.nets:describe_mvn", ()),
    "stylegan2": ("engine.gan.checkpoint:describe_checkpoint", ("size", "channel_multiplier")),
    "gan2shape": ("engine.nets:describe_checkpoint", ()),
}


def validate(entry: WeightsEntry, path: Path) -> str:
    """Describe a checkpoint of a known kind, raising EngineError if it does not load as that kind."""
    import importlib

    if entry.kind not in VALIDATORS:
        raise EngineError(f"no validator for weights kind '{entry.kind}'", path)
    target, fields = VALIDATORS[entry.kind]
    module, func = target.split(":")
    expected = {f: getattr(entry, f) for f in fields if getattr(entry, f) is not None}
    return getattr(importlib.import_module(module), func)(path, **expected)
