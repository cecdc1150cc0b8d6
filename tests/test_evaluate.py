"""`evaluate`: held-out renders → pipeline → SIDE/MAD with baselines; seed-0 refusal, failures, resume."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import test_pipeline_assets
import torch
from PIL import Image
from test_pipeline_assets import TINY_SET

from engine import bundle, prior
from engine import evaluate as ev
from engine.cli import main
from engine.config import load_config
from engine.data.mesh import load_base_mesh
from engine.data.synth import render, render_images, sample_params
from engine.errors import EngineError
from engine.metrics import depth_metrics
from engine.render import Camera

tiny_assets = test_pipeline_assets.tiny_assets  # session fixture: a random-weight compact StyleGAN2

CFG = load_config("fast")
CAM = Camera(64, CFG.fov, CFG.rot_center_depth)


def test_the_training_seed_is_refused_unless_asked_for(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--preset", "fast", "--seed", "0", "--n", "1", "--out", str(out)]) == 2
    assert "training" in capsys.readouterr().err and not out.exists()
    with pytest.raises(EngineError, match="seed 0"):
        ev.check_options(ev.EvalOptions(out=out, seed=0), CFG)
    ev.check_options(ev.EvalOptions(out=out, seed=0, allow_training_seed=True), CFG)  # accepted on purpose
    with pytest.raises(EngineError, match="crop"):
        ev.check_options(ev.EvalOptions(out=out), load_config("fast", overrides=["crop=48"]))


def test_null_depth_side_is_the_spread_of_the_true_log_depth():
    """A two-level object in a 1.1 background: the constant baseline's SIDE is half the log step
    (equal halves), and its MAD is the angle of nothing but the official normal floor on flat parts."""
    a = 0.03
    gt = np.full((64, 64), 1.1)
    gt[8:56, 8:32] = 1.0
    gt[8:56, 32:56] = math.exp(a)  # eroded object: 46 rows × (23 + 23) columns
    mask = gt < 1.1
    maps = ev.baseline_depths(CFG, gt, mask, np.ones_like(gt))
    null = ev._metric_values(ev.score(maps[ev.NULL], np.ones_like(mask), gt, CAM))
    assert null["pixels"] == 46 * 46
    assert null["side_x100"] == pytest.approx(100 * a / 2, rel=1e-9)
    truth = ev._metric_values(ev.score(maps[ev.GROUND_TRUTH], np.ones_like(mask), gt, CAM))
    assert truth["side_x100"] == 0.0 and truth["mae"] == 0.0
    floor = math.degrees(math.acos((4 / CAM.fx**2 / (4 / CAM.fx**2 + 1e-7)) ** 2))  # see test_metrics
    assert null["mad_deg"] > floor > truth["mad_deg"] > 0  # the step edge tilts GT normals, not the null's
    # the prior is the pipeline's ellipsoid of this mask: near at the centre, far outside the object
    ellipsoid = maps[ev.PRIOR]
    assert ellipsoid[31:33, 31:33].min() == pytest.approx(CFG.prior_near, abs=2e-3)
    assert np.all(ellipsoid[~mask] == pytest.approx(CFG.prior_far))


def test_average_gt_depth_is_the_object_pixel_mean_of_training_renders():
    mesh = load_base_mesh()
    avg = ev.average_gt_depth(CFG, 7, mesh, chunk=3)  # chunks of 3, 3 and 1
    data = render_images(ev.synth_config(CFG), 0, np.arange(7), mesh)
    mask = data["mask"]
    covered = mask.any(0)
    expected = (data["depth"] * mask).sum(0)[covered] / mask.sum(0)[covered]
    assert np.allclose(avg[covered], expected, rtol=1e-6)
    assert np.all(avg[~covered] == 1.0) and 0.9 < avg[covered].min() < avg[covered].max() < 1.1


def test_canonical_average_gt_depth_averages_the_same_objects_at_view_0():
    mesh = load_base_mesh()
    avg = ev.average_gt_depth(CFG, 5, mesh, chunk=2, canonical=True)
    synth = ev.synth_config(CFG)
    params = sample_params(synth, mesh, 0, np.arange(5))
    data = render(synth, mesh, replace(params, view=np.zeros_like(params.view)))
    mask = data["mask"]
    covered = mask.any(0)
    assert np.allclose(avg[covered], (data["depth"] * mask).sum(0)[covered] / mask.sum(0)[covered], rtol=1e-6)


def test_exact_canonical_depth_is_exact_frontally_and_loses_what_the_canonical_view_hides():
    """Seen at view 0 the canonical depth map is the ground truth itself (renderer quirks off, as the
    `default` preset has them); turned, it scores the representation's floor: above zero where the turn
    shows what the frontal view hid, yet far better than the same map seen in the mirrored view."""
    cfg, mesh = load_config("default"), load_base_mesh()
    synth = ev.synth_config(cfg)
    params = sample_params(synth, mesh, 1, np.arange(3))
    canonical = render(synth, mesh, replace(params, view=np.zeros_like(params.view)))["depth"]
    cam = Camera(64, cfg.fov, cfg.rot_center_depth)
    frontal = ev.exact_canonical_depth(cfg, canonical, np.zeros_like(params.view))
    mask = canonical < canonical.max()
    assert np.abs(frontal - canonical)[mask].max() < 1e-5
    photos = render(synth, mesh, params)["depth"]
    turned = ev.exact_canonical_depth(cfg, canonical, params.view)
    mirrored = ev.exact_canonical_depth(cfg, canonical, params.view * np.array([1, -1, -1, -1, 1, 1]))
    assert np.abs(np.degrees(params.view[:, 1])).max() > 20  # at least one of the three is well turned
    for i in range(3):
        best = ev._metric_values(ev.score(turned[i], ev.hit(turned[i], cfg), photos[i], cam))
        wrong = ev._metric_values(ev.score(mirrored[i], ev.hit(mirrored[i], cfg), photos[i], cam))
        assert 0 < best["side_x100"] < wrong["side_x100"] and best["mad_deg"] < wrong["mad_deg"]


def test_canonical_prior_is_the_canonical_silhouettes_ellipsoid_seen_in_the_true_view():
    """At view 0 it is the preset's ellipsoid of the silhouette itself; turned, the cap moves with the
    object: its nearest point shifts sideways, to opposite sides for opposite yaws."""
    cfg, mesh = load_config("default"), load_base_mesh()
    synth = ev.synth_config(cfg)
    params = sample_params(synth, mesh, 1, np.arange(3))
    canonical = render(synth, mesh, replace(params, view=np.zeros_like(params.view)))["depth"]
    frontal = ev.canonical_prior_depth(cfg, canonical, np.zeros_like(params.view))
    for i in range(3):
        mask = torch.from_numpy((canonical[i] < canonical[i].max()).astype(np.float32))[None, None]
        assert np.abs(frontal[i] - prior.ellipsoid_for(mask, cfg).reshape(64, 64).numpy()).max() < 1e-5
    yaw = np.zeros_like(params.view[:2])
    yaw[:, 1] = np.radians([30.0, -30.0])
    turned = ev.canonical_prior_depth(cfg, canonical[:2], yaw)
    columns = [np.unravel_index(np.argmin(t), t.shape)[1] - np.unravel_index(np.argmin(f), f.shape)[1]
               for t, f in zip(turned, frontal[:2], strict=True)]
    assert columns[0] * columns[1] < 0 and min(abs(c) for c in columns) >= 2


def test_view_errors_against_hand_computed_angles():
    def entry(yaw_true, yaw_pred):
        return {"view_deg": {"pitch": {"true": 0.0, "predicted": 1.0}, "yaw": {"true": yaw_true, "predicted": yaw_pred},
                             "roll": {"true": 0.0, "predicted": 0.0}}}

    errors = ev.view_errors([entry(-40.0, -10.0), entry(20.0, 5.0), entry(0.0, 1.0)])
    assert errors["yaw"]["mean_abs_error"] == pytest.approx((30 + 15 + 1) / 3)
    assert errors["yaw"]["frontal_mean_abs_error"] == pytest.approx(20.0)
    assert errors["yaw"]["slope"] == pytest.approx(np.polyfit([-40, 20, 0], [-10, 5, 1], 1)[0])
    assert errors["pitch"] == {"mean_abs_error": 1.0, "frontal_mean_abs_error": 0.0, "slope": None}


def test_by_yaw_groups_the_images_by_their_true_yaw_with_the_ratios_of_each_band():
    def entry(yaw, mad, avg_mad, prior_mad):
        def m(mad_deg):
            return {"side_x100": mad_deg / 10, "mad_deg": mad_deg, "mae": 0.0, "mse": 0.0, "pixels": 1}
        return {"view_deg": {"yaw": {"true": yaw, "predicted": 0.0}},
                "metrics": {ev.PREDICTION: m(mad), ev.AVERAGE: m(avg_mad), ev.PRIOR: m(prior_mad)}}

    items = [entry(5.0, 20, 40, 30), entry(-10.0, 30, 40, 50), entry(-35.0, 36, 30, 40), {"status": "failed"}]
    rows = ev.by_yaw(items)
    assert [(r["abs_yaw_deg"], r["images"]) for r in rows] == [([0.0, 15.0], 2), ([30.0, 90.0], 1)]
    assert rows[0]["methods"][ev.PREDICTION]["mad_deg"]["mean"] == pytest.approx(25.0)
    assert rows[0]["ratios"]["mad_vs_avg_gt"] == pytest.approx(25 / 40)
    assert rows[0]["ratios"]["mad_vs_prior"] == pytest.approx(25 / 40)
    assert rows[1]["ratios"]["mad_vs_avg_gt"] == pytest.approx(36 / 30)
    assert rows[1]["ratios"]["side_vs_avg_gt"] == pytest.approx(3.6 / 3.0)


def test_light_errors_against_hand_computed_values():
    def entry(true_dir, pred_dir, ambient=(0.4, 0.5)):
        return {"light": {"true": {"ambient": ambient[0], "diffuse": 0.6, "direction": true_dir},
                          "predicted": {"ambient": ambient[1], "diffuse": 0.6, "direction": pred_dir}}}

    s = math.sqrt(0.5)
    errors = ev.light_errors([entry([s, 0.0, s], [0.0, 0.0, 1.0]), entry([-s, 0.0, s], [-s, 0.0, s], (0.2, 0.2))])
    assert errors["direction_deg"]["mean_abs_error"] == pytest.approx((45 + 0) / 2)
    assert errors["direction_deg"]["constant_mean_abs_error"] == pytest.approx(45.0)  # the mean is (0, 0, 1)
    assert errors["ambient"] == {"mean_abs_error": pytest.approx(0.05), "constant_mean_abs_error": pytest.approx(0.1)}
    assert errors["diffuse"] == {"mean_abs_error": 0.0, "constant_mean_abs_error": 0.0}
    test = ev.HeldOutImage(None, None, None, None, None, np.zeros(6), np.array([0.3, 0.6, 0.0, 1.0]))
    values = ev.light_values(test, {"light": {"ambient": 0.5, "diffuse": 0.4, "direction_camera": [0.0, 0.0, 1.0]}})
    assert values["true"] == {"ambient": pytest.approx(0.3), "diffuse": pytest.approx(0.6),
                              "direction": pytest.approx([0.0, s, s], abs=1e-6)}
    assert values["predicted"]["direction"] == [0.0, 0.0, 1.0]


def recomputed(out, report):
    """Every number of the report's table recomputed here from the files on disk."""
    avg = np.load(out / report["avg_gt_depth"]["file"])
    per = {k: [] for k in ("pred", "null", "avg", "truth", "exact", "turned_prior")}
    for item in report["items"]:
        if item["status"] == "failed":
            continue
        gt = torch.from_numpy(np.load(out / "test" / "depth" / f"{item['name']}.npy")).double()[None]
        pred = torch.from_numpy(np.load(out / "bundles" / item["name"] / "depth_view.npy")).double()[None]
        ones = torch.ones_like(gt, dtype=torch.bool)
        per["pred"].append(depth_metrics(pred, gt, pred < 1.2, CAM))  # 1.2: far clamp of [0.9, 1.1] depths
        per["null"].append(depth_metrics(torch.ones_like(gt), gt, ones, CAM))
        per["avg"].append(depth_metrics(torch.from_numpy(avg).double()[None], gt, ones, CAM))
        per["truth"].append(depth_metrics(gt, gt, ones, CAM))
        exact = torch.from_numpy(np.load(out / "test" / "exact_canonical" / f"{item['name']}.npy")).double()[None]
        per["exact"].append(depth_metrics(exact, gt, exact < 1.2, CAM))
        turned = torch.from_numpy(np.load(out / "test" / "canonical_prior" / f"{item['name']}.npy")).double()[None]
        per["turned_prior"].append(depth_metrics(turned, gt, turned < 1.2, CAM))
    return {k: (np.array([float(m.side[0]) * 100 for m in v]), np.array([float(m.mad[0]) for m in v]))
            for k, v in per.items()}


