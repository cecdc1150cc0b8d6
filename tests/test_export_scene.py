"""An analytic scene for the export tests: a ray-cast ellipsoid with a patterned albedo and a light.

Every image of the bundle is computed from the same closed-form object (no renderer involved), so
the export's frames, warps and light mapping are checked against geometry, not against our code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import bundle

FOV = 10.0
TAN = math.tan(math.radians(FOV / 2))
CENTRE = np.array([0.0, 0.0, 1.0])
AXES = np.array([0.065, 0.075, 0.05])
AMBIENT, DIFFUSE = 0.4, 0.6
LIGHT_XY = (0.5, -0.3)  # direction = normalise(l2, l3, 1)


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """R = Rz·Ry·Rx (spec §3.3), radians."""
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def light_direction() -> np.ndarray:
    d = np.array([*LIGHT_XY, 1.0])
    return d / np.linalg.norm(d)


def albedo_at(points: np.ndarray) -> np.ndarray:
    """Albedo (stored values in [0, 1]) of canonical points, a pattern over the image plane."""
    ax = points[..., 0] / points[..., 2] / TAN
    ay = points[..., 1] / points[..., 2] / TAN
    phases = np.array([0.0, 2.0, 4.0])
    return 0.5 + 0.3 * np.sin(2 * np.pi * 1.5 * ax[..., None] + phases) * np.cos(2 * np.pi * ay[..., None])


def ray_cast(rays: np.ndarray, view: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit the ellipsoid, placed in `view` (6-vector, radians), with camera rays (…×3, z = 1).

    Returns (hit mask, view-frame depth, canonical hit points).
    """
    rot, trans = rotation(*view[:3]), np.asarray(view[3:])
    u = rays @ rot  # Rᵀ r for each ray (row vectors)
    w = CENTRE - rot.T @ (trans + CENTRE)
    p0, p1 = (w - CENTRE) / AXES, u / AXES
    a, b, c = (p1 * p1).sum(-1), 2 * (p0 * p1).sum(-1), (p0 * p0).sum() - 1
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return hit, t, t[..., None] * u + w


def shading_at(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Engine-convention normals (+z for a camera-facing surface) and shading at canonical points."""
    normal = -(points - CENTRE) / AXES**2
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return normal, AMBIENT + DIFFUSE * np.maximum(0.0, normal @ light_direction())


def pixel_rays(size: int, image_size: int) -> np.ndarray:
    """Rays through the pixels of a size² image of the image_size² engine image (same crop).

    Pixel k sits at engine-image position (k + ½)·S/size − ½ (image-resize convention).
    """
    f = (image_size - 1) / 2 / TAN
    pos = (np.arange(size) + 0.5) * image_size / size - 0.5
    tan = (pos - (image_size - 1) / 2) / f
    ty, tx = np.meshgrid(tan, tan, indexing="ij")
    return np.stack([tx, ty, np.ones_like(tx)], axis=-1)


@dataclass
class Scene:
    size: int = 32
    photo_size: int | None = 128  # None: no input_full in the bundle
    view: np.ndarray = field(default_factory=lambda: np.array([math.radians(-4.0), math.radians(8.0), 0.0,
                                                               0.01, -0.005, 0.0]))

    def canonical(self, size: int | None = None) -> dict[str, np.ndarray]:
        """Canonical maps at the centres of a size² grid (default: the engine image)."""
        rays = pixel_rays(size or self.size, self.size)
        hit, depth, points = ray_cast(rays, np.zeros(6))
        points = np.where(hit[..., None], points, rays * 1.1)
        normal, shading = shading_at(points)
        normal = np.where(hit[..., None], normal, [0.0, 0.0, 1.0])
        shading = np.where(hit, shading, AMBIENT + DIFFUSE * light_direction()[2])
        albedo = albedo_at(points)
        return {"mask": hit, "depth": np.where(hit, depth, 1.1), "normal": normal, "shading": shading,
                "albedo": albedo, "canonical": np.clip(albedo * shading[..., None], 0, 1)}

    def photo(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The object seen in the predicted view (white background) and its view depth."""
        hit, depth, points = ray_cast(pixel_rays(size, self.size), self.view)
        _, shading = shading_at(points)
        image = np.clip(albedo_at(points) * shading[..., None], 0, 1)
        return np.where(hit[..., None], image, 1.0), np.where(hit, depth, 1.2)

    def write(self, out: Path) -> Path:
        """A schema-1 bundle of this scene (engine.bundle's writer)."""
        maps = self.canonical()
        photo, depth_view = self.photo(self.size)
        with bundle.open_bundle(out) as w:
            w.save_png("input", "input.png", photo)
            if self.photo_size:
                w.save_png("input_full", "input_full.png", self.photo(self.photo_size)[0])
            w.save_npy("depth", "depth.npy", maps["depth"])
            w.save_npy("depth_view", "depth_view.npy", depth_view)
            w.save_npy("normal", "normal.npy", maps["normal"])
            w.save_png("normal_png", "normal.png", maps["normal"] / 2 + 0.5)
            w.save_png("albedo", "albedo.png", maps["albedo"])
            w.save_npy("shading", "shading.npy", maps["shading"])
            w.save_png("canonical", "canonical.png", maps["canonical"])
            w.save_png("reconstruction", "reconstruction.png", photo)
            w.save_png("mask", "mask.png", maps["mask"].astype(np.float32))
            w.finish({
                "input": {"image": "analytic", "sha256": "", "original_size": [self.photo_size or self.size] * 2,
                          "latent": None, "latent_source": "file", "mask_source": "file"},
                "preset": "test", "config": {}, "image_size": self.size,
                "camera": {"fov_deg": FOV, "rot_center_depth": 1.0, "min_depth": 0.9, "max_depth": 1.1},
                "view": {"rotation_deg": np.degrees(self.view[:3]).tolist(), "translation": self.view[3:].tolist(),
                         "raw": [0.0] * 6},
                "light": {"ambient": AMBIENT, "diffuse": DIFFUSE, "direction": light_direction().tolist(),
                          "raw": [0.0] * 4},
                "perceptual": "none", "metrics": {}, "timings": {}, "versions": {},
            })
        return out


def test_scene_bundle_is_valid_and_consistent(tmp_path: Path) -> None:
    scene = Scene()
    data = bundle.read(scene.write(tmp_path / "b"))
    assert data["image_size"] == scene.size
    maps = scene.canonical()
    assert 0.2 < maps["mask"].mean() < 0.8
    assert maps["depth"][maps["mask"]].min() > 0.9
    # with the identity view the photo is the canonical image: the fixture's own frames agree
    identity = Scene(view=np.zeros(6))
    photo, _ = identity.photo(scene.size)
    inside = maps["mask"]
    np.testing.assert_allclose(photo[inside], maps["canonical"][inside], atol=1e-9)
