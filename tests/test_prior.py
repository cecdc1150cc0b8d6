"""Ellipsoid prior (§4.2 with its quirks), the fit of D (§4.3) and the mask sources."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import EngineError
from engine.inputs import read_image
from engine.nets import build_nets, depth_from_raw
from engine.prior import check_mask, ellipsoid, fit_prior, grabcut_mask, resolve_mask


def _box(size=64, rows=(16, 47), cols=(16, 47)) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = 1
    return m


def test_near_at_centre_far_on_rim_and_outside():
    depth = ellipsoid(_box(), "object", near=0.91, far=1.02)
    assert depth.shape == (64, 64)
    # bbox 16..47: centre 31.5, radius 15.5; the pixels next to the centre are 0.5√2 px away
    cap_near = 0.4 - np.sqrt(0.4**2 - (0.5 * np.sqrt(2) / 15.5 * np.sqrt(0.4**2 - (0.4 - 0.11) ** 2)) ** 2) + 0.91
    assert depth.min().item() == pytest.approx(cap_near, abs=1e-6)
    assert depth[31:33, 31:33].allclose(torch.full((2, 2), depth.min().item()))
    assert (depth[:, :15] == 1.02).all() and (depth[:15] == 1.02).all()
    assert depth.max().item() == pytest.approx(1.02)  # continuous: the rim reaches exactly `far`
    church = ellipsoid(_box(), "church", near=0.91, far=1.0)
    assert church.max().item() == pytest.approx(1.0) and church.min().item() < 0.92


def test_vertical_centre_quirk():
    mask = _box(rows=(10, 29), cols=(20, 59))  # wide, above the image centre
    ratio, c_y = 19 / 39, 19.5
    col = 39  # the bbox's centre column (c_x = 39.5)
    for quirk, centre in ((True, 32 + ratio * (c_y - 32)), (False, c_y)):
        depth = ellipsoid(mask, "cat", center_quirk=quirk)
        inside = torch.nonzero(depth[:, col] < 1.02).flatten().float()
        assert inside.mean().item() == pytest.approx(centre, abs=0.6)
        # vertical semi-axis ratio·r_px = 9.5 rows either way; the rim itself is exactly `far`
        assert (inside.max() - inside.min()).item() == pytest.approx(2 * ratio * 19.5 - 1, abs=1.5)


def test_category_adjustments():
    mask = _box(rows=(20, 43), cols=(16, 47))
    rows_inside = {cat: torch.nonzero((ellipsoid(mask, cat, center_quirk=False) < 1.02).any(1)).flatten()
                   for cat in ("cat", "car", "face", "synface")}
    assert rows_inside["car"].max() > rows_inside["cat"].max()  # extended downwards by 1/6
    assert rows_inside["synface"].min() < rows_inside["cat"].min()  # extended upwards by 1/6
    assert rows_inside["face"].max() == 62  # the rim (exactly `far`) is on the bottom row 63
    face_cols = torch.nonzero((ellipsoid(mask, "face") < 1.02).any(0)).flatten()
    cat_cols = torch.nonzero((ellipsoid(mask, "cat") < 1.02).any(0)).flatten()
    assert face_cols.min() > cat_cols.min() and face_cols.max() < cat_cols.max()  # narrowed by 1/12 each side


def test_empty_and_degenerate_masks_are_clear_errors():
    with pytest.raises(EngineError, match="empty"):
        ellipsoid(torch.zeros(64, 64))
    with pytest.raises(EngineError, match="empty"):
        ellipsoid(torch.full((64, 64), 0.5))  # face "0.5" classes only: below the 0.7 threshold
    with pytest.raises(EngineError, match="too small"):
        ellipsoid(_box(rows=(5, 5), cols=(5, 40)))
    with pytest.raises(EngineError, match="empty"):
        check_mask(torch.zeros(1, 1, 4, 4), 0.5, "mask")


def test_fit_prior_trains_only_d_towards_the_ellipsoid():
    torch.manual_seed(0)
    net_d = build_nets(64, width=0.25)["netD"]
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    prior = ellipsoid(_box())
    cfg = SimpleNamespace(prior_fit_iters=25, prior_fit_lr=1e-3, adam_betas=(0.9, 0.999), weight_decay=5e-4,
                          min_depth=0.9, max_depth=1.1)
    seen = []
    before = ((depth_from_raw(net_d(image)) - prior) ** 2).mean().item()
    image_copy = image.clone()
    last = fit_prior(net_d, image, prior, cfg, progress=lambda i, n, loss: seen.append((i, n, loss)))
    assert [s[0] for s in seen] == list(range(1, 26)) and seen[-1][1] == 25
    assert last < 0.5 * before
    assert torch.equal(image, image_copy)


def test_grabcut_on_the_default_category_matches_true_masks():
    from engine.data.synth import SynthConfig, render_images

    out = render_images(SynthConfig(image_size=64), seed=2026, indices=np.arange(8))
    ious = []
    for rgb, true in zip(out["rgb"], out["mask"], strict=True):
        image = read_image_array(rgb)
        mask, source = resolve_mask(image, warn=lambda _: None)
        found = mask[0, 0].numpy() > 0.5
        ious.append((found & true).sum() / (found | true).sum())
        assert source in ("grabcut", "rectangle")
    assert np.mean(ious) > 0.9


def read_image_array(rgb: np.ndarray):
    from engine.inputs import InputImage

    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    return InputImage(tensor, None, "synthetic", rgb.shape[:2], 8, False)


def test_grabcut_finds_a_centred_object():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.0, 0.3, (96, 128, 3))
    yy, xx = np.mgrid[:96, :128]
    disc = (yy - 48) ** 2 + (xx - 60) ** 2 < 30**2
    img[disc] = rng.uniform(0.7, 1.0, (int(disc.sum()), 3)) * [1.0, 0.5, 0.2]
    rgb = torch.from_numpy(img).permute(2, 0, 1)[None].float() * 2 - 1
    mask = grabcut_mask(rgb)[0, 0].numpy() > 0.5
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.9


def _save(arr: np.ndarray, path) -> str:
    Image.fromarray(arr).save(path)
    return str(path)


def test_mask_sources_and_fallbacks(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgba = np.dstack([rgb, np.zeros((40, 60), np.uint8)])
    rgba[10:30, 20:40, 3] = 255
    img = read_image(_save(rgba, tmp_path / "a.png"))
    mask, source = resolve_mask(img)
    assert source == "alpha" and mask[0, 0, 20, 30] == 1 and mask[0, 0, 0, 0] == 0
    file_mask = np.zeros((20, 30), np.uint8)  # half resolution, same aspect ratio
    file_mask[5:15, 5:10] = 255
    mask, source = resolve_mask(img, _save(file_mask, tmp_path / "m.png"))
    assert source == "file" and mask.shape == (1, 1, 40, 60) and mask[0, 0, 20, 15] > 0.9
    opaque = read_image(_save(rgb, tmp_path / "o.png"))
    messages = []
    mask, source = resolve_mask(opaque, fallback="full", warn=messages.append)
    assert source == "full" and bool((mask == 1).all()) and "whole frame" in messages[0]
    with pytest.raises(EngineError, match="no object mask"):
        resolve_mask(opaque, fallback="error")
    messages.clear()
    mask, source = resolve_mask(opaque, fallback="grabcut", warn=messages.append)  # uniform: GrabCut finds nothing
    assert source == "rectangle" and len(messages) == 2 and "central rectangle" in messages[1]
    assert mask[0, 0, 20, 30] == 1 and mask[0, 0, 0, 0] == 0 and mask.mean() > 0.7
    with pytest.raises(EngineError, match="aspect"):
        resolve_mask(img, _save(np.zeros((30, 30), np.uint8) + 255, tmp_path / "sq.png"))
    with pytest.raises(EngineError, match="empty"):
        resolve_mask(img, _save(np.zeros((40, 60), np.uint8), tmp_path / "empty.png"))
