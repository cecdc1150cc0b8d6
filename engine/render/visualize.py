"""RGB visualisations (spec §10.1): rotation sweeps and relighting, rendered with the §3.6 warp.

Not used in losses. Images stay in [−1, 1]; with a transparent background a fourth (alpha) channel is
−1 where nothing was hit and +1 on the object, so ``x / 2 + 0.5`` turns any output into a PNG.
"""

from __future__ import annotations

import itertools
import math

import torch

from .camera import Camera, compose_views
from .raster import RasterOptions
from .shading import diffuse_term, light_direction
from .warp import render_view

RELIGHT_DX = (-1.5, -0.7, 0.0, 0.7, 1.5)
RELIGHT_DY = (0.0, 0.6)
RELIGHT_STRENGTH = (0.3, 0.6)


def sweep_views(yaw_max_deg: float = 70.0, n_yaw: int = 9, pitch_max_deg: float = 20.0, n_pitch: int = 5,
                device: torch.device | None = None) -> torch.Tensor:
    """F×6 views: ``n_yaw`` yaws in [−yaw_max, yaw_max], then ``n_pitch`` pitches (45° for car/church/horse)."""
    yaw = torch.linspace(-yaw_max_deg, yaw_max_deg, n_yaw, device=device)
    pitch = torch.linspace(-pitch_max_deg, pitch_max_deg, n_pitch, device=device)
    views = torch.zeros(n_yaw + n_pitch, 6, device=device)
    views[:n_yaw, 1] = yaw * math.pi / 180
    views[n_yaw:, 0] = pitch * math.pi / 180
    return views


def render_rgb(image_canon: torch.Tensor, depth_canon: torch.Tensor, view: torch.Tensor, cam: Camera,
               opts: RasterOptions | None = None, background: str = "white") -> torch.Tensor:
    """Canonical image seen in ``view`` with pixels off the object painted white or made transparent."""
    if background not in ("white", "transparent"):
        raise ValueError(f"background must be 'white' or 'transparent', got {background!r}")
    image, valid, _ = render_view(image_canon, depth_canon, view, cam, opts)
    valid = valid[:, None]
    painted = image * valid + (1.0 - valid)
    if background == "white":
        return painted
    return torch.cat([painted, valid * 2.0 - 1.0], dim=1)


def rotation_sweep(image_canon: torch.Tensor, depth_canon: torch.Tensor, cam: Camera,
                   views: torch.Tensor | None = None, view_before: torch.Tensor | None = None,
                   opts: RasterOptions | None = None, background: str = "white") -> torch.Tensor:
    """B×F×C'×H×W frames of each canonical image under every sweep view (after ``view_before``, if given)."""
    batch = image_canon.shape[0]
    if views is None:
        views = sweep_views(device=image_canon.device)
    n_frames = views.shape[0]
    views = views.to(image_canon.dtype).expand(batch, n_frames, 6).reshape(-1, 6)
    if view_before is not None:
        views = compose_views(view_before.repeat_interleave(n_frames, dim=0), views)
    frames = render_rgb(image_canon.repeat_interleave(n_frames, dim=0),
                        depth_canon.repeat_interleave(n_frames, dim=0), views, cam, opts, background)
    return frames.reshape(batch, n_frames, *frames.shape[1:])


def relight_images(albedo: torch.Tensor, normal: torch.Tensor, ambient: torch.Tensor,
                   diffuse: torch.Tensor) -> torch.Tensor:
    """B×20×3×H×W canonical images under the §10.1 lights, clamped to [−1, 1].

    For every (dx, dy, r) in RELIGHT_DX × RELIGHT_DY × RELIGHT_STRENGTH:
    shading = k_a − 0.6·r + (k_d + r)·max(0, n·normalise(dx, dy, 1)).
    """
    batch = albedo.shape[0]
    frames = []
    for dx, dy, r in itertools.product(RELIGHT_DX, RELIGHT_DY, RELIGHT_STRENGTH):
        direction = light_direction(albedo.new_tensor([[dx, dy]]).expand(batch, 2))
        shading = (ambient.reshape(-1, 1, 1, 1) - 0.6 * r
                   + (diffuse.reshape(-1, 1, 1, 1) + r) * diffuse_term(normal, direction))
        frames.append(((albedo / 2 + 0.5) * shading * 2 - 1).clamp(-1.0, 1.0))
    return torch.stack(frames, dim=1)


def normal_image(normal: torch.Tensor) -> torch.Tensor:
    """B×H×W×3 normals as a B×3×H×W image (the official n/2 + 0.5 in [0, 1] is n itself in [−1, 1])."""
    return normal.permute(0, 3, 1, 2)


def shape_image(normal: torch.Tensor) -> torch.Tensor:
    """Grey frontal-light shape image 0.7·max(0, n_z) as B×3×H×W in [−1, 1]."""
    grey = 1.4 * normal[..., 2].clamp_min(0.0) - 1.0
    return grey[:, None].expand(-1, 3, -1, -1)
