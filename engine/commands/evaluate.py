"""`evaluate`: SIDE / MAD of a preset on held-out synthetic renders, next to the baselines (engine/evaluate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import weights
from ..device import set_threads, tune_cpu_allocator
from ..progress import Progress
from .reconstruct import add_config_options, config_from_args

NAME = "evaluate"
HELP = "reconstruct N held-out synthetic renders and report SIDE and MAD against the baselines"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=30, help="number of held-out test images (default: 30)")
    parser.add_argument("--out", type=Path, help="output folder (default: out/evaluate-<preset>-seed<S>); "
                        "finished bundles in it are reused")
    parser.add_argument("--avg-gt-images", type=int, default=2000,
                        help="training renders (seed 0) averaged into the average-GT-depth baseline (default: 2000)")
    parser.add_argument("--allow-training-seed", action="store_true",
                        help="accept --seed 0, i.e. evaluate on the GAN's training images")
    parser.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="I/K",
                        help="reconstruct only images I−1, I−1+K, … and write no report: K processes share one "
                             "--out, then a run without --shard reuses their bundles and writes the report")
    add_config_options(parser)
    # --seed chooses the held-out images here (it replaces the config-seed option; use --set seed=K for that)
    held_out = parser.add_argument_group("held-out set", conflict_handler="resolve")
    held_out.add_argument("--seed", type=int, default=1,
                          help="seed of the held-out renders, not the training seed 0 (default: 1)")
    parser.set_defaults(func=run)


def shard_arg(text: str) -> tuple[int, int]:
    """"I/K" (1-based I) → (I − 1, K); the range is checked with the other options."""
    try:
        i, k = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/K such as 1/2, got {text!r}") from None
    return i - 1, k


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvalOptions, evaluate, markdown

    tune_cpu_allocator()
    set_threads(args.threads)
    cfg = config_from_args(argparse.Namespace(**{**vars(args), "seed": None}))
    out = args.out if args.out is not None else Path("out") / f"evaluate-{cfg.preset}-seed{args.seed}"
    opts = EvalOptions(out=out, n=args.n, seed=args.seed, avg_gt_images=args.avg_gt_images,
                       allow_training_seed=args.allow_training_seed, shard=args.shard)
    gan_path = weights.resolve(args.weights or cfg.gan_ckpt).resolve()
    progress = Progress(json_mode=args.json)
    try:
        report = evaluate(cfg, opts, gan_path, progress)
    finally:
        progress.close()
    if "shard" in report:
        progress.result(shard=report["shard"], counts=report["counts"])
        if not args.json:
            print(f"shard {report['shard']}: {report['counts']} in {out}; run without --shard to write the report")
        return 0
    progress.result(report=str((out / "report.json").resolve()), counts=report["counts"], methods=report["methods"],
                    ratios=report["ratios"])
    if not args.json:
        print(markdown(report), end="")
        print(f"report: {out / 'report.json'}")
    return 0
