"""Issue 5: on a synthetic target with known shape, the whole schedule (real step 2 included) lowers
step 3's loss and ends with a depth error below the ellipsoid prior's.

The "GAN" is a z-space generator (engine.gan.protocol.ZSpaceGenerator) that renders one synthetic
head of engine.data.synth (its canonical depth and albedo) with the engine's renderer: z[0], z[1]
set yaw and pitch, z[2], z[3] the light direction, and the shading happens in the camera frame like
the synthetic data's own image model. The input is G(z0), z0 = the head's true view and light, and
the ground truth is the synthetic renderer's depth of that view.

Step 2 runs with `projection = "optimize"` (per-sample offsets fitted on the step-2 loss). The official
encoder cannot be used at test cost: E starts with |Δz| ≈ 0.002 (a 20° turn needs ≈ 0.35), and after
100 step-2 iterations at lr_enc 3e-4, 1e-3 or 3e-3 (and 300 at the official 1e-4) its loss had not
fallen, so the bank held no useful views.

Step 3 runs with `lam_bank_view = 100` at lr 3e-4. With the official objective alone, V (trained from
scratch) does not learn the bank's views in a short schedule: its yaw on the bank stayed at ≈ 0.02 ×
the true yaw after 400 step-3 iterations even on exact renderings, and the final SIDE was then
decided by float rounding: 0.017-0.052 over seeds 0-4, 1 or 2 threads and lr 1e-4 or 3e-4, often
above the prior.
With the view term: 0.019-0.028 over nine such runs (seeds 0-3, 1 and 2 threads, 20 or 40
projection iterations). That the projections fit their pseudo samples is tested in test_pipeline_steps.

What the bar means (measured on this head): the official ellipsoid (near 0.91, far 1.02) has SIDE
0.033, a flat plane 0.019 and the exact shape 0.010, so "below the prior" is a low bar; it still
caught sign errors when measured without the view term (view or light sign flipped in the model: SIDE
0.031 / 0.030; not re-measured with it). The test keeps the
official ellipsoid (near 0.91): the `default` preset's flatter one (0.98) already scores 0.019 here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from engine import losses, nets, render
from engine.config import load_config
from engine.data.mesh import load_base_mesh
from engine.data.synth import SynthConfig, sample_params
from engine.data.synth import render as synth_render
from engine.gan.protocol import ZSpaceGenerator
from engine.metrics import depth_metrics
from engine.pipeline.bank import Bank
from engine.pipeline.model import Model, Target
from engine.pipeline.run import prior_depth
from engine.pipeline.trainer import Trainer

SIZE = 64
YAW, PITCH = math.radians(60), math.radians(25)  # the generator's view range (tanh of z[0], z[1])
LIGHT_SCALE = 0.5  # light direction (x, y) = LIGHT_SCALE · (z[2], z[3])


class KnownShapeRenderer(nn.Module):
    """z (B×4) → the known head under the latent's view and light, B×3×S×S in [−1, 1] (differentiable in z)."""

    def __init__(self, depth: torch.Tensor, albedo: torch.Tensor, ambient: float, diffuse: float):
        super().__init__()
        self.cam = render.Camera(SIZE)
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


