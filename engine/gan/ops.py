"""StyleGAN2 building blocks in pure PyTorch (no compiled extensions), numerically equal to the
rosinality CUDA ops (spec §9.3-9.4), with parameter names that match its state dicts.

Resampling never inserts zeros: upsampling is a strided transposed convolution and
downsampling a strided convolution, so no multiply is spent on known zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps → normalised 2-D kernel (outer product / sum), e.g. [1,3,3,1] → k_i k_j / 64."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    """A 2-D FIR kernel as a depthwise conv weight (C×1×kh×kw), flipped so conv2d convolves."""
    return kernel.flip(0, 1).to(like)[None, None].expand(channels, 1, *kernel.shape)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (p0 before, p1 after; negative crops), convolve, keep every
    `down`-th sample — the rosinality `upfirdn2d` with the same padding on both axes.

    Output size per axis: (H·up + p0 + p1 − kh) // down + 1.
    """
    p0, p1 = pad
    c = x.shape[1]
    kh, kw = kernel.shape
    if up > 1:
        # The transposed conv of the real samples equals convolving the zero-inserted signal;
        # its full output starts kh-1 samples before the window that upfirdn2d keeps.
        weight = kernel.to(x)[None, None].expand(c, 1, kh, kw)
        crop = (kh - 1 - p0, kw - 1 - p0, kh - up - p1, kw - up - p1)  # top, left, bottom, right
        if kh == kw and len(set(crop)) == 1 and crop[0] >= 0:
            y = F.conv_transpose2d(x, weight, stride=up, padding=crop[0], groups=c)
        else:
            y = F.pad(F.conv_transpose2d(x, weight, stride=up, groups=c),
                      (-crop[1], -crop[3], -crop[0], -crop[2]))
        return y[:, :, ::down, ::down] if down > 1 else y
    weight = _depthwise(kernel, c, x)
    if p0 == p1 and p0 >= 0:  # the conv's own zero padding avoids a padded copy
        return F.conv2d(x, weight, stride=down, padding=p0, groups=c)
    return F.conv2d(F.pad(x, (p0, p1, p0, p1)), weight, stride=down, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """scale · leaky_relu(x + bias) with the bias broadcast over dim 1 (the official CPU fallback)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    # leaky_relu is positively homogeneous, so the gain can go in first and save one pass.
    return F.leaky_relu(x * scale, slope)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + scaled leaky ReLU; parameter `bias` (C)."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass with padding (p0, p1); buffer `kernel` (scaled by up² when it follows upsampling)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling of the ToRGB skip path; buffer `kernel` (taps normalised, × factor²)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        self.factor = factor
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class PixelNorm(nn.Module):
    """x / RMS(x) over features (eps 1e-8 inside the root, as the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored as N(0,1)/lr_mul, scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (runtime scale 1/√(in·k²))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
