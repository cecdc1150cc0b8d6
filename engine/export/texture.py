"""Base-colour textures: the de-lit albedo, optionally recovered at the photo's full resolution.

Why: the networks see S×S (64–128 px); the bundle also keeps the photo at full resolution.
Dividing that photo by the (smooth) shading removes the light and keeps the photo's detail. The
photo is in the predicted input view and the texture is canonical, so the photo is sampled through
the renderer's forward warp (where each canonical point lands in the view); points the view does
not show (hidden, off the object) keep the network's albedo.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..render import Camera, depth_to_points, points_to_grid, transform_points
from .mesh import upsample

# Below this shading the division by the shading amplifies noise: keep the network's albedo there.
MIN_SHADING = 0.05
# A canonical point farther than the visible surface by more than this (depth units) is hidden in the view.
OCCLUSION_TOLERANCE = 0.01


def texel_camera(texture_size: int, cam: Camera) -> Camera:
    """A camera whose pixel k looks through the centre of texel k of a T×T texture of the S×S image.

    Texel k covers S-image position x = (k + ½)·S/T − ½ (the half-pixel convention of image resizing
    and of the UVs), which is a T-pixel camera with focal length f_S·T/S.
    """
    half_angle = math.atan((texture_size - 1) * cam.image_size / (2 * texture_size * cam.fx))
    return Camera(texture_size, math.degrees(2 * half_angle), cam.rot_center_depth)


def photo_to_canonical(photo: np.ndarray, depth: np.ndarray, depth_view: np.ndarray, view: np.ndarray,
                       cam: Camera, far: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample a T×T×3 input-view photo at the canonical texel centres.

    `depth` is the S×S canonical depth, `depth_view` the S×S depth seen in the view (`far` =
    background), `view` the 6-vector (radians, depth units), `cam` the bundle's S-pixel camera.
    Returns the canonical-frame photo (T×T×3) and where it shows the point itself (T×T bool): the
    point lands on the object in the view, at least one S pixel from its silhouette, and nothing
    nearer covers it.
    """
    tex = photo.shape[0]
    cam_t = texel_camera(tex, cam)
    depth_t = torch.from_numpy(upsample(depth, tex, "bicubic", align_corners=False))[None]
    view_t = torch.as_tensor(np.asarray(view, dtype=np.float32))[None]
    # the renderer's forward warp, kept as points: their view depth is needed for occlusion
    points = transform_points(depth_to_points(depth_t, cam_t), view_t, cam_t)
    grid = points_to_grid(points, cam_t)  # the photo's pixels share the texel rays: same camera
    image = torch.from_numpy(np.ascontiguousarray(photo, dtype=np.float32)).permute(2, 0, 1)[None]
    sampled = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    grid_s = (grid * (cam_t.cx / cam_t.fx) / (cam.cx / cam.fx)).float()  # same rays, S-camera grid units
    dv = torch.from_numpy(np.ascontiguousarray(depth_view, dtype=np.float32))[None, None]
    on_object = F.grid_sample((dv < far - 1e-4).float(), grid_s, mode="bilinear", padding_mode="zeros",
                              align_corners=True)[0, 0] > 0.999
    nearest = F.grid_sample(dv, grid_s, mode="bilinear", padding_mode="border", align_corners=True)[0, 0]
    visible = on_object & (points[0, ..., 2].float() <= nearest + OCCLUSION_TOLERANCE)
    return sampled[0].permute(1, 2, 0).numpy(), visible.numpy()


def hires_albedo(photo: np.ndarray, albedo: np.ndarray, shading: np.ndarray, mask: np.ndarray,
                 depth: np.ndarray, depth_view: np.ndarray, view: np.ndarray, cam: Camera, far: float,
                 ) -> np.ndarray:
    """Albedo at the photo's resolution: photo (canonical frame) / upsampled shading, in [0, 1].

    Inside the object mask, where the photo shows the point (photo_to_canonical) and the shading
    is ≥ MIN_SHADING; elsewhere the network's albedo (upsampled), which also keeps texture
    filtering at the rim sensible. All images are stored values in [0, 1] (the engine's image
    model is linear in them).
    """
    tex = photo.shape[0]
    canon, visible = photo_to_canonical(photo, depth, depth_view, view, cam, far)
    shading_t = upsample(shading, tex, "bilinear", align_corners=False)
    albedo_t = upsample(albedo, tex, "bilinear", align_corners=False)
    mask_t = upsample(mask.astype(np.float32), tex, "bilinear", align_corners=False) > 0.5
    use = visible & mask_t & (shading_t >= MIN_SHADING)
    ratio = canon / np.maximum(shading_t, MIN_SHADING)[..., None]
    return np.clip(np.where(use[..., None], ratio, albedo_t), 0.0, 1.0)


def shaded_texture(albedo_texture: np.ndarray, shading: np.ndarray) -> np.ndarray:
    """The shaded image matching a base-colour texture: clamp(albedo · upsampled shading)."""
    shading_t = upsample(shading, albedo_texture.shape[0], "bilinear", align_corners=False)
    return np.clip(albedo_texture * shading_t[..., None], 0.0, 1.0)
