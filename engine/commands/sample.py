"""`sample`: random StyleGAN2 images plus their (truncated) W latents, as GAN2Shape targets."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import weights
from ..device import select_device, tune_cpu_allocator
from ..errors import EngineError
from ..gan.protocol import load_generator
from ..io import atomic_path
from ..progress import Progress

NAME = "sample"
HELP = "write random StyleGAN2 samples (PNG) and their W latents ({'latent': w} .pt files)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="StyleGAN2 checkpoint file or manifest name")
    parser.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent stream (default 0)")
    parser.add_argument("--truncation", type=float, default=0.7, help="truncation ψ (default 0.7; 1 = off)")
    parser.add_argument("--truncation-mean", type=int, default=4096,
                        help="samples averaged for the mean latent (default 4096)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="JSON-lines progress events on stdout")
    parser.set_defaults(func=run)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3×H×W in [-1, 1] → H×W×3 uint8 (the rounding of torchvision's save_image)."""
    x = ((image.clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def run(args: argparse.Namespace) -> int:
    tune_cpu_allocator()
    if args.n < 1 or args.batch < 1 or args.truncation_mean < 1:
        raise EngineError("--n, --batch and --truncation-mean must be positive")
    device = select_device(args.device)
    gen = load_generator(weights.resolve(args.weights), device, discriminator=False)
    progress = Progress(json_mode=args.json)
    progress.start(args.n, command=NAME, n=args.n, out=str(args.out))
    # Separate streams: the samples do not change with --truncation-mean.
    sample_rng = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        w_avg = gen.mean_latent(args.truncation_mean, torch.Generator().manual_seed(args.seed + 1))
        for start in range(0, args.n, args.batch):
            count = min(args.batch, args.n - start)
            w = gen.generator.truncate(gen.sample_latents(count, sample_rng), args.truncation, w_avg)
            images = gen.synthesize(w)
            for j in range(count):
                stem = args.out / f"{start + j:06d}"
                with atomic_path(stem.with_suffix(".png")) as tmp:
                    Image.fromarray(to_uint8(images[j])).save(tmp, format="PNG")
                with atomic_path(stem.with_suffix(".pt")) as tmp:
                    torch.save({"latent": w[j].detach().cpu().clone()}, tmp)
                progress.advance(1, step="sample", iter=start + j + 1, total=args.n)
    progress.result(out=str(args.out), n=args.n)
    if not args.json:
        print(f"wrote {args.n} samples to {args.out}")
    return 0
