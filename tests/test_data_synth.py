"""The synthetic category's ground truth must be self-consistent and reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.data import mesh as mesh_module
from engine.data.raster import Intrinsics, rasterize
from engine.data.shards import generate, load
from engine.data.synth import BACKGROUND_DEPTH, SynthConfig, render_images
from engine.errors import EngineError


@pytest.fixture(scope="module")
def base_mesh():
    """The cached Suzanne mesh; building it needs bpy once."""
    try:
        return mesh_module.load_base_mesh()
    except EngineError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def batch(base_mesh):
    return render_images(SynthConfig(), seed=7, indices=np.arange(8), mesh=base_mesh)


def normals_from_depth(depth: torch.Tensor, cam: Intrinsics) -> torch.Tensor:
    """Spec §3.8 central differences of the back-projected grid (interior pixels only)."""
    p = cam.back_project(depth)
    tu = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    tv = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    return torch.nn.functional.normalize(torch.cross(tu, tv, dim=-1), dim=-1)


def test_rasteriser_matches_an_analytic_tilted_plane():
    cam = Intrinsics(32)
    # a square in the plane n·P = c with n = normalise(0.3, -0.2, 1), through (0, 0, 1)
    normal = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    xs = np.linspace(-0.15, 0.15, 9)
    gx, gy = np.meshgrid(xs, xs)
    gz = 1 - (normal[0] * gx + normal[1] * gy) / normal[2]
    verts = torch.tensor(np.stack([gx, gy, gz], -1).reshape(1, -1, 3))
    quads = [(i * 9 + j, i * 9 + j + 1, (i + 1) * 9 + j, (i + 1) * 9 + j + 1) for i in range(8) for j in range(8)]
    faces = torch.tensor([f for a, b, c, d in quads for f in ((a, c, b), (b, c, d))])
    frags = rasterize(verts, faces, cam)
    assert bool((frags.face >= 0).all()), "the plane covers the whole frame"
    # exact ray-plane intersection at the integer pixel centres
    j = torch.arange(32, dtype=torch.float64)
    rx = ((j - cam.centre) / cam.focal).view(1, 32)
    ry = ((j - cam.centre) / cam.focal).view(32, 1)
    expected = 1 / (normal[0] * rx + normal[1] * ry + normal[2]) * normal[2]
    torch.testing.assert_close(frags.depth[0], expected, rtol=0, atol=1e-12)
    n = normals_from_depth(frags.depth, cam)
    torch.testing.assert_close(n, torch.tensor(normal).expand_as(n), rtol=0, atol=1e-9)
    # interpolated attributes are perspective-correct: interpolating the vertices gives the surface point
    points = frags.interpolate(verts, faces)
    torch.testing.assert_close(points, cam.back_project(frags.depth), rtol=0, atol=1e-12)


def test_nearest_surface_wins_and_background_is_empty():
    cam = Intrinsics(16)
    tri = torch.tensor([[-0.05, -0.05, 1.0], [0.05, -0.05, 1.0], [0.0, 0.05, 1.0]], dtype=torch.float64)
    verts = torch.cat([tri, tri * torch.tensor([1, 1, 0.95])]).unsqueeze(0)  # second copy nearer
    frags = rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), cam)
    covered = frags.face[0] >= 0
    assert 0 < int(covered.sum()) < 16 * 16
    assert bool((frags.face[0][covered] == 1).all())
    torch.testing.assert_close(frags.depth[0][covered], torch.full_like(frags.depth[0][covered], 0.95))
    assert bool(torch.isinf(frags.depth[0][~covered]).all())


def test_depth_back_projects_to_the_stored_normals(batch):
    cam = Intrinsics(64)
    n_depth = normals_from_depth(torch.from_numpy(batch["depth"]).double(), cam)
    n_gt = torch.from_numpy(batch["normal"].astype(np.float64))[:, 1:-1, 1:-1]
    mask = torch.from_numpy(batch["mask"]).float().unsqueeze(1)
    inner = (torch.nn.functional.avg_pool2d(mask, 3, 1, 1) > 0.99)[:, 0, 1:-1, 1:-1]
    angle = torch.rad2deg(torch.acos((n_depth * n_gt).sum(-1).clamp(-1, 1)))[inner]
    # interpolated mesh normals vs finite differences: close except at self-occlusions inside the mask
    assert float(angle.median()) < 5.0
    assert float((angle < 15).double().mean()) > 0.8
    # a surface facing the camera has n_z > 0 (spec §3.8); normals are unit length
    assert float((n_gt[inner][:, 2] > 0).double().mean()) > 0.99
    norms = np.linalg.norm(batch["normal"].astype(np.float64), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_shading_recomposes_the_image(batch):
    cfg = SynthConfig()
    mask = batch["mask"]
    light = batch["light"].astype(np.float64)
    d = np.concatenate([light[:, 2:], np.ones((len(light), 1))], 1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    diffuse = np.clip(np.einsum("bhwc,bc->bhw", batch["normal"].astype(np.float64), d), 0, None)
    shading = light[:, 0, None, None] + light[:, 1, None, None] * diffuse
    recomposed = np.clip(batch["albedo"] / 255 * shading[..., None], 0, 1)
    error = np.abs(recomposed - batch["rgb"] / 255)[mask]
    assert error.max() <= 1.5 / 255
    assert np.all(batch["rgb"][~mask] == round(cfg.background * 255))
    # the light actually varies the image: shading is not constant over an object
    assert all(shading[i][mask[i]].std() > 0.02 for i in range(len(mask)))


def test_ground_truth_ranges_and_camera(batch):
    depth, mask = batch["depth"], batch["mask"]
    assert depth.dtype == np.float32 and batch["rgb"].shape == (8, 64, 64, 3)
    assert depth[mask].min() > 0.9 and depth[mask].max() < BACKGROUND_DEPTH
    assert np.all(depth[~mask] == np.float32(BACKGROUND_DEPTH))
    assert all(0.1 < m.mean() < 0.6 for m in mask), "objects fill a sensible part of the frame"
    yaw = batch["view"][:, 1]
    assert np.all(np.abs(yaw) <= math.radians(45) + 1e-6)


def test_images_depend_only_on_seed_and_index(base_mesh, batch):
    again = render_images(SynthConfig(), seed=7, indices=np.array([5, 2]), mesh=base_mesh)
    for key, value in again.items():
        np.testing.assert_array_equal(value, batch[key][[5, 2]], err_msg=key)
    other = render_images(SynthConfig(), seed=8, indices=np.array([5]), mesh=base_mesh)
    assert not np.array_equal(other["rgb"][0], batch["rgb"][5])


def test_shards_round_trip_resume_and_refuse_another_seed(base_mesh, tmp_path):
    cfg = SynthConfig(image_size=32)
    manifest = generate(tmp_path, n=5, seed=3, cfg=cfg, shard_size=2, batch=2)
    assert [s["stop"] for s in manifest["shards"]] == [2, 4, 5]
    data = load(tmp_path)
    direct = render_images(cfg, seed=3, indices=np.arange(5), mesh=base_mesh)
    for key in direct:
        np.testing.assert_array_equal(data[key], direct[key], err_msg=key)
    first = (tmp_path / "shard-00000.npz").stat().st_mtime_ns
    rendered = []
    generate(tmp_path, n=5, seed=3, cfg=cfg, shard_size=2, on_images=rendered.append)
    assert (tmp_path / "shard-00000.npz").stat().st_mtime_ns == first, "complete shards are kept"
    assert sum(rendered) == 5
    with pytest.raises(EngineError, match="another seed"):
        generate(tmp_path, n=5, seed=4, cfg=cfg, shard_size=2)
