"""Held-out accuracy of a preset on the synthetic default category (issue #6, spec §11.2).

Renders N test images with exact ground truth (engine/data/synth.py, a seed other than the training
seed 0), reconstructs each through the real pipeline (the projector inverts the image: no latent is
given; the ground-truth object mask is given as the mask file), and scores the input-view depth the
pipeline wrote (`depth_view.npy` of the bundle, valid where it is below the renderer's far clamp)
with `engine.metrics.depth_metrics` — recomputed from the files, not read from result.json. The same
metrics are computed on the same images for the baselines of the synface table (spec §11.3), for
the exact canonical depth seen in the true view (what perfect depth and view networks would give: the
method's 2.5D representation cannot hold what the canonical view does not see, though other depth
maps score better, bench/bench_representation_floor.py), for the ellipsoid prior of the canonical
silhouette seen in the true view (where a pipeline with a perfect view network and its prior placed in
the canonical frame would start), and for the ground truth itself, whose MAD is the floor of the
official normals (docs/default-model.md). The predicted view and light (result.json) are compared with
the true ones too, and the prediction's means and issue #6's ratios are repeated per band of |true yaw|.

Layout of the output folder (reruns reuse finished bundles, like `batch`):

    test/images/<name>.png  test/masks/<name>.png  test/depth/<name>.npy    the held-out set
    test/exact_canonical/<name>.npy                   the exact canonical depth seen in the true view
    test/canonical_prior/<name>.npy                   the canonical silhouette's ellipsoid seen in the true view
    bundles/<name>/                                                         the pipeline's result bundles
    avg-gt-depth_seed0_n<K>_<S>px.npy                                       the average-GT baseline map
    generator-<sha256[:12]>.pt                                              the generator every image used
    report.json  report.md                                                  the evaluation

Processes can share one folder, each reconstructing a shard of the images (`--shard I/K`: the images whose
index is I−1 modulo K) and writing no report; a last run without a shard reuses their bundles and reports.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import bundle, prior, render
from .batch.items import BatchItem
from .batch.work import BatchJob, is_complete, run_item
from .config import Config, config_to_dict
from .data.mesh import BaseMesh, load_base_mesh
from .data.synth import SynthConfig, sample_params
from .data.synth import render as synth_render
from .errors import EngineError
from .io import atomic_path, write_json
from .metrics import DepthMetrics, depth_metrics, gt_mask
from .progress import Progress

TRAINING_SEED = 0  # the seed of the GAN's training renders (python -m engine synth / train-gan)
SCHEMA = "gan2shape.evaluation"
PREDICTION = "gan2shape"
NULL, AVERAGE, PRIOR, GROUND_TRUTH = "null_depth", "avg_gt_depth", "ellipsoid_prior", "ground_truth"
EXACT_CANONICAL, CANONICAL_PRIOR = "exact_canonical", "canonical_prior"
LABELS = {
    PREDICTION: "GAN2Shape (this preset)",
    NULL: "constant null depth (1.0)",
    AVERAGE: "average GT depth (seed-0 object pixels)",
    PRIOR: "ellipsoid prior alone (GT mask)",
    EXACT_CANONICAL: "exact canonical depth seen in the true view (a perfect depth map + view)",
    CANONICAL_PRIOR: "ellipsoid prior of the canonical silhouette seen in the true view (a perfect view + prior)",
    GROUND_TRUTH: "ground truth itself (MAD floor)",
}
# the numbers the pipeline logs in result.json (last training forward) → this report's metric names
REPORTED_KEYS = {"side_x100": "side_x100", "mad_deg": "mad_deg", "mae": "depth_mae", "mse": "depth_mse"}
# issue #6: (name, numerator, denominator, metric, largest allowed ratio of the means)
TARGETS = (("mad_vs_avg_gt", PREDICTION, AVERAGE, "mad_deg", 0.55),
           ("mad_vs_prior", PREDICTION, PRIOR, "mad_deg", 0.75),
           ("side_vs_avg_gt", PREDICTION, AVERAGE, "side_x100", 0.35))
YAW_BANDS_DEG = (0.0, 15.0, 30.0, 90.0)  # |true yaw| bands of the by-view breakdown


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate besides the pipeline config: the held-out set and where everything goes."""

    out: Path
    n: int = 30
    seed: int = 1
    avg_gt_images: int = 2000  # seed-0 renders averaged into the average-GT-depth baseline
    allow_training_seed: bool = False
    shard: tuple[int, int] = (0, 1)  # (i, k): reconstruct only the images whose index is i modulo k


