"""Supervised pre-training of the nets on the default category's labelled renders.

Why: step 3 trains V and L on projected samples from scratch, and under the method's own objective
L's light collapses towards frontal and V ignores the yaw (docs/default-model.md, items 8 and 10),
so the depth net learns from mislabelled samples. The synthetic default category has the exact view
and light of every training render, so V and L can be taught them before any image is reconstructed
(group "views"). Its depth and albedo maps can likewise teach D and A a category-level start (groups
"depth" and "albedo", item 21) in place of the ellipsoid: the maps are in the camera frame, which is
the canonical frame only under `view_frame = "input"`. The result is a gan2shape checkpoint with the
taught nets, usable as a preset's `pretrain` (without netD the ellipsoid prior is still fitted, §1.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import nets, render
from ..config import Config
from ..data.synth import SynthConfig, render_images
from ..errors import EngineError
from ..metrics import depth_metrics, erode
from .model import Model

GROUPS = {"views": ("netV", "netL"), "depth": ("netD",), "albedo": ("netA",)}  # what can be taught → its nets
CAMERA_FRAME_GROUPS = ("depth", "albedo")  # labels that are maps of the camera frame


def taught_nets(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The nets that `groups` teach, in GROUPS order."""
    return tuple(name for group, names in GROUPS.items() if group in groups for name in names)


def check_groups(cfg: Config, groups: tuple[str, ...]) -> None:
    """Refuse unknown groups, none, and map labels that would not be in the preset's canonical frame."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise EngineError(f"teach one or more of {', '.join(GROUPS)} (got {', '.join(groups) or 'nothing'})")
    maps = [g for g in groups if g in CAMERA_FRAME_GROUPS]
    if maps and cfg.view_frame != "input":
        raise EngineError(f"teaching {', '.join(maps)} needs view_frame=\"input\": the labels are camera-frame "
                          f"maps and the canonical frame of view_frame=\"{cfg.view_frame}\" is the object's")


def check_flip(opts: LabelTraining) -> None:
    """Mirrored renders teach maps only: their view and light labels are not mirrored."""
    if opts.flip and "views" in opts.teach:
        raise EngineError("--flip mirrors the renders' maps, not their views and lights: teach depth or albedo")


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


class Labelled(NamedTuple):
    """Renders and what each net should output for them."""

    images: torch.Tensor  # B×3×S×S in [−1, 1]
    views: torch.Tensor  # B×6, V's units
    lights: torch.Tensor  # B×4, L's units
    depths: torch.Tensor  # B×S×S camera-frame depth, background at the synthetic BACKGROUND_DEPTH
    albedos: torch.Tensor  # B×3×S×S in [−1, 1], A's units
    masks: torch.Tensor  # B×S×S bool, the object


def labelled_renders(cfg: Config, seed: int, indices: np.ndarray, chunk: int = 256) -> Labelled:
    """The data generator's renders with their labels, rendered `chunk` at a time (the rasteriser's
    memory grows with the batch)."""
    parts = []
    for start in range(0, len(indices), chunk):
        data = render_images(SynthConfig(image_size=cfg.image_size), seed, indices[start:start + chunk])
        images, albedos = (torch.from_numpy(data[k]).float().permute(0, 3, 1, 2) / 127.5 - 1 for k in ("rgb", "albedo"))
        views, lights = net_labels(cfg, torch.from_numpy(data["view"]).float(), torch.from_numpy(data["light"]).float())
        parts.append(Labelled(images, views, lights, torch.from_numpy(data["depth"]), albedos,
                              torch.from_numpy(data["mask"]).bool()))
    return Labelled(*(torch.cat(column) for column in zip(*parts, strict=True)))


def depth_label_loss(depth: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor, far: float) -> torch.Tensor:
    """The object's squared SIDE (scale-invariant log depth) plus the background's MSE to `far`.

    Why not the MSE to the true depth: D's depth is tanh(raw − mean raw) in [min, max], so with four fifths
    of the frame background the true background (the synthetic 1.1 = max) forces the object's raw values to
    saturate and flattens its relief. A uniformly scaled scene gives the same image and normals, so only
    the object's shape up to scale is taught, and the background sits where the ellipsoid prior puts it."""
    m = masks.to(depth.dtype)
    count = m.sum((1, 2)).clamp_min(1)
    delta = (depth.log() - truth.log()) * m
    centred = (delta - (delta.sum((1, 2)) / count)[:, None, None]) * m
    background = ((depth - far) ** 2 * (1 - m)).sum((1, 2)) / (1 - m).sum((1, 2)).clamp_min(1)
    return (centred.square().sum((1, 2)) / count + background).mean()


