"""Warps between the canonical frame and a view (spec §3.6): the training re-rendering and its grids."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .camera import Camera, depth_to_points, points_to_grid, transform_points
from .raster import RasterOptions, rasterize_depth, valid_mask


def inverse_warp_grid(depth_view: torch.Tensor, view: torch.Tensor, cam: Camera) -> torch.Tensor:
    """B×H×W×2 grid: where each pixel of the view (with depth ``depth_view``) lies in the canonical image."""
    canon = transform_points(depth_to_points(depth_view, cam), view, cam, inverse=True)
    return points_to_grid(canon, cam)


def forward_warp_grid(depth_canon: torch.Tensor, view: torch.Tensor, cam: Camera) -> torch.Tensor:
    """B×H×W×2 grid: where each canonical pixel lands in the view (used to bring view masks to canonical)."""
    return points_to_grid(transform_points(depth_to_points(depth_canon, cam), view, cam), cam)


def sample_image(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``grid_sample`` with the official conventions: zeros padding, align_corners=True."""
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="zeros", align_corners=True)


def render_view(
    image_canon: torch.Tensor,
    depth_canon: torch.Tensor,
    view: torch.Tensor,
    cam: Camera,
    opts: RasterOptions | None = None,
    mask_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-render a canonical image in ``view`` by inverse warping through the rendered view depth.

    Returns (image clamped to [−1, 1], validity mask B×H×W (detached), view depth B×H×W).
    ``mask_mode`` is the grid_sample mode: "bilinear" for images, "nearest" for masks (§3.7).
    """
    opts = opts or RasterOptions()
    depth_view = rasterize_depth(depth_canon, view, cam, opts)
    grid = inverse_warp_grid(depth_view, view, cam)
    image = sample_image(image_canon, grid, mask_mode).clamp(-1.0, 1.0)
    return image, valid_mask(depth_view, opts), depth_view
