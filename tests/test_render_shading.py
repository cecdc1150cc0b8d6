"""Normals from depth (§3.8) and Lambertian shading (§3.9), against analytic surfaces."""

from __future__ import annotations

import math

import torch

from engine.render import (
    Camera,
    light_direction,
    normal_image,
    normals_from_depth,
    relight_images,
    shade,
    shape_image,
)


def ray_grid(cam: Camera) -> torch.Tensor:
    coords = torch.arange(cam.image_size, dtype=torch.float64)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([(u - cam.cx) / cam.fx, (v - cam.cx) / cam.fx, torch.ones_like(u)], dim=-1)


def unit(normal: torch.Tensor) -> torch.Tensor:
    return normal / normal.norm(dim=-1, keepdim=True)


def test_constant_depth_faces_camera() -> None:
    cam = Camera(64)
    normal = normals_from_depth(torch.full((2, 64, 64), 1.05, dtype=torch.float64), cam)
    assert torch.allclose(unit(normal), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(2, 64, 64, 3))
    # official normalisation n / (‖n‖ + 1e-7) of the raw cross product ‖t_u × t_v‖ = (2d / f)²: slightly short
    raw = (2 * 1.05 / cam.fx) ** 2
    assert torch.allclose(normal[:, 1:-1, 1:-1, 2], torch.tensor(raw / (raw + 1e-7), dtype=torch.float64))
    assert torch.allclose(normal[:, 0, 0, 2], torch.tensor(1 / (1 + 1e-7), dtype=torch.float64))


def test_tilted_plane_normal_is_analytic() -> None:
    cam, slope = Camera(16), 0.7  # plane Z = 1 + slope·X, i.e. normal ∝ (−slope, 0, 1)
    rays = ray_grid(cam)
    depth = 1.0 / (1.0 - slope * rays[..., 0])
    normal = normals_from_depth(depth[None], cam)[0]
    expected = torch.tensor([-slope, 0.0, 1.0], dtype=torch.float64) / math.hypot(slope, 1.0)
    assert torch.allclose(unit(normal[1:-1, 1:-1]), expected.expand(14, 14, 3), atol=1e-9)
    assert torch.allclose(unit(normal[0, 0]), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_sphere_normals_point_away_from_camera() -> None:
    cam, radius = Camera(32), 0.15
    centre = torch.tensor([0.0, 0.0, 1.1], dtype=torch.float64)
    rays = ray_grid(cam)
    a, b = (rays * rays).sum(-1), -2 * (rays @ centre)
    disc = b * b - 4 * a * (centre @ centre - radius**2)
    depth = (-b - disc.sqrt()) / (2 * a)
    normal = normals_from_depth(depth[None], cam)[0]
    expected = (centre - rays * depth[..., None]) / radius  # +z hemisphere: from the surface into the sphere
    assert torch.all(disc > 0)
    core = expected[..., 2] > 0.8
    core[0], core[-1], core[:, 0], core[:, -1] = False, False, False, False
    assert core.sum() > 100
    assert (unit(normal) - expected)[core].norm(dim=-1).max() < 5e-3


def test_shade_lambertian() -> None:
    albedo = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    normal = torch.zeros(2, 2, 2, 3)
    normal[..., 2] = 1.0
    normal[1, 0, 0] = torch.tensor([0.0, 0.0, -1.0])  # faces away from the light: diffuse clamps to 0
    ambient, diffuse = torch.tensor([0.3, 0.5]), torch.tensor([[0.6], [0.4]])
    direction = light_direction(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(direction[1], torch.tensor([1.0, 0.0, 1.0]) / math.sqrt(2))
    image, shading, diffuse_map = shade(albedo, normal, ambient, diffuse, direction * 3.0)
    cos = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2), 1 / math.sqrt(2)]])
    assert torch.allclose(diffuse_map.reshape(2, 4), cos)
    assert torch.allclose(shading.reshape(2, 4), ambient[:, None] + diffuse * cos)
    expected = (albedo / 2 + 0.5) * shading * 2 - 1
    assert torch.allclose(image, expected)
    big = shade(albedo, normal, torch.tensor([0.9, 0.9]), diffuse, direction)[0]
    assert big[0, 2, 0, 0] > 1.0  # white albedo under strong light: not clamped before the warp


def test_relight_and_visual_images() -> None:
    albedo = torch.zeros(1, 3, 4, 4)
    normal = torch.zeros(1, 4, 4, 3)
    normal[..., 2] = 1.0
    frames = relight_images(albedo, normal, torch.tensor([0.5]), torch.tensor([0.5]))
    assert frames.shape == (1, 20, 3, 4, 4)
    # first light: dx=−1.5, dy=0, r=0.3 → shading = 0.5 − 0.18 + 0.8·(1/√3.25)
    assert torch.allclose(frames[0, 0], torch.full((3, 4, 4), 0.5 * (0.32 + 0.8 / math.sqrt(3.25)) * 2 - 1))
    assert torch.equal(normal_image(normal)[0, 2], torch.ones(4, 4))
    assert torch.allclose(shape_image(normal), torch.full((1, 3, 4, 4), 0.4))
