"""Near strips at the canonical depth map's left and right borders, and what they cost, per evaluation run.

Why: with a V that turns the input (`prior_frame` "input", docs/default-model.md items 12-13) the canonical
map grows strips at the near clamp (min_depth 0.9) beside the border columns; a turned view swings them in
front of the object, where the scored depth then steps. This reads finished `engine evaluate` folders
(report.json and each bundle's canonical depth.npy) and prints JSON: per folder, how many images have a
strip, the mean SIDE / MAD (x100 / degrees) of the images with and without one, and the mean time per image
(the bundles' result.json `total_s`, seconds), and the means and issue #6's ratios per band of |true yaw|
(`engine.evaluate.by_yaw`); for every folder after the first, on how many of the images both hold it scores
better than the first, and both means there.

    .venv/bin/python bench/bench_border_strips.py out/evaluate-default-seed1 other-run/ [--near 0.92]
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import numpy as np

from engine.evaluate import PREDICTION, by_yaw
from engine.nets import clamp_border

# The border columns clamp_border sets (not D's own output).
CLAMPED = inspect.signature(clamp_border).parameters["width"].default


def border_minimum(depth: np.ndarray, band: int) -> float:
    """The nearest depth in the `band` columns inside the clamped ones, on either side."""
    inner = slice(CLAMPED, CLAMPED + band), slice(depth.shape[1] - CLAMPED - band, depth.shape[1] - CLAMPED)
    return float(min(depth[:, inner[0]].min(), depth[:, inner[1]].min()))


def summarise(folder: Path, near: float, band: int) -> dict:
    report = json.loads((folder / "report.json").read_text())
    rows = []
    for item in report["items"]:
        depth_file = folder / "bundles" / item["name"] / "depth.npy"
        if item.get("error") or not depth_file.is_file():
            continue
        scores = item["metrics"]["gan2shape"]
        rows.append((item["name"], border_minimum(np.load(depth_file), band), scores["side_x100"], scores["mad_deg"]))
    edge = np.array([r[1] for r in rows])
    side, mad = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    strip = edge < near

    def mean(values: np.ndarray, pick: np.ndarray) -> float | None:
        return round(float(values[pick].mean()), 3) if pick.any() else None

    seconds = [json.loads(f.read_text()).get("timings", {}).get("total_s")
               for f in (folder / "bundles" / name / "result.json" for name, *_ in rows) if f.is_file()]
    seconds = [t for t in seconds if t is not None]
    return {"folder": str(folder), "images": len(rows), "with_strip": int(strip.sum()),
            "mean_total_s": round(float(np.mean(seconds)), 1) if seconds else None,
            "by_yaw": [{"abs_yaw_deg": b["abs_yaw_deg"], "images": b["images"],
                        "side_x100": round(b["methods"][PREDICTION]["side_x100"]["mean"], 3),
                        "mad_deg": round(b["methods"][PREDICTION]["mad_deg"]["mean"], 2),
                        "ratios": {k: round(v, 3) for k, v in b["ratios"].items()}} for b in by_yaw(report["items"])],
            "scores": {name: (side_x100, mad_deg) for name, _, side_x100, mad_deg in rows},
            "side_x100": {"all": mean(side, strip | ~strip), "with_strip": mean(side, strip),
                          "without": mean(side, ~strip), "median": round(float(np.median(side)), 3)},
            "mad_deg": {"all": mean(mad, strip | ~strip), "with_strip": mean(mad, strip),
                        "without": mean(mad, ~strip), "median": round(float(np.median(mad)), 2)},
            "worst_side": [{"name": n, "border_min": round(e, 3), "side_x100": round(s, 3), "mad_deg": round(m, 2)}
                           for n, e, s, m in sorted(rows, key=lambda r: -r[2])[:3]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="finished `engine evaluate` output folders")
    parser.add_argument("--near", type=float, default=0.92, help="a border minimum below this is a strip")
    parser.add_argument("--band", type=int, default=6, help="columns inside the clamped ones that are searched")
    args = parser.parse_args()
    runs = [summarise(f, args.near, args.band) for f in args.folders]
    first = runs[0].pop("scores")
    for run in runs[1:]:
        scores = run.pop("scores")
        both = sorted(set(first) & set(scores))
        run["better_than_first"] = {"images": len(both),
                                    "side_x100": sum(scores[n][0] < first[n][0] for n in both),
                                    "mad_deg": sum(scores[n][1] < first[n][1] for n in both)}
        run["means_on_these_images"] = {  # (SIDE x100, MAD deg): this folder's, then the first's
            "this": [round(float(np.mean([scores[n][k] for n in both])), 3) for k in (0, 1)],
            "first": [round(float(np.mean([first[n][k] for n in both])), 3) for k in (0, 1)]}
    print(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
