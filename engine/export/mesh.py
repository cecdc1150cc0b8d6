"""Object-only meshes from the canonical depth map: relief (default), decimated, closed solid.

Why not the official export (spec §10.2): it keeps the whole rectangle, background and stretched
silhouette walls included. Here only triangles on the object and facing the camera survive, the
mesh lives in the asset frame (frame.py) and UVs come from projecting each vertex into the
canonical image, so they stay right after upsampling or decimation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EngineError
from ..render import Camera, depth_to_points, grid_faces, points_to_grid
from .frame import AssetFrame

# A triangle seen this edge-on from the camera (|cos| of its normal with the viewing ray) is a
# silhouette wall or a border-clamp step, not surface: ~84° from facing the camera.
MIN_FACING_COS = 0.1


@dataclass
class Mesh:
    """Triangle mesh in the asset frame. `uvs` use the glTF convention (origin top-left, v down)."""

    vertices: np.ndarray  # V×3 float64
    faces: np.ndarray  # F×3 int64, counter-clockwise seen from outside
    normals: np.ndarray  # V×3 unit
    uvs: np.ndarray  # V×2 in [0, 1]


def upsample(image: np.ndarray, size: int, mode: str, align_corners: bool | None) -> np.ndarray:
    """Resize an H×W or H×W×C float array to size×size with torch's interpolation."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode=mode, align_corners=align_corners)
    out = t[0].permute(1, 2, 0).numpy()
    return out[..., 0] if image.ndim == 2 else out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth normals: the area-weighted mean of the adjacent faces' normals, unit length."""
    face_n = _face_normals(vertices, faces)  # area-weighted by its length
    acc = np.stack([np.bincount(faces.ravel(), weights=np.repeat(face_n[:, k], 3), minlength=len(vertices))
                    for k in range(3)], axis=1)
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    return acc / np.maximum(norm, 1e-12)


def canonical_uvs(points_engine: np.ndarray, image_size: int, fov_deg: float) -> np.ndarray:
    """UV of each engine-frame point: its projection (u, v) in the S×S canonical image → ((u+½)/S, (v+½)/S)."""
    pts = torch.from_numpy(np.asarray(points_engine, dtype=np.float64)).reshape(1, -1, 1, 3)
    grid = points_to_grid(pts, Camera(image_size, fov_deg)).reshape(-1, 2).numpy()
    pixel = (grid + 1.0) / 2.0 * (image_size - 1)
    return np.clip((pixel + 0.5) / image_size, 0.0, 1.0)


def _rim_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges (a→b as they run in their face) that belong to a single face: the boundary."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lo, hi = directed.min(axis=1), directed.max(axis=1)
    key = lo * (int(faces.max()) + 1) + hi  # one int64 per undirected edge: a 1-D sort, not a row sort
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return directed[counts[inverse] == 1]


