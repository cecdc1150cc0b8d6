"""The pure-PyTorch ops against direct references written from their definitions (spec §9.3-9.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.gan.ops import EqualConv2d, EqualLinear, PixelNorm, fused_leaky_relu, make_kernel, upfirdn2d
from engine.gan.stylegan2 import ModulatedConv2d


def upfirdn2d_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """Zero insertion, zero pad / crop, true convolution (flipped kernel), decimation — literally."""
    b, c, h, w = x.shape
    u = np.zeros((b, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    p0, p1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    u = u[:, :, max(-p0, 0):u.shape[2] - max(-p1, 0), max(-p0, 0):u.shape[3] - max(-p1, 0)]
    kh, kw = k.shape
    flipped = k[::-1, ::-1]
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((b, c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            out += flipped[i, j] * u[:, :, i:i + oh, j:j + ow]
    return out[:, :, ::down, ::down]


# (up, down, pad): the four used by StyleGAN2 first, then extra combinations incl. cropping.
CASES = [
    (2, 1, (2, 1)),   # ToRGB skip Upsample
    (1, 1, (1, 1)),   # blur after the upsampling transposed conv; blur before the 1×1 skip conv in D
    (1, 1, (2, 2)),   # blur before the 3×3 stride-2 conv in D
    (1, 2, (1, 1)),
    (1, 2, (2, 1)),
    (2, 1, (1, 1)),
    (2, 2, (1, 2)),
    (4, 1, (3, 2)),
    (1, 1, (-1, 0)),
    (2, 1, (-1, -1)),
]


@pytest.mark.parametrize(("up", "down", "pad"), CASES)
@pytest.mark.parametrize("kernel_shape", [(4, 4), (3, 2)])
def test_upfirdn2d_matches_numpy_definition(up: int, down: int, pad: tuple[int, int], kernel_shape) -> None:
    rng = np.random.default_rng(up * 100 + down * 10 + pad[0])
    x = rng.standard_normal((2, 3, 7, 6))
    k = rng.standard_normal(kernel_shape)  # asymmetric: catches a missing kernel flip
    out = upfirdn2d(torch.from_numpy(x).float(), torch.from_numpy(k).float(), up=up, down=down, pad=pad)
    ref = upfirdn2d_reference(x, k, up, down, pad)
    assert out.shape == ref.shape
    kh = kernel_shape[0]
    assert out.shape[2] == (7 * up + pad[0] + pad[1] - kh) // down + 1
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_make_kernel_is_normalised_outer_product() -> None:
    k = make_kernel([1, 3, 3, 1])
    assert torch.allclose(k, torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64)


def test_fused_leaky_relu_formula() -> None:
    x, b = torch.randn(2, 5, 3, 3), torch.randn(5)
    z = x + b.view(1, 5, 1, 1)
    assert torch.allclose(fused_leaky_relu(x, b), math.sqrt(2) * torch.where(z >= 0, z, 0.2 * z), atol=1e-6)
    y = torch.randn(4, 5)
    zy = y + b
    assert torch.allclose(fused_leaky_relu(y, b), math.sqrt(2) * torch.where(zy >= 0, zy, 0.2 * zy), atol=1e-6)


def test_equalized_lr_runtime_scaling() -> None:
    lin = EqualLinear(6, 4, bias_init=0.5, lr_mul=0.01, activation=True)
    x = torch.randn(3, 6)
    z = x @ (lin.weight * 0.01 / math.sqrt(6)).t() + lin.bias * 0.01
    assert torch.allclose(lin(x), math.sqrt(2) * F.leaky_relu(z, 0.2), atol=1e-6)
    conv = EqualConv2d(4, 2, 3, padding=1)
    xi = torch.randn(1, 4, 5, 5)
    assert torch.allclose(conv(xi), F.conv2d(xi, conv.weight / 6, conv.bias, padding=1), atol=1e-6)


def test_pixel_norm_eps_inside_root() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    out = PixelNorm()(x)
    assert torch.allclose(out[0], x[0] / math.sqrt(12.5))
    assert torch.equal(out[1], torch.zeros(2))


def modconv_loop_reference(mod: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """One sample at a time, with an explicitly modulated (and demodulated) weight; upsampling
    as zero insertion + full convolution, followed by the [1,3,3,1] blur from the numpy reference."""
    w = mod.weight[0]
    _, c_in, k, _ = w.shape
    outs = []
    for b in range(x.shape[0]):
        s = mod.modulation.weight @ style[b] / math.sqrt(style.shape[1]) + mod.modulation.bias
        wb = w / math.sqrt(c_in * k * k) * s.view(1, c_in, 1, 1)
        if mod.demodulate:
            wb = wb / torch.sqrt((wb**2).sum((1, 2, 3), keepdim=True) + 1e-8)
        xb = x[b:b + 1]
        if mod.upsample:
            u = xb.new_zeros(1, c_in, 2 * xb.shape[2] - 1, 2 * xb.shape[3] - 1)
            u[:, :, ::2, ::2] = xb
            y = F.conv2d(F.pad(u, [k - 1] * 4), wb.flip(2, 3))
            kernel = (make_kernel([1, 3, 3, 1]) * 4).double().numpy()
            y = torch.from_numpy(upfirdn2d_reference(y.double().numpy(), kernel, 1, 1, (1, 1))).to(xb.dtype)
        else:
            y = F.conv2d(xb, wb, padding=k // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("mode", ["grouped", "activation"])
@pytest.mark.parametrize(("k", "demodulate", "upsample"), [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv_equals_per_sample_loop(mode: str, k: int, demodulate: bool, upsample: bool) -> None:
    torch.manual_seed(0)
    mod = ModulatedConv2d(6, 5, k, style_dim=8, demodulate=demodulate, upsample=upsample, mode=mode)
    with torch.no_grad():
        mod.modulation.bias.normal_()  # styles far from 1, so a wrong modulation axis shows
    x, style = torch.randn(3, 6, 5, 5), torch.randn(3, 8)
    with torch.no_grad():
        out = mod(x, style)
        ref = modconv_loop_reference(mod, x, style)
    assert out.shape == ref.shape == (3, 5, 10 if upsample else 5, 10 if upsample else 5)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)