def known_shape_target(seed: int = 5, index: int = 0) -> tuple[ZSpaceGenerator, torch.Tensor, dict]:
    """(generator, z0 1×4, the synthetic photo's ground truth) for one synthetic head."""
    scfg, mesh = SynthConfig(image_size=SIZE), load_base_mesh()
    prm = sample_params(scfg, mesh, seed, np.array([index]))
    photo = synth_render(scfg, mesh, prm)
    canon = synth_render(scfg, mesh, dataclasses.replace(prm, view=np.zeros_like(prm.view)))
    albedo = torch.from_numpy(canon["albedo"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    light = photo["light"][0]
    module = KnownShapeRenderer(torch.from_numpy(canon["depth"]).float(), albedo, float(light[0]), float(light[1]))
    view = photo["view"][0]
    z0 = torch.tensor([[math.atanh(view[1] / YAW), math.atanh(view[0] / PITCH),
                        light[2] / LIGHT_SCALE, light[3] / LIGHT_SCALE]], dtype=torch.float32)
    return ZSpaceGenerator(module, 4, SIZE), z0, photo


def side_mad(model: Model, target: Target, depth_gt: torch.Tensor, mask_gt: torch.Tensor) -> tuple[float, float]:
    """SIDE and MAD of the input-view depth of the current nets (as the pipeline's metrics)."""
    with torch.no_grad():
        out = model.predict(target.image)
    m = depth_metrics(out["depth_view"], depth_gt, out["valid"], model.cam, mask_gt=mask_gt)
    return float(m.side[0]), float(m.mad[0])


def bank_view_error(model: Model, bank: Bank) -> float:
    """MSE between V's views of the bank's samples and the views their pseudo samples were rendered from."""
    with torch.no_grad():
        return float((model.predict_view(bank.images) - bank.views).pow(2).mean())


@pytest.mark.slow
def test_schedule_with_real_step2_beats_the_ellipsoid_prior():
    torch.manual_seed(0)
    gen, z0, photo = known_shape_target()
    cfg = load_config("default", overrides=[
        "num_stage=1", "stage_len_dict=[60, 1, 150]", "collect_iters=6", "net_width=0.25",
        "perceptual=\"mobilenet-v2\"", "step2_feature_loss=\"none\"", "save_results=false",
        "projection=\"optimize\"", "projection_iters=20", "prior_near=0.91", "lam_bank_view=100", "lr=3e-4"])
    view_mvn = nets.builtin_view_mvn()
    model = Model(cfg, gen, losses.build_perceptual("mobilenet-v2"), view_mvn.mean, nets.builtin_light_mvn().mean,
                  view_mvn.distribution())
    with torch.no_grad():
        image = gen.synthesize(z0)
    depth_gt = torch.from_numpy(photo["depth"])
    mask_gt = torch.from_numpy(photo["mask"])
    target = Target("known", image, z0, image, mask_gt[None, None].float(), depth_gt)
    ellipsoid = prior_depth(target, cfg)
    prior_side = float(depth_metrics(ellipsoid, depth_gt, torch.ones_like(ellipsoid), model.cam,
                                     mask_gt=mask_gt).side[0])

    trainer = Trainer(model, [target], cfg, seed=0, prior_fn=lambda t: ellipsoid)
    assert [p.step for p in trainer.phases] == ["prior", "step1", "collect", "step3"]
    losses_of = {}
    for phase in trainer.phases:
        if phase.step == "step3":  # the bank holds other views than the input's
            bank_spread = float((trainer.banks[0].images - image).abs().mean())
            view_error_before = bank_view_error(model, trainer.banks[0])
        losses_of[phase.step] = trainer.run_phase(phase)
        trainer.after_phase(phase)
        if phase.step == "prior":
            fitted_side, _ = side_mad(model, target, depth_gt, mask_gt)

    first, last = losses_of["step3"]
    view_error_after = bank_view_error(model, trainer.banks[0])
    final_side, final_mad = side_mad(model, target, depth_gt, mask_gt)
    print(f"prior SIDE {prior_side:.4f}; fitted D SIDE {fitted_side:.4f}; "
          f"bank spread {bank_spread:.3f}; step-3 loss {first:.3f} -> {last:.3f}; "
          f"V's view MSE on the bank {view_error_before:.4f} -> {view_error_after:.4f}; "
          f"final SIDE {final_side:.4f} MAD {final_mad:.1f}")
    assert bank_spread > 0.05
    assert last < 0.8 * first
    assert view_error_after < 0.95 * view_error_before  # V learns the views the bank was rendered from
    assert final_side < 0.9 * min(prior_side, fitted_side)
