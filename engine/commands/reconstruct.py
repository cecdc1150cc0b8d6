"""`reconstruct`: one image → a result bundle (docs/bundle.md), then mesh export by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config, preset_names
from ..device import set_threads, tune_cpu_allocator
from ..progress import Progress

NAME = "reconstruct"
HELP = "reconstruct 3D shape, albedo, view and light of one image and write a result bundle"


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Options shared with `pretrain`: preset, TOML file, --set overrides, weights, device, seed, --json."""
    parser.add_argument("--preset", default="default", help=f"one of: {', '.join(preset_names())} (default: default)")
    parser.add_argument("--config", type=Path, help="TOML file of config keys (applied after the preset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable; applied last)")
    parser.add_argument("--weights", help="StyleGAN2 checkpoint (manifest name or file) instead of the preset's")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the config's device)")
    parser.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores, 1 when the machine is busy)")
    parser.add_argument("--json", action="store_true", help="print JSON-lines progress events on stdout")


def config_from_args(args: argparse.Namespace):
    overrides = list(args.set)
    if args.device is not None:
        overrides.append(f"device={args.device!r}".replace("'", '"'))
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.preset, args.config, overrides)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="input image (PNG/JPEG, 8/16-bit, gray/RGB/RGBA)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--latent", type=Path, help="GAN latent (.pt); without it the image is inverted")
    parser.add_argument("--mask", type=Path, help="object mask image (default: alpha channel, else fallback)")
    parser.add_argument("--depth-gt", type=Path, help="ground-truth depth (.npy, or synface-style image) for metrics")
    parser.add_argument("--resume", action="store_true", help="continue from the last finished step of a stopped run")
    parser.add_argument("--no-export", action="store_true", help="do not write mesh files into the bundle")
    add_config_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.run import Request, reconstruct

    tune_cpu_allocator()
    set_threads(args.threads)
    progress = Progress(json_mode=args.json)
    cfg = config_from_args(args)
    req = Request(image=args.image, out=args.out, cfg=cfg, latent=args.latent, mask=args.mask,
                  depth_gt=args.depth_gt, weights=args.weights, resume=args.resume, export=not args.no_export)
    try:
        out = reconstruct(req, progress)
    finally:
        progress.close()
    progress.result(bundle=str(out.resolve()))
    if not args.json:
        print(summary_line(out))
    return 0


def summary_line(bundle_dir: Path) -> str:
    """One line for people: where the bundle and mesh are, and the accuracy when ground truth was given."""
    from ..bundle import read

    data = read(bundle_dir)
    parts = [f"bundle: {bundle_dir}"]
    if "mesh_glb" in data["files"]:
        parts.append(f"mesh: {bundle_dir / data['files']['mesh_glb']}")
    metrics = data.get("metrics", {})
    if "side_x100" in metrics and "mad_deg" in metrics:
        parts.append(f"SIDE x100 {metrics['side_x100']:.3f}, MAD {metrics['mad_deg']:.2f} deg")
    return "  ".join(parts)
