"""An ideal "GAN" for one synthetic head: the head's exact canonical depth and albedo rendered by the
engine's renderer under any view and light chosen by the latent.

It isolates the 3D part of the method from the generator's quality: whatever a reconstruction
misses on it, a better GAN cannot recover. Used by tests/test_pipeline_known_shape.py and
bench/bench_known_shape.py. z[0], z[1] set yaw and pitch (tanh-squashed to ±60°, ±25°); z[2], z[3]
the light direction; the shading happens in the camera frame like the synthetic data's own image model.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from .. import render
from ..gan.protocol import ZSpaceGenerator
from .mesh import load_base_mesh
from .synth import SynthConfig, sample_params
from .synth import render as synth_render

YAW, PITCH = math.radians(60), math.radians(25)  # the generator's view range (tanh of z[0], z[1])
LIGHT_SCALE = 0.5  # light direction (x, y) = LIGHT_SCALE · (z[2], z[3])


class KnownShapeRenderer(nn.Module):
    """z (B×4) → the known head under the latent's view and light, B×3×S×S in [−1, 1] (differentiable in z)."""

    def __init__(self, depth: torch.Tensor, albedo: torch.Tensor, ambient: float, diffuse: float):
        super().__init__()
        self.cam = render.Camera(depth.shape[-1])
        self.register_buffer("depth", depth)
        self.register_buffer("albedo", albedo)
        self.register_buffer("normal", render.normals_from_depth(depth, self.cam))
        self.ambient, self.diffuse = ambient, diffuse

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        zero = torch.zeros_like(z[:, 0])
        view = torch.stack([torch.tanh(z[:, 1]) * PITCH, torch.tanh(z[:, 0]) * YAW, zero, zero, zero, zero], 1)
        rot, _ = render.transform_from_view(view)
        normal = torch.einsum("bij,bhwj->bihw", rot, self.normal.expand(b, -1, -1, -1))
        stack = torch.cat([self.albedo.expand(b, -1, -1, -1), normal], 1)
        seen, _, _ = render.render_view(stack, self.depth.expand(b, -1, -1), view, self.cam)
        normal = nn.functional.normalize(seen[:, 3:].permute(0, 2, 3, 1), dim=-1, eps=1e-6)
        direction = render.light_direction(z[:, 2:4] * LIGHT_SCALE)
        full = torch.full_like(zero, 1.0)
        image, _, _ = render.shade(seen[:, :3], normal, full * self.ambient, full * self.diffuse, direction)
        return image.clamp(-1, 1)


def known_shape_target(seed: int = 5, index: int = 0, size: int = 64) -> tuple[ZSpaceGenerator, torch.Tensor, dict]:
    """(generator, z0 1×4 = the head's true view and light, the synthetic photo's ground truth)."""
    scfg, mesh = SynthConfig(image_size=size), load_base_mesh()
    prm = sample_params(scfg, mesh, seed, np.array([index]))
    photo = synth_render(scfg, mesh, prm)
    canon = synth_render(scfg, mesh, dataclasses.replace(prm, view=np.zeros_like(prm.view)))
    albedo = torch.from_numpy(canon["albedo"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    light = photo["light"][0]
    module = KnownShapeRenderer(torch.from_numpy(canon["depth"]).float(), albedo, float(light[0]), float(light[1]))
    view = photo["view"][0]
    z0 = torch.tensor([[math.atanh(view[1] / YAW), math.atanh(view[0] / PITCH),
                        light[2] / LIGHT_SCALE, light[3] / LIGHT_SCALE]], dtype=torch.float32)
    return ZSpaceGenerator(module, 4, size), z0, photo
