"""Per-stage preview frames (spec §10.1) through the renderer's visualisation helpers.

Frames are uint8 H×W×C arrays (RGB, or RGBA with a transparent background) kept in memory and in
the training state until the bundle is written. Images smaller than 128 px are upscaled to 128
(bilinear), as the official dumps are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import render
from .model import Model, Target

MIN_SIDE = 128
WIDE_SWEEP_CATEGORIES = ("car", "church")  # ±45° yaw; everything else ±70°


def to_frames(images: torch.Tensor) -> list[np.ndarray]:
    """F×C×H×W in [−1, 1] → list of uint8 H×W×C, upscaled to at least MIN_SIDE."""
    x = images.detach().float().cpu()
    if x.shape[-1] < MIN_SIDE:
        x = F.interpolate(x, size=(MIN_SIDE, MIN_SIDE), mode="bilinear", align_corners=False)
    x = ((x / 2 + 0.5).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return [f.permute(1, 2, 0).numpy().copy() for f in x]


def render_white(images: list[torch.Tensor], depth: torch.Tensor, views: torch.Tensor,
                 model: Model) -> list[torch.Tensor]:
    """Each 1×C×H×W canonical image seen in every view (F×6), background white: F×C×H×W per image.

    Why not render.rotation_sweep per image: the depth is rasterised once per view and all images
    are sampled through the same grid (the rasteriser dominates the cost).
    """
    n = views.shape[0]
    depth_view = render.rasterize_depth(depth.expand(n, -1, -1), views, model.cam, model.opts)
    grid = render.inverse_warp_grid(depth_view, views, model.cam)
    valid = render.valid_mask(depth_view, model.opts)[:, None]
    stacked = torch.cat(images, 1).expand(n, -1, -1, -1)
    shown = render.sample_image(stacked, grid).clamp(-1, 1) * valid + (1 - valid)
    return list(shown.split([im.shape[1] for im in images], dim=1))


def gan_frames(model: Model, target: Target, frames: torch.Tensor) -> list[np.ndarray]:
    """gan_rotate / gan_relight (§10.1): the frames projected into the GAN (E → G, or per-frame offsets)."""
    with torch.no_grad():
        mask = (frames < 1).any(1, keepdim=True).float()  # not the white background
    return to_frames(model.project_images(target, frames, mask))


def stage_previews(model: Model, target: Target, stage: int, last: bool) -> dict[str, list[np.ndarray]]:
    """albedo, normal_rotate, shape_rotate every stage; im_/gan_rotate and im_/gan_relight at the last (§10.1)."""
    with torch.no_grad():
        frames = _render_previews(model, target, last)
    shown = {k: to_frames(v) for k, v in frames.items()}
    if last:
        shown["gan_rotate"] = gan_frames(model, target, frames["im_rotate"])
        shown["gan_relight"] = gan_frames(model, target, frames["im_relight"])
    return shown


def _render_previews(model: Model, target: Target, last: bool) -> dict[str, torch.Tensor]:
    """The rendered preview sets as F×C×H×W tensors in [−1, 1] (white background)."""
    out = model.predict(target.image)
    yaw = 45.0 if model.cfg.category in WIDE_SWEEP_CATEGORIES else 70.0
    views = render.sweep_views(yaw_max_deg=yaw, device=model.device)
    depth, normal = out["depth"], out["normal"]
    sweeps = [render.normal_image(normal), render.shape_image(normal)]
    if last:
        sweeps.append(out["canon"].clamp(-1, 1))
    swept = render_white(sweeps, depth, views, model)
    frames = {"albedo": out["albedo"], "normal_rotate": swept[0], "shape_rotate": swept[1]}
    if last:
        relit = render.relight_images(out["albedo"], normal, out["ambient"], out["diffuse_k"])
        shown = render_white([relit.flatten(1, 2)], depth, out["view_t"], model)[0].reshape(relit.shape[1:])
        frames.update(im_rotate=swept[2], im_relight=shown)
    return frames
