"""Pinhole camera, rigid view transform, back-projection and projection (spec §3.1–§3.3).

Frame: x right, y down, z forward. Pixel (row i, column j) has integer image coordinates (j, i);
grids for ``grid_sample`` follow the align_corners=True convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Camera:
    """Square pinhole camera; rotations of the scene happen about (0, 0, rot_center_depth)."""

    image_size: int
    fov_deg: float = 10.0
    rot_center_depth: float = 1.0

    @property
    def fx(self) -> float:
        """Focal length in pixels (= fy): (S − 1) / 2 / tan(fov / 2)."""
        return (self.image_size - 1) / 2 / math.tan(math.radians(self.fov_deg) / 2)

    @property
    def cx(self) -> float:
        """Principal point (= cy) at the centre of the integer pixel grid."""
        return (self.image_size - 1) / 2

    def intrinsics(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The 3×3 matrix K."""
        f, c = self.fx, self.cx
        return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def transform_from_view(view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rx, ry, rz, tx, ty, tz) in radians → R = Rz·Ry·Rx (B×3×3) and T (B×3).

    B×5 (tz = 0) and B×3 (no translation) are accepted like the official code.
    """
    if view.dim() != 2 or view.shape[1] not in (3, 5, 6):
        raise ValueError(f"view must be B×6 (or B×5, B×3), got {tuple(view.shape)}")
    rx, ry, rz = view[:, 0], view[:, 1], view[:, 2]
    one, zero = torch.ones_like(rx), torch.zeros_like(rx)

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    cx_, sx = torch.cos(rx), torch.sin(rx)
    cy_, sy = torch.cos(ry), torch.sin(ry)
    cz_, sz = torch.cos(rz), torch.sin(rz)
    rot_x = mat([[one, zero, zero], [zero, cx_, -sx], [zero, sx, cx_]])
    rot_y = mat([[cy_, zero, sy], [zero, one, zero], [-sy, zero, cy_]])
    rot_z = mat([[cz_, -sz, zero], [sz, cz_, zero], [zero, zero, one]])
    rot = rot_z @ rot_y @ rot_x
    trans = torch.zeros_like(view[:, :3])
    n_t = view.shape[1] - 3
    if n_t:
        trans = torch.cat([view[:, 3:], trans[:, n_t:]], dim=1)
    return rot, trans


def transform_points(points: torch.Tensor, view: torch.Tensor, cam: Camera, inverse: bool = False) -> torch.Tensor:
    """Rigid transform about the rotation centre: P' = R(P − C) + C + T, or its inverse.

    ``points`` is B×...×3 (any middle shape).
    """
    rot, trans = transform_from_view(view)
    batch = points.shape[0]
    flat = points.reshape(batch, -1, 3)
    centre = flat.new_tensor([0.0, 0.0, cam.rot_center_depth])
    if inverse:
        out = (flat - trans[:, None] - centre) @ rot + centre
    else:
        out = (flat - centre) @ rot.transpose(1, 2) + centre + trans[:, None]
    return out.reshape(points.shape)


def pixel_coords(
    height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer column (u) and row (v) coordinates as H×W tensors ('ij' indexing)."""
    rows = torch.arange(height, device=device, dtype=dtype)
    cols = torch.arange(width, device=device, dtype=dtype)
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return u, v


def depth_to_points(depth: torch.Tensor, cam: Camera) -> torch.Tensor:
    """Back-project B×H×W depth to B×H×W×3 camera points: P = d · K⁻¹ (j, i, 1)."""
    _, height, width = depth.shape
    u, v = pixel_coords(height, width, depth.device, depth.dtype)
    x = (u - cam.cx) / cam.fx
    y = (v - cam.cx) / cam.fx
    return torch.stack([depth * x, depth * y, depth], dim=-1)


def project_points(points: torch.Tensor, cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (u, v) of camera points B×...×3."""
    z = points[..., 2]
    return cam.fx * points[..., 0] / z + cam.cx, cam.fx * points[..., 1] / z + cam.cx


def points_to_grid(points: torch.Tensor, cam: Camera) -> torch.Tensor:
    """Project B×H×W×3 points to a B×H×W×2 (x, y) sampling grid in align_corners=True units."""
    u, v = project_points(points, cam)
    scale = 2.0 / (cam.image_size - 1)
    return torch.stack([u * scale - 1.0, v * scale - 1.0], dim=-1)


def view_from_transform(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """Inverse of ``transform_from_view``: Euler angles of R = Rz·Ry·Rx (ry in [−90°, 90°]) and T → B×6."""
    ry = torch.asin((-rot[:, 2, 0]).clamp(-1.0, 1.0))
    rx = torch.atan2(rot[:, 2, 1], rot[:, 2, 2])
    rz = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
    return torch.cat([torch.stack([rx, ry, rz], dim=1), trans], dim=1)


def invert_view(view: torch.Tensor) -> torch.Tensor:
    """The view (B×6) that undoes ``view``: P = Rᵀ(P' − C − T) + C."""
    rot, trans = transform_from_view(view)
    inverse = rot.transpose(1, 2)
    return view_from_transform(inverse, -(inverse @ trans[..., None])[..., 0])


def compose_views(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """The single view (B×6) equal to applying ``first`` and then ``then`` (both about the same centre)."""
    r1, t1 = transform_from_view(first)
    r2, t2 = transform_from_view(then)
    return view_from_transform(r2 @ r1, (r2 @ t1[..., None])[..., 0] + t2)
