"""`train-gan`: train (or resume training) the default model's compact StyleGAN2 on the synthetic category."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..data.mesh import cache_dir
from ..data.shards import generate, load
from ..data.synth import SynthConfig, render_images
from ..device import available_cores, set_threads, tune_cpu_allocator
from ..errors import EngineError
from ..gan.checkpoint import load_checkpoint
from ..gan.stylegan2 import Generator
from ..gan.train import RealImages, TrainConfig, load_or_start, sample_grid, train
from ..metrics import MobileNetEmbedding, kid
from ..progress import Progress
from ..weights import REPO_WEIGHTS

HELDOUT_SEED = 1  # training data uses seed 0; image i of a seed depends only on (seed, i)
NAME = "train-gan"
HELP = "train or resume the default model's compact StyleGAN2 (CPU hours; checkpoints every few minutes)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=cache_dir() / "synth-v1",
                        help="synthetic data set (generated first if missing; default <cache>/synth-v1)")
    parser.add_argument("--n-data", type=int, default=30000, help="images to generate when --data is missing")
    parser.add_argument("--state-dir", type=Path, default=cache_dir() / "train-default",
                        help="full training state, samples and log (default <cache>/train-default)")
    parser.add_argument("--export", type=Path, default=REPO_WEIGHTS / "default" / "generator.pt",
                        help="G_ema + D export, also the warm start when the state is gone")
    parser.add_argument("--max-images", type=int, default=5_000_000, help="stop after this many images shown")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints")
    parser.add_argument("--channel-max", type=int, default=TrainConfig.channel_max, help="channel cap of G and D")
    parser.add_argument("--batch", type=int, default=TrainConfig.batch, help="batch size")
    parser.add_argument("--r1-gamma", type=float, default=TrainConfig.r1_gamma, help="R1 weight")
    parser.add_argument("--size", type=int, default=TrainConfig.size, help="image side (data and GAN)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a fresh run")
    parser.add_argument("--threads", type=int, default=None,
                        help="fixed torch threads (default: all cores on a quiet machine, 1 when it is busy)")
    parser.add_argument("--grid", type=Path, default=None,
                        help="only write an 8×8 sample grid PNG of the export to this path, then exit")
    parser.add_argument("--quality", type=int, default=0, metavar="N",
                        help="only print KID (MobileNetV2 features) of N export samples and of N training images "
                             "against N held-out renders, then exit")
    parser.add_argument("--json", action="store_true", help="JSON-lines progress on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tune_cpu_allocator()
    set_threads(args.threads)
    if args.grid is not None:
        sample_grid(load_checkpoint(args.export).generator, args.grid)
        print(f"sample grid written to {args.grid}")
        return 0
    if args.quality:
        print(json.dumps(sample_quality(load_checkpoint(args.export).generator, args.data, args.quality, args.size)))
        return 0
    if min(args.batch, args.channel_max, args.max_images) < 1:
        raise EngineError("--batch, --channel-max and --max-images must be positive")
    cfg = TrainConfig(size=args.size, channel_max=args.channel_max, batch=args.batch, r1_gamma=args.r1_gamma)
    progress = Progress(json_mode=args.json, min_interval=10.0)  # a training log stays small over days
    if not (args.data / "manifest.json").is_file():
        progress.warning(f"no data set at {args.data}: generating {args.n_data} images first")
        generate(args.data, args.n_data, 0, SynthConfig(image_size=args.size))
    data = load(args.data, ("rgb",))["rgb"]
    if data.shape[1] != args.size:
        raise EngineError(f"the data set holds {data.shape[1]}² images, expected {args.size}²", args.data)
    state, how = load_or_start(cfg, args.state_dir, args.export, args.seed)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    progress.start(max(args.max_images - state.images_seen, 1), command=NAME, how=how, step=state.step,
                   images_seen=state.images_seen, state_dir=str(args.state_dir), export=str(args.export))
    progress.warning(f"{how} at step {state.step}, {state.images_seen} images seen")

    def on_step(st, logs: dict) -> None:
        progress.advance(cfg.batch, step="train", iter=st.step, images_seen=st.images_seen,
                         **{k: round(v, 4) for k, v in logs.items()})

    state = train(state, RealImages(data, cfg.xflip), args.state_dir, args.export, max_images=args.max_images,
                  checkpoint_minutes=args.checkpoint_minutes, on_step=on_step, handle_signals=True,
                  adapt_threads_to=None if args.threads else available_cores())
    progress.result(step=state.step, images_seen=state.images_seen, seconds=round(state.seconds, 1),
                    state=str(args.state_dir / "state.pt"), export=str(args.export))
    if not args.json:
        print(f"step {state.step}, {state.images_seen} images seen, {state.seconds / 3600:.2f} h; "
              f"state {args.state_dir}, export {args.export}")
    return 0


def _embed(net: MobileNetEmbedding, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    return torch.cat([net(images[i:i + batch]) for i in range(0, len(images), batch)])


def _from_uint8(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def sample_quality(g: Generator, data: Path, n: int, size: int) -> dict:
    """KID ×10³ of G_ema samples and, as the floor to compare with, of training images vs held-out renders."""
    if n < 2:
        raise EngineError("--quality needs at least 2 images")
    net = MobileNetEmbedding()
    held = _embed(net, _from_uint8(render_images(SynthConfig(image_size=size), HELDOUT_SEED, np.arange(n))["rgb"]))
    train_rgb = load(data, ("rgb",))["rgb"][:n]
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(HELDOUT_SEED))
    fake = torch.cat([g(g.mapping(z[i:i + 100])).clamp(-1, 1) for i in range(0, n, 100)])
    result = {"n": n, "heldout_seed": HELDOUT_SEED, "backbone": "mobilenet-v2 imagenet, pooled, 128²"}
    for name, feats in (("generator", _embed(net, fake)), ("training_data", _embed(net, _from_uint8(train_rgb)))):
        mean, std = kid(feats, held, subset_size=min(100, n), generator=torch.Generator().manual_seed(0))
        result[f"kid_x1000_{name}"] = {"mean": round(mean * 1000, 3), "std": round(std * 1000, 3)}
    return result
