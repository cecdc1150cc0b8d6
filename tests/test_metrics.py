"""SIDE / MAD against cases computed by hand (spec §11.2)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.metrics import depth_metrics, erode, gt_mask, kid
from engine.render import Camera

CAM = Camera(8)


def plane_depth(normal: tuple[float, float, float], cam: Camera = CAM, offset: float = 1.0) -> torch.Tensor:
    """Depth of the plane n·P = offset·n_z seen through every pixel centre (1×S×S)."""
    n = torch.tensor(normal, dtype=torch.float64)
    n = n / n.norm()
    j = torch.arange(cam.image_size, dtype=torch.float64)
    rx = ((j - cam.cx) / cam.fx).view(1, -1)
    ry = ((j - cam.cx) / cam.fx).view(-1, 1)
    return (offset * n[2] / (n[0] * rx + n[1] * ry + n[2])).unsqueeze(0)


def test_erosion_removes_the_border_ring_and_zero_padding_counts():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 1:7, 1:7] = True
    expected = torch.zeros_like(mask)
    expected[0, 2:6, 2:6] = True
    assert torch.equal(erode(mask), expected)
    assert int(erode(torch.ones(1, 5, 5, dtype=torch.bool)).sum()) == 9  # image border is outside


def test_identical_and_rescaled_depths_score_zero():
    # far away, so that the 1e-7 in the normals' normalisation is negligible (see the floor test)
    gt = plane_depth((0.2, -0.1, 1.0), offset=1000.0)
    ones = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(gt.clone(), gt, ones, CAM, mask_gt=ones)
    assert float(m.side) == 0.0 and float(m.mad) < 1e-3 and float(m.mae) == 0.0
    # SIDE and MAD are invariant to a global scale of the depth (same back-projected shape)
    m = depth_metrics(gt * 1.07, gt, ones, CAM, mask_gt=ones)
    assert float(m.side) < 1e-12 and float(m.mad) < 1e-3
    assert float(m.mae) == pytest.approx(0.07 * float(gt[0, 1:-1, 1:-1].mean()), rel=1e-9)
    assert int(m.pixels) == 36


def test_side_of_a_half_shifted_log_depth_is_half_the_shift():
    gt = torch.ones(1, 8, 8, dtype=torch.float64)
    a = 0.02
    pred = gt.clone()
    pred[:, :, :4] *= math.exp(a)  # eroded mask = columns 1..6: three with log ratio a, three with 0
    ones = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(pred, gt, ones, CAM, mask_gt=ones)
    assert float(m.side) == pytest.approx(a / 2, rel=1e-9)
    assert float(m.summary()["side_x100"]["mean"]) == pytest.approx(100 * a / 2, rel=1e-9)


def test_mad_is_the_angle_between_planes():
    gt = plane_depth((0.0, 0.0, 1.0), offset=1000.0)
    pred = plane_depth((0.0, math.sin(math.radians(30)), math.cos(math.radians(30))), offset=1000.0)
    ones = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(pred, gt, ones, CAM, mask_gt=ones)
    assert float(m.mad) == pytest.approx(30.0, abs=1e-3)


def test_mad_keeps_the_official_normalisation_floor():
    """n / (‖n‖ + 1e-7) with ‖t_u × t_v‖ = 4/f² for a plane at depth 1: identical depths are not 0°.

    At 64² (f = 360.05) this floor is 6.51° — it is part of the published numbers (spec §3.8, §11.2).
    """
    cam = Camera(64)
    gt = torch.ones(1, 64, 64, dtype=torch.float64)
    cross = 4 / cam.fx**2
    expected = math.degrees(math.acos((cross / (cross + 1e-7)) ** 2))
    ones = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(gt.clone(), gt, ones, cam, mask_gt=ones)
    assert float(m.mad) == pytest.approx(expected, rel=1e-6)
    assert 6.4 < expected < 6.6


def test_masks_follow_the_synface_rule_and_the_prediction_mask():
    gt = torch.full((2, 8, 8), 1.1, dtype=torch.float64)
    gt[:, 1:7, 1:7] = 1.0  # object inside a background at the farthest depth
    assert torch.equal(gt_mask(gt), gt < 1.1)
    pred = gt.clone()
    pred[1, 2:6, 2:4] = 1.05  # a wrong region that the prediction mask leaves out in image 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[1, :, :4] = False
    m = depth_metrics(pred, gt, valid, CAM)
    # 4×4 eroded object (rows/cols 2..5); in image 1 the eroded prediction mask keeps only cols 5..7
    assert m.pixels.tolist() == [16, 4]
    assert m.side.tolist() == [0.0, 0.0] and m.mae.tolist() == [0.0, 0.0]


def test_empty_mask_gives_nan():
    gt = torch.ones(1, 8, 8)
    m = depth_metrics(gt, gt, torch.zeros(1, 8, 8, dtype=torch.bool), CAM, mask_gt=torch.ones(1, 8, 8))
    assert math.isnan(float(m.side)) and math.isnan(float(m.mad))


def test_kid_of_a_hand_computed_pair_of_sets():
    # d = 1: k(0,0) = 1, k(1,1) = 8, k(0,1) = 1 -> MMD² = 1 + 8 - 2·1 = 7
    x = torch.zeros(2, 1)
    y = torch.ones(2, 1)
    assert kid(x, y, subsets=3) == (pytest.approx(7.0), pytest.approx(0.0))


def test_kid_separates_distributions_and_is_near_zero_for_the_same_one():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same, _ = kid(a, b, generator=g)
    shifted, _ = kid(a, b + 0.5, generator=g)
    assert abs(same) < 0.02 < shifted


def test_mae_and_mse_are_masked_means_of_the_depth_error():
    gt = torch.ones(1, 8, 8, dtype=torch.float64)
    pred = gt.clone()
    pred[:, :, :4] += 0.02  # eroded mask = columns 1..6: three off by 0.02, three exact
    pred[:, :, 0] = 5.0  # outside the eroded mask: must not count
    ones = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(pred, gt, ones, CAM, mask_gt=ones)
    assert float(m.mae) == pytest.approx(0.01, rel=1e-9)
    assert float(m.mse) == pytest.approx(0.0002, rel=1e-9)


def test_background_of_the_prediction_is_ignored_through_the_gt_mask():
    gt = torch.full((1, 8, 8), 1.1, dtype=torch.float64)
    gt[:, 1:7, 1:7] = 1.0
    pred = gt.clone()
    pred[gt == 1.1] = 0.85  # a wrong background is outside the (eroded) ground-truth mask
    m = depth_metrics(pred, gt, torch.ones_like(gt, dtype=torch.bool), CAM)
    assert int(m.pixels) == 16 and float(m.side) == 0.0 and float(m.mae) == 0.0


def test_summary_is_mean_and_population_std_over_images_in_paper_units():
    gt = torch.ones(2, 8, 8, dtype=torch.float64)
    a = 0.02
    pred = gt.clone()
    pred[0, :, :4] *= math.exp(a)  # image 0: SIDE a/2; image 1: exact
    ones = torch.ones_like(gt, dtype=torch.bool)
    s = depth_metrics(pred, gt, ones, CAM, mask_gt=ones).summary()
    assert s["side_x100"]["mean"] == pytest.approx(100 * a / 4, rel=1e-9)
    assert s["side_x100"]["std"] == pytest.approx(100 * a / 4, rel=1e-9)  # |x_i − mean| = a/4 for both
    assert s["mae"]["std"] == pytest.approx(s["mae"]["mean"], rel=1e-9)
