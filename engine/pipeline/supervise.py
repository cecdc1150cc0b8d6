"""Supervised pre-training of the view and light nets V and L on the default category's labelled renders.

Why: step 3 trains V and L on projected samples from scratch, and under the method's own objective
L's light collapses towards frontal and V ignores the yaw (docs/default-model.md, items 8 and 10),
so the depth net learns from mislabelled samples. The synthetic default category has the exact view
and light of every training render, so V and L can be taught them before any image is reconstructed;
D and A stay instance-specific as in the method. The result is a gan2shape checkpoint with netV and
netL only, usable as a preset's `pretrain` (no netD: the ellipsoid prior is still fitted, §1.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import nets, render
from ..config import Config
from ..data.synth import SynthConfig, render_images
from .model import Model

LABELLED = ("netV", "netL")


def net_labels(cfg: Config, view: torch.Tensor, light: torch.Tensor, min_z: float = 0.2
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A render's true view (B×6, radians and camera units) and camera-frame light (B×4: k_a, k_d, l_x,
    l_y) → what V and L should output (means included): the view in V's units and the light in the
    canonical frame, where the model shades (d_canonical = Rᵀ·d_camera), in L's units. Components the
    preset cannot represent (a zero range) get 0; the canonical direction's z is kept ≥ min_z so a light
    grazing the canonical surface gives a large, finite (x, y)."""
    ranges = [math.radians(cfg.xyz_rotation_range)] * 3 + [cfg.xy_translation_range] * 2 + [cfg.z_translation_range]
    ranges_t = torch.tensor(ranges, dtype=view.dtype)
    units = torch.where(ranges_t > 0, view / ranges_t.clamp_min(1e-12), torch.zeros_like(view))
    rot, _ = render.transform_from_view(view)
    direction = torch.einsum("bji,bj->bi", rot, render.light_direction(light[:, 2:4]))
    direction = torch.cat([direction[:, :2], direction[:, 2:].clamp_min(min_z)], 1)
    return units, nets.light_units(light[:, 0], light[:, 1], direction)


def labelled_renders(cfg: Config, seed: int, indices: np.ndarray, chunk: int = 256
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images B×3×S×S in [−1, 1], V's labels, L's labels) of the data generator's renders, rendered
    `chunk` at a time (the rasteriser's memory grows with the batch)."""
    parts = []
    for start in range(0, len(indices), chunk):
        data = render_images(SynthConfig(image_size=cfg.image_size), seed, indices[start:start + chunk])
        images = torch.from_numpy(data["rgb"]).float().permute(0, 3, 1, 2) / 127.5 - 1
        parts.append((images, *net_labels(cfg, torch.from_numpy(data["view"]).float(),
                                          torch.from_numpy(data["light"]).float())))
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


@dataclass(frozen=True)
class ViewTraining:
    """How V and L are taught: Adam at `lr` on batches of `batch` drawn from `pool` training renders."""

    iters: int = 3000
    batch: int = 32
    lr: float = 1e-3
    pool: int = 8000
    seed: int = 0


def train_views(model: Model, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], opts: ViewTraining,
                on_step: Callable[[int, float], None] | None = None) -> None:
    """Train netV and netL of `model` on `labelled_renders` output; on_step(iteration, loss) after each step."""
    images, views, lights = data
    model.train_only(LABELLED)
    params = [p for name in LABELLED for p in model.nets[name].parameters()]
    opt = torch.optim.Adam(params, lr=opts.lr)
    draws = torch.Generator().manual_seed(opts.seed)
    for it in range(1, opts.iters + 1):
        pick = torch.randint(len(images), (opts.batch,), generator=draws)
        loss = model.label_mse(images[pick], views[pick], lights[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(it, float(loss.detach()))
    model.train_only(())


def angles_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angles (°) between the rows of two B×3 arrays of unit vectors."""
    return torch.rad2deg(torch.acos((a * b).sum(1).clamp(-1, 1)))


def label_errors(model: Model, images: torch.Tensor, views: torch.Tensor, lights: torch.Tensor) -> dict[str, float]:
    """Mean absolute errors of V and L against labels: yaw and pitch (°), the canonical light direction's
    angle (°), next to always answering L's mean; k_a and k_d."""
    with torch.no_grad():
        view, light = model.predict_view(images), model.predict_light(images)
    rot = model.to_transform(view)[:, :2] - model.to_transform(views)[:, :2]
    directions = [nets.light_params(x)[2] for x in (light, lights, model.light_mean.expand_as(lights))]

    def angle(a: torch.Tensor, b: torch.Tensor) -> float:
        return round(float(angles_deg(a, b).mean()), 2)

    return {"yaw_deg": round(float(torch.rad2deg(rot[:, 1].abs()).mean()), 2),
            "pitch_deg": round(float(torch.rad2deg(rot[:, 0].abs()).mean()), 2),
            "light_direction_deg": angle(directions[0], directions[1]),
            "light_direction_mean_deg": angle(directions[2], directions[1]),
            "k_a": round(float((light[:, 0] - lights[:, 0]).abs().mean() / 2), 4),
            "k_d": round(float((light[:, 1] - lights[:, 1]).abs().mean() / 2), 4)}
