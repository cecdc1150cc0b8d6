"""The five networks and the forward passes of steps 1–3 (spec §1.2, §5, §6, §7.3, §11.2).

`Model` owns the trainable nets and the frozen parts (generator, perceptual loss, camera); it knows
nothing about schedules, files or progress (that is `trainer.py`). Every forward returns the total
loss of its step plus the tensors the next step or the bundle needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import inputs, losses, nets, render
from ..config import Config, crop_reference
from .bank import Batch


@dataclass(eq=False)
class Target:
    """One image to reconstruct, at the networks' size S."""

    name: str
    image: torch.Tensor  # 1×3×S×S in [-1, 1]
    latent: torch.Tensor  # 1×dim (W space, or z for z-space generators)
    gan_image: torch.Tensor  # 1×3×S×S, clamp(G(latent)) through the crop chain
    mask: torch.Tensor  # 1×1×S×S object mask in [0, 1] (input view)
    depth_gt: torch.Tensor | None = None  # 1×S×S, for metrics
    # Canonical estimate of the latest step-1 forward (what step 2 renders pseudo samples from).
    cache: dict[str, torch.Tensor] = field(default_factory=dict)

    def cache_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.cache.items()}


def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat a 1×… tensor to n×… (expand, no copy)."""
    return x.expand(n, *x.shape[1:])


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror of a depth map (B×H×W) or an image (B×C×H×W): flip of the width axis."""
    return x.flip(-1)


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """A depth map (B×H×W) or an image (B×C×H×W) moved dx pixels right and dy down, the border replicated
    into the gap (the renders' background is flat there)."""
    if dx == dy == 0:
        return x
    r, (h, w) = max(abs(dx), abs(dy)), x.shape[-2:]
    padded = F.pad(x if x.dim() == 4 else x[:, None], (r, r, r, r), mode="replicate")
    moved = padded[..., r - dy:r - dy + h, r - dx:r - dx + w]
    return moved if x.dim() == 4 else moved[:, 0]


