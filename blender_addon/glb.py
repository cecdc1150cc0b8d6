"""Read the triangle mesh of a binary glTF (GLB) file into numpy arrays, without bpy.

The add-on builds its objects itself (fast `foreach_set`, full control over names, collections and
undo) instead of running Blender's glTF importer, so it needs the geometry only: positions, the first
UV set and triangle indices of every mesh node, with node transforms applied, in the glTF frame.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_TRIANGLES = 4


class GLBError(ValueError):
    """The file is not a GLB this reader understands."""


@dataclass
class TriMesh:
    """Triangles in the glTF frame (Y up): vertices V×3, faces F×3, per-vertex uv V×2 (glTF: v down)."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None


def _accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    if "sparse" in acc or "bufferView" not in acc:
        raise GLBError("sparse or empty accessors are not supported")
    view = gltf["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0:
        raise GLBError("only the GLB's own binary chunk is supported")
    dtype = np.dtype(_COMPONENTS[acc["componentType"]])
    width = _WIDTH[acc["type"]]
    count = acc["count"]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or dtype.itemsize * width
    rows = np.ndarray((count, width), dtype=dtype, buffer=binary, offset=start, strides=(stride, dtype.itemsize))
    rows = rows.astype(np.float64 if dtype == np.float32 else np.int64)
    if acc.get("normalized") and dtype != np.float32:
        rows = rows / np.iinfo(dtype).max
    return rows


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF stores column-major
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    m = np.eye(4)
    m[:3, :3] = rot * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))[None, :]
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def parse_glb(data: bytes) -> tuple[dict, bytes]:
    """Split a GLB into its JSON document and binary chunk."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise GLBError("not a GLB file (bad magic)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise GLBError(f"glTF version {version} is not supported")
    offset, gltf, binary = 12, None, b""
    while offset + 8 <= min(length, len(data)):
        size, kind = struct.unpack_from("<I4s", data, offset)
        chunk = data[offset + 8: offset + 8 + size]
        if kind == b"JSON":
            gltf = json.loads(chunk.decode("utf-8"))
        elif kind == b"BIN\x00":
            binary = chunk
        offset += 8 + size
    if gltf is None:
        raise GLBError("GLB has no JSON chunk")
    return gltf, binary


def read_glb(path: str | Path) -> TriMesh:
    """All triangle primitives of all mesh nodes of the default scene, transformed and concatenated."""
    gltf, binary = parse_glb(Path(path).read_bytes())
    scene = gltf.get("scenes", [{}])[gltf.get("scene", 0)] if gltf.get("scenes") else {}
    roots = scene.get("nodes", range(len(gltf.get("nodes", []))))
    verts, faces, uvs = [], [], []
    base = 0
    stack = [(i, np.eye(4)) for i in roots]
    while stack:
        index, parent = stack.pop()
        node = gltf["nodes"][index]
        world = parent @ _node_matrix(node)
        stack.extend((child, world) for child in node.get("children", []))
        if "mesh" not in node:
            continue
        for prim in gltf["meshes"][node["mesh"]]["primitives"]:
            if prim.get("mode", _TRIANGLES) != _TRIANGLES:
                raise GLBError("only triangle primitives are supported")
            pos = _accessor(gltf, binary, prim["attributes"]["POSITION"])
            idx = (_accessor(gltf, binary, prim["indices"]).reshape(-1, 3) if "indices" in prim
                   else np.arange(len(pos)).reshape(-1, 3))
            verts.append(pos @ world[:3, :3].T + world[:3, 3])
            faces.append(idx + base)
            uv_index = prim["attributes"].get("TEXCOORD_0")
            uvs.append(None if uv_index is None else _accessor(gltf, binary, uv_index))
            base += len(pos)
    if not verts:
        raise GLBError("GLB holds no mesh")
    has_uv = all(u is not None for u in uvs)
    return TriMesh(vertices=np.concatenate(verts), faces=np.concatenate(faces),
                   uvs=np.concatenate(uvs) if has_uv else None)