def unclamped_depth(model: Model, images: torch.Tensor) -> torch.Tensor:
    """D's depth without the official border clamp, which would pin the labels' border columns."""
    return nets.depth_from_raw(model.nets["netD"](images), model.cfg.min_depth, model.cfg.max_depth)


def normal_label_loss(depth: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor, cam: render.Camera
                      ) -> torch.Tensor:
    """Mean 1 − cos between the depth's normals and the true ones over the eroded object (the silhouette's
    normals mix in the background). Why: the SIDE term weighs each pixel's log depth, so a depth right on the
    whole can still be rough, and the normals (evaluate's MAD) measure exactly that. Blind to scale too."""
    inner = erode(masks).to(depth.dtype)
    # renormalised: the official + 1e-7 shortens 64² normals by ~0.3 %, more the flatter or nearer the surface,
    # which would reward a deeper, steeper depth
    normals = [F.normalize(render.normals_from_depth(d, cam), dim=-1) for d in (depth, truth)]
    cos = (normals[0] * normals[1]).sum(-1)
    return (((1 - cos) * inner).sum((1, 2)) / inner.sum((1, 2)).clamp_min(1)).mean()


def label_loss(model: Model, data: Labelled, groups: tuple[str, ...], normal_weight: float = 0.0) -> torch.Tensor:
    """Sum of the taught groups' losses. Each group has its own nets, so Adam sees each term at its own scale;
    within the depth group the normal term is weighed by `normal_weight` against the SIDE term."""
    loss = torch.zeros((), device=data.images.device)
    if "views" in groups:
        loss = loss + model.label_mse(data.images, data.views, data.lights)
    if "depth" in groups:
        depth = unclamped_depth(model, data.images)
        loss = loss + depth_label_loss(depth, data.depths, data.masks, model.cfg.prior_far)
        if normal_weight:
            loss = loss + normal_weight * normal_label_loss(depth, data.depths, data.masks, model.cam)
    if "albedo" in groups:
        loss = loss + F.mse_loss(model.nets["netA"](data.images), data.albedos)
    return loss


@dataclass(frozen=True)
class LabelTraining:
    """What is taught (GROUPS) and how: Adam at `lr` on batches of `batch` drawn from `pool` training renders,
    the rate held (schedule "constant") or lowered along a half cosine to 0 at the last step ("cosine"); D's
    SIDE term joined by `normal_weight` × normal_label_loss; with `flip`, each drawn render mirrored left to
    right at even odds (maps only: a mirrored render's view and light labels would need mirroring too); with
    `fresh` > 0, that many pool renders are replaced by renders never drawn before after every step
    (pool_indices), so a long run is not limited to `pool` renders held in memory."""

    iters: int = 3000
    batch: int = 32
    lr: float = 1e-3
    pool: int = 8000
    seed: int = 0
    teach: tuple[str, ...] = ("views",)
    schedule: str = "constant"
    normal_weight: float = 0.0
    flip: bool = False
    fresh: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.schedule!r}; one of {', '.join(SCHEDULES)}")


SCHEDULES = ("constant", "cosine")


