"""Whole networks against references written directly from spec §9.3-9.5 (unfused, float64,
numpy FIR filters), so the fused / channels-last fast paths cannot drift from the original maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_gan_ops import modconv_loop_reference, upfirdn2d_reference

from engine.gan import Discriminator, Generator, StyleGAN2Arch
from engine.gan.ops import make_kernel
from engine.gan.stylegan2 import StyledConv

ARCH = StyleGAN2Arch(16, style_dim=8, n_mlp=2, channel_max=6)
BLUR4 = make_kernel([1, 3, 3, 1]).double().numpy()


def fir(x: torch.Tensor, kernel: np.ndarray, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    return torch.from_numpy(upfirdn2d_reference(x.numpy(), kernel, up, down, pad))


def flrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2) * F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), 0.2)


def ref_synthesis(g: Generator, w_plus: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
    def styled(layer, x, w, noise):
        out = modconv_loop_reference(layer.conv, x, w) + layer.noise.weight * noise
        return flrelu(out, layer.activate.bias)

    def to_rgb(layer, x, w, skip):
        out = modconv_loop_reference(layer.conv, x, w) + layer.bias
        return out if skip is None else out + fir(skip, BLUR4 * 4, up=2, pad=(2, 1))

    x = g.input.input.repeat(w_plus.shape[0], 1, 1, 1)
    x = styled(g.conv1, x, w_plus[:, 0], noises[0])
    skip = to_rgb(g.to_rgb1, x, w_plus[:, 1], None)
    for k in range(len(g.to_rgbs)):
        i = 1 + 2 * k
        x = styled(g.convs[2 * k], x, w_plus[:, i], noises[i])
        x = styled(g.convs[2 * k + 1], x, w_plus[:, i + 1], noises[i + 1])
        skip = to_rgb(g.to_rgbs[k], x, w_plus[:, i + 2], skip)
    return skip


def randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("bias", "noise.weight")):
                p.normal_(0, 0.5)


@pytest.mark.parametrize("mode", ["grouped", "activation"])
def test_generator_matches_spec_reference(mode: str) -> None:
    torch.manual_seed(0)
    g = Generator(ARCH, modconv=mode)
    randomise(g)
    w_plus = torch.randn(2, ARCH.n_latent, 8)
    with torch.no_grad():
        out = g.synthesis(w_plus)
        noise = [torch.randn(2, 1, n.shape[2], n.shape[3]) for n in g.stored_noise()]
        out_given = g.synthesis(w_plus, noise=noise)
        g64 = g.double()
        ref = ref_synthesis(g64, w_plus.double(), g64.stored_noise())
        ref_given = ref_synthesis(g64, w_plus.double(), [n.double() for n in noise])
    assert out.shape == (2, 3, 16, 16) and out.is_contiguous()
    assert torch.allclose(out.double(), ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out_given.double(), ref_given, atol=1e-4, rtol=1e-4)


def ref_conv_layer(seq, x: torch.Tensor, down: bool, act: bool) -> torch.Tensor:
    mods = list(seq)
    if down:
        blur = mods.pop(0)
        x = fir(x, blur.kernel.numpy(), pad=blur.pad)
    conv = mods[0]
    out = F.conv2d(x, conv.weight * conv.scale, conv.bias, stride=2 if down else 1,
                   padding=0 if down else conv.weight.shape[-1] // 2)
    return flrelu(out, mods[1].bias) if act else out


def ref_discriminator(d: Discriminator, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    out = ref_conv_layer(d.convs[0], x, False, True)
    feats = []
    for block in list(d.convs)[1:]:
        main = ref_conv_layer(block.conv2, ref_conv_layer(block.conv1, out, False, True), True, True)
        out = (main + ref_conv_layer(block.skip, out, True, False)) / math.sqrt(2)
        feats.append(out)
    b, c, h, w = out.shape
    group = min(b, 4)
    std = torch.sqrt(out.view(group, -1, c, h, w).var(0, unbiased=False) + 1e-8).mean((1, 2, 3))
    out = torch.cat([out, std.view(1, -1, 1, 1, 1).repeat(group, 1, 1, h, w).view(b, 1, h, w)], 1)
    out = ref_conv_layer(d.final_conv, out, False, True).flatten(1)
    lin0, lin1 = d.final_linear
    out = flrelu(out @ (lin0.weight * lin0.scale).t(), lin0.bias)
    return feats, out @ (lin1.weight * lin1.scale).t() + lin1.bias


def test_discriminator_matches_spec_reference() -> None:
    torch.manual_seed(0)
    d = Discriminator(ARCH)
    randomise(d)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        feats, logits = d.features(images), d(images)
        d64 = d.double()
        ref_feats, ref_logits = ref_discriminator(d64, images.double())
    assert [f.shape for f in feats] == [f.shape for f in ref_feats]
    for f, r in zip(feats, ref_feats, strict=True):
        assert torch.allclose(f.double(), r, atol=1e-4, rtol=1e-4)
    assert torch.allclose(logits.double(), ref_logits, atol=1e-4, rtol=1e-4)


def test_training_gradients_reach_every_parameter() -> None:
    """What GAN training needs: G (random noise, mixing) and D backward, R1 (grad w.r.t. real images)."""
    torch.manual_seed(0)
    g, d = Generator(ARCH), Discriminator(ARCH)
    w1, w2 = g.mapping(torch.randn(4, 8)), g.mapping(torch.randn(4, 8))
    fake = g.synthesis(g.mix_latents(w1, w2, 3), noise="random")
    F.softplus(-d(fake)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


@pytest.mark.parametrize("upsample", [False, True])
def test_styled_conv_same_in_both_memory_formats(upsample: bool) -> None:
    """CPU runs channels-last, CUDA contiguous: the fused epilogue must not care."""
    torch.manual_seed(0)
    layer = StyledConv(5, 4, 8, upsample=upsample)
    randomise(layer)
    x, w = torch.randn(2, 5, 6, 6), torch.randn(2, 8)
    noise = torch.randn(2, 1, 12 if upsample else 6, 12 if upsample else 6)
    with torch.no_grad():
        plain = layer(x, w, noise)
        cl = layer(x.contiguous(memory_format=torch.channels_last), w, noise)
        ref = flrelu(layer.conv(x, w) + layer.noise.weight * noise, layer.activate.bias)
    assert plain.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(plain, ref, atol=1e-5) and torch.allclose(cl, ref, atol=1e-5)
