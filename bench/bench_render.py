"""Renderer cost: the §3.6 training warp (rasterise depth + inverse warp) at batch 16, official options.

Prints one JSON object: forward and forward+backward medians (ms) at 64² and 128², cost per
megapixel across sizes (to show it grows no worse than linearly), and peak resident memory.
OMP_WAIT_POLICY defaults to PASSIVE: on this shared, oversubscribed 2-core machine spinning OpenMP
threads made 2-thread runs 5-7x slower (override it in the environment to compare).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the torch import (OpenMP reads it once)

import torch
import torch.nn.functional as F

from engine.device import set_threads, tune_cpu_allocator
from engine.render import Camera, RasterOptions, render_view


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workload(batch: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ellipsoid-like depth with smooth noise (silhouette walls included) and views up to ±60° yaw."""
    coords = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    bump = (1 - (x / 0.75) ** 2 - (y / 0.9) ** 2).clamp_min(0).sqrt()
    noise = F.interpolate(torch.rand(batch, 1, 6, 6, generator=gen) - 0.5, size=(size, size), mode="bicubic",
                          align_corners=True)[:, 0]
    depth = (1.08 - 0.12 * bump + 0.04 * noise).clamp(0.9, 1.1)
    view = torch.zeros(batch, 6)
    view[:, 1] = (torch.rand(batch, generator=gen) * 2 - 1) * math.radians(60)
    view[:, 0] = (torch.rand(batch, generator=gen) * 2 - 1) * math.radians(15)
    view[:, 3:] = (torch.rand(batch, 3, generator=gen) * 2 - 1) * 0.01
    image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    return image, depth, view


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads), in ms, after one warm-up call.

    CPU time is the steadier number on a shared machine: other processes' load inflates wall time.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return round(statistics.median(wall), 1), round(statistics.median(cpu), 1)


def measure(batch: int, size: int, opts: RasterOptions, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(size)
    image, depth, view = workload(batch, size, gen)
    cam = Camera(size)

    def forward() -> None:
        with torch.no_grad():
            render_view(image, depth, view, cam, opts)

    def forward_backward() -> None:
        d, v, i = depth.clone().requires_grad_(), view.clone().requires_grad_(), image.clone().requires_grad_()
        out, valid, depth_view = render_view(i, d, v, cam, opts)
        ((out * valid[:, None]).mean() + depth_view.mean()).backward()

    fwd_wall, fwd_cpu = timed(forward, repeats)
    both_wall, both_cpu = timed(forward_backward, repeats)
    return {"forward_ms": fwd_wall, "forward_backward_ms": both_wall, "forward_cpu_ms": fwd_cpu,
            "forward_backward_cpu_ms": both_cpu, "peak_rss_mb_so_far": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-256", action="store_true", help="skip the 256² supersampled case")
    args = parser.parse_args()
    tune_cpu_allocator()
    threads = set_threads(args.threads)
    baseline = peak_rss_mb()
    official = RasterOptions()
    results = {f"{s}": measure(args.batch, s, official, args.repeats) for s in (32, 64, 96, 128)}
    if not args.no_256:
        results["256"] = measure(args.batch, 256, official, max(2, args.repeats // 3))
    megapixels = {s: args.batch * int(s) ** 2 / 1e6 for s in results}
    print(json.dumps({
        "benchmark": "render_view (rasterize_depth + inverse warp), official RasterOptions (2x supersampling)",
        "batch": args.batch, "threads": threads, "repeats": args.repeats, "torch": torch.__version__,
        "fwd_ms_64": results["64"]["forward_ms"], "fwd_bwd_ms_64": results["64"]["forward_backward_ms"],
        "fwd_ms_128": results["128"]["forward_ms"], "fwd_bwd_ms_128": results["128"]["forward_backward_ms"],
        "targets_ms": {"fwd_bwd_64": 60, "fwd_bwd_128": 250},
        "fwd_bwd_ms_per_megapixel": {s: round(r["forward_backward_ms"] / megapixels[s], 1) for s, r in results.items()},
        "fwd_bwd_cpu_ms_per_megapixel": {s: round(r["forward_backward_cpu_ms"] / megapixels[s], 1)
                                         for s, r in results.items()},
        "by_size": results,
        "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))

if __name__ == "__main__":
    main()