def test_shards_share_a_folder_and_the_last_run_reports_on_their_bundles(tiny_assets, tmp_path, capsys):
    """--shard 1/2 and 2/2 each reconstruct their own image into one folder and write no report; a run
    without --shard then reuses both bundles (nothing reconstructed again) and reports on both. A shard
    outside 1..K is refused before anything is written."""
    out = tmp_path / "eval"
    args = ["evaluate", "--preset", "fast", "--weights", str(tiny_assets["gen"]), "--device", "cpu", "--n", "2",
            "--seed", "3", "--avg-gt-images", "20", "--out", str(out), "--json"]
    for item in TINY_SET:
        args += ["--set", item]
    for shard, name in (("2/2", ev.item_name(3, 1)), ("1/2", ev.item_name(3, 0))):
        assert main([*args, "--shard", shard]) == 0
        result = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
        assert result["shard"] == shard and result["counts"] == {"done": 1, "skipped": 0, "failed": 0}
        assert (out / "bundles" / name / "result.json").exists() and not (out / "report.json").exists()
    assert len(list((out / "bundles").iterdir())) == 2
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    assert report["methods"][ev.PREDICTION]["images"] == 2
    bad = tmp_path / "bad"
    assert main([*(str(bad) if a == str(out) else a for a in args), "--shard", "3/2"]) == 2
    assert "--shard" in capsys.readouterr().err and not bad.exists()


