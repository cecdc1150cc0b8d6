"""What averaging D's readings of the moved and mirrored input gives on held-out renders; prints JSON.

Why: the `default` preset's result depth is D's reading averaged over the mirrored input
(`depth_mirror_average`) and over the input moved by up to `depth_shift_average` pixels. Both cost only
forwards of D, so their radius is chosen here, on --n held-out renders (seed 1, evaluate's), by SIDE ×10⁻²
and MAD ° over the object, for each checkpoint loaded as the preset's pretrain; the depth is
`Model.predict_depth`'s, as the result's, with the official border clamp (`border_clamp_factor` 1.02) and
without it (0): the clamp sets the outer two columns to 1.04 even where the object reaches them.

    .venv/bin/python bench/bench_depth_averaging.py weights/default/pretrain.pth [--radii 0 1 2] [--n 200]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace

import numpy as np
import torch
from bench_depth_fit import default_models

from engine.commands.train_views import HELD_OUT_SEED
from engine.config import load_config
from engine.metrics import depth_metrics
from engine.pipeline.supervise import labelled_renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="gan2shape checkpoints with a netD")
    parser.add_argument("--radii", type=int, nargs="+", default=[0, 1, 2], help="shift radii (pixels)")
    parser.add_argument("--clamps", type=float, nargs="+", default=[1.02, 0.0], help="border_clamp_factor values")
    parser.add_argument("--n", type=int, default=200, help="held-out renders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    data = labelled_renders(load_config("default"), HELD_OUT_SEED, np.arange(args.n))
    rows = []
    for path, model in default_models(args.checkpoints, args.threads):
        for clamp in args.clamps:
            model.cfg = replace(model.cfg, border_clamp_factor=clamp)  # read by predict_depth at each call
            for mirror, radius in itertools.product((False, True), args.radii):
                with torch.no_grad():
                    depth = torch.cat([model.predict_depth(images, mirror, radius) for images in data.images.split(50)])
                summary = depth_metrics(depth, data.depths, data.masks, model.cam, data.masks).summary()
                rows.append({"checkpoint": path, "renders": args.n, "border_clamp_factor": clamp, "mirror": mirror,
                             "shift_radius": radius, "side_x100": round(summary["side_x100"]["mean"], 4),
                             "mad_deg": round(summary["mad_deg"]["mean"], 3)})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
