"""Normals from depth and Lambertian shading in the canonical frame (spec §3.8, §3.9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .camera import Camera, depth_to_points


def normals_from_depth(depth: torch.Tensor, cam: Camera) -> torch.Tensor:
    """B×H×W×3 unit normals from central differences of the back-projected grid.

    A surface facing the camera gets (0, 0, +1); the one-pixel border is set to (0, 0, 1) before the
    normalisation n / (‖n‖ + 1e-7), as in the official code.
    """
    points = depth_to_points(depth, cam)
    t_u = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    t_v = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    inner = torch.linalg.cross(t_u, t_v, dim=-1).permute(0, 3, 1, 2)
    normal = torch.cat([F.pad(inner[:, :2], (1, 1, 1, 1), value=0.0), F.pad(inner[:, 2:], (1, 1, 1, 1), value=1.0)], 1)
    normal = normal.permute(0, 2, 3, 1)
    return normal / (normal.norm(dim=-1, keepdim=True) + 1e-7)


def light_direction(light_xy: torch.Tensor) -> torch.Tensor:
    """B×2 (dx, dy) → unit B×3 direction normalise(dx, dy, 1)."""
    direction = torch.cat([light_xy, torch.ones_like(light_xy[:, :1])], dim=1)
    return direction / direction.norm(dim=1, keepdim=True)


def diffuse_term(normal: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """max(0, n·d) as B×1×H×W; ``direction`` (B×3) is normalised here."""
    direction = direction / direction.norm(dim=1, keepdim=True)
    return (normal * direction[:, None, None, :]).sum(-1).clamp_min(0.0)[:, None]


def shade(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    ambient: torch.Tensor,
    diffuse: torch.Tensor,
    direction: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lambertian canonical image J = (albedo/2 + 0.5)·(k_a + k_d·max(0, n·d))·2 − 1 (not clamped).

    ``ambient``/``diffuse`` are B or B×1. Returns (J B×3×H×W, shading B×1×H×W, diffuse map B×1×H×W).
    """
    diffuse_map = diffuse_term(normal, direction)
    shading = ambient.reshape(-1, 1, 1, 1) + diffuse.reshape(-1, 1, 1, 1) * diffuse_map
    return (albedo / 2 + 0.5) * shading * 2 - 1, shading, diffuse_map
