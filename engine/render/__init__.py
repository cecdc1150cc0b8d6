"""Differentiable depth-map renderer (spec §3); see docs/renderer.md."""

from .camera import (
    Camera,
    compose_views,
    depth_to_points,
    invert_view,
    points_to_grid,
    transform_from_view,
    transform_points,
    view_from_transform,
)
from .raster import RasterOptions, grid_faces, rasterize_depth, valid_mask
from .shading import light_direction, normals_from_depth, shade
from .visualize import normal_image, relight_images, render_rgb, rotation_sweep, shape_image, sweep_views
from .warp import forward_warp_grid, inverse_warp_grid, render_view, sample_image

__all__ = [
    "Camera",
    "RasterOptions",
    "compose_views",
    "depth_to_points",
    "forward_warp_grid",
    "grid_faces",
    "inverse_warp_grid",
    "invert_view",
    "light_direction",
    "normal_image",
    "normals_from_depth",
    "points_to_grid",
    "rasterize_depth",
    "relight_images",
    "render_rgb",
    "render_view",
    "rotation_sweep",
    "sample_image",
    "shade",
    "shape_image",
    "sweep_views",
    "transform_from_view",
    "transform_points",
    "valid_mask",
    "view_from_transform",
]