def pool_indices(pool: int, replaced: int) -> np.ndarray:
    """The training render each pool slot holds after `replaced` replacements. Replacement i puts render
    pool + i into slot i mod pool, so slot j's n-th is render j + n·pool: a resumed run rebuilds its pool
    from the step count alone, and no render enters twice."""
    slots = np.arange(pool)
    return slots + pool * np.maximum(0, -((slots - replaced) // pool))


def step_lr(opts: LabelTraining, it: int) -> float:
    """The learning rate of step `it` (1..iters)."""
    if opts.schedule == "constant":
        return opts.lr
    return opts.lr * 0.5 * (1 + math.cos(math.pi * (it - 1) / max(opts.iters - 1, 1)))


def train_on_labels(model: Model, data: Labelled, opts: LabelTraining,
                    on_step: Callable[[int, float], None] | None = None,
                    saved: dict[str, Any] | None = None,
                    save: tuple[int, Callable[[dict[str, Any]], None]] | None = None,
                    renders: Callable[[np.ndarray], Labelled] | None = None) -> None:
    """Train the nets of `opts.teach` on `labelled_renders` output; on_step(iteration, loss) after each step.

    save=(every, write) hands write() the training state after every `every` steps; passing that state back
    as `saved` continues the run exactly where it stopped (the taught nets, Adam's moments, the next draws),
    so a long run can span sessions and still end bit-identical to an uninterrupted one. With opts.fresh,
    `data` must hold the renders pool_indices(pool, fresh · steps done) and renders(indices) make new ones."""
    if opts.fresh and renders is None:
        raise ValueError("fresh renders need a renders() function")
    names = taught_nets(opts.teach)
    model.train_only(names)
    params = [p for name in names for p in model.nets[name].parameters()]
    opt = torch.optim.Adam(params, lr=opts.lr)
    draws = torch.Generator().manual_seed(opts.seed)
    done = 0
    if saved is not None:
        for name in names:
            model.nets[name].load_state_dict(saved["nets"][name])
        opt.load_state_dict(saved["optimizer"])
        draws.set_state(saved["draws"])
        done = saved["iter"]
    for it in range(done + 1, opts.iters + 1):
        for group in opt.param_groups:
            group["lr"] = step_lr(opts, it)
        pick = torch.randint(len(data.images), (opts.batch,), generator=draws)
        batch = Labelled(*(column[pick] for column in data))
        if opts.flip:
            batch = mirror_some(batch, torch.rand(opts.batch, generator=draws) < 0.5)
        loss = label_loss(model, batch, opts.teach, opts.normal_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if opts.fresh:
            replace_renders(data, opts.pool + (it - 1) * opts.fresh, opts.fresh, renders)
        if on_step is not None:
            on_step(it, float(loss.detach()))
        if save is not None and it % save[0] == 0 and it < opts.iters:
            save[1]({"iter": it, "nets": {name: model.nets[name].state_dict() for name in names},
                     "optimizer": opt.state_dict(), "draws": draws.get_state()})
    model.train_only(())


def replace_renders(data: Labelled, first: int, count: int, renders: Callable[[np.ndarray], Labelled]) -> None:
    """Put renders first..first+count−1 into their pool slots (pool_indices), in place."""
    indices = np.arange(first, first + count)
    slots = torch.from_numpy(indices % len(data.images))
    for column, new in zip(data, renders(indices), strict=True):
        column[slots] = new


def mirror_some(data: Labelled, which: torch.Tensor) -> Labelled:
    """`data` with the renders `which` (B bool) mirrored left to right: their image and camera-frame maps. The
    camera's principal point is the image centre, so a mirrored depth map is the mirrored object's, exactly.
    Views and lights are left as they are (check_flip refuses teaching them so)."""
    def mirrored(maps: torch.Tensor) -> torch.Tensor:
        pick = which.view(-1, *[1] * (maps.dim() - 1))
        return torch.where(pick, maps.flip(-1), maps)

    return data._replace(images=mirrored(data.images), depths=mirrored(data.depths),
                         albedos=mirrored(data.albedos), masks=mirrored(data.masks))


def angles_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angles (°) between the rows of two B×3 arrays of unit vectors."""
    return torch.rad2deg(torch.acos((a * b).sum(1).clamp(-1, 1)))


def label_errors(model: Model, data: Labelled, groups: tuple[str, ...] = ("views",)) -> dict[str, float]:
    """How far the taught nets are from the labels. "views": mean absolute yaw and pitch errors (°), the
    canonical light direction's angle (°) next to always answering L's mean, k_a and k_d. "depth": D's
    depth against the true one by SIDE (×10⁻²) and MAD (°) over the object, as `evaluate` scores a
    reconstruction. "albedo": A's mean absolute error over the object, in [0, 1] colour units."""
    out: dict[str, float] = {}
    with torch.no_grad():
        if "views" in groups:
            out.update(view_light_errors(model, data))
        if "depth" in groups:
            depth = unclamped_depth(model, data.images)
            summary = depth_metrics(depth, data.depths, data.masks, model.cam, data.masks).summary()
            out.update(depth_side_x100=round(summary["side_x100"]["mean"], 3),
                       depth_mad_deg=round(summary["mad_deg"]["mean"], 2))
        if "albedo" in groups:
            error = (model.nets["netA"](data.images) - data.albedos).abs().mean(1) / 2
            out["albedo_mae"] = round(float(error[data.masks].mean()), 4)
    return out


def view_light_errors(model: Model, data: Labelled) -> dict[str, float]:
    view, light = model.predict_view(data.images), model.predict_light(data.images)
    rot = model.to_transform(view)[:, :2] - model.to_transform(data.views)[:, :2]
    lights = data.lights
    directions = [nets.light_params(x)[2] for x in (light, lights, model.light_mean.expand_as(lights))]

    def angle(a: torch.Tensor, b: torch.Tensor) -> float:
        return round(float(angles_deg(a, b).mean()), 2)

    return {"yaw_deg": round(float(torch.rad2deg(rot[:, 1].abs()).mean()), 2),
            "pitch_deg": round(float(torch.rad2deg(rot[:, 0].abs()).mean()), 2),
            "light_direction_deg": angle(directions[0], directions[1]),
            "light_direction_mean_deg": angle(directions[2], directions[1]),
            "k_a": round(float((light[:, 0] - lights[:, 0]).abs().mean() / 2), 4),
            "k_d": round(float((light[:, 1] - lights[:, 1]).abs().mean() / 2), 4)}
