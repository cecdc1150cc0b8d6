"""`train-views`: teach V and L the default category's views and lights from its labelled renders
(and, with --teach, D and A its depth and albedo maps).

Writes a gan2shape checkpoint with the taught nets: by default V and L into the `default` preset's
`pretrain`, weights/default/views-lights.pth, at the preset's `view_light_width` (docs/default-model.md,
items 11-13 and 21). See engine/pipeline/supervise.py for why. A long run saves its state beside --out
every --save-every steps; --resume continues it (in another session) and ends as an uninterrupted run would.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .. import bundle, nets, weights
from ..config import load_config
from ..device import set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..evaluate import TRAINING_SEED
from ..pipeline import state as state_io
from ..pipeline.model import Model
from ..pipeline.run import build_model, load_frozen
from ..pipeline.supervise import (
    GROUPS,
    SCHEDULES,
    LabelTraining,
    check_flip,
    check_groups,
    label_errors,
    labelled_renders,
    pool_indices,
    taught_nets,
    train_on_labels,
)
from ..progress import Progress

NAME = "train-views"
HELP = "train the view and light nets (or D and A) on the default category's labelled renders"
HELD_OUT_SEED = 1  # the renders the result is scored on (evaluate's default seed)


def register(parser: argparse.ArgumentParser) -> None:
    defaults = LabelTraining()
    parser.add_argument("--out", type=Path, default=weights.REPO_WEIGHTS / "default" / "views-lights.pth",
                        help="checkpoint to write (default: the embedded one, weights/default/views-lights.pth)")
    parser.add_argument("--iters", type=int, default=defaults.iters, help="Adam steps")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="renders per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default=defaults.schedule,
                        help="constant, or cosine: lowered along a half cosine to 0 at the last step")
    parser.add_argument("--normal-weight", type=float, default=defaults.normal_weight,
                        help="with --teach depth: weight of a normal-angle term (1 − cos) beside the SIDE term")
    parser.add_argument("--flip", action="store_true",
                        help="with --teach depth/albedo: mirror each drawn render left to right at even odds")
    parser.add_argument("--pool", type=int, default=defaults.pool,
                        help="training renders (seed 0, the GAN's training images 0..N−1) drawn from")
    parser.add_argument("--fresh", type=int, default=defaults.fresh, metavar="N",
                        help="after every step replace N pool renders by renders not drawn before (training "
                             "images --pool, --pool+1, …), so the run sees more renders than it holds")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the initialisation and draws")
    parser.add_argument("--teach", nargs="+", choices=list(GROUPS), default=list(defaults.teach),
                        help="what to teach: views (V and L), depth (D), albedo (A); depth and albedo are "
                             "camera-frame maps, so they need a preset with view_frame=\"input\"")
    parser.add_argument("--start-from", default=None, metavar="CHECKPOINT",
                        help="start the taught nets from this checkpoint's (a file or a weights name such as "
                             "default-pretrain, to teach it on with a new schedule) instead of the official "
                             "initialisation")
    parser.add_argument("--keep-pretrain", action="store_true",
                        help="also write the preset's pretrained nets that are not taught (e.g. --teach depth "
                             "beside the default preset's V and L), so the file can replace its pretrain")
    parser.add_argument("--n-eval", type=int, default=100, help="held-out renders (seed 1) scored at the end")
    parser.add_argument("--preset", default="default", help="preset whose nets and view/light means are used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of the preset (repeatable), e.g. view_light_width=0.25")
    parser.add_argument("--save-every", type=int, default=500, metavar="N",
                        help="save the training state beside --out every N steps (0: never)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the state a stopped run with the same options saved beside --out")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="JSON-lines progress on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    opts = LabelTraining(args.iters, args.batch, args.lr, args.pool, args.seed, tuple(args.teach), args.lr_schedule,
                         args.normal_weight, args.flip, args.fresh)
    if min(opts.iters, opts.batch, opts.pool, args.n_eval) < 1 or opts.lr <= 0:
        raise EngineError("--iters, --batch, --pool, --n-eval and --lr must be positive")
    if min(args.save_every, opts.normal_weight, opts.fresh) < 0:
        raise EngineError("--save-every, --normal-weight and --fresh must not be negative")
    if opts.fresh > opts.pool:
        raise EngineError("--fresh replaces renders of the pool: at most --pool per step")
    check_flip(opts)
    tune_cpu_allocator()
    set_threads(args.threads)
    torch.manual_seed(opts.seed)
    progress = Progress(json_mode=args.json)
    preset_cfg = load_config(args.preset, overrides=args.set)
    state_path = state_io.state_path_for(args.out)
    start = weights.resolve(args.start_from) if args.start_from is not None else None
    start_sha = bundle.sha256_file(start) if start is not None else None
    run_id = state_io.fingerprint(NAME, asdict(preset_cfg), asdict(opts), start_sha)
    saved = state_io.load_state(state_path, run_id) if args.resume and state_path.exists() else None
    cfg = replace(preset_cfg, pretrain=None)  # the taught nets start from the official initialisation or --start-from
    check_groups(cfg, opts.teach)
    cpu = torch.device("cpu")
    model, _ = build_model(cfg, load_frozen(cfg, cpu, progress), cpu)
    if start is not None:
        start_from(start, model, opts.teach)
    kept: list[str] = []
    if args.keep_pretrain and preset_cfg.pretrain is not None:
        untaught = {name: net for name, net in model.nets.items() if name not in taught_nets(opts.teach)}
        kept = nets.load_gan2shape_checkpoint(weights.resolve(preset_cfg.pretrain), untaught, strict=False)
    done, earlier_s = (saved["iter"], saved["seconds"]) if saved is not None else (0, 0.0)
    progress.start(opts.pool + opts.iters, command=NAME, out=str(args.out), resumed_at=done, **asdict(opts))
    t0 = time.monotonic()
    pool = labelled_renders(cfg, TRAINING_SEED, pool_indices(opts.pool, done * opts.fresh))
    progress.advance(opts.pool + done, step="render")

    def save(state: dict) -> None:
        state_io.save_state(state_path, {**state, "fingerprint": run_id,
                                         "seconds": earlier_s + time.monotonic() - t0})

    train_on_labels(model, pool, opts,
                    lambda it, loss: progress.advance(1, step="train", iter=it, loss=round(loss, 7)),
                    saved=saved, save=(args.save_every, save) if args.save_every else None,
                    renders=lambda indices: labelled_renders(cfg, TRAINING_SEED, indices))
    errors = label_errors(model, labelled_renders(cfg, HELD_OUT_SEED, np.arange(args.n_eval)), opts.teach)
    written = [*taught_nets(opts.teach), *kept]
    nets.save_gan2shape_checkpoint(args.out, {name: model.nets[name] for name in written},
                                   extra={"meta": {"preset": args.preset, "set": args.set, **asdict(opts),
                                                    "kept": {name: preset_cfg.pretrain for name in kept},
                                                    "started_from": {"path": str(start), "sha256": start_sha}
                                                    if start is not None else None,
                                                    "held_out": errors}})
    state_path.unlink(missing_ok=True)
    seconds = round(earlier_s + time.monotonic() - t0, 1)
    progress.result(out=str(args.out), seconds=seconds, held_out=errors)
    if not args.json:
        print(f"{args.out}: held-out {held_out_line(errors)} ({seconds:.0f} s)")
    return 0


def start_from(path: Path, model: Model, teach: tuple[str, ...]) -> None:
    """Load the nets to be taught from `path`, which must hold every one of them."""
    names = taught_nets(teach)
    loaded = nets.load_gan2shape_checkpoint(path, {name: model.nets[name] for name in names})
    missing = sorted(set(names) - set(loaded))
    if missing:
        raise EngineError(f"--start-from needs {', '.join(missing)} for --teach {' '.join(teach)}", path)


def held_out_line(errors: dict[str, float]) -> str:
    """The held-out errors of label_errors in words."""
    parts = []
    if "yaw_deg" in errors:
        parts.append(f"yaw error {errors['yaw_deg']}°, pitch {errors['pitch_deg']}°, light direction "
                     f"{errors['light_direction_deg']}° (L's mean: {errors['light_direction_mean_deg']}°)")
    if "depth_mad_deg" in errors:
        parts.append(f"depth SIDE x100 {errors['depth_side_x100']}, MAD {errors['depth_mad_deg']}°")
    if "albedo_mae" in errors:
        parts.append(f"albedo error {errors['albedo_mae']}")
    return "; ".join(parts)