@dataclass(frozen=True)
class HeldOutImage:
    """One held-out image on disk with its ground truth (depth H×W float32, mask H×W bool) and the exact
    canonical depth seen in its true view (H×W, as the pipeline renders a canonical depth map)."""

    item: BatchItem
    depth: np.ndarray
    mask: np.ndarray
    exact_canonical: np.ndarray
    canonical_prior: np.ndarray  # the ellipsoid of the canonical silhouette seen in the true view (H×W)
    view: np.ndarray  # the true view (6: pitch, yaw, roll in radians, then the translation)
    light: np.ndarray  # the true light (4: k_a, k_d, l_x, l_y; direction normalise(l_x, l_y, 1), camera frame)


def check_options(opts: EvalOptions, cfg: Config) -> None:
    """Refuse what would make the numbers meaningless or the run impossible, before any heavy work."""
    if opts.n < 1:
        raise EngineError(f"--n must be at least 1 (got {opts.n})")
    if opts.avg_gt_images < 1:
        raise EngineError(f"the average-GT-depth baseline needs at least 1 training render (got {opts.avg_gt_images})")
    if not 0 <= opts.shard[0] < opts.shard[1]:
        raise EngineError(f"--shard I/K needs 1 ≤ I ≤ K (got {opts.shard[0] + 1}/{opts.shard[1]})")
    if opts.seed == TRAINING_SEED and not opts.allow_training_seed:
        raise EngineError(f"seed {TRAINING_SEED} renders the GAN's training images, not held-out ones; choose another "
                          "--seed (or pass --allow-training-seed to measure on training images on purpose)")
    if cfg.crop is not None:
        raise EngineError(f"the preset crops its input (crop={cfg.crop}); the synthetic test images are framed for "
                          "the full image: use a preset without a crop")


def synth_config(cfg: Config) -> SynthConfig:
    """Test renders at the pipeline's resolution and field of view, so ground truth needs no resampling."""
    return SynthConfig(image_size=cfg.image_size, fov_deg=cfg.fov)


def item_name(seed: int, index: int) -> str:
    return f"s{seed}_{index:04d}"


def _save_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def camera(cfg: Config) -> render.Camera:
    """The pipeline's camera, which every depth here is rendered and scored with."""
    return render.Camera(cfg.image_size, cfg.fov, cfg.rot_center_depth)


def seen_in_views(cfg: Config, canonical: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """B×H×W canonical depth maps seen in their B×6 views by the pipeline's renderer and raster options
    (differentiable in the depth maps)."""
    opts = render.RasterOptions(cfg.raster_supersample, cfg.raster_half_pixel, cfg.min_depth, cfg.max_depth)
    return render.rasterize_depth(canonical, view, camera(cfg), opts)


def exact_canonical_depth(cfg: Config, canonical: np.ndarray, view: np.ndarray) -> np.ndarray:
    """`seen_in_views` on arrays. Given the objects rendered at view 0 (background 1.1), this is what the
    exact canonical depth map and view give (a depth map cannot hold the surfaces the canonical view hides,
    so it is not the ground truth, nor the best a depth map can score: bench/bench_representation_floor.py)."""
    with torch.no_grad():
        depth = seen_in_views(cfg, torch.from_numpy(canonical).double(), torch.from_numpy(view).double())
    return depth.float().numpy()


def canonical_prior_depth(cfg: Config, canonical: np.ndarray, view: np.ndarray) -> np.ndarray:
    """B×H×W: the preset's ellipsoid of each canonical silhouette (the ground-truth rule, `gt_mask`) seen
    in the true view; what a perfect view plus the prior fitted in the canonical frame start from."""
    masks = gt_mask(torch.from_numpy(canonical)).float()
    prior_maps = np.stack([prior.ellipsoid_for(m[None, None], cfg).reshape(m.shape).numpy() for m in masks])
    return exact_canonical_depth(cfg, prior_maps, view)


def held_out_renders(cfg: Config, seed: int, n: int, mesh: BaseMesh) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                                              np.ndarray]:
    """Images 0..n−1 of `seed` at the pipeline's resolution: (the renders with their ground truth, the
    canonical depths (the same objects at view 0, background 1.1), the true views (n×6))."""
    synth = synth_config(cfg)
    params = sample_params(synth, mesh, seed, np.arange(n))
    data = synth_render(synth, mesh, params)
    canonical = synth_render(synth, mesh, replace(params, view=np.zeros_like(params.view)))["depth"]
    return data, canonical, params.view


