"""Where a reconstruction's depth error lies on the object, per finished `engine evaluate` folder; prints JSON.

Why: a depth net wrong at the silhouette wants sharper edges, one wrong everywhere a better shape. For each
folder, from each bundle's `depth_view.npy` and the folder's `test/depth/<name>.npy` over the scored mask (the
eroded object and prediction, as `engine.metrics.depth_metrics`): the share of the scored pixels and of the
squared SIDE in bands of distance (px) from the true silhouette and in the steepest 5 % and 10 % of the scored
pixels (by the true log depth's largest step to a 4-neighbour: self-occlusion edges and slopes seen edge-on),
the mean SIDE (×10⁻²), the mean SIDE left after a per-image affine fit of the predicted log depth to the true
one (what a wrong relief scale costs), and, for reference, the mean SIDE of the true log depth itself blurred
over the object (Gaussian σ of 0.5 and 1 px): what a depth exact but for soft edges would score.

    .venv/bin/python bench/bench_depth_error_layout.py out/evaluate-default-seed1 [other-run/ ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from engine.config import load_config
from engine.evaluate import hit
from engine.metrics import erode, gt_mask

BANDS = ((0, 2), (2, 3), (3, 5), (5, 8), (8, 1000))
STEEPEST = (0.05, 0.10)
BLURS_PX = (0.5, 1.0)


def steepness(log_depth: np.ndarray) -> np.ndarray:
    """The largest absolute step of a log-depth map to its 4-neighbours, per pixel (edges replicated)."""
    padded = np.pad(log_depth, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    steps = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    return np.max([np.abs(n - centre) for n in steps], axis=0)


def layout(folder: Path) -> dict:
    cfg = load_config("default")
    shares = np.zeros((len(BANDS), 2))
    steep = np.zeros(len(STEEPEST))
    blurred = np.zeros(len(BLURS_PX))
    sides, affine = [], []
    for bundle in sorted((folder / "bundles").iterdir()):
        gt = np.load(folder / "test" / "depth" / f"{bundle.name}.npy")
        pred = np.load(bundle / "depth_view.npy")
        truth, valid = torch.from_numpy(gt)[None], torch.from_numpy(hit(pred, cfg))[None]
        mask = (erode(gt_mask(truth)) & erode(valid))[0].numpy()
        x, y = np.log(pred[mask]), np.log(gt[mask])
        residual = (x - y) - (x - y).mean()
        sides.append(np.sqrt((residual**2).mean()))
        fit = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)[0]
        affine.append(np.sqrt(((y - fit[0] * x - fit[1]) ** 2).mean()))
        distance = distance_transform_edt(gt_mask(truth)[0].numpy())[mask]
        for i, (lo, hi) in enumerate(BANDS):
            band = (distance > lo) & (distance <= hi)
            shares[i] += band.mean(), (residual[band] ** 2).sum() / (residual**2).sum()
        order = np.argsort(-steepness(np.log(gt))[mask], kind="stable")
        for i, top in enumerate(STEEPEST):
            steep[i] += (residual[order[:round(top * len(order))]] ** 2).sum() / (residual**2).sum()
        inside = gt_mask(truth)[0].numpy().astype(float)
        for i, sigma in enumerate(BLURS_PX):  # a normalised blur: the background does not leak in
            soft = gaussian_filter(np.log(gt) * inside, sigma) / np.maximum(gaussian_filter(inside, sigma), 1e-9)
            error = soft[mask] - y
            blurred[i] += np.sqrt(((error - error.mean()) ** 2).mean())
    shares /= len(sides)
    steep /= len(sides)
    blurred /= len(sides)
    return {"folder": str(folder), "images": len(sides), "side_x100": round(100 * float(np.mean(sides)), 3),
            "affine_fit_side_x100": round(100 * float(np.mean(affine)), 3),
            "bands_px": [{"distance": f"{lo}-{hi}", "pixel_share": round(float(p), 3), "squared_side_share":
                          round(float(e), 3)} for (lo, hi), (p, e) in zip(BANDS, shares, strict=True)],
            "steepest": [{"pixel_share": top, "squared_side_share": round(float(e), 3)}
                         for top, e in zip(STEEPEST, steep, strict=True)],
            "blurred_truth": [{"sigma_px": sigma, "side_x100": round(100 * float(b), 3)}
                              for sigma, b in zip(BLURS_PX, blurred, strict=True)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="engine evaluate output folders")
    print(json.dumps([layout(folder) for folder in parser.parse_args().folders], indent=2))


if __name__ == "__main__":
    main()
