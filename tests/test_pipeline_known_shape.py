"""Issue 5: on a synthetic target with known shape, the whole schedule (real step 2 included) lowers
step 3's loss and ends with a depth error below the ellipsoid prior's.

The "GAN" is engine.data.known_shape's ideal generator: one synthetic head of engine.data.synth (its
canonical depth and albedo) rendered by the engine's renderer under the latent's view and light. The
input is G(z0), z0 = the head's true view and light, and the ground truth is the synthetic renderer's
depth of that view.

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

import pytest
import torch

from engine import losses, nets
from engine.config import load_config
from engine.data.known_shape import known_shape_target
from engine.metrics import depth_metrics
from engine.pipeline.bank import Bank
from engine.pipeline.model import Model, Target
from engine.pipeline.run import prior_depth
from engine.pipeline.trainer import Trainer


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
