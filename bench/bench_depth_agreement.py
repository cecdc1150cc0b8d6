"""How far the scored depth follows the ground truth's relief, per evaluation run, next to the prior's.

Why: SIDE and MAD say how wrong a depth is, not whether it moved towards the truth or away from it. On
each image this takes the log depth over the pixels `engine evaluate` scores (eroded ground-truth mask
and prediction validity), removes its mean, and compares it with the ground truth's: the correlation
(1 = the right shape up to relief scale) and the slope of the regression on the ground truth (1 = the right
relief; 0 = flat). It does the same for the ellipsoid prior of the ground-truth mask (the report's prior
row) and the exact canonical depth seen in the true view, so a run can be read as "the pipeline made its
prior's shape better or worse". Reads finished `engine evaluate` folders and prints JSON.

    .venv/bin/python bench/bench_depth_agreement.py out/evaluate-default-seed1 [other-run/ ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from engine.config import load_config
from engine.evaluate import EXACT_CANONICAL, PREDICTION, PRIOR, baseline_depths, hit
from engine.metrics import erode, gt_mask


def agreement(depth: np.ndarray, valid: np.ndarray, depth_gt: np.ndarray) -> tuple[float, float]:
    """(correlation, slope) of the mean-free log depth on the ground truth's, over the scored pixels."""
    gt = torch.from_numpy(depth_gt)[None]
    mask = (erode(gt_mask(gt)) & erode(torch.from_numpy(valid)[None]))[0].numpy()
    p, g = np.log(depth[mask].astype(np.float64)), np.log(depth_gt[mask].astype(np.float64))
    p, g = p - p.mean(), g - g.mean()
    return float((p * g).sum() / np.sqrt((p * p).sum() * (g * g).sum())), float((p * g).sum() / (g * g).sum())


def stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 3), "median": round(float(np.median(values)), 3)}


def summarise(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    cfg = load_config(report["preset"], overrides=report["config"])
    avg_gt = np.zeros(1)  # baseline_depths needs one; only the prior row is read
    per_method: dict[str, list[tuple[str, float, float]]] = {PREDICTION: [], PRIOR: [], EXACT_CANONICAL: []}
    for item in report["items"]:
        name, bundle_dir = item["name"], folder / "bundles" / item["name"]
        if item.get("error") or not (bundle_dir / "depth_view.npy").is_file():
            continue
        depth_gt = np.load(folder / "test" / "depth" / f"{name}.npy")
        prediction = np.load(bundle_dir / "depth_view.npy")
        exact = np.load(folder / "test" / "exact_canonical" / f"{name}.npy")
        ellipsoid = baseline_depths(cfg, depth_gt, np.asarray(gt_mask(torch.from_numpy(depth_gt))), avg_gt)[PRIOR]
        for method, depth, valid in ((PREDICTION, prediction, hit(prediction, cfg)),
                                     (PRIOR, ellipsoid, np.ones_like(depth_gt, dtype=bool)),
                                     (EXACT_CANONICAL, exact, hit(exact, cfg))):
            per_method[method].append((name, *agreement(depth, valid, depth_gt)))
    out: dict = {"folder": str(folder), "images": len(per_method[PREDICTION])}
    for method, rows in per_method.items():
        corr, slope = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        out[method] = {"correlation": stats(corr), "slope": stats(slope), "negative_correlation": int((corr < 0).sum())}
    ours, prior_rows = per_method[PREDICTION], per_method[PRIOR]
    out["gan2shape_correlates_better_than_prior"] = sum(a[1] > b[1] for a, b in zip(ours, prior_rows, strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="finished `engine evaluate` output folders")
    args = parser.parse_args()
    print(json.dumps([summarise(f) for f in args.folders], indent=1))


if __name__ == "__main__":
    main()
