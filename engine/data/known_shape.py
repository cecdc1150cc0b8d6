"""An ideal "GAN" for one synthetic head: the head's exact canonical depth and albedo rendered by the
engine's renderer under any view and light chosen by the latent.

It isolates the 3D part of the method from the generator's quality: whatever a reconstruction
misses on it, a better GAN cannot recover. Used by tests/test_pipeline_known_shape.py and
bench/bench_known_shape.py. z[0], z[1] set yaw and pitch (tanh-squashed to ±60°, ±25°); z[2], z[3]
the light direction; the shading happens in the camera frame like the synthetic data's own image model.
The ground truth is that of the generator's own image (its depth and silhouette in the latent's view),
so the exact shape scores 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import losses, nets, prior, render
from ..config import Config
from ..gan.protocol import ZSpaceGenerator
from ..pipeline.model import Model, Target
from .mesh import load_base_mesh
from .synth import SynthConfig, sample_params
from .synth import render as synth_render

YAW, PITCH = math.radians(60), math.radians(25)  # the generator's view range (tanh of z[0], z[1])
LIGHT_SCALE = 0.5  # light direction (x, y) = LIGHT_SCALE · (z[2], z[3])
# Sampled at the pixel centres like the synthetic data, i.e. with the `default` preset's renderer: with the
# official quirks here and not in the model, even the exact shape cannot re-render the generator's views.
PIXEL_CENTRES = render.RasterOptions(supersample=False, half_pixel=False)
# The method's own parts on top of the `default` preset, for runs on this generator: its V, L and ellipsoid
# in the canonical frame (not the taught V/L, input-frame prior and pose term the preset adds for the
# trained GAN), the official weight decay (the preset has none: docs/default-model.md item 15) and the
# official D and result depth (not the preset's skips, mirror and shift averages and unclamped border, items 24
# and 26).
METHOD_OWN = ("pretrain=none", "view_light_width=none", 'prior_frame="canonical"', 'view_frame="object"',
              'step3_nets=["netD", "netA", "netV", "netL"]', "lam_proj_pose=0", "weight_decay=5e-4",
              "depth_skips=false", "depth_mirror_average=false", "depth_shift_average=0", "border_clamp_factor=1.02")


class KnownShapeRenderer(nn.Module):
    """z (B×4) → the known head under the latent's view and light, B×3×S×S in [−1, 1] (differentiable in z).

    Outside the head's silhouette the image is the data's flat grey, as in the synthetic renders: the
    depth map's far plane would otherwise show as a shaded wall, tilted in turned views beyond the
    depth range the nets can represent.
    """

    def __init__(self, depth: torch.Tensor, albedo: torch.Tensor, mask: torch.Tensor, ambient: float,
                 diffuse: float, background: float):
        super().__init__()
        self.cam = render.Camera(depth.shape[-1])
        self.register_buffer("depth", depth)
        self.register_buffer("albedo", albedo)
        self.register_buffer("mask", mask)
        self.register_buffer("normal", render.normals_from_depth(depth, self.cam))
        self.ambient, self.diffuse, self.background = ambient, diffuse, background

    @staticmethod
    def view(z: torch.Tensor) -> torch.Tensor:
        """The renderer view (pitch, yaw in radians; no roll, no shift) a latent depicts, B×6."""
        zero = torch.zeros_like(z[:, 0])
        return torch.stack([torch.tanh(z[:, 1]) * PITCH, torch.tanh(z[:, 0]) * YAW, zero, zero, zero, zero], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        view = self.view(z)
        rot, _ = render.transform_from_view(view)
        normal = torch.einsum("bij,bhwj->bihw", rot, self.normal.expand(b, -1, -1, -1))
        stack = torch.cat([self.albedo.expand(b, -1, -1, -1), normal, self.mask.expand(b, -1, -1, -1)], 1)
        seen, _, _ = render.render_view(stack, self.depth.expand(b, -1, -1), view, self.cam, PIXEL_CENTRES)
        normal = nn.functional.normalize(seen[:, 3:6].permute(0, 2, 3, 1), dim=-1, eps=1e-6)
        direction = render.light_direction(z[:, 2:4] * LIGHT_SCALE)
        full = torch.ones_like(z[:, 0])
        image, _, _ = render.shade(seen[:, :3], normal, full * self.ambient, full * self.diffuse, direction)
        inside = seen[:, 6:]
        return (image * inside + self.background * (1 - inside)).clamp(-1, 1)

    @torch.no_grad()
    def truth(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What G(z) depicts: (depth B×H×W, object mask B×H×W bool), from the same rendering as `forward`."""
        b, view = z.shape[0], self.view(z)
        depth = self.depth.expand(b, -1, -1)
        inside, _, depth_view = render.render_view(self.mask.expand(b, -1, -1, -1), depth, view, self.cam,
                                                   PIXEL_CENTRES)
        return depth_view, inside[:, 0] > 0.5