def write_test_set(cfg: Config, opts: EvalOptions, mesh: BaseMesh) -> list[HeldOutImage]:
    """Render images 0..n−1 of `opts.seed` and write image, mask and depth files (deterministic bytes,
    so a rerun writes identical files and finished bundles still match their input's hash)."""
    data, canonical, views = held_out_renders(cfg, opts.seed, opts.n, mesh)
    exact = exact_canonical_depth(cfg, canonical, views)
    turned_prior = canonical_prior_depth(cfg, canonical, views)
    root = opts.out / "test"
    images = []
    for i in range(opts.n):
        name = item_name(opts.seed, i)
        item = BatchItem(i, name, root / "images" / f"{name}.png")
        _save_png(item.image, data["rgb"][i])
        _save_png(root / "masks" / f"{name}.png", data["mask"][i].astype(np.uint8) * 255)
        _save_npy(root / "depth" / f"{name}.npy", data["depth"][i])
        _save_npy(root / EXACT_CANONICAL / f"{name}.npy", exact[i])
        _save_npy(root / CANONICAL_PRIOR / f"{name}.npy", turned_prior[i])
        images.append(HeldOutImage(item, data["depth"][i], data["mask"][i], exact[i], turned_prior[i],
                                   views[i], data["light"][i]))
    return images


def average_gt_depth(cfg: Config, n_images: int, mesh: BaseMesh, chunk: int = 100,
                     canonical: bool = False) -> np.ndarray:
    """Per-pixel mean depth over the object pixels of training renders 0..n−1 (seed 0); 1.0 at pixels
    no training object covers. (A plain mean would average the 1.1 background into the object.)
    `canonical` renders every object at view 0: the baseline for test objects seen frontally."""
    synth = synth_config(cfg)
    total = np.zeros((synth.image_size,) * 2)
    count = np.zeros_like(total)
    for start in range(0, n_images, chunk):
        params = sample_params(synth, mesh, TRAINING_SEED, np.arange(start, min(start + chunk, n_images)))
        if canonical:
            params = replace(params, view=np.zeros_like(params.view))
        data = synth_render(synth, mesh, params)
        mask = data["mask"]
        total += np.where(mask, data["depth"], 0.0).sum(0)
        count += mask.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)


def cached_average_gt_depth(cfg: Config, opts: EvalOptions, mesh: BaseMesh) -> tuple[np.ndarray, Path]:
    """The average-GT map from the output folder if an earlier run computed it with the same parameters."""
    path = opts.out / f"avg-gt-depth_seed{TRAINING_SEED}_n{opts.avg_gt_images}_{cfg.image_size}px.npy"
    if path.is_file():
        depth = np.load(path)
        if depth.shape == (cfg.image_size,) * 2:
            return depth, path
    depth = average_gt_depth(cfg, opts.avg_gt_images, mesh)
    _save_npy(path, depth)
    return depth, path


def snapshot_generator(gan_path: Path, out: Path) -> tuple[Path, str]:
    """A copy of the checkpoint named by its hash, so that every image uses the same weights even while a
    training job re-exports the source file, and bundles made with other weights are not reused."""
    incoming = out / f"generator-incoming{gan_path.suffix}"
    with atomic_path(incoming) as tmp:
        shutil.copyfile(gan_path, tmp)
    sha = bundle.sha256_file(incoming)
    target = out / f"generator-{sha[:12]}{gan_path.suffix}"
    os.replace(incoming, target)  # the same bytes if an earlier run made it already
    return target.resolve(), sha