def _drop_pinches(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Remove faces around vertices where two pieces of surface touch at a single point.

    Such a vertex has more than two boundary edges; the mesh would not be a manifold and the
    solid's walls would share an edge four times. A pixel of erosion at those spots fixes it.
    """
    for _ in range(32):  # each pass may expose a new pinch next to the removed faces; a few passes suffice
        if len(faces) == 0:
            break
        bad = np.bincount(_rim_edges(faces).ravel(), minlength=n_vertices) > 2
        if not bad.any():
            break
        faces = faces[~bad[faces].any(axis=1)]
    return faces


def _face_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = twice the area)."""
    tri = points[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def _surface_faces(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Which grid faces are surface rather than silhouette walls (engine frame, camera at 0).

    A wall is seen edge-on: |cos| between its normal and the camera ray to its centre is below
    MIN_FACING_COS. Faces must also point toward −z (the viewer's side), which keeps the solid's
    flat back plate, a projection of the relief along z, free of flipped triangles.
    """
    normal = _face_normals(points, faces)
    ray = points[faces].mean(axis=1)
    cos = np.abs((normal * ray).sum(axis=1)) / np.maximum(np.linalg.norm(normal, axis=1) * np.linalg.norm(ray, axis=1),
                                                          1e-30)
    return (cos >= MIN_FACING_COS) & (normal[:, 2] < 0)


def _compact(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the vertices some face uses; renumber the faces."""
    used, inverse = np.unique(faces, return_inverse=True)
    return points[used], inverse.reshape(faces.shape)


def relief_mesh(depth: np.ndarray, mask: np.ndarray, fov_deg: float, resolution: int | None = None,
                ) -> tuple[Mesh, AssetFrame]:
    """The object's surface from an S×S canonical depth and object mask (1 = object).

    `resolution` R > S upsamples the depth bicubically (and the mask bilinearly) before
    back-projecting with a camera of the same fov, so the vertices cover the same rays.
    Returns the mesh in the asset frame and the frame that maps it back to the engine.
    """
    size = depth.shape[0]
    res = resolution or size
    if res < 2:
        raise EngineError(f"export resolution must be at least 2, got {res}")
    depth_r = upsample(depth, res, "bicubic", align_corners=True)
    keep = upsample(mask.astype(np.float32), res, "bilinear", align_corners=True) > 0.5
    points = depth_to_points(torch.from_numpy(depth_r.astype(np.float64))[None], Camera(res, fov_deg))[0]
    points = points.reshape(-1, 3).numpy()
    faces = grid_faces(res, res).numpy()
    faces = faces[keep.reshape(-1)[faces].all(axis=1)]
    faces = _drop_pinches(faces[_surface_faces(points, faces)], len(points))
    if len(faces) == 0:
        raise EngineError("the object mask leaves no surface to export")
    points, faces = _compact(points, faces)
    frame = AssetFrame.fit(points)
    vertices = frame.to_asset(points)
    mesh = Mesh(vertices, faces, vertex_normals(vertices, faces), canonical_uvs(points, size, fov_deg))
    return mesh, frame


def decimate(mesh: Mesh, frame: AssetFrame, face_count: int, image_size: int, fov_deg: float) -> Mesh:
    """Quadric decimation to about `face_count` faces; UVs re-projected, normals recomputed."""
    if face_count < 4:
        raise EngineError(f"decimation target must be at least 4 faces, got {face_count}")
    if face_count >= len(mesh.faces):
        return mesh
    try:
        import fast_simplification  # noqa: F401  (trimesh's backend; imported here for a clear error)
    except ImportError as exc:
        raise EngineError("decimation needs the fast_simplification package (pip install fast_simplification)"
                          ) from exc
    import trimesh

    simple = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).simplify_quadric_decimation(
        face_count=face_count)
    vertices = np.asarray(simple.vertices, dtype=np.float64)
    faces = np.asarray(simple.faces, dtype=np.int64)
    # like the relief: no degenerate faces and none turned away from the viewer (+Z)
    faces = _drop_pinches(faces[_face_normals(vertices, faces)[:, 2] > 1e-12], len(vertices))
    vertices, faces = _compact(vertices, faces)
    uvs = canonical_uvs(frame.to_engine(vertices), image_size, fov_deg)
    return Mesh(vertices, faces, vertex_normals(vertices, faces), uvs)


def solidify(mesh: Mesh, thickness: float) -> Mesh:
    """Close a relief into a watertight solid: walls straight back (−Z) to a flat plate.

    The plate sits `thickness` behind the relief's deepest point and copies the relief's
    triangulation (reversed), so every edge is shared by exactly two faces. Rim vertices are
    shared by the relief and the walls; the relief keeps its own normals, the plate faces −Z.
    """
    if thickness <= 0:
        raise EngineError(f"solid thickness must be positive, got {thickness}")
    n = len(mesh.vertices)
    faces = mesh.faces
    rim = _rim_edges(faces)
    a, b = rim[:, 0], rim[:, 1]
    walls = np.concatenate([np.stack([b, a, a + n], 1), np.stack([b, a + n, b + n], 1)])
    back = mesh.vertices.copy()
    back[:, 2] = mesh.vertices[:, 2].min() - thickness
    back_normals = np.tile([0.0, 0.0, -1.0], (n, 1))
    return Mesh(np.concatenate([mesh.vertices, back]),
                np.concatenate([faces, faces[:, ::-1] + n, walls]),
                np.concatenate([mesh.normals, back_normals]),
                np.concatenate([mesh.uvs, mesh.uvs]))