def test_evaluate_end_to_end_records_a_failure_then_resumes(tiny_assets, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--preset", "fast", "--weights", str(tiny_assets["gen"]), "--device", "cpu", "--n", "2",
            "--seed", "3", "--avg-gt-images", "20", "--out", str(out), "--json"]
    for item in TINY_SET:
        args += ["--set", item]
    blocker = out / "bundles" / ev.item_name(3, 1)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the second bundle should go: its reconstruction fails")

    assert main(args) == 0  # one bad image is recorded, not fatal
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["counts"] == {"done": 1, "skipped": 0, "failed": 1}
    report = json.loads((out / "report.json").read_text())
    failed = [e for e in report["items"] if e["status"] == "failed"]
    assert [e["name"] for e in failed] == ["s3_0001"] and failed[0]["error"]
    assert report["methods"][ev.PREDICTION]["images"] == 1 and "s3_0001" in (out / "report.md").read_text()

    blocker.unlink()
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 1, "failed": 0}  # the finished bundle was reused
    assert report["config"]["preset"] == "fast" and report["test_set"]["seed"] == 3
    # every image used the same frozen copy of the generator, named by its hash
    assert report["generator"]["sha256"] == bundle.sha256_file(tiny_assets["gen"])
    snapshot = (out / report["generator"]["snapshot"]).resolve()
    assert all(bundle.read(out / "bundles" / e["name"])["generator"]["path"] == str(snapshot)
               for e in report["items"])
    methods, again = report["methods"], recomputed(out, report)
    for key, name in (("pred", ev.PREDICTION), ("null", ev.NULL), ("avg", ev.AVERAGE), ("truth", ev.GROUND_TRUTH),
                      ("exact", ev.EXACT_CANONICAL), ("turned_prior", ev.CANONICAL_PRIOR)):
        side, mad = again[key]
        assert len(side) == 2 and methods[name]["images"] == 2
        assert methods[name]["side_x100"]["mean"] == pytest.approx(side.mean(), rel=1e-6, abs=1e-9)
        assert methods[name]["side_x100"]["std"] == pytest.approx(side.std(), rel=1e-6, abs=1e-9)
        assert methods[name]["mad_deg"]["mean"] == pytest.approx(mad.mean(), rel=1e-6)
    ratio = report["ratios"]["mad_vs_avg_gt"]
    assert ratio["value"] == pytest.approx(again["pred"][1].mean() / again["avg"][1].mean(), rel=1e-6)
    assert ratio["met"] == (ratio["value"] <= 0.55)
    views = [bundle.read(out / "bundles" / e["name"])["view"] for e in report["items"]]
    assert all(v["object"]["rotation_deg"] == v["rotation_deg"] for v in views)  # view_frame "object"
    yaws = [(e["view_deg"]["yaw"]["true"], v["object"]["rotation_deg"][1])
            for e, v in zip(report["items"], views, strict=True)]
    assert report["view_error_deg"]["yaw"]["mean_abs_error"] == pytest.approx(np.mean([abs(p - t) for t, p in yaws]))
    truth = render_images(ev.synth_config(CFG), 3, np.arange(1))
    assert yaws[0][0] == pytest.approx(math.degrees(truth["view"][0, 1]))
    light = report["items"][0]["light"]
    assert light["true"]["ambient"] == pytest.approx(float(truth["light"][0, 0]))
    assert light["predicted"]["direction"] == bundle.read(out / "bundles" / report["items"][0]["name"])[
        "light"]["direction_camera"]
    assert set(report["light_error"]) == {"ambient", "diffuse", "direction_deg"} and "| light |" in (
        out / "report.md").read_text()
    floor = report["ratios_of_exact_canonical"]["side_vs_avg_gt"]["value"]
    assert floor == pytest.approx(again["exact"][0].mean() / again["avg"][0].mean(), rel=1e-6)
    assert 5 < methods[ev.GROUND_TRUTH]["mad_deg"]["mean"] < 7  # the official normals' floor at 64²
    table = (out / "report.md").read_text()
    assert "| method | SIDE (×10⁻²) ↓ | MAD (°) ↓ |" in table and "ellipsoid prior" in table
    assert sum(row["images"] for row in report["by_yaw"]) == 2 and "| \\|true yaw\\| |" in table
    # the held-out images are what the generator renders for seed 3, not seed-0 training images
    image = np.array(Image.open(out / "test" / "images" / "s3_0000.png"))
    assert np.array_equal(image, render_images(ev.synth_config(CFG), 3, np.arange(1))["rgb"][0])
