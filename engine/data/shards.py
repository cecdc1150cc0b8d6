"""On-disk layout of a generated data set: compressed .npz shards plus a manifest.json.

    DIR/manifest.json      {"format": ..., "seed", "n", "shard_size", "config": {...}, "shards": [...]}
    DIR/shard-00000.npz    rgb, albedo (uint8 N×H×W×3), depth (float32), normal (float16 N×H×W×3),
                           mask (bool), view (float32 N×6), light (float32 N×4), index (int64 N)

Shards are written atomically and one at a time, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import EngineError
from ..io import atomic_path, write_json
from .mesh import MESH_VERSION, load_base_mesh
from .synth import SynthConfig, render_images

FORMAT = "gan2shape-synth-v1"
KEYS = ("rgb", "albedo", "depth", "normal", "mask", "view", "light")


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.npz"


def generate(out: Path, n: int, seed: int, cfg: SynthConfig, shard_size: int = 1000, batch: int = 100,
             on_images: Callable[[int], None] | None = None) -> dict:
    """Render images 0..n-1 of run `seed` into `out`; existing complete shards are kept."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    header = {"format": FORMAT, "mesh": MESH_VERSION, "seed": seed, "shard_size": shard_size,
              "config": dataclasses.asdict(cfg)}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in header} != json.loads(json.dumps(header)):
            raise EngineError("holds a data set with another seed, shard size or config; use a new --out", out)
    mesh = load_base_mesh()
    shards = []
    for k, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        path = out / _shard_name(k)
        if path.is_file() and _shard_len(path) == stop - start:
            shards.append({"file": path.name, "start": start, "stop": stop})
            if on_images:
                on_images(stop - start)
            continue
        parts = []
        for b in range(start, stop, batch):
            parts.append(render_images(cfg, seed, np.arange(b, min(stop, b + batch)), mesh))
            if on_images:
                on_images(min(stop, b + batch) - b)
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in KEYS}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, index=np.arange(start, stop), **arrays)
        shards.append({"file": path.name, "start": start, "stop": stop})
        write_json(manifest_path, {**header, "n": stop, "shards": shards})
    manifest = {**header, "n": n, "shards": shards}
    write_json(manifest_path, manifest)
    return manifest


def _shard_len(path: Path) -> int:
    try:
        with np.load(path) as data:
            return len(data["index"])
    except (OSError, ValueError, KeyError):
        return -1


def read_manifest(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError("not a synthetic data set (run `python -m engine synth --out DIR` first)", path) from exc
    if manifest.get("format") != FORMAT:
        raise EngineError(f"unknown data set format {manifest.get('format')!r}", path)
    return manifest


def iter_shards(root: Path, keys: tuple[str, ...] = KEYS) -> Iterator[dict[str, np.ndarray]]:
    """Yield the requested arrays of each shard in index order."""
    root = Path(root)
    for shard in read_manifest(root)["shards"]:
        with np.load(root / shard["file"]) as data:
            yield {key: data[key] for key in keys}


def load(root: Path, keys: tuple[str, ...] = KEYS) -> dict[str, np.ndarray]:
    """All images of a data set, concatenated (20k rgb images at 64² are 250 MB of uint8)."""
    parts = list(iter_shards(root, keys))
    if not parts:
        raise EngineError("the data set has no shards", root)
    return {key: np.concatenate([p[key] for p in parts]) for key in keys}
