"""Camera conventions, the training warp (§3.6), forward warp and RGB visualisation helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.render import (
    Camera,
    RasterOptions,
    compose_views,
    depth_to_points,
    forward_warp_grid,
    inverse_warp_grid,
    invert_view,
    points_to_grid,
    rasterize_depth,
    render_rgb,
    render_view,
    rotation_sweep,
    sample_image,
    sweep_views,
    transform_from_view,
    transform_points,
)

EXACT = RasterOptions(supersample=False, half_pixel=False)


def identity_grid(batch: int, size: int) -> torch.Tensor:
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(batch, 2, 3)
    return F.affine_grid(theta, [batch, 1, size, size], align_corners=True)


def test_focal_length_matches_spec() -> None:
    assert Camera(128).fx == pytest.approx(725.81, abs=0.01)
    assert Camera(64).fx == pytest.approx(360.05, abs=0.01)
    assert Camera(64).cx == 31.5
    k = Camera(64).intrinsics(dtype=torch.float64)
    points = torch.tensor([0.01, -0.02, 1.05], dtype=torch.float64)
    u, v, w = k @ points
    grid = points_to_grid(points.reshape(1, 1, 1, 3), Camera(64))[0, 0, 0]
    assert torch.allclose(torch.stack([u / w, v / w]) / 63 * 2 - 1, grid)


def test_back_projection_round_trip_is_align_corners_identity_grid() -> None:
    depth = 0.9 + 0.2 * torch.rand(3, 16, 16)
    cam = Camera(16)
    assert torch.allclose(points_to_grid(depth_to_points(depth, cam), cam), identity_grid(3, 16), atol=1e-6)
    assert torch.allclose(depth_to_points(depth, cam)[..., 2], depth)


def test_rotation_order_and_centre() -> None:
    view = torch.tensor([[0.3, -0.4, 0.5, 0.01, 0.02, 0.03]], dtype=torch.float64)
    rot, trans = transform_from_view(view)
    parts = [transform_from_view(v)[0] for v in (view * torch.tensor([[0, 0, 1.0, 0, 0, 0]]),
                                                 view * torch.tensor([[0, 1.0, 0, 0, 0, 0]]),
                                                 view * torch.tensor([[1.0, 0, 0, 0, 0, 0]]))]
    assert torch.allclose(rot, parts[0] @ parts[1] @ parts[2])  # Rz·Ry·Rx
    yaw = transform_from_view(torch.tensor([[0.0, 0.3, 0.0]], dtype=torch.float64))[0][0]
    assert torch.allclose(yaw @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                          torch.tensor([math.sin(0.3), 0.0, math.cos(0.3)], dtype=torch.float64))
    cam = Camera(8, rot_center_depth=1.0)
    centre = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    assert torch.allclose(transform_points(centre, view, cam), centre + trans[:, None])  # the pivot only translates
    points = torch.rand(1, 5, 3, dtype=torch.float64)
    back = transform_points(transform_points(points, view, cam), view, cam, inverse=True)
    assert torch.allclose(back, points)
    assert torch.allclose(trans, torch.tensor([[0.01, 0.02, 0.03]], dtype=torch.float64))


def test_compose_views_equals_sequential_transforms() -> None:
    gen = torch.Generator().manual_seed(0)
    first, then = (torch.rand(4, 6, generator=gen, dtype=torch.float64) - 0.5 for _ in range(2))
    points = torch.rand(4, 7, 3, generator=gen, dtype=torch.float64)
    cam = Camera(8)
    both = transform_points(transform_points(points, first, cam), then, cam)
    assert torch.allclose(transform_points(points, compose_views(first, then), cam), both)


def test_invert_view_undoes_the_view() -> None:
    gen = torch.Generator().manual_seed(2)
    view = torch.rand(3, 6, generator=gen, dtype=torch.float64) - 0.5
    points = torch.rand(3, 5, 3, generator=gen, dtype=torch.float64)
    cam = Camera(8)
    moved = transform_points(points, view, cam)
    assert torch.allclose(transform_points(moved, invert_view(view), cam), points)
    assert torch.allclose(transform_points(moved, view, cam, inverse=True), points)
    assert not torch.allclose(moved, points)


def test_identity_view_reproduces_canonical_image() -> None:
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 20, 20, generator=gen) * 2.4 - 1.2
    depth = 0.9 + 0.2 * torch.rand(2, 20, 20, generator=gen)
    out, valid, _ = render_view(image, depth, torch.zeros(2, 6), Camera(20))
    assert torch.allclose(out, image.clamp(-1, 1), atol=1e-5)
    # official half-pixel shift: only the last row and column fall off the mesh
    expected = torch.ones(2, 20, 20)
    expected[:, -1] = 0
    expected[:, :, -1] = 0
    assert torch.equal(valid, expected)


def plane_texture(u: torch.Tensor, v: torch.Tensor, size: int) -> torch.Tensor:
    """Smooth analytic texture of canonical pixel coordinates (3 channels in [−1, 1])."""
    a, b = 2 * math.pi * u / size, 2 * math.pi * v / size
    return torch.stack([0.8 * torch.sin(1.5 * a), 0.8 * torch.cos(a + 0.7 * b), 0.5 * torch.sin(a - b)], dim=0)


# bilinear sampling of the texture alone errs up to h²·max|f″|/8 ≈ 4e-3 here
@pytest.mark.parametrize("opts,tol", [(EXACT, 5e-3), (RasterOptions(), 2e-2)], ids=["exact", "official"])
def test_textured_plane_warp_matches_analytic(opts: RasterOptions, tol: float) -> None:
    size = 48
    cam = Camera(size)
    coords = torch.arange(size, dtype=torch.float64)
    v_grid, u_grid = torch.meshgrid(coords, coords, indexing="ij")
    image = plane_texture(u_grid, v_grid, size)[None].float()
    view = torch.tensor([[math.radians(8.0), math.radians(-20.0), math.radians(5.0), 0.003, -0.002, 0.01]])
    warped, valid, _ = render_view(image, torch.ones(1, size, size), view, cam, opts)
    # analytic: intersect each pixel ray with the moved plane, map the hit back to the canonical image
    rot, trans = transform_from_view(view.double())
    pivot = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    normal, point = rot[0][:, 2], pivot + trans[0]
    rays = torch.stack([(u_grid - cam.cx) / cam.fx, (v_grid - cam.cx) / cam.fx, torch.ones_like(u_grid)], dim=-1)
    hits = rays * ((normal @ point) / (rays @ normal))[..., None]
    canon = (hits - trans[0] - pivot) @ rot[0] + pivot
    u_c, v_c = cam.fx * canon[..., 0] / canon[..., 2] + cam.cx, cam.fx * canon[..., 1] / canon[..., 2] + cam.cx
    inside = (u_c > 1) & (u_c < size - 2) & (v_c > 1) & (v_c < size - 2) & (valid[0] > 0)
    expected = plane_texture(u_c, v_c, size)
    assert inside.float().mean() > 0.5
    assert (warped[0].double() - expected)[:, inside].abs().max() < tol


def test_forward_and_inverse_warps_are_consistent() -> None:
    size = 32
    cam = Camera(size)
    depth = 1.0 + 0.03 * F.interpolate(torch.rand(2, 1, 4, 4) - 0.5, size=(size, size), mode="bicubic",
                                       align_corners=True)[:, 0]
    view = torch.tensor([[0.1, 0.3, 0.0, 0.0, 0.0, 0.0], [-0.1, -0.2, 0.05, 0.002, 0.0, 0.0]])
    assert torch.allclose(forward_warp_grid(depth, torch.zeros(2, 6), cam), identity_grid(2, size), atol=1e-6)
    forward = forward_warp_grid(depth, view, cam)  # canonical pixel → view position
    backward = inverse_warp_grid(rasterize_depth(depth, view, cam, EXACT), view, cam)  # view pixel → canonical
    round_trip = sample_image(backward.permute(0, 3, 1, 2), forward).permute(0, 2, 3, 1)
    interior = (forward.abs() < 0.9).all(-1)
    interior[:, :3], interior[:, -3:], interior[:, :, :3], interior[:, :, -3:] = False, False, False, False
    assert interior.float().mean() > 0.4
    assert (round_trip - identity_grid(2, size))[interior].abs().max() < 2e-3  # < 0.03 px


def test_gradcheck_render_view() -> None:
    gen = torch.Generator().manual_seed(5)
    size = 5
    cam = Camera(size)
    image = torch.rand(1, 2, size, size, generator=gen, dtype=torch.float64).requires_grad_()
    depth = (0.97 + 0.06 * torch.rand(1, size, size, generator=gen, dtype=torch.float64)).requires_grad_()
    view = torch.tensor([[0.04, 0.09, -0.02, 0.001, 0.002, 0.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda i, d, v: render_view(i, d, v, cam, EXACT)[0], (image, depth, view),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_render_rgb_backgrounds_and_sweep() -> None:
    gen = torch.Generator().manual_seed(2)
    size = 16
    cam = Camera(size)
    image = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    depth = 1.0 + 0.02 * torch.rand(2, size, size, generator=gen)
    view = torch.tensor([[0.0, 0.5, 0.0, 0.0, 0.0, 0.0]]).expand(2, 6)
    white = render_rgb(image, depth, view, cam)
    rgba = render_rgb(image, depth, view, cam, background="transparent")
    _, valid, _ = render_view(image, depth, view, cam)
    off = valid == 0
    assert off.any() and (~off).any()
    assert torch.all(white.permute(0, 2, 3, 1)[off] == 1.0)
    assert torch.equal(rgba[:, :3], white)
    assert torch.equal(rgba[:, 3], valid * 2 - 1)
    views = sweep_views()
    assert views.shape == (14, 6)
    assert torch.allclose(views[:9, 1], torch.linspace(-70, 70, 9) * math.pi / 180)
    assert torch.allclose(views[9:, 0], torch.linspace(-20, 20, 5) * math.pi / 180)
    frames = rotation_sweep(image, depth, cam, views=views[:3])
    assert frames.shape == (2, 3, 3, size, size)
    assert torch.allclose(frames[1, 2], render_rgb(image[1:], depth[1:], views[2:3], cam)[0])
    before = torch.tensor([[0.1, -0.2, 0.0, 0.0, 0.0, 0.0]]).expand(2, 6)
    composed = rotation_sweep(image, depth, cam, views=torch.zeros(1, 6), view_before=before)
    assert torch.allclose(composed[:, 0], render_rgb(image, depth, before, cam), atol=1e-5)
