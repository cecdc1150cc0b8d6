"""How a taught depth net scores on renders it was taught from and on held-out ones; prints JSON.

Why: whether a longer `train-views --teach depth` run needs more steps (both errors high: the net underfits)
or more training renders (the held-out error well above the training one). Each checkpoint is loaded as the
`default` preset's pretrain and scored by `supervise.label_errors` (SIDE ×10⁻² and MAD ° over the object) on
the first --n renders of the training seed (0, inside every --pool) and of the held-out seed (1).

    .venv/bin/python bench/bench_depth_fit.py weights/default/pretrain.pth other.pth [--n 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from engine.commands.train_views import HELD_OUT_SEED
from engine.config import load_config
from engine.evaluate import TRAINING_SEED
from engine.io import load_torch
from engine.nets import depth_skip_config
from engine.pipeline.model import Model
from engine.pipeline.run import build_model, load_frozen
from engine.pipeline.supervise import label_errors, labelled_renders
from engine.progress import Progress


def default_models(checkpoints: list[str], threads: int) -> Iterator[tuple[str, Model]]:
    """Each checkpoint loaded as the `default` preset's pretrain (in a D with the skips it was taught with), on the
    CPU at `threads`; the GAN and the fixed nets are loaded once, as they are the same for every checkpoint."""
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    base = load_config("default")
    frozen = load_frozen(base, cpu, Progress())
    for path in checkpoints:
        skips = depth_skip_config(load_torch(path))  # a D taught with other skips than the preset's
        yield path, build_model(replace(base, pretrain=path, **skips), frozen, cpu)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="gan2shape checkpoints with a netD (train-views --teach depth)")
    parser.add_argument("--n", type=int, default=200, help="renders per seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = load_config("default")
    renders = {name: labelled_renders(base, seed, np.arange(args.n))
               for name, seed in (("training", TRAINING_SEED), ("held_out", HELD_OUT_SEED))}
    rows = []
    for path, model in default_models(args.checkpoints, args.threads):
        scores = {name: label_errors(model, data, ("depth",)) for name, data in renders.items()}
        gap = scores["held_out"]["depth_mad_deg"] - scores["training"]["depth_mad_deg"]
        rows.append({"checkpoint": path, "renders": args.n, **scores, "gap_mad_deg": round(gap, 2)})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
