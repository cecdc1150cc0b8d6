"""Generator semantics the pipeline relies on (spec §5.4, §9.3), on tiny random-weight models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import EngineError
from engine.gan import (
    Discriminator,
    Generator,
    GeneratorProtocol,
    StyleGAN2Arch,
    StyleGAN2Generator,
    ZSpaceGenerator,
)

ARCH = StyleGAN2Arch(16, style_dim=32, n_mlp=8, channel_max=16)


@pytest.fixture(scope="module")
def gen() -> Generator:
    torch.manual_seed(0)
    g = Generator(ARCH)
    with torch.no_grad():  # non-trivial biases and noise strengths so their handling is tested
        for name, p in g.named_parameters():
            if name.endswith(("bias", "noise.weight")):
                p.normal_(0, 0.5)
    return g.eval().requires_grad_(False)


def test_partial_mappings_compose_to_the_full_mapping(gen: Generator) -> None:
    z = torch.randn(4, 32)
    full = gen.mapping(z)
    for k in range(0, 10):
        assert torch.allclose(gen.partial_mapping(gen.partial_mapping(z, 0, k), k), full, atol=1e-6)
    assert torch.equal(gen.partial_mapping(z), full)
    assert torch.equal(gen.partial_mapping(z, 3, 3), z)


def test_partial_mapping_off_by_one(gen: Generator) -> None:
    """skip = 8 − F1_d with F1_d = 2 applies exactly linear layers 6, 7, 8 (index 0 is PixelNorm)."""
    h = torch.randn(2, 32)
    expected = h
    for i in (6, 7, 8):
        layer = gen.style[i]
        z = expected @ (layer.weight * 0.01 / math.sqrt(32)).t() + layer.bias * 0.01
        expected = math.sqrt(2) * F.leaky_relu(z, 0.2)
    assert torch.allclose(gen.partial_mapping(h, skip=8 - 2), expected, atol=1e-6)
    # F1_d = 8: PixelNorm is applied first, so scaling the input changes nothing
    assert torch.allclose(gen.partial_mapping(3 * h, skip=0), gen.partial_mapping(h, skip=0), atol=1e-5)


@pytest.mark.parametrize("f1_d", [2, 4, 8])
def test_zero_encoder_output_gives_zero_offset(gen: Generator, f1_d: int) -> None:
    """Exactly zero when the centres are computed at the batch size of the offsets (BLAS kernels
    may round differently for other batch sizes, ~1e-9)."""
    zero = torch.zeros(3, 32)
    center_w = gen.partial_mapping(zero)
    center_h = gen.partial_mapping(zero, depth=8 - f1_d)
    assert center_w.abs().sum() > 0  # non-zero biases: the centre is a real point, not the origin
    dw = gen.partial_mapping(torch.zeros(3, 32) + center_h, skip=8 - f1_d) - center_w
    assert torch.equal(dw, torch.zeros_like(dw))
    center_w1 = gen.partial_mapping(torch.zeros(1, 32))
    assert torch.allclose(gen.partial_mapping(center_h, skip=8 - f1_d), center_w1.expand(3, -1), atol=1e-6)


def test_w_broadcast_equals_repeated_w_plus(gen: Generator) -> None:
    w = gen.mapping(torch.randn(2, 32))
    assert ARCH.n_latent == 6
    assert torch.equal(gen.synthesis(w), gen.synthesis(w[:, None].repeat(1, 6, 1)))


def test_w_plus_rows_drive_their_layers(gen: Generator) -> None:
    w = gen.mapping(torch.randn(1, 32)).repeat(1, 6, 1)
    base = gen.synthesis(w)
    for row in range(6):
        changed = w.clone()
        changed[:, row] += 1.0
        assert not torch.allclose(gen.synthesis(changed), base), f"style row {row} unused"


def test_noise_modes(gen: Generator) -> None:
    w = gen.mapping(torch.randn(2, 32))
    stored = gen.synthesis(w)
    assert torch.equal(stored, gen.synthesis(w, noise="stored"))
    assert not torch.allclose(gen.synthesis(w, noise="random"), stored)
    assert torch.equal(gen.synthesis(w, noise=gen.stored_noise()), stored)
    zeros = [torch.zeros_like(n) for n in gen.stored_noise()]
    assert not torch.allclose(gen.synthesis(w, noise=zeros), stored)
    with pytest.raises(ValueError, match="noise"):
        gen.synthesis(w, noise=zeros[:2])
    with pytest.raises(ValueError, match="latent"):
        gen.synthesis(torch.randn(2, 5, 32))


def test_modconv_formulations_give_the_same_generator(gen: Generator) -> None:
    w = gen.mapping(torch.randn(3, 32))
    outs = {}
    for mode in ("grouped", "activation"):
        gen.set_modconv_mode(mode)
        outs[mode] = gen.synthesis(w)
    gen.set_modconv_mode("auto")
    assert torch.allclose(outs["grouped"], outs["activation"], atol=1e-5)
    assert torch.equal(gen.synthesis(w), outs["activation"])  # auto = activation on CPU


def test_truncation_and_mean_latent(gen: Generator) -> None:
    w_avg = gen.mean_latent(64, torch.Generator().manual_seed(1))
    assert w_avg.shape == (1, 32)
    assert torch.equal(w_avg, gen.mean_latent(64, torch.Generator().manual_seed(1)))
    w = gen.mapping(torch.randn(5, 32))
    assert torch.allclose(gen.truncate(w, 0.0, w_avg), w_avg.expand(5, -1))
    assert torch.allclose(gen.truncate(w, 0.7, w_avg), w_avg + 0.7 * (w - w_avg))
    assert gen.truncate(w, 1.0, w_avg) is w


def test_mix_latents(gen: Generator) -> None:
    w1, w2 = torch.randn(2, 32), torch.randn(2, 32)
    mixed = gen.mix_latents(w1, w2, 2)
    assert mixed.shape == (2, 6, 32)
    assert torch.equal(mixed[:, 1], w1) and torch.equal(mixed[:, 2], w2)


def test_gradients_reach_w_and_an_upstream_encoder(gen: Generator) -> None:
    """The step-2 path: encoder → partial mapping → W offset → synthesis; G itself stays frozen."""
    adapter = StyleGAN2Generator(gen)
    encoder = nn.Linear(12, 32)
    w = adapter.sample_latents(2, torch.Generator().manual_seed(0)).requires_grad_(True)
    zero = torch.zeros(1, 32)
    center_h = adapter.partial_mapping(zero, depth=8 - 2)
    dw = adapter.partial_mapping(encoder(torch.randn(2, 12)) + center_h, skip=8 - 2) - adapter.partial_mapping(zero)
    for mode in ("grouped", "activation"):
        gen.set_modconv_mode(mode)
        encoder.zero_grad()
        w.grad = None
        adapter.synthesize(w + dw).clamp(-1, 1).square().mean().backward(retain_graph=True)
        assert w.grad is not None and w.grad.abs().sum() > 0 and torch.isfinite(w.grad).all()
        assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    gen.set_modconv_mode("auto")
    assert all(p.grad is None for p in gen.parameters())


def test_stylegan2_adapter_protocol_and_features() -> None:
    arch = StyleGAN2Arch(32, style_dim=16, n_mlp=2, channel_max=8)
    adapter = StyleGAN2Generator(Generator(arch), Discriminator(arch))
    assert isinstance(adapter, GeneratorProtocol)
    assert (adapter.latent_kind, adapter.latent_dim, adapter.image_size, adapter.n_latent) == ("w", 16, 32, 8)
    assert adapter.n_mapping_layers == 2 and adapter.has_discriminator
    adapter.train()
    assert not adapter.training and not adapter.generator.training
    images = adapter.synthesize(adapter.sample_latents(2))
    assert images.shape == (2, 3, 32, 32)
    feats = adapter.discriminator_features(torch.randn(2, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 8, 4, 4)]
    assert adapter.discriminator.__class__ is Discriminator
    assert Discriminator(arch)(images).shape == (2, 1)
    with pytest.raises(EngineError, match="no discriminator"):
        StyleGAN2Generator(Generator(arch)).discriminator_features(images)


class TinyDCGAN(nn.Module):
    def __init__(self, nz: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(nz, 4, 4, 1, 0), nn.ReLU(),
                                 nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def test_z_space_adapter() -> None:
    net = TinyDCGAN()
    gen = ZSpaceGenerator(net, latent_dim=8, image_size=8, latent_shape=(8, 1, 1))
    assert isinstance(gen, GeneratorProtocol)
    assert (gen.latent_kind, gen.n_latent, gen.n_mapping_layers, gen.has_discriminator) == ("z", 1, 0, False)
    z = gen.sample_latents(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 8)
    assert torch.equal(gen.synthesize(z), net(z.view(3, 8, 1, 1)))
    assert torch.equal(gen.synthesize(z[:, None]), gen.synthesize(z))
    assert torch.equal(gen.mean_latent(), torch.zeros(1, 8))
    assert torch.equal(gen.partial_mapping(z, skip=6), z) and torch.equal(gen.mapping(z), z)
    h = torch.randn(3, 8, requires_grad=True)
    gen.synthesize(z + gen.partial_mapping(h, skip=6)).sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    with pytest.raises(EngineError, match="one latent"):
        gen.synthesize(torch.randn(3, 2, 8))
    feats = ZSpaceGenerator(net, 8, 8, (8, 1, 1), features=lambda x: [x.mean(1)])
    assert feats.has_discriminator and feats.discriminator_features(torch.ones(1, 3, 8, 8))[0].shape == (1, 8, 8)
