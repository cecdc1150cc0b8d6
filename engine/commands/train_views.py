"""`train-views`: teach V and L the default category's views and lights from its labelled renders.

Writes a gan2shape checkpoint with netV and netL only: by default the `default` preset's `pretrain`,
weights/default/views-lights.pth, at the preset's `view_light_width` (docs/default-model.md, items 11-13).
See engine/pipeline/supervise.py for why.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import nets
from ..config import load_config
from ..device import set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..evaluate import TRAINING_SEED
from ..pipeline.run import build_model, load_frozen
from ..pipeline.supervise import LABELLED, ViewTraining, label_errors, labelled_renders, train_views
from ..progress import Progress
from ..weights import REPO_WEIGHTS

NAME = "train-views"
HELP = "train the view and light nets on the default category's labelled renders (netV/netL checkpoint)"
HELD_OUT_SEED = 1  # the renders the result is scored on (evaluate's default seed)


def register(parser: argparse.ArgumentParser) -> None:
    defaults = ViewTraining()
    parser.add_argument("--out", type=Path, default=REPO_WEIGHTS / "default" / "views-lights.pth",
                        help="checkpoint to write (default: the embedded one, weights/default/views-lights.pth)")
    parser.add_argument("--iters", type=int, default=defaults.iters, help="Adam steps")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="renders per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    parser.add_argument("--pool", type=int, default=defaults.pool,
                        help="training renders (seed 0, the GAN's training images 0..N−1) drawn from")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the initialisation and draws")
    parser.add_argument("--n-eval", type=int, default=100, help="held-out renders (seed 1) scored at the end")
    parser.add_argument("--preset", default="default", help="preset whose nets and view/light means are used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of the preset (repeatable), e.g. view_light_width=0.25")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="JSON-lines progress on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    opts = ViewTraining(args.iters, args.batch, args.lr, args.pool, args.seed)
    if min(opts.iters, opts.batch, opts.pool, args.n_eval) < 1 or opts.lr <= 0:
        raise EngineError("--iters, --batch, --pool, --n-eval and --lr must be positive")
    tune_cpu_allocator()
    set_threads(args.threads)
    torch.manual_seed(opts.seed)
    progress = Progress(json_mode=args.json)
    cfg = load_config(args.preset, overrides=[*args.set, "pretrain=none"])
    cpu = torch.device("cpu")
    model, _ = build_model(cfg, load_frozen(cfg, cpu, progress), cpu)
    progress.start(opts.pool + opts.iters, command=NAME, out=str(args.out), **asdict(opts))
    t0 = time.monotonic()
    pool = labelled_renders(cfg, TRAINING_SEED, np.arange(opts.pool))
    progress.advance(opts.pool, step="render")
    train_views(model, pool, opts, lambda it, loss: progress.advance(1, step="train", iter=it, loss=round(loss, 5)))
    errors = label_errors(model, *labelled_renders(cfg, HELD_OUT_SEED, np.arange(args.n_eval)))
    nets.save_gan2shape_checkpoint(args.out, {name: model.nets[name] for name in LABELLED},
                                   extra={"meta": {"preset": args.preset, "set": args.set, **asdict(opts),
                                                    "held_out": errors}})
    seconds = round(time.monotonic() - t0, 1)
    progress.result(out=str(args.out), seconds=seconds, held_out=errors)
    if not args.json:
        print(f"{args.out}: held-out yaw error {errors['yaw_deg']}°, pitch {errors['pitch_deg']}°, light direction "
              f"{errors['light_direction_deg']}° (L's mean: {errors['light_direction_mean_deg']}°) ({seconds:.0f} s)")
    return 0
