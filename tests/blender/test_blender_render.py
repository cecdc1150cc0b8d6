"""Rendering check: Cycles, from the imported camera, reproduces the engine's own rendering.

One number checks the light rig (Sun direction and strength, world strength), the texture orientation
(UVs) and the mesh orientation together: a mistake in any of them decorrelates the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse of the sRGB transfer function that Blender's Standard view transform applies."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def render_imported(bpy, size: int, out: Path, samples: int = 64) -> np.ndarray:
    """Render the current scene's camera with Cycles (direct light only, Standard, no filter blur); RGBA [0, 1]."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0  # the engine's model has no interreflections
    scene.cycles.filter_width = 0.01  # sample at pixel centres, as the engine's warp does
    scene.cycles.seed = 1
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(out), dtype=np.float64) / 255.0


def engine_mask(bundle: Path, rgba: np.ndarray) -> np.ndarray:
    """Pixels where both images show the object: rendered alpha and the engine's view validity, eroded by 1 px."""
    valid = np.load(bundle / "depth_view.npy") < 1.2 - 1e-4
    return binary_erosion((rgba[..., 3] > 0.999) & valid, iterations=1)


@pytest.mark.parametrize(("linear", "hires", "max_mean_abs"), [
    (True, False, 0.02),  # engine-linear albedo: scene-linear radiance equals the engine's stored values
    (True, True, 0.02),
    (False, True, 0.08),  # default sRGB albedo: display values approximate the photo (Blender shades in linear light)
], ids=["linear-albedo", "linear-albedo_hires", "srgb-albedo_hires"])
def test_cycles_render_matches_engine_reconstruction(clean_scene, stored_bundle, tmp_path, linear, hires,
                                                     max_mean_abs):
    bpy = clean_scene
    assert bpy.ops.import_scene.gan2shape_bundle(directory=str(stored_bundle), linear_albedo=linear,
                                                 hires_texture=hires) == {"FINISHED"}
    size = int(np.load(stored_bundle / "depth.npy").shape[0])
    rgba = render_imported(bpy, size, tmp_path / "render.png")
    reference = np.asarray(Image.open(stored_bundle / "reconstruction.png").convert("RGB"), np.float64) / 255.0
    mask = engine_mask(stored_bundle, rgba)
    assert mask.sum() > 0.25 * size * size
    # Like with like: with linear albedo, undo the view transform's sRGB encoding; with sRGB albedo the
    # displayed values are what the photo's stored values are compared with.
    rendered = srgb_to_linear(rgba[..., :3]) if linear else rgba[..., :3]
    corr = np.corrcoef(rendered[mask].ravel(), reference[mask].ravel())[0, 1]
    mean_abs = np.abs(rendered[mask] - reference[mask]).mean()
    print(f"linear={linear} hires={hires} corr={corr:.4f} mean_abs={mean_abs:.4f} pixels={mask.sum()}")
    assert corr >= 0.95
    assert mean_abs < max_mean_abs
