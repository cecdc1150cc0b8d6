"""Export timings on a synthetic 128² bundle: default export, and a 512²-upsampled export.

Prints one JSON object. Targets: default ≤ 0.5 s, 512² ≤ 3 s (docs/export.md).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine import bundle
from engine.export import ExportOptions, build_mesh, export_bundle
from engine.render import Camera, normals_from_depth, shade

SIZE, PHOTO = 128, 512


def synthetic_bundle(out: Path) -> Path:
    """An ellipsoidal bump with a patterned albedo, lit from the upper left, seen from the canonical view."""
    cam = Camera(SIZE)
    t = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(t, t, indexing="ij")
    r2 = (x / 0.8) ** 2 + (y / 0.9) ** 2
    mask = r2 < 1
    depth = (1.05 - 0.1 * torch.sqrt(torch.clamp(1 - r2, min=0)))[None]
    normal = normals_from_depth(depth, cam)
    albedo = torch.stack([torch.sin(6 * x + k) * torch.cos(4 * y) * 0.5 for k in range(3)])[None]
    light = torch.tensor([[-0.4, -0.3, 1.0]]) / math.sqrt(1.25)
    canon, shading, _ = shade(albedo, normal, torch.tensor([0.4]), torch.tensor([0.6]), light)
    image = (canon[0].permute(1, 2, 0) / 2 + 0.5).clamp(0, 1).numpy()
    full = torch.nn.functional.interpolate(canon / 2 + 0.5, size=(PHOTO, PHOTO), mode="bicubic")
    with bundle.open_bundle(out) as w:
        w.save_png("input", "input.png", image)
        w.save_png("input_full", "input_full.png", full[0].permute(1, 2, 0).clamp(0, 1).numpy())
        w.save_npy("depth", "depth.npy", depth[0].numpy())
        w.save_npy("depth_view", "depth_view.npy", torch.where(mask, depth[0], torch.tensor(1.2)).numpy())
        w.save_npy("normal", "normal.npy", normal[0].numpy())
        w.save_png("normal_png", "normal.png", normal[0].numpy() / 2 + 0.5)
        w.save_png("albedo", "albedo.png", (albedo[0].permute(1, 2, 0) / 2 + 0.5).numpy())
        w.save_npy("shading", "shading.npy", shading[0, 0].numpy())
        w.save_png("canonical", "canonical.png", image)
        w.save_png("reconstruction", "reconstruction.png", image)
        w.save_png("mask", "mask.png", mask.float().numpy())
        w.finish({"input": {}, "preset": "bench", "config": {}, "image_size": SIZE,
                  "camera": {"fov_deg": 10.0, "rot_center_depth": 1.0, "min_depth": 0.9, "max_depth": 1.1},
                  "view": {"rotation_deg": [0.0, 0.0, 0.0], "translation": [0.0, 0.0, 0.0], "raw": [0.0] * 6},
                  "light": {"ambient": 0.4, "diffuse": 0.6, "direction": light[0].tolist(), "raw": [0.0] * 4},
                  "perceptual": "none", "metrics": {}, "timings": {}, "versions": {}})
    return out


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_bundle(Path(tmp) / "bundle")
        export_bundle(root)  # warm-up (imports, allocator)
        cases = {
            "export_128_glb_s": ExportOptions(),
            "export_128_both_s": ExportOptions(formats=("glb", "obj")),
            "export_512_glb_s": ExportOptions(resolution=512),
            "export_512_both_s": ExportOptions(formats=("glb", "obj"), resolution=512),
            "export_512_solid_glb_s": ExportOptions(resolution=512, solid=True),
            "export_512_decimate_50k_glb_s": ExportOptions(resolution=512, decimate=50_000),
        }
        result: dict = {"bundle_size": SIZE, "photo_size": PHOTO, "threads": 1}
        for name, options in cases.items():
            result[name] = round(best_of(3, lambda o=options: export_bundle(root, o)), 4)
        mesh, _ = build_mesh(np.load(root / "depth.npy"), np.asarray(Image.open(root / "mask.png")) > 127, 10.0,
                             ExportOptions(resolution=512))
        result["mesh_512"] = {"vertices": len(mesh.vertices), "faces": len(mesh.faces)}
        result["targets_s"] = {"export_128_glb_s": 0.5, "export_512_glb_s": 3.0}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
