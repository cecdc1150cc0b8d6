"""`pretrain`: joint pre-training over many images with shared weights (spec §1.7) → gan2shape checkpoint.

Under torchrun every rank trains on its shard of the images with the gradients averaged over the ranks
(one model; docs/batch.md); rank 0 writes the checkpoint and reports.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..batch.distributed import finish, init_from_env, rank_device
from ..device import cores_per_process, set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..progress import Progress
from .reconstruct import add_config_options, config_from_args

NAME = "pretrain"
HELP = "jointly pre-train the 3D networks on a list of images; writes a checkpoint usable as `pretrain`"

LATENT_SUFFIX = ".pt"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="*", help="input images")
    parser.add_argument("--list", type=Path, help="text file with one image path per line (relative to the file)")
    parser.add_argument("--latent-dir", type=Path,
                        help="folder of latents <image stem>.pt (official latent_root); else images are inverted")
    parser.add_argument("--mask-dir", type=Path, help="folder of masks named <image stem>.png (else alpha / fallback)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.pth)")
    parser.add_argument("--resume", action="store_true", help="continue from the last finished step of a stopped run")
    add_config_options(parser)
    parser.set_defaults(func=run, preset="default")


def image_paths(args: argparse.Namespace) -> list[Path]:
    paths = list(args.images)
    if args.list is not None:
        try:
            lines = args.list.read_text().splitlines()
        except OSError as exc:
            raise EngineError(f"cannot read the image list: {exc}", args.list) from exc
        paths += [args.list.parent / line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not paths:
        raise EngineError("no images given (pass image paths or --list FILE)")
    return paths


def companion(folder: Path | None, image: Path, suffix: str) -> Path | None:
    """`folder/<image stem><suffix>` if the folder is given (it must then exist for every image)."""
    if folder is None:
        return None
    path = folder / f"{image.stem}{suffix}"
    if not path.is_file():
        raise EngineError(f"no {suffix} file for image {image.name}", path)
    return path


def run(args: argparse.Namespace) -> int:
    from ..pipeline.run import Request, pretrain

    tune_cpu_allocator()
    ranks = init_from_env()
    try:
        set_threads(args.threads if args.threads or not ranks.distributed
                    else cores_per_process(ranks.local_world_size))
        cfg = config_from_args(args)
        cfg.joint_train, cfg.reset_weight = True, False  # what pre-training means (§1.7), whatever the preset
        cfg.view_frame = "object"  # many images share the canonical frame; none of them is its frame
        cfg.device = rank_device(cfg.device, ranks)
        reqs = [Request(image=p, out=args.out, cfg=cfg, latent=companion(args.latent_dir, p, LATENT_SUFFIX),
                        mask=companion(args.mask_dir, p, ".png"), weights=args.weights, export=False)
                for p in image_paths(args)]
        quiet = None if ranks.is_main else open(os.devnull, "w")  # noqa: SIM115 (closed below)
        progress = Progress(json_mode=args.json or quiet is not None, out=quiet)
        try:
            summary = pretrain(reqs, args.out, progress, resume=args.resume, ranks=ranks)
        finally:
            progress.close()
            if quiet is not None:
                quiet.close()
    except BaseException:
        finish(ranks, barrier=False)
        raise
    finish(ranks)
    if not ranks.is_main:
        return 0
    progress.result(checkpoint=summary["checkpoint"], images=summary["images"],
                    **({"world_size": ranks.world_size} if ranks.distributed else {}))
    if not args.json:
        print(summary["checkpoint"])
    return 0
