"""Export geometry and light rig on the analytic ellipsoid (no files): frames, trimming, UVs, solids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import binary_dilation
from scipy.spatial.transform import Rotation
from test_export_scene import AMBIENT, DIFFUSE, FOV, Scene, light_direction

from engine.errors import EngineError
from engine.export.lightrig import light_rig
from engine.export.mesh import MIN_FACING_COS, decimate, relief_mesh, solidify
from engine.render import Camera, points_to_grid


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    return Scene().canonical()


def project(points_engine: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) of engine points in the size² camera (renderer's projection)."""
    grid = points_to_grid(torch.from_numpy(points_engine).reshape(1, -1, 1, 3), Camera(size, FOV))
    pix = (grid.reshape(-1, 2).numpy() + 1) / 2 * (size - 1)
    return pix[:, 0], pix[:, 1]


def facing_cos(vertices: np.ndarray, faces: np.ndarray, eye: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ray = tri.mean(1) - eye
    return (n * ray).sum(1) / np.linalg.norm(n, axis=1) / np.linalg.norm(ray, axis=1)


def boundary_degree(faces: np.ndarray, n: int) -> np.ndarray:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return np.bincount(uniq[counts == 1].ravel(), minlength=n)


def test_relief_reprojects_to_the_depth_and_uvs_name_the_source_pixel(maps) -> None:
    size = maps["depth"].shape[0]
    mesh, frame = relief_mesh(maps["depth"].astype(np.float32), maps["mask"], FOV)
    points = frame.to_engine(mesh.vertices)
    u, v = project(points, size)
    j, i = np.rint(u).astype(int), np.rint(v).astype(int)
    np.testing.assert_allclose(u, j, atol=1e-6)  # every vertex is a pixel of the depth map
    np.testing.assert_allclose(v, i, atol=1e-6)
    np.testing.assert_allclose(points[:, 2], maps["depth"][i, j], atol=1e-4)
    assert maps["mask"][i, j].all()  # only the object
    assert len(np.unique(i * size + j)) == len(points)
    np.testing.assert_allclose(mesh.uvs, np.stack([(j + 0.5) / size, (i + 0.5) / size], 1), atol=1e-9)
    assert mesh.uvs.min() > 0 and mesh.uvs.max() < 1
    assert len(mesh.faces) > 0.8 * 2 * maps["mask"].sum()  # most of the object survives the trimming


def test_relief_is_unit_sized_y_up_and_faces_the_viewer(maps) -> None:
    mesh, frame = relief_mesh(maps["depth"], maps["mask"], FOV)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    assert np.isclose((hi - lo).max(), 1.0)
    np.testing.assert_allclose((hi + lo) / 2, 0.0, atol=1e-9)
    # Y-up: the top image row (engine y < 0) is at the top of the asset
    top = frame.to_engine(mesh.vertices)[:, 1].argmin()
    assert mesh.vertices[top, 1] == pytest.approx(hi[1])
    # the camera (engine origin) is on +Z; every face is wound toward it (outward)
    eye = frame.to_asset(np.zeros(3))
    assert eye[2] > hi[2]
    assert (facing_cos(mesh.vertices, mesh.faces, eye) < -MIN_FACING_COS + 1e-9).all()


def test_normals_are_unit_smooth_and_outward(maps) -> None:
    mesh, frame = relief_mesh(maps["depth"], maps["mask"], FOV)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-9)
    # outward = −n_engine in the asset frame: (x, y, z) → (−x, y, z) of the engine's +z-facing normal
    size = maps["depth"].shape[0]
    u, v = project(frame.to_engine(mesh.vertices), size)
    n_engine = maps["normal"][np.rint(v).astype(int), np.rint(u).astype(int)]
    expected = n_engine * [-1.0, 1.0, 1.0]
    cos = (mesh.normals * expected).sum(1)
    inner = boundary_degree(mesh.faces, len(mesh.vertices)) == 0
    assert np.median(cos[inner]) > 0.999 and cos[inner].min() > 0.97
    tri = mesh.vertices[mesh.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    assert area.min() > 1e-8  # no degenerate faces


def test_no_stretched_silhouette_walls_with_a_loose_mask(maps) -> None:
    loose = binary_dilation(maps["mask"], iterations=2)  # reaches the background plane at 1.1
    mesh, frame = relief_mesh(maps["depth"], loose, FOV)
    z = frame.to_engine(mesh.vertices)[:, 2]
    assert z.max() == pytest.approx(1.1)  # background vertices are there…
    spans = np.ptp(z[mesh.faces], axis=1)
    assert spans.max() < 0.02  # …but no triangle bridges the jump onto them


def test_upsampled_relief_keeps_the_depth_at_the_original_pixels(maps) -> None:
    size = maps["depth"].shape[0]
    res = 2 * (size - 1) + 1  # every other vertex is an original pixel
    mesh, frame = relief_mesh(maps["depth"], maps["mask"], FOV, resolution=res)
    points = frame.to_engine(mesh.vertices)
    u, v = project(points, size)
    on_pixel = (np.abs(u - np.rint(u)) < 1e-6) & (np.abs(v - np.rint(v)) < 1e-6)
    assert len(mesh.vertices) > 3 * on_pixel.sum() > 0
    i, j = np.rint(v[on_pixel]).astype(int), np.rint(u[on_pixel]).astype(int)
    np.testing.assert_allclose(points[on_pixel, 2], maps["depth"][i, j], atol=1e-4)
    np.testing.assert_allclose(mesh.uvs, np.stack([(u + 0.5) / size, (v + 0.5) / size], 1), atol=1e-9)


def test_solid_is_watertight_and_keeps_the_relief(maps) -> None:
    mesh, _ = relief_mesh(maps["depth"], maps["mask"], FOV)
    solid = solidify(mesh, 0.1)
    tm = trimesh.Trimesh(solid.vertices, solid.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert tm.euler_number == 2
    n = len(mesh.vertices)
    np.testing.assert_array_equal(solid.vertices[:n], mesh.vertices)
    np.testing.assert_array_equal(solid.faces[: len(mesh.faces)], mesh.faces)
    assert solid.vertices[n:, 2].max() == pytest.approx(mesh.vertices[:, 2].min() - 0.1)
    plate = tm.face_normals[len(mesh.faces): 2 * len(mesh.faces)]
    assert (plate[:, 2] < -0.999).all()  # a flat plate facing −Z, no folded triangles
    np.testing.assert_allclose(np.linalg.norm(solid.normals, axis=1), 1.0)
    with pytest.raises(EngineError):
        solidify(mesh, 0.0)


def test_touching_pieces_are_separated_so_the_solid_stays_closed() -> None:
    depth = np.full((16, 16), 1.0, np.float32)
    mask = np.zeros((16, 16), bool)
    mask[2:8, 2:8] = mask[7:13, 7:13] = True  # two squares sharing the corner vertex (7, 7)
    mesh, _ = relief_mesh(depth, mask, FOV)
    assert boundary_degree(mesh.faces, len(mesh.vertices)).max() == 2
    solid = solidify(mesh, 0.05)
    tm = trimesh.Trimesh(solid.vertices, solid.faces, process=False)
    assert tm.is_watertight and tm.volume > 0


def test_decimation_hits_the_target_and_reprojects_uvs(maps) -> None:
    pytest.importorskip("fast_simplification")
    size = maps["depth"].shape[0]
    mesh, frame = relief_mesh(maps["depth"], maps["mask"], FOV, resolution=64)
    small = decimate(mesh, frame, 300, size, FOV)
    assert 240 <= len(small.faces) <= 300 < len(mesh.faces)
    u, v = project(frame.to_engine(small.vertices), size)
    np.testing.assert_allclose(small.uvs, np.stack([(u + 0.5) / size, (v + 0.5) / size], 1), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(small.normals, axis=1), 1.0)
    solid = solidify(small, 0.1)
    tm = trimesh.Trimesh(solid.vertices, solid.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    plate = tm.face_normals[len(small.faces): 2 * len(small.faces)]
    assert (plate[:, 2] < -0.999).all()


def test_rig_reproduces_the_engine_shading_in_the_asset_frame(maps) -> None:
    mesh, frame = relief_mesh(maps["depth"], maps["mask"], FOV)
    rig = light_rig({"ambient": AMBIENT, "diffuse": DIFFUSE, "direction": light_direction().tolist()}, frame, FOV)
    travel = Rotation.from_quat(rig["sun"]["rotation_xyzw"]).apply([0.0, 0.0, -1.0])  # a glTF sun shines along −Z
    np.testing.assert_allclose(travel, rig["sun"]["direction"], atol=1e-9)
    assert travel[2] < 0  # light comes from the viewer's side, like the engine's (z > 0 = into the scene)
    k_a = rig["ambient"]["world_strength"]
    k_d = rig["sun"]["cycles_strength"] / np.pi
    shading = k_a + k_d * np.maximum(0.0, mesh.normals @ -travel)
    u, v = project(frame.to_engine(mesh.vertices), maps["depth"].shape[0])
    reference = maps["shading"][np.rint(v).astype(int), np.rint(u).astype(int)]
    assert np.corrcoef(shading, reference)[0, 1] > 0.99
    assert np.abs(shading - reference).mean() < 0.01
    mirrored = k_a + k_d * np.maximum(0.0, mesh.normals @ (-travel * [1.0, -1.0, 1.0]))
    assert np.corrcoef(mirrored, reference)[0, 1] < 0.9  # the check can fail: y is not symmetric here
    camera = np.asarray(rig["camera"]["position"])
    np.testing.assert_allclose(frame.to_engine(camera), 0.0, atol=1e-12)


def test_rig_clamps_what_blender_cannot_represent() -> None:
    frame_rig = light_rig({"ambient": -0.2, "diffuse": 0.8, "direction": [0.0, 0.0, 1.0]},
                          relief_mesh(np.ones((8, 8), np.float32), np.ones((8, 8), bool), FOV)[1], FOV)
    assert frame_rig["ambient"]["world_strength"] == 0.0 and frame_rig["ambient"]["clamped"]
    assert frame_rig["sun"]["cycles_strength"] == pytest.approx(0.8 * np.pi)
    np.testing.assert_allclose(frame_rig["sun"]["direction"], [0.0, 0.0, -1.0])
