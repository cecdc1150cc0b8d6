"""Benchmark `batch`: images per hour with 1 and 2 worker processes (fast preset, 64² images), the ratio,
and what a worker saves per image by reusing the frozen models (generator, perceptual net).

Prints ONE JSON object. Each worker setting is a fresh `python -m engine batch` process over the same
images (start-up included, as a user would see it), with the cores shared out (2 workers → half the
threads each). The reuse part runs in this process with one thread: `load_frozen` fresh (files in the
page cache, imports done) against reused, and the same images reconstructed one after the other with
the models reused against reloaded for every image (`forget_frozen` before each).

The inputs are samples of weights/default/generator.pt, or of a random-weight compact generator of the
same architecture when that file is absent (said in the output); no latents, so the projector runs as
it would for photos. The machine's load average is reported: other work skews the numbers.

    python bench/bench_batch.py [--images 6] [--workers 1 2] [--reuse-images 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_GENERATOR = ROOT / "weights" / "default" / "generator.pt"


def make_images(work: Path, count: int) -> tuple[Path, Path, str]:
    """`count` generator samples as RGBA photos (centred disc as alpha); (folder, checkpoint, source)."""
    import numpy as np
    import torch
    from PIL import Image

    from engine.gan.checkpoint import save_checkpoint
    from engine.gan.protocol import StyleGAN2Generator, load_generator
    from engine.gan.stylegan2 import Discriminator, Generator, StyleGAN2Arch

    if DEFAULT_GENERATOR.is_file():
        gen, ckpt, source = load_generator(DEFAULT_GENERATOR), DEFAULT_GENERATOR, "weights/default/generator.pt"
    else:
        torch.manual_seed(0)
        arch = StyleGAN2Arch(64, channel_max=64)
        g, d = Generator(arch), Discriminator(arch)
        ckpt = work / "random_generator.pt"
        save_checkpoint(ckpt, g, d)
        gen, source = StyleGAN2Generator(g, d), "random-weight compact generator (64², cap 64)"
    with torch.no_grad():
        rgb = gen.synthesize(gen.sample_latents(count, torch.Generator().manual_seed(7))).clamp(-1, 1)
    size = rgb.shape[-1]
    yy, xx = np.mgrid[:size, :size]
    alpha = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (0.35 * size) ** 2).astype(np.float32)
    folder = work / "images"
    folder.mkdir()
    for i, image in enumerate(rgb.permute(0, 2, 3, 1).numpy() / 2 + 0.5):
        rgba = np.concatenate([image, alpha[..., None]], axis=2)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / f"img{i:03d}.png")
    return folder, ckpt, source


def run_batch(images: Path, ckpt: Path, out: Path, workers: int) -> dict:
    argv = [sys.executable, "-m", "engine", "batch", str(images), "--out", str(out), "--preset", "fast",
            "--weights", str(ckpt), "--device", "cpu", "--workers", str(workers), "--json"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"batch with {workers} workers failed:\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "batch-summary.json").read_text())
    seconds = [r["seconds"] for r in summary["items"]]
    done = summary["counts"]["done"]
    return {"workers": workers, "threads_per_worker": summary["threads_per_worker"], "images": done,
            "wall_s": round(wall, 2), "images_per_hour": round(done / wall * 3600, 1),
            "mean_image_s": round(sum(seconds) / len(seconds), 2)}


def frozen_reuse(images: Path, ckpt: Path, work: Path, count: int) -> dict:
    """Seconds of a fresh and a reused `load_frozen`, and per image with the models reused or reloaded."""
    import io
    import statistics

    import torch

    from engine.batch.items import list_images, make_items
    from engine.batch.work import BatchJob, run_item
    from engine.config import load_config
    from engine.pipeline.run import forget_frozen, load_frozen
    from engine.progress import Progress

    torch.set_num_threads(1)
    cfg = load_config("fast", overrides=['device="cpu"'])
    quiet = Progress(json_mode=True, out=io.StringIO(), min_interval=1e9)

    def load(fresh: bool) -> float:
        if fresh:
            forget_frozen()
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        load_frozen(cfg, torch.device("cpu"), quiet, str(ckpt))
        return time.perf_counter() - t0

    load(True)  # imports and page cache
    fresh = statistics.median(load(True) for _ in range(5))
    reused = statistics.median(load(False) for _ in range(5))
    items = make_items(list_images(images))[:count]
    per_image = {}
    for mode in ("reload", "reuse"):
        job = BatchJob(cfg, work / f"reuse-{mode}", ckpt.resolve(), export=False)
        seconds = []
        for item in items:
            if mode == "reload":
                forget_frozen()
            seconds.append(run_item(item, job)["seconds"])
        per_image[mode] = round(statistics.mean(seconds), 3)
    forget_frozen()
    return {"threads": 1, "images": len(items), "load_frozen_fresh_s": round(fresh, 4),
            "load_frozen_reused_s": round(reused, 5), "mean_image_s": per_image,
            "saving_per_image_s": round(per_image["reload"] - per_image["reuse"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--reuse-images", type=int, default=3, help="images of the reuse part (0: skip it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        work = Path(tmp)
        images, ckpt, source = make_images(work, args.images)
        load_before = os.getloadavg()[0]
        runs = [run_batch(images, ckpt, work / f"out{w}", w) for w in args.workers]
        reuse = frozen_reuse(images, ckpt, work, args.reuse_images) if args.reuse_images > 0 else None
        load_after = os.getloadavg()[0]
    rate = {r["workers"]: r["images_per_hour"] for r in runs}
    result = {
        "bench": "batch", "preset": "fast", "image_size": 64, "generator": source, "device": "cpu",
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)], "runs": runs,
        "images_per_hour": rate, "frozen_reuse": reuse,
    }
    if 1 in rate and 2 in rate:
        result["scaling_2_vs_1"] = round(rate[2] / rate[1], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
