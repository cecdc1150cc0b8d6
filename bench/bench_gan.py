"""StyleGAN2 generator speed on this machine, against its own dense-matmul rate. Prints ONE JSON object.

Forward = mapping + synthesis (no grad); forward+backward = synthesis from a W leaf and a
backward pass to it (generator frozen, as in GAN2Shape step 2). FLOPs are counted analytically
for convolutions (incl. the depthwise FIR filters) and linear layers; the backward pass is
counted as one more forward (input gradients only — the weights are frozen).

The machine is shared, so every timed generator call is paired with a dense matmul timed right
before it: the reported fraction is the median over repeats of (generator GFLOP/s ÷ matmul
GFLOP/s of the same moment), which cancels most of the load from other processes. The matmul
rate is the faster of MKL's torch.mm and oneDNN's GEMM (a 1×1 convolution), see `Matmul`.

    .venv/bin/python bench/bench_gan.py [--repeats 3] [--configs 64_cm1,64_cap64] [--threads N]
        [--batches 1,16] [--modconv auto|grouped|activation]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from engine.device import tune_cpu_allocator
from engine.gan import Generator, StyleGAN2Arch

CONFIGS = {
    "64_cm1": StyleGAN2Arch(64, channel_multiplier=1),
    "128_cm1": StyleGAN2Arch(128, channel_multiplier=1),
    "64_cap128": StyleGAN2Arch(64, channel_multiplier=1, channel_max=128),
    "64_cap64": StyleGAN2Arch(64, channel_multiplier=1, channel_max=64),
}
FIR_TAPS = 16  # 4×4 blur kernel
MATMUL_N = 1024


def generator_flops(arch: StyleGAN2Arch, batch: int) -> float:
    """Multiply-adds ×2 of every conv / linear of mapping + synthesis for `batch` images."""
    dim = arch.style_dim
    macs = arch.n_mlp * dim * dim  # mapping network (once per image; W broadcast to all layers)
    c4 = arch.channels(4)
    macs += (dim * c4) * 2 + c4 * c4 * 9 * 16 + 3 * c4 * 16  # conv1 + to_rgb1 (modulation + conv)
    c_in = c4
    for log_res in range(3, arch.log_size + 1):
        res = 2**log_res
        c_out = arch.channels(res)
        macs += dim * (c_in + c_out + c_out)  # modulations of up-conv, conv, to_rgb
        macs += c_in * c_out * 9 * (res // 2) ** 2  # transposed 3×3 conv, stride 2 (per input pixel)
        macs += c_out * FIR_TAPS * res**2  # blur after it
        macs += c_out * c_out * 9 * res**2  # 3×3 conv
        macs += 3 * c_out * res**2 + 3 * FIR_TAPS * res**2  # to_rgb 1×1 + skip upsampling FIR
        c_in = c_out
    return 2.0 * macs * batch


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Matmul:
    """The machine's dense float32 GEMM rate, taken as the faster of two libraries: torch.mm (MKL,
    which may pick AVX2 kernels on AMD CPUs) and the same n×n×n product as a 1×1 channels-last
    convolution (oneDNN, the library that runs the generator's convolutions)."""

    def __init__(self, n: int = MATMUL_N):
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.x = torch.randn(1, n, 32, n // 32).contiguous(memory_format=torch.channels_last)
        self.w = torch.randn(n, n, 1, 1)
        self.flops = 2.0 * n**3
        self.history: dict[str, list[float]] = {"mkl_mm": [], "onednn_1x1_conv": []}
        self.gflops()

    def gflops(self) -> float:
        """Measure both once; return the higher rate (GFLOP/s)."""
        for name, fn in (("mkl_mm", lambda: torch.mm(self.a, self.b)),
                         ("onednn_1x1_conv", lambda: torch.nn.functional.conv2d(self.x, self.w))):
            self.history[name].append(self.flops / _seconds(fn) / 1e9)
        return max(h[-1] for h in self.history.values())

    def summary(self) -> dict:
        return {name: {"gflops_median": round(statistics.median(h), 1), "gflops_best": round(max(h), 1)}
                for name, h in self.history.items()}


def paired(fn: Callable[[], object], flops: float, matmul: Matmul, repeats: int) -> dict:
    """Time fn `repeats` times (after a warm-up), each right after a matmul; median time and ratio."""
    fn()
    times, ratios = [], []
    for _ in range(repeats):
        reference = matmul.gflops()
        t = _seconds(fn)
        times.append(t)
        ratios.append(flops / t / 1e9 / reference)
    return {"s": statistics.median(times), "best_s": min(times), "fraction_of_matmul": statistics.median(ratios)}


def bench_config(arch: StyleGAN2Arch, batch: int, repeats: int, modconv: str, matmul: Matmul) -> dict:
    torch.manual_seed(0)
    g = Generator(arch, modconv=modconv).eval().requires_grad_(False)
    z = torch.randn(batch, arch.style_dim)
    w0 = g.mapping(z).detach()

    def forward() -> None:
        with torch.no_grad():
            g.synthesis(g.mapping(z))

    def forward_backward() -> None:
        w = w0.clone().requires_grad_(True)
        g.synthesis(w).square().mean().backward()

    flops = generator_flops(arch, batch)
    fwd = paired(forward, flops, matmul, repeats)
    bwd = paired(forward_backward, 2 * flops, matmul, repeats)
    return {
        "batch": batch,
        "gflop_per_image_forward": round(flops / batch / 1e9, 4),
        "forward_s_per_image": round(fwd["s"] / batch, 5),
        "forward_best_s_per_image": round(fwd["best_s"] / batch, 5),
        "forward_gflops": round(flops / fwd["s"] / 1e9, 2),
        "forward_fraction_of_matmul": round(fwd["fraction_of_matmul"], 3),
        "forward_backward_s_per_image": round(bwd["s"] / batch, 5),
        "forward_backward_best_s_per_image": round(bwd["best_s"] / batch, 5),
        "forward_backward_gflops": round(2 * flops / bwd["s"] / 1e9, 2),
        "forward_backward_fraction_of_matmul": round(bwd["fraction_of_matmul"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--modconv", default="auto", choices=["auto", "grouped", "activation"])
    args = parser.parse_args()
    allocator = tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    matmul = Matmul()
    for _ in range(5):
        matmul.gflops()
    results: dict = {}
    for name in args.configs.split(","):
        arch = CONFIGS[name]
        params = sum(p.numel() for p in Generator(arch).parameters()) / 1e6
        runs = [bench_config(arch, int(b), args.repeats, args.modconv, matmul) for b in args.batches.split(",")]
        results[name] = {"arch": arch.to_dict(), "params_m": round(params, 2), "runs": runs}
    for _ in range(5):
        matmul.gflops()
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "allocator_tuned": allocator,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "modconv": args.modconv,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "matmul": {"n": MATMUL_N, **matmul.summary(),
                   "note": "each fraction uses the faster of the two, measured right before the timed call"},
        "target": "batch 16: forward_fraction_of_matmul >= 0.35",
        "configs": results,
    }, indent=2))


if __name__ == "__main__":
    main()
