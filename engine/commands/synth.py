"""`synth`: render the synthetic default category (images + exact ground truth) into sharded .npz files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data.mesh import cache_dir
from ..data.shards import generate
from ..data.synth import SynthConfig
from ..device import set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..progress import Progress

NAME = "synth"
HELP = "render the synthetic head category with ground-truth depth, normals, albedo, mask, view and light"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=20000, help="number of images (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; image i depends only on (seed, i)")
    parser.add_argument("--out", type=Path, default=cache_dir() / "synth-v1",
                        help="output folder (default $GAN2SHAPE_CACHE or ~/.cache/gan2shape, /synth-v1)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per .npz shard")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="JSON-lines progress on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.shard_size < 1 or args.size < 8:
        raise EngineError("--n and --shard-size must be positive and --size at least 8")
    tune_cpu_allocator()
    set_threads(args.threads)
    progress = Progress(json_mode=args.json)
    progress.start(args.n, command=NAME, n=args.n, seed=args.seed, out=str(args.out))
    t0 = time.monotonic()
    manifest = generate(args.out, args.n, args.seed, SynthConfig(image_size=args.size), args.shard_size,
                        on_images=lambda k: progress.advance(k, step="render"))
    seconds = time.monotonic() - t0
    progress.result(out=str(args.out), n=manifest["n"], shards=len(manifest["shards"]), seconds=round(seconds, 1))
    if not args.json:
        print(f"{manifest['n']} images in {len(manifest['shards'])} shards at {args.out} ({seconds:.0f} s)")
    return 0
