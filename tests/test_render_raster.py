"""Depth rasteriser vs a brute-force ray caster, analytic planes/spheres and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.render import (
    Camera,
    RasterOptions,
    depth_to_points,
    grid_faces,
    rasterize_depth,
    transform_from_view,
    transform_points,
)
from engine.render.raster import Z_FAR, rasterize_points

OPTION_SETS = [
    RasterOptions(),
    RasterOptions(supersample=False, half_pixel=False),
    RasterOptions(supersample=False, half_pixel=True),
    RasterOptions(supersample=True, half_pixel=False),
]


def ray_cast_samples(depth: torch.Tensor, view: torch.Tensor, cam: Camera, opts: RasterOptions) -> torch.Tensor:
    """Reference: intersect every sample ray with every (double-sided) triangle, keep the nearest (float64)."""
    depth, view = depth.double(), view.double()
    batch, size, _ = depth.shape
    points = transform_points(depth_to_points(depth, cam), view, cam).reshape(batch, -1, 3)
    tri = points[:, grid_faces(size, size)]  # B×F×3×3
    p0, e1, e2 = tri[:, :, 0], tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    res = size * opts.factor
    coords = torch.arange(res, dtype=torch.float64) / opts.factor + opts.sample_start
    y, x = torch.meshgrid((coords - cam.cx) / cam.fx, (coords - cam.cx) / cam.fx, indexing="ij")
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 1, 3)  # N×1×3 (z component 1 → t = depth)
    out = []
    for b in range(batch):
        h = torch.linalg.cross(rays.expand(-1, e2.shape[1], 3), e2[b][None].expand(rays.shape[0], -1, 3), dim=-1)
        a = (e1[b][None] * h).sum(-1)
        s = -p0[b][None]
        q = torch.linalg.cross(s.expand(rays.shape[0], -1, 3), e1[b][None].expand(rays.shape[0], -1, 3), dim=-1)
        safe = torch.where(a.abs() > 1e-14, a, torch.ones_like(a))
        w1, w2, t = (s * h).sum(-1) / safe, (rays * q).sum(-1) / safe, (e2[b][None] * q).sum(-1) / safe
        hit = (a.abs() > 1e-14) & (w1 >= -1e-9) & (w2 >= -1e-9) & (w1 + w2 <= 1 + 1e-9) & (t > 0.1) & (t < Z_FAR)
        out.append(torch.where(hit, t, torch.full_like(t, Z_FAR)).amin(dim=1).reshape(res, res))
    return torch.stack(out)


def finish(samples: torch.Tensor, opts: RasterOptions) -> torch.Tensor:
    if opts.supersample:
        samples = F.avg_pool2d(samples[:, None], 2)[:, 0]
    return samples.clamp(opts.near_clamp, opts.far_clamp)


def random_views(gen: torch.Generator, n: int, max_angle_deg: float = 40.0) -> torch.Tensor:
    angles = (torch.rand(n, 3, generator=gen) * 2 - 1) * math.radians(max_angle_deg)
    angles[:, 2] *= 0.5
    trans = (torch.rand(n, 3, generator=gen) * 2 - 1) * torch.tensor([0.02, 0.02, 0.1])
    return torch.cat([angles, trans], dim=1)


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: f"ss{int(o.supersample)}-hp{int(o.half_pixel)}")
def test_matches_ray_casting_on_random_surfaces(opts: RasterOptions) -> None:
    gen = torch.Generator().manual_seed(1)
    size, batch = 16, 8
    rough = 0.9 + 0.2 * torch.rand(batch // 2, size, size, generator=gen)
    smooth = 1.0 + 0.08 * F.interpolate(torch.rand(batch // 2, 1, 3, 3, generator=gen) - 0.5, size=(size, size),
                                        mode="bilinear", align_corners=True)[:, 0]
    depth = torch.cat([rough, smooth])
    view = random_views(gen, batch, 60.0)
    view[0, 5] = -0.6  # strong zoom: triangles span many samples
    cam = Camera(size)
    mine = rasterize_points(transform_points(depth_to_points(depth, cam), view, cam), cam, opts)
    ref = ray_cast_samples(depth, view, cam, opts)
    both = (mine < Z_FAR) & (ref < Z_FAR)
    assert both.float().mean() > 0.5
    assert ((mine < Z_FAR) == (ref < Z_FAR)).float().mean() >= 0.995
    assert (mine.double() - ref).abs()[both].max() < 1e-4
    pixels, ref_pixels = rasterize_depth(depth, view, cam, opts), finish(ref, opts)
    assert ((pixels < opts.far_clamp) == (ref_pixels < opts.far_clamp)).float().mean() >= 0.995


def test_fronto_parallel_plane_identity_view() -> None:
    cam, plane = Camera(12), torch.full((2, 12, 12), 1.03)
    official = rasterize_depth(plane, torch.zeros(2, 6), cam)
    assert torch.equal(official[:, :-1, :-1], torch.full((2, 11, 11), 1.03))
    # half-pixel shift: the last row and column touch background, which clamps to exactly 1.2
    assert torch.all(official[:, -1] == 1.2) and torch.all(official[:, :, -1] == 1.2)
    exact = rasterize_depth(plane, torch.zeros(2, 6), cam, RasterOptions(supersample=False, half_pixel=False))
    assert torch.allclose(exact, torch.full_like(exact, 1.03), atol=1e-6)


def plane_depth_in_view(normal: torch.Tensor, point: torch.Tensor, cam: Camera, coords: torch.Tensor) -> torch.Tensor:
    """Depth along the pixel rays of the plane through ``point`` with ``normal``."""
    y, x = torch.meshgrid((coords - cam.cx) / cam.fx, (coords - cam.cx) / cam.fx, indexing="ij")
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1).double()
    return (normal @ point) / (rays @ normal)


@pytest.mark.parametrize("yaw_deg,pitch_deg", [(25.0, 0.0), (-15.0, 10.0)])
def test_rotated_plane_matches_analytic_depth(yaw_deg: float, pitch_deg: float) -> None:
    cam, opts = Camera(32), RasterOptions(supersample=False, half_pixel=False)
    view = torch.tensor([[math.radians(pitch_deg), math.radians(yaw_deg), 0.0, 0.0, 0.0, 0.01]])
    rot, trans = transform_from_view(view.double())
    normal, point = rot[0] @ torch.tensor([0.0, 0.0, 1.0]).double(), torch.tensor([0.0, 0.0, 1.0]).double() + trans[0]
    expected = plane_depth_in_view(normal, point, cam, torch.arange(32.0))
    got = rasterize_depth(torch.ones(1, 32, 32), view, cam, opts)[0]
    hit = got < opts.far_clamp
    assert hit.float().mean() > 0.6
    assert (got.double() - expected)[hit].abs().max() < 1e-5
    # official options: average of the 4 sub-samples at ±0.25 around (j + 0.5, i + 0.5)
    official = rasterize_depth(torch.ones(1, 32, 32), view, cam)[0]
    sub = plane_depth_in_view(normal, point, cam, torch.arange(64.0) / 2 + 0.25)
    expected_official = F.avg_pool2d(sub[None, None], 2)[0, 0]
    hit = official < 1.2
    assert hit.float().mean() > 0.6
    assert (official.double() - expected_official)[hit].abs().max() < 1e-5


def test_sphere_rotated_matches_ray_sphere_intersection() -> None:
    size, radius = 48, 0.07
    cam = Camera(size)
    centre = torch.tensor([0.0, 0.0, 1.04], dtype=torch.float64)
    coords = torch.arange(size, dtype=torch.float64)
    y, x = torch.meshgrid((coords - cam.cx) / cam.fx, (coords - cam.cx) / cam.fx, indexing="ij")
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1)

    def hit_sphere(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = (rays * rays).sum(-1), -2 * (rays @ c)
        disc = b * b - 4 * a * (c @ c - radius**2)
        t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
        return torch.where(disc > 0, t, torch.full_like(t, 1.1)), disc > 0

    canon, _ = hit_sphere(centre)
    view = torch.tensor([[0.0, math.radians(20.0), 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    rot, _ = transform_from_view(view)
    pivot = torch.tensor([0.0, 0.0, cam.rot_center_depth], dtype=torch.float64)
    moved = rot[0] @ (centre - pivot) + pivot
    expected, on_sphere = hit_sphere(moved)
    # keep pixels whose surface point faces both the view and the canonical camera (seen in both)
    point = rays * expected[..., None]
    n_view = (point - moved) / radius
    n_canon = n_view @ rot[0]  # rotate normal back: Rᵀ n
    facing = on_sphere & ((-n_view * rays / rays.norm(dim=-1, keepdim=True)).sum(-1) > 0.6) & (-n_canon[..., 2] > 0.6)
    got = rasterize_depth(canon[None].float(), view.float(), cam, RasterOptions(supersample=False, half_pixel=False))
    error = (got[0].double() - expected)[facing].abs()
    assert facing.sum() > 200
    # the mesh is the sphere sampled every ~3.7e-3 units: chord error ≈ h²/(8r) ≈ 2.4e-5, larger when oblique
    assert error.max() < 2e-4 and error.mean() < 6e-5


def test_gradcheck_depth_and_view() -> None:
    gen = torch.Generator().manual_seed(3)
    size = 5
    cam = Camera(size)
    depth = (0.95 + 0.1 * torch.rand(2, size, size, generator=gen, dtype=torch.float64)).requires_grad_()
    view = torch.tensor([[0.05, 0.12, 0.03, 0.002, -0.003, 0.01], [-0.08, -0.2, 0.0, 0.0, 0.004, -0.02]],
                        dtype=torch.float64, requires_grad=True)
    for opts in (RasterOptions(), RasterOptions(supersample=False, half_pixel=False)):
        out = rasterize_depth(depth, view, cam, opts)
        assert ((out > opts.near_clamp) & (out < opts.far_clamp)).sum() >= 8  # something is differentiable
        assert torch.autograd.gradcheck(lambda d, v, o=opts: rasterize_depth(d, v, cam, o), (depth, view),
                                        eps=1e-6, atol=1e-6, rtol=1e-4)


def test_large_batch_runs_on_rough_input_without_dense_matrix() -> None:
    gen = torch.Generator().manual_seed(4)
    cam = Camera(64)
    depth = 0.9 + 0.2 * torch.rand(8, 64, 64, generator=gen)
    out = rasterize_depth(depth, random_views(gen, 8, 60.0), cam)
    assert out.shape == (8, 64, 64) and torch.isfinite(out).all()
    assert out.min() >= 0.8 and out.max() <= 1.2


def test_grid_faces_order() -> None:
    faces = grid_faces(3, 3)
    assert faces.shape == (8, 3)
    assert faces[0].tolist() == [0, 3, 1]  # (tl, bl, tr) of quad (0, 0)
    assert faces[1].tolist() == [1, 4, 2]
    assert faces[4].tolist() == [1, 3, 4]  # (tr, bl, br) of quad (0, 0)