class Model(nn.Module):
    """D, A, V, L, E plus the frozen generator and perceptual net, with the official step forwards."""

    def __init__(self, cfg: Config, generator: Any, perceptual: nn.Module, view_mean: torch.Tensor,
                 light_mean: torch.Tensor, view_dist: torch.distributions.Distribution):
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleDict(nets.build_nets(cfg.image_size, cfg.net_width, generator.latent_dim,
                                                     cfg.view_light_width, cfg.depth_skips, cfg.depth_image_skip))
        self.generator = generator
        self.perceptual = perceptual
        self.register_buffer("view_mean", view_mean.float().reshape(1, 6))
        self.register_buffer("light_mean", light_mean.float().reshape(1, 4))
        self.view_dist = view_dist
        self.cam = render.Camera(cfg.image_size, cfg.fov, cfg.rot_center_depth)
        self.opts = render.RasterOptions(cfg.raster_supersample, cfg.raster_half_pixel, cfg.min_depth, cfg.max_depth)
        self.offset = nets.MappingOffset(generator, cfg.F1_d)
        # (k_a, k_d) of the latest step-1 forward. QUIRK (§1.7): in joint mode step 2 shades every
        # image's pseudo samples with the values of the last image seen by step1_collect.
        self.light_ab = torch.zeros(2)
        self.fitted_walk_basis: torch.Tensor | None = None  # projection "walk": fitted once per model
        # view_frame "input": the renderer view V reads in the current input (1×6), which every view is
        # re-expressed relative to (`to_transform`) and every light direction turned by (`turn_light`).
        self.frame: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------
    # small pieces
    def train_only(self, names: tuple[str, ...]) -> None:
        """requires_grad on exactly the named nets (§13.7)."""
        for name, net in self.nets.items():
            net.requires_grad_(name in names)
            net.train(name in names)

    @property
    def device(self) -> torch.device:
        return self.view_mean.device

    def predict_depth(self, image: torch.Tensor, mirror_average: bool = False, shift_radius: int = 0
                      ) -> torch.Tensor:
        """Canonical depth with the border clamp of `border_clamp_factor` (official 1.02, §2.5); with
        `mirror_average`, the mean of D's depth and the mirror of D's depth of the mirrored image (a mirrored
        object is as likely, so D's errors on the two partly cancel); with `shift_radius` r, also the mean over
        the image moved by up to r pixels each way, each reading moved back (D is not shift-equivariant:
        strided convs, a 1×1 bottleneck)."""
        offsets = [(dx, dy) for dy in range(-shift_radius, shift_radius + 1)
                   for dx in range(-shift_radius, shift_radius + 1)]
        moved = [shift(image, dx, dy) for dx, dy in offsets]
        if mirror_average:
            moved += [mirror(x) for x in moved]
        depth = nets.depth_from_raw(self.nets["netD"](torch.cat(moved)), self.cfg.min_depth, self.cfg.max_depth)
        readings = depth.chunk(len(moved))  # D's norms are per image, so the batch changes no reading
        plain, mirrored = readings[:len(offsets)], [mirror(d) for d in readings[len(offsets):]]
        back = [shift(d, -dx, -dy) for group in (plain, mirrored) if group
                for d, (dx, dy) in zip(group, offsets, strict=True)]
        depth = back[0] if len(back) == 1 else torch.stack(back).mean(0)  # the steps' forward: D's reading as is
        return nets.clamp_border(depth, self.cfg.border_depth, self.cfg.border_clamp_factor)

    def predict_view(self, images: torch.Tensor) -> torch.Tensor:
        view = self.nets["netV"](images)
        return view + self.view_mean if self.cfg.add_mean_V else view

    def predict_light(self, images: torch.Tensor) -> torch.Tensor:
        light = self.nets["netL"](images)
        return light + self.light_mean if self.cfg.add_mean_L else light

    def to_transform(self, view: torch.Tensor) -> torch.Tensor:
        """V's units → the renderer's view of the canonical maps (relative to `frame` if set)."""
        c = self.cfg
        view_t = nets.view_to_transform(view, c.xyz_rotation_range, c.xy_translation_range, c.z_translation_range)
        if self.frame is None:
            return view_t
        return render.compose_views(render.invert_view(self.frame).expand_as(view_t), view_t)

    def turn_light(self, direction: torch.Tensor) -> torch.Tensor:
        """A light direction read or sampled in the object's frame → the canonical maps' frame (B×3)."""
        if self.frame is None:
            return direction
        rot, _ = render.transform_from_view(self.frame)
        return direction @ rot[0].T

    @torch.no_grad()
    def set_frame(self, target: Target) -> None:
        """cfg.view_frame "input": take V's reading of `target` as the frame of the canonical maps."""
        self.frame = None
        if self.cfg.view_frame == "input":
            self.frame = self.to_transform(self.predict_view(target.image[:1]))

    def perc(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """LPIPS(x·mask, y·mask), batch mean (§7.2: both images multiplied by the 1-channel mask)."""
        m = mask.unsqueeze(1) if mask.dim() == 3 else mask
        return self.perceptual(x * m, y * m).mean()

    def recon_terms(self, recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked L1 + λ_perc·LPIPS of one reconstruction (§7.3)."""
        return (losses.photometric_l1(recon, target, mask)
                + self.cfg.lam_perc * self.perc(recon, target, mask))

    def seen_by_input(self, target: Target, view_t: torch.Tensor | None = None
                      ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Canonical depth → (its depth seen in V's current view of the input, 1 where that hit the surface);
        `view_t`: that view as a transform, if the caller has it already."""
        if view_t is None:
            with torch.no_grad():
                view_t = self.to_transform(self.predict_view(target.image))

        def seen(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            depth_view = render.rasterize_depth(depth, view_t.expand(depth.shape[0], -1), self.cam, self.opts)
            return depth_view, render.valid_mask(depth_view, self.opts)
        return seen

    def prior_loss(self, target: Target) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """The ellipsoid fit's loss of (canonical depth, prior) for cfg.prior_frame; None = the official MSE
        in the canonical frame. "input": MSE of the depth seen in V's view of the input, where seen.
        "input_object": that on the input's object mask only, plus the MSE to the flat background
        `prior_far` on the canonical pixels outside the object (carried over by the current depth).
        "input_warped": the official canonical MSE to the prior carried into the canonical frame first
        (`warped_prior`)."""
        frame = self.cfg.prior_frame
        if frame == "canonical":
            return None
        with torch.no_grad():
            view_t = self.to_transform(self.predict_view(target.image))
            on_object = (target.mask >= self.cfg.prior_mask_threshold).float()[:, 0]
        if frame == "input_warped":
            warped: list[torch.Tensor] = []  # the prior is fixed: carried into the canonical frame once

            def fit_warped(depth: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
                if not warped:
                    warped.append(self.warped_prior(target, prior[:1], view_t))
                return F.mse_loss(depth, warped[0].expand_as(depth))
            return fit_warped
        seen = self.seen_by_input(target, view_t)

        def loss(depth: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
            depth_view, weight = seen(depth)
            if frame == "input_object":
                weight = weight * on_object
            fit = ((depth_view - prior).pow(2) * weight).sum() / weight.sum().clamp_min(1)
            if frame == "input":
                return fit
            outside = 1 - self.canonical_mask(target, depth, view_t)[:, 0]
            return fit + ((depth - self.cfg.prior_far).pow(2) * outside).sum() / outside.sum().clamp_min(1)
        return loss

    @torch.no_grad()
    def warped_prior(self, target: Target, prior: torch.Tensor, view_t: torch.Tensor) -> torch.Tensor:
        """The input-frame prior (1×H×W) seen from the canonical frame: rasterized in the inverse of V's view of
        the input on the object (the input's mask carried along), the flat `prior_far` elsewhere. Fitting
        that in the canonical grid spares D the noisy gradients of a fit through the turned rasterization."""
        canon = render.rasterize_depth(prior, render.invert_view(view_t[:1]), self.cam, self.opts)
        on_object = self.canonical_mask(target, canon, view_t)[:, 0]
        return canon * on_object + self.cfg.prior_far * (1 - on_object)

    def canonical_mask(self, target: Target, depth: torch.Tensor, view_t: torch.Tensor) -> torch.Tensor:
        """The input's object mask carried into the canonical frame with the forward warp (§3.7)."""
        with torch.no_grad():
            grid = render.forward_warp_grid(depth[:1].detach(), view_t[:1].detach(), self.cam)
            return render.sample_image(target.mask, grid, mode="bilinear")

    # ------------------------------------------------------------------------------------------
    # step 1 (also the input term of step 3)
    def predict(self, image: torch.Tensor, flip: bool = False, mirror_average: bool = False, shift_radius: int = 0
                ) -> dict[str, torch.Tensor]:
        """The photo-geometric decomposition of a batch of B images and its re-rendering (§1.1, §2.5).

        flip appends the mirrored depths and albedos (batch 2B, each image's light and view repeated); the
        validity is then where both renderings of an image are valid (B×H×W). mirror_average and shift_radius:
        predict_depth's.
        """
        depth = self.predict_depth(image, mirror_average, shift_radius)
        albedo = self.nets["netA"](image)
        view = self.predict_view(image)
        light = self.predict_light(image)
        b, copies = depth.shape[0], 2 if flip else 1
        if flip:
            depth = torch.cat([depth, mirror(depth)])
            albedo = torch.cat([albedo, mirror(albedo)])
        light = light.repeat(copies, 1)
        normal = render.normals_from_depth(depth, self.cam)
        k_a, k_d, direction = nets.light_params(light)
        direction = self.turn_light(direction)
        canon, shading, diffuse = render.shade(albedo, normal, k_a, k_d, direction)
        view_t = self.to_transform(view)
        recon, valid, depth_view = render.render_view(canon, depth, view_t.repeat(copies, 1), self.cam, self.opts)
        valid = (valid[:b] * valid[b:] if flip else valid).detach()
        return {"depth": depth, "albedo": albedo, "normal": normal, "view": view, "view_t": view_t,
                "light": light, "ambient": k_a, "diffuse_k": k_d, "direction": direction, "canon": canon,
                "shading": shading, "diffuse": diffuse, "recon": recon, "valid": valid, "depth_view": depth_view}

    def input_terms(self, image: torch.Tensor, out: dict[str, torch.Tensor], flip: bool) -> dict[str, torch.Tensor]:
        """Step 1's loss of `predict(image, flip)` by term: the reconstruction (and its mirrored twin) against
        the image where valid, and the smoothness terms. Their sum, in this order, is the loss."""
        b, mask = image.shape[0], out["valid"]
        terms = {"input": self.recon_terms(out["recon"][:b], image, mask)}
        if flip:
            terms["input_flip"] = self.recon_terms(out["recon"][b:], image, mask)
        terms["smooth"] = self.cfg.lam_smooth * (losses.smooth_loss(out["depth"]) + losses.smooth_loss(out["diffuse"]))
        return terms

    def step1_forward(self, target: Target, flip: bool, refresh_mask: bool = False) -> tuple[torch.Tensor, dict]:
        """Reconstruct the input (L_input of §7.3) and cache the canonical estimate for step 2. out["terms"]
        holds the loss by term."""
        out = self.predict(target.image, flip)
        out["terms"] = self.input_terms(target.image, out, flip)
        loss = sum(out["terms"].values())
        if self.cfg.use_mask and (refresh_mask or "canon_mask" not in target.cache):
            target.cache["canon_mask"] = self.canonical_mask(target, out["depth"], out["view_t"])
        target.cache.update(depth=out["depth"][:1].detach(), albedo=out["albedo"][:1].detach(),
                            normal=out["normal"][:1].detach(), light=out["light"][:1].detach())
        self.light_ab = torch.stack([out["ambient"][0], out["diffuse_k"][0]]).detach()
        return loss, out

    # ------------------------------------------------------------------------------------------
    # step 2
    def sample_views(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n absolute random views in V's units (§5.1); yaw (component 1, mean included) × view_scale."""
        dist = self.view_dist
        eps = torch.randn(n, 6, generator=gen)
        view = dist.mean + eps @ dist.scale_tril.T
        view[:, 1] *= self.cfg.view_scale
        return view.to(self.device)

    def sample_lights(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(direction n×3, strength r n) uniform in the rand_light box (§5.2)."""
        x0, x1, y0, y1, r0, r1, _ = self.cfg.rand_light
        u = torch.rand(n, 3, generator=gen)
        dx, dy, r = x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1], r0 + (r1 - r0) * u[:, 2]
        d = torch.stack([dx, dy, torch.ones_like(dx)], 1)
        return (d / d.norm(dim=1, keepdim=True)).to(self.device), r.to(self.device)

    @torch.no_grad()
    def pseudo_samples(self, target: Target, n: int, gen: torch.Generator) -> Batch:
        """Random-view, random-light renderings of the current estimate (§5.2–5.3): (images, masks
        n×1×S×S, the sampled views n×6 in V's units, the lights they were shaded with n×4 in L's units)."""
        cache = target.cache
        sampled = self.sample_views(n, gen)
        views = self.to_transform(sampled)
        direction, r = self.sample_lights(n, gen)
        k_a, k_d = self.light_ab.to(self.device)
        ambient, diffuse = k_a + self.cfg.rand_light[6] * r, k_d + r
        canon, _, _ = render.shade(batch_of(cache["albedo"], n), batch_of(cache["normal"], n), ambient, diffuse,
                                   self.turn_light(direction))
        depth = batch_of(cache["depth"], n)
        depth_view = render.rasterize_depth(depth, views, self.cam, self.opts)
        grid = render.inverse_warp_grid(depth_view, views, self.cam)
        images = render.sample_image(canon, grid).clamp(-1, 1)
        canon_mask = cache.get("canon_mask")
        src = torch.ones_like(images[:, :1]) if canon_mask is None else batch_of(canon_mask, n)
        masks = render.sample_image(src, grid, mode="nearest")
        return images, masks, sampled, nets.light_units(ambient, diffuse, direction)

    def project(self, target: Target, pseudo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAN projection of pseudo samples: (projected images n×3×S×S, Δw) (§5.4)."""
        enc = self.nets["netEnc"]
        h = enc(pseudo)
        h_ref = enc(target.gan_image) if self.cfg.relative_enc else None
        dw = self.offset(h, h_ref)
        images = self.gan_images(target.latent + dw)
        return images, dw

    def gan_images(self, latent: torch.Tensor) -> torch.Tensor:
        """clamp(G(latent)) through the crop chain at size S (§5.4)."""
        c = self.cfg
        return inputs.gan_to_model(self.generator.synthesize(latent), c.image_size, c.crop, crop_reference(c))

    def feature_loss(self, proj: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.step2_feature_loss
        if kind == "discriminator":
            features = self.generator.discriminator_features
            with torch.no_grad():
                target_feats = features(pseudo)
            return losses.dfeat_loss(features(proj), target_feats, mask)
        if kind == "perceptual":
            return self.cfg.lam_perc * self.perc(proj, pseudo, mask)
        return proj.new_zeros(())

    def step2_loss(self, proj: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor, dw: torch.Tensor,
                   labels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """L1 + feature loss between projections and pseudo samples + λ_reg·mean(Δw²) (§5.5), plus, given the
        pseudo samples' (views, lights), `lam_proj_pose` × the MSE of V's and L's reading of the projections
        against them."""
        loss = (losses.photometric_l1(proj, pseudo, mask) + self.feature_loss(proj, pseudo, mask)
                + self.cfg.lam_regular * losses.latent_regulariser(dw))
        if labels is not None and self.cfg.lam_proj_pose > 0:
            loss = loss + self.cfg.lam_proj_pose * self.label_mse(proj, *labels)
        return loss

    def label_mse(self, images: torch.Tensor, views: torch.Tensor, lights: torch.Tensor) -> torch.Tensor:
        """MSE of V's views (means included) against `views` plus MSE of L's lights against `lights`."""
        return (self.predict_view(images) - views).pow(2).mean() + (self.predict_light(images) - lights).pow(2).mean()

    def step2_forward(self, target: Target, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        pseudo, mask, views, lights = self.pseudo_samples(target, self.cfg.batchsize, gen)
        proj, dw = self.project(target, pseudo)
        loss = self.step2_loss(proj, pseudo, mask, dw, (views, lights))
        return loss, {"pseudo": pseudo, "proj": proj, "mask": mask, "dw": dw}

    def project_optimized(self, target: Target, pseudo: torch.Tensor, mask: torch.Tensor,
                          labels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`projection = "optimize"`: each pseudo sample's own offset, fitted by Adam on the step-2 loss.

        The offset enters the mapping tail where E's output would (so F1_d and the regulariser mean the
        same); samples are independent, and Adam's per-coordinate steps ignore the batch-mean scaling.
        """
        c = self.cfg
        h = torch.zeros(pseudo.shape[0], target.latent.shape[-1], device=self.device, requires_grad=True)
        opt = torch.optim.Adam([h], lr=c.projection_lr)
        for _ in range(c.projection_iters):
            dw = self.offset(h)
            loss = self.step2_loss(self.gan_images(target.latent + dw), pseudo, mask, dw, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            return self.gan_images(target.latent + self.offset(h))

    def read_pose(self, images: torch.Tensor) -> torch.Tensor:
        """V's view and L's light of each image, side by side (N×10, means included)."""
        return torch.cat([self.predict_view(images), self.predict_light(images)], 1)

    @torch.no_grad()
    def walk_basis(self, target: Target, chunk: int = 64) -> torch.Tensor:
        """latent_dim×10: the minimal-norm latent change per unit of `read_pose`, from a ridge regression of
        the readings on the latents of `walk_samples` GAN samples (own seed: the run's draws are untouched).
        Fitted once per model (joint mode shares it) and kept in each target's cache, so that a resumed run
        walks with the basis it started with."""
        if "walk_basis" in target.cache:
            self.fitted_walk_basis = target.cache["walk_basis"]
        elif self.fitted_walk_basis is not None:
            target.cache["walk_basis"] = self.fitted_walk_basis
        else:
            c = self.cfg
            gen = torch.Generator().manual_seed(c.seed)
            ws, ys = [], []
            for start in range(0, c.walk_samples, chunk):
                w = self.generator.sample_latents(min(chunk, c.walk_samples - start), gen)
                ys.append(self.read_pose(self.gan_images(w)).double())
                ws.append(w.double())
            x, y = torch.cat(ws), torch.cat(ys)
            x, y = x - x.mean(0), y - y.mean(0)
            ridge = 1e-2 * x.pow(2).sum(0).mean() * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            b = torch.linalg.solve(x.T @ x + ridge, x.T @ y)
            self.fitted_walk_basis = target.cache["walk_basis"] = (b @ torch.linalg.inv(b.T @ b)).float()
        return target.cache["walk_basis"]

    @torch.no_grad()
    def project_walked(self, target: Target, goal: torch.Tensor) -> torch.Tensor:
        """`projection = "walk"`: G(latent + Δw), Δw stepped `walk_steps` times along `walk_basis` by what V and L
        still read short of each goal (N×10, as `read_pose`). A step that does not bring a sample's reading
        nearer is undone and the sample's next step halved: the readings are not linear in the latent far from
        the regression's mean, and a weak regression (a generator whose latents barely move V and L) overshoots."""
        basis = self.walk_basis(target)
        n = goal.shape[0]
        latent = target.latent.expand(n, *target.latent.shape[1:])
        dw = torch.zeros_like(latent)
        images = self.gan_images(latent)
        reading = self.read_pose(images)
        error = (goal - reading).pow(2).mean(1)
        size = torch.ones(n, device=goal.device)
        for _ in range(self.cfg.walk_steps):
            step = (size[:, None] * (goal - reading)) @ basis.T
            trial = dw + (step[:, None] if latent.dim() == 3 else step)  # a W+ latent moves in every layer
            trial_images = self.gan_images(latent + trial)
            trial_reading = self.read_pose(trial_images)
            trial_error = (goal - trial_reading).pow(2).mean(1)
            better = trial_error < error
            dw = torch.where(better.view(-1, *[1] * (dw.dim() - 1)), trial, dw)
            images = torch.where(better.view(-1, 1, 1, 1), trial_images, images)
            reading = torch.where(better[:, None], trial_reading, reading)
            error = torch.where(better, trial_error, error)
            size = torch.where(better, size, size / 2)
        return images

    def project_images(self, target: Target, images: torch.Tensor, mask: torch.Tensor,
                       labels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """GAN projections of images with the configured `projection` (no graph kept); `labels` (the views
        and lights the images were rendered with) enter the per-sample fit's pose term, and are where a
        walk goes (without them: what V and L read in the images)."""
        if self.cfg.projection == "optimize":
            return self.project_optimized(target, images, mask, labels)
        if self.cfg.projection == "walk":
            with torch.no_grad():
                goal = self.read_pose(images) if labels is None else torch.cat(labels, 1)
            return self.project_walked(target, goal)
        with torch.no_grad():
            return self.project(target, images)[0]

    def collect_batch(self, target: Target, gen: torch.Generator) -> Batch:
        """One step-2 pass for the bank (§1.6): projected images, pseudo masks, and the views and lights
        that label them (sampled, or with `bank_labels = "fitted"` refitted to the projections), on the CPU."""
        with torch.no_grad():
            pseudo, mask, views, lights = self.pseudo_samples(target, self.cfg.batchsize, gen)
        proj = self.project_images(target, pseudo, mask, (views, lights))
        if self.cfg.bank_labels == "fitted":
            views, lights = self.fit_labels(target, proj, mask, views, lights)
        return proj.cpu(), mask.cpu(), views.cpu(), lights.cpu()

    def render_estimate(self, depth: torch.Tensor, albedo: torch.Tensor, normal: torch.Tensor, view_t: torch.Tensor,
                        light: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A canonical estimate shaded by `light` (L's units) and seen in `view_t` (the renderer's view, see
        `to_transform`): (image, valid)."""
        k_a, k_d, direction = nets.light_params(light)
        canon, _, _ = render.shade(albedo, normal, k_a, k_d, self.turn_light(direction))
        recon, valid, _ = render.render_view(canon, depth, view_t, self.cam, self.opts)
        return recon, valid.detach()

    def fit_labels(self, target: Target, images: torch.Tensor, mask: torch.Tensor, views: torch.Tensor,
                   lights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The views and lights under which the current canonical estimate best re-renders `images`
        (masked L1, Adam from the sampled ones): the GAN's projection moves a pseudo sample's pose and light,
        so the sampled ones mislabel it (known-shape head: docs/default-model.md, items 7 and 8)."""
        n, cache = images.shape[0], target.cache
        depth, albedo, normal = (batch_of(cache[k], n) for k in ("depth", "albedo", "normal"))
        view = views.clone().requires_grad_(True)
        light = lights.clone().requires_grad_(True)
        opt = torch.optim.Adam([view, light], lr=self.cfg.bank_label_lr)
        with torch.enable_grad():
            for _ in range(self.cfg.bank_label_iters):
                recon, valid = self.render_estimate(depth, albedo, normal, self.to_transform(view), light)
                loss = losses.photometric_l1(recon, images, valid * mask[:, 0])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return view.detach(), light.detach()

    # ------------------------------------------------------------------------------------------
    # step 3
    def step3_forward(self, target: Target, proj: torch.Tensor, proj_mask: torch.Tensor, flip1: bool,
                      flip3: bool, proj_views: torch.Tensor | None = None,
                      proj_lights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Input term (its reconstructions weighted `lam_step3_input`) + reconstruction of projected samples from
        the shared canonical shape (§6; `bank_gain`), plus `lam_bank_view` × MSE between V's views of the samples
        and the bank's views (see `bank_labels`) and `lam_bank_light` × the same for L and the bank's lights.
        out["terms"] holds the loss by term."""
        _, out = self.step1_forward(target, flip=flip1 or flip3, refresh_mask=True)
        terms = out["terms"]
        if self.cfg.lam_step3_input != 1:
            for key in ("input", "input_flip"):
                if key in terms:
                    terms[key] = self.cfg.lam_step3_input * terms[key]
        b = proj.shape[0]
        predicted = self.predict_view(proj)
        light = self.predict_light(proj)
        for weight, guess, labels, name in ((self.cfg.lam_bank_view, predicted, proj_views, "views"),
                                            (self.cfg.lam_bank_light, light, proj_lights, "lights")):
            if weight > 0:
                if labels is None:
                    raise ValueError(f"a bank term needs the bank's sampled {name}")
                terms[f"bank_{name}"] = weight * (guess - labels).pow(2).mean()
        depth, albedo, normal = out["depth"], out["albedo"], out["normal"]
        copies = 2 if flip3 else 1
        depth = torch.cat([batch_of(depth[i:i + 1], b) for i in range(copies)])
        albedo = torch.cat([batch_of(albedo[i:i + 1], b) for i in range(copies)])
        normal = torch.cat([batch_of(normal[i:i + 1], b) for i in range(copies)])
        recon, valid = self.render_estimate(depth, albedo, normal, self.to_transform(predicted).repeat(copies, 1),
                                            light.repeat(copies, 1))
        mask = valid[:b] * valid[b:] if flip3 else valid
        mask = mask * proj_mask[:, 0]
        if self.cfg.bank_gain != "none":  # a colour scale acts on intensities in [0, 1], the images are in [-1, 1]
            recon = (recon + 1) * self.colour_gain(recon + 1, proj.repeat(copies, 1, 1, 1) + 1,
                                                   mask.repeat(copies, 1, 1)) - 1
        terms["bank"] = self.recon_terms(recon[:b], proj, mask)
        if flip3:
            terms["bank_flip"] = self.recon_terms(recon[b:], proj, mask)
        return sum(terms.values()), out

    @torch.no_grad()
    def colour_gain(self, recon: torch.Tensor, proj: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """cfg.bank_gain's least-squares gain g (N×C×1×1 or N×1×1×1) minimising Σ mask·(g·recon − proj)² per
        sample (and channel) over the valid pixels, for non-negative intensities; 1 where a sample has none."""
        dims = (2, 3) if self.cfg.bank_gain == "channel" else (1, 2, 3)
        m = mask.unsqueeze(1)
        num, den = (recon * proj * m).sum(dims, keepdim=True), (recon.pow(2) * m).sum(dims, keepdim=True)
        return torch.where(den > 0, num / den.clamp_min(1e-12), torch.ones_like(den))
