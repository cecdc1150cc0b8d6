"""Benchmark the synthetic data generator (and optionally GAN training throughput); prints one JSON object.

    python bench/bench_data.py [--n 2000] [--threads 1] [--train-caps 64 128]

The data target is >= 20k images at 64² in <= 45 minutes on this machine; "projected_20k_minutes"
extrapolates the measured rate (rendering, compression and writing included).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from engine.data.mesh import load_base_mesh
from engine.data.shards import generate
from engine.data.synth import SynthConfig
from engine.device import tune_cpu_allocator
from engine.gan.train import TrainConfig, images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-caps", type=int, nargs="*", default=[], help="also time GAN training steps")
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    load_base_mesh()  # build/cache outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp), args.n, seed=0, cfg=SynthConfig(image_size=args.size))
        seconds = time.perf_counter() - t0
        bytes_per_image = sum(p.stat().st_size for p in Path(tmp).glob("*.npz")) / args.n
    result = {
        "bench": "data", "n": args.n, "size": args.size, "threads": args.threads,
        "seconds": round(seconds, 2), "images_per_s": round(args.n / seconds, 1),
        "projected_20k_minutes": round(20000 / (args.n / seconds) / 60, 2),
        "bytes_per_image": round(bytes_per_image), "machine": platform.machine(), "torch": torch.__version__,
    }
    if args.train_caps:
        result["train_images_per_s"] = {str(cap): round(images_per_second(TrainConfig(channel_max=cap)), 2)
                                        for cap in args.train_caps}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