def baseline_depths(cfg: Config, depth_gt: np.ndarray, mask_gt: np.ndarray, avg_gt: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """Input-view depth maps of the baselines for one image (scored with every pixel valid)."""
    mask = torch.from_numpy(mask_gt.astype(np.float32))[None, None]
    ellipsoid = prior.ellipsoid_for(mask, cfg)
    return {NULL: np.ones_like(depth_gt), AVERAGE: avg_gt, PRIOR: ellipsoid.reshape(depth_gt.shape).numpy(),
            GROUND_TRUTH: depth_gt}


def _batch_of_one(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float64))[None]


def score(depth: np.ndarray, valid: np.ndarray, depth_gt: np.ndarray, cam: render.Camera) -> DepthMetrics:
    """§11.2 metrics of one H×W input-view depth (float64, ground-truth mask by the synface rule)."""
    return depth_metrics(_batch_of_one(depth), _batch_of_one(depth_gt), _batch_of_one(valid).bool(), cam)


def hit(depth: np.ndarray, cfg: Config) -> np.ndarray:
    """Where a rendered input-view depth hit the mesh (below the renderer's far clamp)."""
    return depth < render.RasterOptions(min_depth=cfg.min_depth, max_depth=cfg.max_depth).far_clamp


def predicted_depth(bundle_dir: Path, data: dict[str, Any], cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's input-view depth and its validity."""
    depth = np.load(bundle_dir / data["files"]["depth_view"])
    return depth, hit(depth, cfg)


def _metric_values(m: DepthMetrics) -> dict[str, float | None]:
    """One image's metrics as JSON numbers; None where the evaluated mask was empty (NaN)."""
    values = {"side_x100": float(m.side[0]) * 100, "mad_deg": float(m.mad[0]), "mae": float(m.mae[0]),
              "mse": float(m.mse[0])}
    return {**{k: v if np.isfinite(v) else None for k, v in values.items()}, "pixels": int(m.pixels[0])}


def _summary(values: list[dict[str, float]]) -> dict[str, Any]:
    """Mean ± population std of each metric over images (NaN images, i.e. empty masks, excluded)."""
    out: dict[str, Any] = {"images": len(values)}
    for key in ("side_x100", "mad_deg", "mae", "mse"):
        v = np.array([x[key] for x in values if x.get(key) is not None], dtype=np.float64)
        out[key] = {"mean": float(v.mean()) if len(v) else None, "std": float(v.std()) if len(v) else None}
    return out


def ratios(methods: dict[str, dict[str, Any]], of: str = PREDICTION) -> dict[str, dict[str, Any]]:
    """Issue #6's targets as ratios of means, with whether each is met (by `of`: the prediction, or the
    exact canonical depth: what perfect depth and view networks would give)."""
    out = {}
    for name, num, den, metric, limit in TARGETS:
        num = of if num == PREDICTION else num
        a, b = methods.get(num, {}).get(metric, {}).get("mean"), methods.get(den, {}).get(metric, {}).get("mean")
        value = None if a is None or not b else a / b
        out[name] = {"metric": metric, "of": num, "to": den, "value": value, "target_max": limit,
                     "met": None if value is None else value <= limit}
    return out


def score_item(test: HeldOutImage, bundle_dir: Path, data: dict[str, Any], cfg: Config, avg_gt: np.ndarray
               ) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """({method: metrics} recomputed from the files, the metrics the pipeline logged in result.json);
    `data` is the bundle's result.json."""
    cam = camera(cfg)
    depth, valid = predicted_depth(bundle_dir, data, cfg)
    scores = {PREDICTION: _metric_values(score(depth, valid, test.depth, cam))}
    for name, seen in ((EXACT_CANONICAL, test.exact_canonical), (CANONICAL_PRIOR, test.canonical_prior)):
        scores[name] = _metric_values(score(seen, hit(seen, cfg), test.depth, cam))
    every_pixel = np.ones_like(test.mask)
    for name, base in baseline_depths(cfg, test.depth, test.mask, avg_gt).items():
        scores[name] = _metric_values(score(base, every_pixel, test.depth, cam))
    logged = data.get("metrics", {})
    return scores, {k: logged.get(key) for k, key in REPORTED_KEYS.items()}


def by_yaw(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prediction, the average GT depth and the prior, with issue #6's ratios of their means, over the
    images in each band of |true yaw|: how much of the gap to the targets comes from turned inputs."""
    rows = []
    for lo, hi in pairwise(YAW_BANDS_DEG):
        chosen = [e for e in items if "metrics" in e and lo <= abs(e["view_deg"]["yaw"]["true"]) < hi]
        if chosen:
            methods = {name: _summary([e["metrics"][name] for e in chosen]) for name in (PREDICTION, AVERAGE, PRIOR)}
            rows.append({"abs_yaw_deg": [lo, hi], "images": len(chosen), "methods": methods,
                         "ratios": {name: r["value"] for name, r in ratios(methods).items()}})
    return rows


ANGLES = ("pitch", "yaw", "roll")


def view_angles(test: HeldOutImage, data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """True and predicted rotation angles (degrees) of one image: the object's pose V reads (bundles written
    before `view.object` existed: the canonical maps' view, then the same)."""
    true = np.degrees(test.view[:3].astype(np.float64))
    predicted = data["view"].get("object", data["view"])["rotation_deg"]
    return {a: {"true": round(float(t), 4), "predicted": float(p)} for a, t, p in zip(ANGLES, true, predicted,
                                                                                        strict=True)}


def view_errors(entries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per angle: mean |predicted − true|, the same for always answering 0 (frontal), and the slope of
    predicted on true (1 = the view is recovered, 0 = it is not seen at all)."""
    out = {}
    for a in ANGLES:
        true = np.array([e["view_deg"][a]["true"] for e in entries])
        pred = np.array([e["view_deg"][a]["predicted"] for e in entries])
        slope = float(np.polyfit(true, pred, 1)[0]) if len(true) > 1 and true.std() > 0 else None
        out[a] = {"mean_abs_error": float(np.abs(pred - true).mean()), "frontal_mean_abs_error":
                  float(np.abs(true).mean()), "slope": slope}
    return out


def light_values(test: HeldOutImage, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """True and predicted light of one image: ambient, diffuse and the camera-frame unit direction."""
    k_a, k_d, l_x, l_y = (float(v) for v in test.light)
    direction = np.array([l_x, l_y, 1.0]) / np.linalg.norm([l_x, l_y, 1.0])
    light = data["light"]
    return {"true": {"ambient": k_a, "diffuse": k_d, "direction": [round(float(v), 6) for v in direction]},
            "predicted": {"ambient": float(light["ambient"]), "diffuse": float(light["diffuse"]),
                          "direction": [float(v) for v in light["direction_camera"]]}}


def light_errors(entries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean |error| of the ambient and diffuse strengths and the mean angle (°) between the predicted and the
    true camera-frame light direction, each next to always answering the test set's mean (for the
    direction: the normalised mean of the true directions)."""
    def values(key: str, which: str) -> np.ndarray:
        return np.array([e["light"][which][key] for e in entries], dtype=np.float64)

    def angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))

    out = {}
    for key in ("ambient", "diffuse"):
        true, pred = values(key, "true"), values(key, "predicted")
        out[key] = {"mean_abs_error": float(np.abs(pred - true).mean()),
                    "constant_mean_abs_error": float(np.abs(true.mean() - true).mean())}
    true = np.stack([e["light"]["true"]["direction"] for e in entries])
    pred = np.stack([e["light"]["predicted"]["direction"] for e in entries])
    mean = true.mean(0) / np.linalg.norm(true.mean(0))
    out["direction_deg"] = {"mean_abs_error": float(angles(pred, true).mean()),
                            "constant_mean_abs_error": float(angles(mean[None], true).mean())}
    return out


def reuse_or_run(item: BatchItem, job: BatchJob) -> dict[str, Any]:
    """The batch record of reconstructing `item`, or "skipped" when an earlier run with the same inputs and
    config finished it."""
    if is_complete(item, job) is not None:
        return {"status": "skipped", "seconds": None}
    return run_item(item, job)


def reconstruct_shard(tests: list[HeldOutImage], job: BatchJob, opts: EvalOptions, progress: Progress
                      ) -> dict[str, Any]:
    """Reconstruct one shard's images (reusing finished bundles) without scoring: {"shard": "I/K", "counts"}."""
    shard = f"{opts.shard[0] + 1}/{opts.shard[1]}"
    progress.start(len(tests), images=len(tests), seed=opts.seed, out=str(opts.out.resolve()), shard=shard)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for test in tests:
        record = reuse_or_run(test.item, job)
        counts[record["status"]] += 1
        progress.advance(1, item=test.item.name, status=record["status"], seconds=record["seconds"])
    return {"shard": shard, "counts": counts}


def evaluate(cfg: Config, opts: EvalOptions, gan_path: Path, progress: Progress) -> dict[str, Any]:
    """Render, reconstruct (reusing finished bundles), score; writes report.json / report.md and returns the report
    (with a shard: reconstructs that shard only and returns reconstruct_shard's summary).

    An image whose reconstruction fails is recorded with its error and left out of every row of the
    table, so all rows compare the same images.
    """
    check_options(opts, cfg)
    t0 = time.perf_counter()
    opts.out.mkdir(parents=True, exist_ok=True)
    gan_copy, gan_sha = snapshot_generator(gan_path, opts.out)
    mesh = load_base_mesh()
    tests = write_test_set(cfg, opts, mesh)
    job = BatchJob(cfg, opts.out / "bundles", gan_copy, mask_dir=opts.out / "test" / "masks",
                   depth_gt_dir=opts.out / "test" / "depth", export=False)
    if opts.shard[1] > 1:  # no scoring, so no baseline map
        return reconstruct_shard([t for t in tests if t.item.index % opts.shard[1] == opts.shard[0]], job, opts,
                                 progress)
    avg_gt, avg_path = cached_average_gt_depth(cfg, opts, mesh)
    progress.start(len(tests), images=len(tests), seed=opts.seed, out=str(opts.out.resolve()))
    items, per_method = [], {k: [] for k in LABELS}
    reported = []
    for test in tests:
        record = reuse_or_run(test.item, job)
        entry = {"name": test.item.name, "index": test.item.index, "status": record["status"],
                 "seconds": record["seconds"], "error": record.get("error"), "warnings": record.get("warnings", [])}
        if record["status"] != "failed":
            bundle_dir = job.out / test.item.name
            data = bundle.read(bundle_dir)
            entry["metrics"], entry["pipeline_reported"] = score_item(test, bundle_dir, data, cfg, avg_gt)
            entry["view_deg"] = view_angles(test, data)
            entry["light"] = light_values(test, data)
            for name, values in entry["metrics"].items():
                per_method[name].append(values)
            if entry["pipeline_reported"]["side_x100"] is not None:
                reported.append(entry["pipeline_reported"])
        items.append(entry)
        progress.advance(1, item=test.item.name, status=record["status"], seconds=record["seconds"])
    methods = {name: _summary(values) for name, values in per_method.items()} if per_method[PREDICTION] else {}
    report = {
        "schema": SCHEMA, "schema_version": 1, "created": bundle.utc_now(), "preset": cfg.preset,
        "config": config_to_dict(cfg),
        "generator": {"source": str(gan_path), "snapshot": gan_copy.name, "sha256": gan_sha},
        "test_set": {"seed": opts.seed, "n": opts.n, "training_seed": TRAINING_SEED, "image_size": cfg.image_size,
                     "folder": "test"},
        "counts": {s: sum(e["status"] == s for e in items) for s in ("done", "skipped", "failed")},
        "avg_gt_depth": {"file": avg_path.name, "seed": TRAINING_SEED, "images": opts.avg_gt_images,
                         "definition": "per-pixel mean over object pixels of training renders; 1.0 where none"},
        "masks": "ground truth: depth_gt < max(depth_gt) (spec §11.2); prediction and the depths seen in the "
                 "true view: below the far clamp; baselines: every pixel; both eroded by one pixel",
        "methods": methods, "labels": LABELS, "ratios": ratios(methods),
        "ratios_of_exact_canonical": ratios(methods, of=EXACT_CANONICAL),
        "pipeline_reported": _summary(reported) if reported else None,
        "view_error_deg": view_errors([e for e in items if "view_deg" in e]) if per_method[PREDICTION] else None,
        "light_error": light_errors([e for e in items if "light" in e]) if per_method[PREDICTION] else None,
        "by_yaw": by_yaw(items),
        "items": items, "seconds": round(time.perf_counter() - t0, 3),
    }
    write_report(report, opts.out)
    return report


def _cell(stats: dict[str, Any], key: str, digits: int) -> str:
    s = stats.get(key, {})
    return "n/a" if s.get("mean") is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table plus the target ratios."""
    t = report["test_set"]
    c = report["counts"]
    lines = [f"Evaluation of preset `{report['preset']}` on {t['n']} held-out renders (seed {t['seed']}; "
             f"{c['done'] + c['skipped']} reconstructed, {c['failed']} failed)", "",
             "| method | SIDE (×10⁻²) ↓ | MAD (°) ↓ |", "|---|---|---|"]
    for name, label in report["labels"].items():
        stats = report["methods"].get(name)
        if stats is not None:
            lines.append(f"| {label} | {_cell(stats, 'side_x100', 3)} | {_cell(stats, 'mad_deg', 2)} |")
    if report.get("pipeline_reported"):
        stats = report["pipeline_reported"]
        lines.append(f"| (result.json: last training forward) | {_cell(stats, 'side_x100', 3)} | "
                     f"{_cell(stats, 'mad_deg', 2)} |")
    lines += ["", "| target (issue #6) | ratio of means | max | met | exact canonical depth's ratio |",
              "|---|---|---|---|---|"]
    floor = report.get("ratios_of_exact_canonical", {})
    for name, r in report["ratios"].items():
        value = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "no")
        best = floor.get(name, {}).get("value")
        lines.append(f"| {name} ({r['metric']}) | {value} | {r['target_max']} | {met} | "
                     f"{'n/a' if best is None else f'{best:.3f}'} |")
    if report.get("view_error_deg"):
        lines += ["", "| view angle | mean abs error (°) | always frontal (°) | slope of predicted on true |",
                  "|---|---|---|---|"]
        for a, e in report["view_error_deg"].items():
            slope = "n/a" if e["slope"] is None else f"{e['slope']:.3f}"
            lines.append(f"| {a} | {e['mean_abs_error']:.2f} | {e['frontal_mean_abs_error']:.2f} | {slope} |")
    if report.get("light_error"):
        lines += ["", "| light | mean abs error | always the test set's mean |", "|---|---|---|"]
        for key, e in report["light_error"].items():
            digits, unit = (2, "°") if key == "direction_deg" else (3, "")
            lines.append(f"| {key.removesuffix('_deg')} | {e['mean_abs_error']:.{digits}f}{unit} | "
                         f"{e['constant_mean_abs_error']:.{digits}f}{unit} |")
    if report.get("by_yaw"):
        lines += ["", "| \\|true yaw\\| | images | SIDE (×10⁻²) | MAD (°) | average GT: SIDE / MAD | "
                  "MAD / average GT | MAD / prior | SIDE / average GT |", "|---|---|---|---|---|---|---|---|"]
        for row in report["by_yaw"]:
            m, r = row["methods"], row["ratios"]
            cells = ["n/a" if r[k] is None else f"{r[k]:.3f}" for k in ("mad_vs_avg_gt", "mad_vs_prior",
                                                                       "side_vs_avg_gt")]
            lo, hi = row["abs_yaw_deg"]
            lines.append(f"| {lo:g}–{hi:g}° | {row['images']} | {m[PREDICTION]['side_x100']['mean']:.3f} | "
                         f"{m[PREDICTION]['mad_deg']['mean']:.2f} | {m[AVERAGE]['side_x100']['mean']:.3f} / "
                         f"{m[AVERAGE]['mad_deg']['mean']:.2f} | {' | '.join(cells)} |")
    failed = [e for e in report["items"] if e["status"] == "failed"]
    if failed:
        lines += ["", "Failed images:", *[f"- {e['name']}: {e['error']}" for e in failed]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    json_path, md_path = out / "report.json", out / "report.md"
    write_json(json_path, report)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(report))
    return json_path, md_path