@dataclass(frozen=True)
class KnownShape:
    """The ideal generator, the latent of one input and that input's exact depth and object mask (1×S×S)."""

    generator: ZSpaceGenerator
    z0: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor

    def image(self) -> torch.Tensor:
        with torch.no_grad():
            return self.generator.synthesize(self.z0)

    def setup(self, cfg: Config, mvns: tuple[nets.Mvn, nets.Mvn] | None = None) -> tuple[Model, Target, torch.Tensor]:
        """The method on this generator: the model (MobileNetV2 perceptual loss; the view and light
        distributions `mvns`, by default the built-in ones), the input as its target and the ellipsoid prior
        of the input's silhouette."""
        view_mvn, light_mvn = mvns or (nets.builtin_view_mvn(), nets.builtin_light_mvn())
        model = Model(cfg, self.generator, losses.build_perceptual("mobilenet-v2"), view_mvn.mean, light_mvn.mean,
                      view_mvn.distribution())
        image = self.image()
        target = Target("known", image, self.z0, image, self.mask[:, None].float(), self.depth)
        return model, target, prior.ellipsoid_for(target.mask, cfg)[None]

    def labelled_renders(self, n: int, seed: int, yaw_deg: float = 30.0, pitch_deg: float = 10.0,
                         rot_range_deg: float = 60.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n exact renders at uniform random yaw/pitch and light, with their views (V's units, range
        `rot_range_deg`) and canonical-frame lights (L's units): a perfect bank. Defined for a frontal
        input only, whose frame is the generator's canonical one."""
        if self.z0[:, :2].abs().max() > 0:
            raise ValueError("labelled renders need the frontal input (known_shape_target(frontal=True))")
        gen = torch.Generator().manual_seed(seed)
        yaw = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(yaw_deg)
        pitch = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(pitch_deg)
        light_xy = torch.rand(n, 2, generator=gen) * 2 - 1
        z = torch.cat([torch.atanh(yaw / YAW)[:, None], torch.atanh(pitch / PITCH)[:, None], light_xy], 1)
        with torch.no_grad():
            images = self.generator.synthesize(z)
        return (images, *self.labels(z, rot_range_deg))

    def labels(self, z: torch.Tensor, rot_range_deg: float = 60.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The view (V's units) and canonical-frame light (L's units) that G(z) shows, for a frontal input."""
        module = self.generator.module
        view = module.view(z)
        rot, _ = render.transform_from_view(view)
        # The generator shades in the camera frame; the model in the canonical one: d_canon = Rᵀ·d_camera.
        direction = torch.einsum("bji,bj->bi", rot, render.light_direction(z[:, 2:4] * LIGHT_SCALE))
        full = torch.ones(z.shape[0])
        lights = nets.light_units(full * module.ambient, full * module.diffuse, direction)
        return view * (180 / math.pi / rot_range_deg), lights

    def fit_latents(self, images: torch.Tensor, iters: int = 300) -> torch.Tensor:
        """The latents whose renders match `images` best (Adam on the L1 from z0): what each image shows."""
        z = self.z0.expand(images.shape[0], -1).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(iters):
            loss = (self.generator.synthesize(z) - images).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return z.detach()


def known_shape_target(seed: int = 5, index: int = 0, size: int = 64, frontal: bool = False) -> KnownShape:
    """One synthetic head of engine.data.synth as an ideal generator; the input shows it in the
    synthetic photo's view and light (roll and shift dropped), or in the canonical view if `frontal`."""
    scfg, mesh = SynthConfig(image_size=size), load_base_mesh()
    prm = sample_params(scfg, mesh, seed, np.array([index]))
    canon = synth_render(scfg, mesh, dataclasses.replace(prm, view=np.zeros_like(prm.view)))
    albedo = torch.from_numpy(canon["albedo"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    mask = torch.from_numpy(canon["mask"]).float()[:, None]
    light = canon["light"][0]
    module = KnownShapeRenderer(torch.from_numpy(canon["depth"]).float(), albedo, mask, float(light[0]),
                                float(light[1]), 2 * scfg.background - 1)
    pitch, yaw = (0.0, 0.0) if frontal else prm.view[0][:2]
    z0 = torch.tensor([[math.atanh(yaw / YAW), math.atanh(pitch / PITCH), light[2] / LIGHT_SCALE,
                        light[3] / LIGHT_SCALE]], dtype=torch.float32)
    depth, inside = module.truth(z0)
    return KnownShape(ZSpaceGenerator(module, 4, size), z0, depth, inside)
