"""Result bundles for the add-on tests, written with the engine's own code.

Arrays (depth, albedo, light, view) are chosen by hand; normals, shading, the canonical image and the
reconstruction are computed by engine.render, the bundle by engine.bundle and the mesh files and light
rig by engine.export: the add-on is tested against exactly what the engine produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Scene:
    """Hand-chosen reconstruction; asymmetric so that any mirrored axis shows up in the checks."""

    size: int = 64
    ambient: float = 0.35
    diffuse: float = 0.65
    light_xy: tuple[float, float] = (0.45, -0.3)
    rotation_deg: tuple[float, float, float] = (6.0, -14.0, 3.0)
    translation: tuple[float, float, float] = (0.004, -0.003, 0.0)
    metrics: dict = field(default_factory=lambda: {"loss_step1": 0.125, "lpips": 0.25})


def _arrays(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical depth (S×S), albedo (S×S×3 in [0, 1]) and object mask (S×S bool)."""
    s = scene.size
    y, x = np.mgrid[0:s, 0:s].astype(np.float64)
    u, v = (x - (s - 1) / 2) / (s / 2), (y - (s - 1) / 2) / (s / 2)
    r2 = (u / 0.8) ** 2 + (v / 0.7) ** 2
    mask = r2 < 1.0
    bump = 0.06 * np.sqrt(np.clip(1.0 - r2, 0.0, None)) + 0.015 * np.clip(u + 0.5 * v, -1, 1)
    depth = np.where(mask, 1.0 - bump, 1.0)
    albedo = np.stack([0.25 + 0.6 * (x / (s - 1)),  # red grows to the right
                       0.25 + 0.6 * (y / (s - 1)),  # green grows downwards
                       0.5 + 0.35 * np.sign(np.sin(x / 4.0) * np.sin(y / 6.0))], axis=-1)
    albedo[(u < -0.2) & (u > -0.5) & (v < -0.1) & (v > -0.45)] = (0.95, 0.9, 0.2)  # a yellow patch top-left
    return depth.astype(np.float32), albedo.astype(np.float32), mask


def _to_image01(t) -> np.ndarray:
    """1×3×H×W tensor in [-1, 1] → H×W×3 array in [0, 1]."""
    return t[0].permute(1, 2, 0).numpy() / 2 + 0.5


def write_bundle(out_dir: Path, scene: Scene | None = None, photo_name: str = "relief_photo.png") -> Path:
    """Write a complete bundle (with export's mesh.glb, mesh.obj, albedo_hires.png, light_rig.json)."""
    import torch

    from engine.bundle import open_bundle, sha256_file
    from engine.export import ExportOptions, export_bundle
    from engine.render import Camera, light_direction, normals_from_depth, render_view, shade

    scene = scene or Scene()
    s = scene.size
    depth, albedo, mask = _arrays(scene)
    cam = Camera(s)
    d = torch.from_numpy(depth)[None]
    normal = normals_from_depth(d, cam)
    direction = light_direction(torch.tensor([scene.light_xy], dtype=torch.float32))
    a = torch.from_numpy(albedo).permute(2, 0, 1)[None] * 2 - 1
    canon, shading, _ = shade(a, normal, torch.tensor([scene.ambient]), torch.tensor([scene.diffuse]), direction)
    canon = canon.clamp(-1, 1)
    view = torch.tensor([[*(math.radians(r) for r in scene.rotation_deg), *scene.translation]], dtype=torch.float32)
    recon, _, depth_view = render_view(canon, d, view, cam)
    recon01 = _to_image01(recon)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    photo = out_dir.parent / photo_name
    Image.fromarray((np.clip(recon01, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((4 * s, 4 * s),
                                                                               Image.Resampling.BICUBIC).save(photo)
    with open_bundle(out_dir) as w:
        w.save_png("input", "input.png", recon01)
        w.save_png("input_full", "input_full.png", np.asarray(Image.open(photo), np.float32) / 255)
        w.save_npy("depth", "depth.npy", depth)
        w.save_npy("depth_view", "depth_view.npy", depth_view[0].numpy())
        w.save_npy("normal", "normal.npy", normal[0].numpy())
        w.save_png("normal_png", "normal.png", normal[0].numpy() / 2 + 0.5)
        w.save_png("albedo", "albedo.png", albedo)
        w.save_npy("shading", "shading.npy", shading[0, 0].numpy())
        w.save_png("canonical", "canonical.png", _to_image01(canon))
        w.save_png("reconstruction", "reconstruction.png", recon01)
        w.save_png("mask", "mask.png", mask.astype(np.float32))
        w.finish({
            "input": {"image": str(photo), "sha256": sha256_file(photo), "original_size": [4 * s, 4 * s],
                      "latent": None, "latent_source": "projector", "mask_source": "file"},
            "preset": "default", "config": {"image_size": s}, "image_size": s,
            "camera": {"fov_deg": 10.0, "rot_center_depth": 1.0, "min_depth": 0.9, "max_depth": 1.1},
            "view": {"rotation_deg": list(scene.rotation_deg), "translation": list(scene.translation),
                     "raw": [0.0] * 6},
            "light": {"ambient": scene.ambient, "diffuse": scene.diffuse,
                      "direction": direction[0].tolist(), "raw": [0.0] * 4},
            "perceptual": "none", "metrics": dict(scene.metrics), "timings": {"total_s": 0.0},
            "versions": {"engine": "test"},
        })
    export_bundle(out_dir, ExportOptions(formats=("glb", "obj")))
    return out_dir
