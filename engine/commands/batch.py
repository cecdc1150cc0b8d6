"""`batch`: every image of a folder or list → its own bundle; resumable, failure-tolerant, scales out with torchrun."""

from __future__ import annotations

import argparse
import os
import sys

from .. import weights
from ..batch.distributed import finish, init_from_env, rank_device
from ..batch.items import list_images, make_items
from ..batch.runner import merge_summaries, run_batch, summary_info
from ..batch.shared import GROUP_MODES, run_shared_batch
from ..batch.work import BatchJob
from ..device import cores_per_process, set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..progress import Progress
from . import reconstruct

NAME = "batch"
HELP = "reconstruct every image of a folder or list into its own bundle (resumable; scales out with torchrun)"

# reconstruct's per-image options, as they read in a batch (all other options keep their meaning)
BATCH_HELP = {
    "image": "folder of images (not recursive) or a text file with one image path per line",
    "out": "output folder: one bundle <image stem>/ per image, plus batch-summary.json and .csv",
    "latent": "folder of latents <image stem>.pt (else each image is inverted)",
    "mask": "folder of masks <image stem>.png (else alpha channel, else the fallback)",
    "depth_gt": "folder of ground-truth depths <image stem>.npy or .png, for metrics",
    "resume": "also continue interrupted images from their last finished step (complete bundles are always kept)",
    "threads": "CPU threads per worker (default: the cores shared out over workers and local ranks)",
}
FOLDER_OPTIONS = ("latent", "mask", "depth_gt")


def register(parser: argparse.ArgumentParser) -> None:
    reconstruct.register(parser)  # every reconstruct option, so the two commands never drift apart
    for action in parser._actions:
        if action.dest in BATCH_HELP:
            action.help = BATCH_HELP[action.dest]
        if action.dest == "image":
            action.metavar = "INPUT_DIR_OR_LIST"
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes on this machine (per torchrun rank); default 1")
    parser.add_argument("--group", choices=GROUP_MODES, default=None,
                        help="share_weight: under torchrun the ranks train one shared model per group, gradients "
                             "averaged (official share_weight); the config's `independent` key picks the images "
                             "(true: one per rank, false: the same image on every rank)")
    parser.set_defaults(func=run)


def job_from_args(args: argparse.Namespace) -> BatchJob:
    for name in FOLDER_OPTIONS:
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            raise EngineError(f"in a batch, --{name.replace('_', '-')} names a folder of per-image files", folder)
    cfg = reconstruct.config_from_args(args)
    gan_path = weights.resolve(args.weights or cfg.gan_ckpt).resolve()
    return BatchJob(cfg, args.out, gan_path, args.latent, args.mask, args.depth_gt, args.resume, not args.no_export)


def run(args: argparse.Namespace) -> int:
    tune_cpu_allocator()
    if args.workers < 1:
        raise EngineError("--workers must be at least 1")
    if args.group is not None and args.workers != 1:
        raise EngineError("--group trains the ranks in lockstep: use one rank per device, not --workers")
    ranks = init_from_env()
    try:
        job = job_from_args(args)
        job.cfg.device = rank_device(job.cfg.device, ranks)
        items = make_items(list_images(args.image))
        threads = args.threads or cores_per_process(args.workers * ranks.local_world_size)
        set_threads(threads)
        quiet = None if ranks.is_main else open(os.devnull, "w")  # noqa: SIM115 (closed below)
        progress = Progress(json_mode=args.json or quiet is not None, out=quiet, min_interval=0.0)
        try:
            if args.group is None:
                summary = run_batch(job, items, ranks, args.workers, threads, progress)
            else:
                summary = run_shared_batch(job, items, ranks, summary_info(job, ranks, 1, threads), progress)
        finally:
            progress.close()
            if quiet is not None:
                quiet.close()
        merged = merge_summaries(summary, items, ranks)
    except BaseException:
        finish(ranks, barrier=False)
        raise
    finish(ranks)
    if merged is None:
        return 0
    failed = [r["name"] for r in merged.failed()]
    counts = merged.counts()
    progress.result(summary=str(merged.json_path.resolve()), counts=counts, failed_items=failed)
    if not args.json:
        print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
              f"→ {merged.json_path}", file=sys.stdout)
        for record in merged.failed():
            print(f"failed: {record['name']}: {record['error']}", file=sys.stderr)
    return 1 if failed else 0
