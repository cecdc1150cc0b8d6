"""The base mesh of the synthetic category: Blender's Suzanne, subdivided once, in the engine's frame.

Blender is only needed once: the mesh is cached as a small .npz so later runs (and machines without
bpy) reuse it. The engine frame is x right, y down, z forward (away from the camera); Suzanne faces
Blender's -Y with Z up, so (X, Y, Z)_blender -> (X, -Z, Y)_engine (a proper rotation: winding keeps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EngineError
from ..io import atomic_path

MESH_VERSION = "suzanne-subd1-v1"


def cache_dir() -> Path:
    """Where derived data lives by default: $GAN2SHAPE_CACHE or ~/.cache/gan2shape."""
    return Path(os.environ.get("GAN2SHAPE_CACHE", Path.home() / ".cache" / "gan2shape"))


@dataclass(frozen=True)
class BaseMesh:
    """Vertices (N×3, centred, half-width 1 along x) with outward-wound triangles (F×3)."""

    vertices: np.ndarray
    faces: np.ndarray


def _suzanne_from_blender(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import bpy
    except ImportError as exc:
        raise EngineError("the synthetic category needs Blender's Python module once (pip install bpy==4.5.15) "
                          f"to build its base mesh; or copy {MESH_VERSION}.npz into {cache_dir()}") from exc
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_monkey_add()
    obj = bpy.context.active_object
    obj.modifiers.new("subdivide", "SUBSURF").levels = subdivisions
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    mesh.calc_loop_triangles()
    verts = np.array([v.co[:] for v in mesh.vertices], dtype=np.float64)
    faces = np.array([t.vertices[:] for t in mesh.loop_triangles], dtype=np.int64)
    return verts, faces


def _normalise(verts_blender: np.ndarray, faces: np.ndarray) -> BaseMesh:
    """Blender frame -> engine frame, centred on the bounding box, half-width 1, outward winding."""
    v = np.stack([verts_blender[:, 0], -verts_blender[:, 2], verts_blender[:, 1]], axis=1)
    v = v - (v.min(0) + v.max(0)) / 2
    v = v / np.abs(v[:, 0]).max()
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    centroid = v[faces].mean(1)
    if np.sum(fn * (centroid - v.mean(0))) < 0:  # make the winding outward whatever Blender's order was
        faces = faces[:, [0, 2, 1]]
    return BaseMesh(v.astype(np.float32), faces.astype(np.int64))


def load_base_mesh(subdivisions: int = 1) -> BaseMesh:
    """The cached base mesh, building it with bpy (and caching it) the first time."""
    path = cache_dir() / f"{MESH_VERSION.replace('subd1', f'subd{subdivisions}')}.npz"
    if path.is_file():
        with np.load(path) as data:
            return BaseMesh(data["vertices"], data["faces"])
    mesh = _normalise(*_suzanne_from_blender(subdivisions))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, vertices=mesh.vertices, faces=mesh.faces)
    return mesh
