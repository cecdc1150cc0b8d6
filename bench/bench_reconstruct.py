"""Benchmark `reconstruct`: seconds per iteration of each step and per image, peak RSS, per preset.

Prints ONE JSON object. Each preset runs in its own process (so peak RSS is per preset) on a sample of
the preset's generator (an image the GAN can represent; no latent given, so the built-in projector
runs as it would for a photo). Without weights/default/generator.pt a random-weight compact
generator of the same architecture stands in (said in the output).

    python bench/bench_reconstruct.py [--presets fast default] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_GENERATOR = ROOT / "weights" / "default" / "generator.pt"


def make_inputs(work: Path) -> tuple[Path, str]:
    """A generator sample as the input photo (RGBA, centred disc as alpha) and the checkpoint to use."""
    import numpy as np
    import torch
    from PIL import Image

    from engine.gan.checkpoint import save_checkpoint
    from engine.gan.protocol import StyleGAN2Generator, load_generator
    from engine.gan.stylegan2 import Discriminator, Generator, StyleGAN2Arch

    if DEFAULT_GENERATOR.is_file():
        gen, source = load_generator(DEFAULT_GENERATOR), "weights/default/generator.pt"
        ckpt = DEFAULT_GENERATOR
    else:
        torch.manual_seed(0)
        arch = StyleGAN2Arch(64, channel_max=64)  # the embedded model's architecture (docs/default-model.md)
        g, d = Generator(arch), Discriminator(arch)
        ckpt = work / "random_generator.pt"
        save_checkpoint(ckpt, g, d)
        gen, source = StyleGAN2Generator(g, d), "random-weight compact generator (64², cap 64)"
    latent = gen.sample_latents(1, torch.Generator().manual_seed(7))
    with torch.no_grad():
        rgb = gen.synthesize(latent).clamp(-1, 1)[0].permute(1, 2, 0).numpy() / 2 + 0.5
    size = rgb.shape[0]
    yy, xx = np.mgrid[:size, :size]
    alpha = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= (0.4 * size) ** 2).astype(np.float32)
    image = work / "input.png"
    Image.fromarray((np.dstack([rgb, alpha]) * 255 + 0.5).astype(np.uint8), "RGBA").save(image)
    return image, f"{ckpt}|{source}"


def child(preset: str, image: Path, ckpt: str, threads: int | None) -> dict:
    """One reconstruction in this process; timings per step from the bundle."""
    from engine.config import load_config
    from engine.device import set_threads, tune_cpu_allocator
    from engine.pipeline.run import Request, reconstruct
    from engine.progress import Progress

    tune_cpu_allocator()
    set_threads(threads)
    cfg = load_config(preset, overrides=['device="cpu"'])
    out = image.parent / f"bundle_{preset}"
    t0 = time.perf_counter()
    with open("/dev/null", "w") as devnull:
        reconstruct(Request(image=image, out=out, cfg=cfg, weights=ckpt.split("|")[0]), Progress(True, devnull))
    wall = time.perf_counter() - t0
    result = json.loads((out / "result.json").read_text())
    per_step: dict[str, list[float]] = {}
    for p in result["training"]["phases"]:
        acc = per_step.setdefault(p["step"], [0.0, 0])
        acc[0] += p["seconds"]
        acc[1] += p["iterations"]
    timings = result["timings"]
    return {
        "seconds_per_image": round(wall, 2),
        "seconds_per_iteration": {k: round(s / n, 4) for k, (s, n) in per_step.items() if n},
        "iterations": {k: n for k, (_, n) in per_step.items()},
        "projector_s": timings.get("projector_s"),
        "train_s": timings.get("train_s"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "perceptual": result["perceptual"],
        "threads": __import__("torch").get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast", "default"])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "IMAGE", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.child[2], args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        image, ckpt = make_inputs(Path(tmp))
        report: dict = {"generator": ckpt.split("|")[1], "target": "default ≤ 300 s per image, peak RSS ≤ 3 GB",
                        "presets": {}}
        for preset in args.presets:
            cmd = [sys.executable, __file__, "--child", preset, str(image), ckpt]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                report["presets"][preset] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            report["presets"][preset] = json.loads(proc.stdout.strip().splitlines()[-1])
        report["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
