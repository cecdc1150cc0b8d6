"""Turning the trained model into the files and JSON of the result bundle (docs/bundle.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import render
from ..bundle import BundleWriter
from .model import Model, Target


def _hwc(image: torch.Tensor) -> np.ndarray:
    """1×C×H×W in [−1, 1] → H×W×C float in [0, 1]."""
    return (image[0].detach().float().cpu().permute(1, 2, 0).numpy() / 2 + 0.5).clip(0, 1)


def _plain(x: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in x.detach().cpu().reshape(-1)]


@torch.no_grad()
def final_outputs(model: Model, target: Target) -> dict[str, torch.Tensor]:
    """The decomposition of the input by the trained nets (no flip), plus its canonical object mask."""
    model.train_only(())
    model.set_frame(target)  # also when a resumed run had no phase left to set it
    out = model.predict(target.image, mirror_average=model.cfg.depth_mirror_average,
                        shift_radius=model.cfg.depth_shift_average)
    out["canon_mask"] = model.canonical_mask(target, out["depth"], out["view_t"])
    out["object_view_t"] = out["view_t"] if model.frame is None else model.frame
    return out


def _rotation_and_translation(t: torch.Tensor) -> dict[str, Any]:
    return {"rotation_deg": [round(math.degrees(float(v)), 4) for v in t[:3]], "translation": _plain(t[3:6])}


def view_json(out: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The view of the canonical maps that renders the input, and V's reading of the object's pose in the input
    (the same unless the canonical maps are the input's own frame, config view_frame "input")."""
    return {**_rotation_and_translation(out["view_t"][0]), "raw": _plain(out["view"][0]),
            "object": _rotation_and_translation(out["object_view_t"][0])}


def light_json(out: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Canonical-frame light (what the shading uses) plus the same direction in the input camera's frame."""
    direction = out["direction"][:1]
    rot, _ = render.transform_from_view(out["view_t"][:1])
    camera_dir = (rot @ direction.unsqueeze(-1))[0, :, 0]
    return {"ambient": round(float(out["ambient"][0]), 6), "diffuse": round(float(out["diffuse_k"][0]), 6),
            "direction": _plain(direction[0]), "direction_camera": _plain(camera_dir), "raw": _plain(out["light"][0])}


def write_maps(writer: BundleWriter, out: dict[str, torch.Tensor], target: Target) -> None:
    """Arrays and images of the decomposition (keys of docs/bundle.md)."""
    writer.save_png("input", "input.png", _hwc(target.image))
    writer.save_npy("depth", "depth.npy", out["depth"][0].cpu().numpy())
    writer.save_npy("depth_view", "depth_view.npy", out["depth_view"][0].cpu().numpy())
    normal = out["normal"][0].cpu().numpy()
    writer.save_npy("normal", "normal.npy", normal)
    writer.save_png("normal_png", "normal.png", normal / 2 + 0.5)
    writer.save_png("albedo", "albedo.png", _hwc(out["albedo"]))
    writer.save_npy("shading", "shading.npy", out["shading"][0, 0].cpu().numpy())
    writer.save_png("canonical", "canonical.png", _hwc(out["canon"].clamp(-1, 1)))
    writer.save_png("reconstruction", "reconstruction.png", _hwc(out["recon"]))
    writer.save_png("mask", "mask.png", out["canon_mask"][0, 0].cpu().numpy())


def write_previews(writer: BundleWriter, previews: dict[str, dict[str, list[np.ndarray]]]) -> None:
    """previews/<stage>/<kind>_<i>.png; result.json names them as files.previews[stage][kind] = [paths]."""
    index: dict[str, dict[str, list[str]]] = {}
    for stage, kinds in sorted(previews.items()):
        for kind, frames in kinds.items():
            paths = [writer.save_png(None, f"previews/{stage}/{kind}_{i:03d}.png", f.astype(np.float32) / 255.0)
                     for i, f in enumerate(frames)]
            index.setdefault(stage, {})[kind] = paths
    writer.files["previews"] = index
